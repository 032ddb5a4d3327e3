//! Profiles: one TOML table per NetSuite integration, merged with flags and `SUITEKEY_*`
//! environment variables (which win) into one validated [`Profile`].
//!
//! The file is `$XDG_CONFIG_HOME/suitekey/config.toml` (else `~/.config/suitekey/config.toml`),
//! or `--config FILE`, and holds `[profiles.NAME]` tables and, for `suitekey agent`, an
//! optional `[agent]` table:
//!
//! ```toml
//! [profiles.prod]
//! key = "pkcs11:token=acc;object=ns-prod?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/secrets/pin"
//! client-id = "…"
//! certificate-id = "…"
//! account = "1234567_SB1"
//! alg = "ES256"                               # optional: default from the key
//! scope = ["restlets", "rest_webservices"]    # optional; "restlets,rest_webservices" too
//! token-url = "https://…"                     # optional: default from the account
//! module = "/usr/lib/softhsm/libsofthsm2.so"  # optional: when the key URI names none
//! ca-file = "/etc/suitekey/private-ca.pem"    # optional: trust only this CA for the token URL
//! timeout = 30                                # optional: seconds per attempt (each retry its own)
//! certificates-url = "https://…"              # optional (rotate): default from the account
//! role = 3                                    # optional (rotate): default the current certificate's
//! entity = -5                                 # optional (rotate): default the current certificate's
//! rotate-before-days = 30                     # optional (agent): rotate when 30 days or fewer are left
//!
//! [agent]
//! allowed-uids = [1001]                       # other users who may use the agent's socket
//! ```
//!
//! The table is walked by hand rather than through `serde(deny_unknown_fields)` so that every
//! error names the file, the profile and the field, and lists the keys that are allowed. Values
//! are checked when a profile is resolved, so a flag can replace a bad value in the file.
//! A key URI in the file may not carry a `pin-value`, as on the command line: a config file is
//! copied by backups and dotfile repositories; `pin-source=file:PATH` keeps the PIN apart.
//! A `token-url` in the file must be one of the profile's account's NetSuite hosts (or
//! loopback): whoever can edit the file must not be able to send assertions elsewhere
//! unnoticed; `--token-url` (or `SUITEKEY_TOKEN_URL`) overrides that deliberately. A relative
//! `ca-file` is relative to the config file's directory.
//!
//! The rooms: `fields` declares each profile field once (flag, variable, file key, type);
//! `file` finds and reads the file within its size limit; `schema` reads its layout into
//! tables of text; `values` holds the fields' value types and how each is read; `resolve`
//! merges flags over a table into a [`Profile`], and `profile` derives what a token request
//! needs from it; `rewrite` changes a profile in the file in place (`rotate`'s switch).

mod error;
mod fields;
mod file;
mod profile;
mod resolve;
mod rewrite;
mod schema;
mod values;

pub use error::{ConfigError, Origin};
pub use fields::{ModuleArg, Profile, ProfileOverrides};
pub use file::{MAX_CONFIG_LEN, read_limited};
pub use resolve::resolve;
pub use rewrite::{ConfigFile, RewriteError};
pub use schema::{Config, ProfileTable};
pub use values::{RawArg, Refusal, RotateBeforeDays, Timeout};

#[cfg(test)]
mod tests;
