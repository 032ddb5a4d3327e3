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

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use zeroize::Zeroizing;

use crate::cli::RawArg;
use crate::exchange::{CaFile, ClientOptions, ExchangeContext};
use crate::jose::Alg;
use crate::netsuite::{
    self, AccountId, AssertionRequest, CertificateId, ClientId, Lifetime, Scopes, TokenUrl,
};
use crate::pkcs11::Pkcs11Uri;
use crate::pkcs11::uri::{KeyRef, UriError};

/// The largest config file read: a profile is a few hundred bytes, so even thousands of them
/// fit. A bigger file (a log or a device given to `--config` by mistake) is refused before
/// it is read whole.
pub const MAX_CONFIG_LEN: u64 = 1024 * 1024;

/// A profile field: its key in the file, its flag and its environment variable.
struct Field {
    key: &'static str,
    flag: &'static str,
    env: Option<&'static str>,
}

const KEY: Field = field("key", "--key", Some("SUITEKEY_KEY"));
const CLIENT_ID: Field = field("client-id", "--client-id", Some("SUITEKEY_CLIENT_ID"));
const CERTIFICATE_ID: Field = field(
    "certificate-id",
    "--certificate-id",
    Some("SUITEKEY_CERTIFICATE_ID"),
);
const ACCOUNT: Field = field("account", "--account", Some("SUITEKEY_ACCOUNT"));
const ALG: Field = field("alg", "--alg", None);
const SCOPE: Field = field("scope", "--scope", None);
const TOKEN_URL: Field = field("token-url", "--token-url", Some("SUITEKEY_TOKEN_URL"));
const MODULE: Field = field("module", "--module", Some("SUITEKEY_MODULE"));
const CA_FILE: Field = field("ca-file", "--ca-file", Some("SUITEKEY_CA_FILE"));
const TIMEOUT: Field = field("timeout", "--timeout", Some("SUITEKEY_TIMEOUT"));

const fn field(key: &'static str, flag: &'static str, env: Option<&'static str>) -> Field {
    Field { key, flag, env }
}

/// The keys a profile table may have, in the order the documentation lists them.
pub const PROFILE_KEYS: [&str; 10] = [
    KEY.key,
    CLIENT_ID.key,
    CERTIFICATE_ID.key,
    ACCOUNT.key,
    ALG.key,
    SCOPE.key,
    TOKEN_URL.key,
    MODULE.key,
    CA_FILE.key,
    TIMEOUT.key,
];

/// Where a profile came from: a file and a profile name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The config file.
    pub path: PathBuf,
    /// The profile's name (`[profiles.NAME]`).
    pub profile: String,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "config '{}', profile '{}'",
            self.path.display(),
            self.profile
        )
    }
}

/// Why a configuration or profile is not usable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read (or, given with `--config`, does not exist).
    #[error("cannot read config '{}': {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CONFIG_LEN`].
    #[error(
        "config '{}' is larger than {max} bytes, the most suitekey reads; check that --config \
         names the config file, or split the profiles over several files",
        .path.display()
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        max: u64,
    },
    /// The file is not UTF-8 text.
    #[error("config '{}' is not UTF-8 text; save it as UTF-8", .path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },
    /// The file is not TOML. Only the parser's message and position are shown, never the line:
    /// it might hold a secret.
    #[error("config '{}' is not valid TOML at line {line}, column {column}: {message}", .path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// The file's structure is wrong (not `[profiles.NAME]` tables).
    #[error("config '{}': {problem}", .path.display())]
    Layout {
        /// The file.
        path: PathBuf,
        /// What is wrong, and the expected shape.
        problem: String,
    },
    /// No profile of that name.
    #[error("config '{}' has no profile '{name}' (known: {})", .path.display(), list_or_none(.known))]
    UnknownProfile {
        /// The file.
        path: PathBuf,
        /// The name asked for.
        name: String,
        /// The profiles the file has.
        known: Vec<String>,
    },
    /// A key a profile table may not have.
    #[error("{origin}: unknown key '{key}' (known: {})", PROFILE_KEYS.join(", "))]
    UnknownKey {
        /// The file and profile.
        origin: Origin,
        /// The key found.
        key: String,
    },
    /// A required field given neither in the profile nor by flag or environment.
    #[error("{}", missing_message(.origin.as_ref(), .field, .flag, .env))]
    Missing {
        /// The file and profile, if one was used.
        origin: Option<Origin>,
        /// The field's key in the file.
        field: &'static str,
        /// The flag that sets it.
        flag: &'static str,
        /// The environment variable that sets it, if any.
        env: Option<&'static str>,
    },
    /// A field of the file with a value that is not acceptable.
    #[error("{origin}: field '{field}': {source}")]
    Field {
        /// The file and profile.
        origin: Origin,
        /// The field's key in the file.
        field: &'static str,
        /// Why the value is refused.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A flag (or its environment variable) with a value that is not acceptable.
    #[error("{flag}: {source}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// Why the value is refused.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A key URI, from a flag or the file, that does not name one private key. Its message
    /// names the URI, as it did when the key was opened.
    #[error(transparent)]
    Key(crate::pkcs11::Error),
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

fn missing_message(
    origin: Option<&Origin>,
    field: &str,
    flag: &str,
    env: &Option<&'static str>,
) -> String {
    let env = env.map(|e| format!(" or set {e}")).unwrap_or_default();
    match origin {
        Some(origin) => format!("{origin}: missing field '{field}'; add it or pass {flag}{env}"),
        None => format!(
            "missing {flag}: pass it{env}, or add '{field}' to a profile in the config file (--profile NAME)"
        ),
    }
}

/// A text error, for refusals that have no error type of their own.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(String);

/// One profile table as written in the file: present keys only, not yet validated. Two are
/// equal when they come from the same file and profile with the same values (the agent keeps
/// an unchanged profile's session across a reload).
#[derive(Clone, PartialEq, Eq)]
pub struct ProfileTable {
    origin: Origin,
    values: BTreeMap<&'static str, Zeroizing<String>>,
}

impl fmt::Debug for ProfileTable {
    // The key URI and token URL might carry secrets; only the names of the fields are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProfileTable")
            .field("origin", &self.origin)
            .field("keys", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ProfileTable {
    /// The file and profile name this table comes from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    fn get(&self, field: &Field) -> Option<&str> {
        self.values.get(field.key).map(|v| v.as_str())
    }

    /// Reads a `[profiles.NAME]` table, refusing unknown keys and values of the wrong type.
    fn from_toml(origin: Origin, table: &toml::Table) -> Result<ProfileTable, ConfigError> {
        let mut values = BTreeMap::new();
        for (key, value) in table {
            let Some(&known) = PROFILE_KEYS.iter().find(|k| **k == key.as_str()) else {
                return Err(ConfigError::UnknownKey {
                    origin,
                    key: key.clone(),
                });
            };
            let text = match (known, value) {
                (_, toml::Value::String(s)) => s.clone(),
                ("timeout", toml::Value::Integer(n)) => n.to_string(),
                ("scope", toml::Value::Array(items)) => scope_list(items)
                    .ok_or_else(|| field_error(&origin, "scope", "expected a list of strings"))?,
                (_, other) => {
                    let expected = if known == "scope" {
                        "expected a string or a list of strings"
                    } else {
                        "expected a string"
                    };
                    let reason = format!("{expected}, found {}", other.type_str());
                    return Err(field_error(&origin, known, &reason));
                }
            };
            values.insert(known, Zeroizing::new(text));
        }
        Ok(ProfileTable { origin, values })
    }
}

fn field_error(origin: &Origin, field: &'static str, reason: &str) -> ConfigError {
    ConfigError::Field {
        origin: origin.clone(),
        field,
        source: Box::new(Refusal(reason.to_owned())),
    }
}

/// `["restlets", "rest_webservices"]` as `restlets,rest_webservices`, if all are strings.
fn scope_list(items: &[toml::Value]) -> Option<String> {
    let names: Option<Vec<&str>> = items.iter().map(toml::Value::as_str).collect();
    names.map(|n| n.join(","))
}

/// The keys an `[agent]` table may have (`allowed_uids` is accepted as spelled in the agent's
/// issue; the file's other keys use hyphens).
const AGENT_KEYS: &[&str] = &["allowed-uids", "allowed_uids"];

/// A loaded config file: its profiles by name, and the agent's settings.
#[derive(Clone, Debug)]
pub struct Config {
    path: PathBuf,
    profiles: BTreeMap<String, ProfileTable>,
    allowed_uids: Vec<u32>,
}

impl Config {
    /// `$XDG_CONFIG_HOME/suitekey/config.toml`, else `$HOME/.config/suitekey/config.toml`;
    /// `None` when neither variable gives an absolute directory.
    pub fn default_path() -> Option<PathBuf> {
        default_path_from(
            std::env::var_os("XDG_CONFIG_HOME"),
            std::env::var_os("HOME"),
        )
    }

    /// The config named by `--config`, which must exist; without one, the default file if it
    /// exists (`Ok(None)` when it does not: flags may supply everything).
    pub fn open(explicit: Option<&Path>) -> Result<Option<Config>, ConfigError> {
        open_with_default(explicit, Config::default_path())
    }

    /// Reads and parses the file at `path`; one over [`MAX_CONFIG_LEN`] is refused.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let read_err = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let text = read_limited(file, path)?;
        warn_if_world_writable(path);
        Config::parse(path, &text)
    }

    /// Parses `text` as the contents of the file at `path` (named in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let document: toml::Table =
            toml::from_str(text).map_err(|e| syntax_error(path, text, &e))?;
        let layout = |problem: String| ConfigError::Layout {
            path: path.to_owned(),
            problem,
        };
        let mut profiles = BTreeMap::new();
        let mut allowed_uids = Vec::new();
        for (key, value) in &document {
            if key == "agent" {
                allowed_uids = agent_table(value).map_err(layout)?;
                continue;
            }
            let Some(tables) = value.as_table().filter(|_| key == "profiles") else {
                return Err(layout(format!(
                    "unexpected top-level key '{key}'; profiles go in [profiles.NAME] tables, the agent's settings in [agent]"
                )));
            };
            for (name, table) in tables {
                let table = table.as_table().ok_or_else(|| {
                    layout(format!(
                        "'profiles.{name}' must be a table: [profiles.{name}]"
                    ))
                })?;
                let origin = Origin {
                    path: path.to_owned(),
                    profile: name.clone(),
                };
                profiles.insert(name.clone(), ProfileTable::from_toml(origin, table)?);
            }
        }
        Ok(Config {
            path: path.to_owned(),
            profiles,
            allowed_uids,
        })
    }

    /// Other users' uids the `[agent]` table allows on the agent's socket (`allowed-uids`).
    pub fn allowed_uids(&self) -> &[u32] {
        &self.allowed_uids
    }

    /// The file this config was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The profile names, sorted.
    pub fn profile_names(&self) -> impl Iterator<Item = &str> {
        self.profiles.keys().map(String::as_str)
    }

    /// The profile `name`; the error lists the profiles there are.
    pub fn profile(&self, name: &str) -> Result<&ProfileTable, ConfigError> {
        self.profiles
            .get(name)
            .ok_or_else(|| ConfigError::UnknownProfile {
                path: self.path.clone(),
                name: name.to_owned(),
                known: self.profiles.keys().cloned().collect(),
            })
    }
}

/// Reads at most [`MAX_CONFIG_LEN`] bytes of `source` (the file at `path`) as text. The size
/// is found by reading, not from metadata: a FIFO or a growing file has no reliable length.
pub fn read_limited(source: impl std::io::Read, path: &Path) -> Result<String, ConfigError> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    source
        .take(MAX_CONFIG_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
    if bytes.len() as u64 > MAX_CONFIG_LEN {
        return Err(ConfigError::TooLarge {
            path: path.to_owned(),
            max: MAX_CONFIG_LEN,
        });
    }
    String::from_utf8(bytes).map_err(|_| ConfigError::NotUtf8 {
        path: path.to_owned(),
    })
}

/// Reads the `[agent]` table: its `allowed-uids`, each a uid (a whole number up to 2^32 − 1).
fn agent_table(value: &toml::Value) -> Result<Vec<u32>, String> {
    let table = value
        .as_table()
        .ok_or("'agent' must be a table: [agent] with allowed-uids = [UID, …]")?;
    let mut uids = Vec::new();
    for (key, value) in table {
        if !AGENT_KEYS.contains(&key.as_str()) {
            return Err(format!(
                "[agent]: unknown key '{key}' (known: allowed-uids)"
            ));
        }
        let items = value
            .as_array()
            .ok_or("[agent]: allowed-uids must be a list of uids, e.g. allowed-uids = [1001]")?;
        for item in items {
            let uid = item
                .as_integer()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    format!("[agent]: allowed-uids has '{item}', which is not a uid (a whole number from 0 to 4294967295)")
                })?;
            uids.push(uid);
        }
    }
    Ok(uids)
}

fn default_path_from(
    xdg: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    // The XDG spec says relative values are to be ignored.
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    let base = xdg
        .and_then(absolute)
        .or_else(|| home.and_then(absolute).map(|h| h.join(".config")))?;
    Some(base.join("suitekey").join("config.toml"))
}

fn open_with_default(
    explicit: Option<&Path>,
    default: Option<PathBuf>,
) -> Result<Option<Config>, ConfigError> {
    if let Some(path) = explicit {
        return Config::load(path).map(Some);
    }
    let Some(path) = default else {
        return Ok(None);
    };
    match Config::load(&path) {
        Err(ConfigError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        other => other.map(Some),
    }
}

fn syntax_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let offset = e.span().map_or(0, |s| s.start).min(text.len());
    let before = text.get(..offset).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    ConfigError::Syntax {
        path: path.to_owned(),
        line,
        column,
        message: e.message().trim_end().to_owned(),
    }
}

/// Anyone able to write the file can redirect suitekey to another key or token URL.
fn warn_if_world_writable(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o002 != 0
        {
            tracing::warn!(
                "config '{}' is writable by every user of this machine, who could point suitekey at another key or token URL; run chmod o-w on it",
                path.display()
            );
        }
    }
}

/// Values from flags and `SUITEKEY_*` variables (clap gives both); each one present wins over
/// the profile's.
#[derive(Clone, Debug, Default)]
pub struct ProfileOverrides {
    /// `--key` / `SUITEKEY_KEY`, as typed.
    pub key: Option<RawArg>,
    /// `--client-id` / `SUITEKEY_CLIENT_ID`.
    pub client_id: Option<ClientId>,
    /// `--certificate-id` / `SUITEKEY_CERTIFICATE_ID`.
    pub certificate_id: Option<CertificateId>,
    /// `--account` / `SUITEKEY_ACCOUNT`.
    pub account: Option<AccountId>,
    /// `--alg`.
    pub alg: Option<Alg>,
    /// `--scope`.
    pub scopes: Option<Scopes>,
    /// `--token-url` / `SUITEKEY_TOKEN_URL`, as typed.
    pub token_url: Option<RawArg>,
    /// `--module` / `SUITEKEY_MODULE`.
    pub module: Option<PathBuf>,
    /// `--ca-file` / `SUITEKEY_CA_FILE`.
    pub ca_file: Option<PathBuf>,
    /// `--timeout` / `SUITEKEY_TIMEOUT`.
    pub timeout: Option<Timeout>,
}

/// A complete, validated profile: everything a command needs to sign and exchange.
#[derive(Clone, Debug)]
pub struct Profile {
    /// The private key (never with a `pin-value`).
    pub key: KeyRef,
    /// The integration record's client id.
    pub client_id: ClientId,
    /// The certificate id NetSuite shows.
    pub certificate_id: CertificateId,
    /// The NetSuite account.
    pub account: AccountId,
    /// The algorithm, when given; otherwise the key's default.
    pub alg: Option<Alg>,
    /// The scopes to request (`restlets,rest_webservices` unless given).
    pub scopes: Scopes,
    /// An explicit token endpoint, when given.
    pub token_url: Option<TokenUrl>,
    /// The PKCS#11 module, when the key URI names none.
    pub module: Option<PathBuf>,
    /// The private CA the token endpoint's certificate must chain to, when given.
    pub ca_file: Option<CaFile>,
    /// The limit for one token request, when given.
    pub timeout: Option<Timeout>,
}

/// `--timeout`: seconds each attempt at the token endpoint may take, from connecting to the
/// answer's last byte (1 to 300); a retry has a limit of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout(std::time::Duration);

impl FromStr for Timeout {
    type Err = Refusal;

    fn from_str(s: &str) -> Result<Self, Refusal> {
        match s.trim().parse::<u64>() {
            Ok(secs @ 1..=300) => Ok(Timeout(std::time::Duration::from_secs(secs))),
            _ => Err(Refusal(format!(
                "timeout '{s}' is not a whole number of seconds from 1 to 300"
            ))),
        }
    }
}

impl Profile {
    /// The token endpoint: the explicit one, else the account's.
    pub fn endpoint(&self) -> Result<TokenUrl, netsuite::Error> {
        match &self.token_url {
            Some(url) => Ok(url.clone()),
            None => self.account.token_url(),
        }
    }

    /// The client assertion this profile signs, sent to `token_url` and valid for `lifetime`.
    pub fn assertion_request(&self, token_url: TokenUrl, lifetime: Lifetime) -> AssertionRequest {
        AssertionRequest {
            client_id: self.client_id.clone(),
            certificate_id: self.certificate_id.clone(),
            token_url,
            scopes: self.scopes.clone(),
            lifetime,
        }
    }

    /// The HTTP client settings for this profile's endpoint: its CA file and timeout.
    pub fn client_options(&self, token_url: &TokenUrl) -> ClientOptions {
        let mut options = ClientOptions::for_endpoint(token_url);
        options.ca_file = self.ca_file.clone();
        if let Some(Timeout(limit)) = self.timeout {
            options.total_timeout = limit;
            options.connect_timeout = options.connect_timeout.min(limit);
        }
        options
    }

    /// What a token request made with this profile uses, for [`crate::exchange`]'s messages.
    pub fn exchange_context(&self) -> Result<ExchangeContext, netsuite::Error> {
        Ok(ExchangeContext {
            certificate_id: self.certificate_id.clone(),
            client_id: self.client_id.clone(),
            account: Some(self.account.clone()),
            scopes: self.scopes.clone(),
            token_url: self.endpoint()?,
        })
    }
}

/// Merges a profile from the file (if any) with flags and environment, which win, and
/// validates the result. Errors name the file, profile and field, or the flag.
pub fn resolve(
    file: Option<&ProfileTable>,
    flags: ProfileOverrides,
) -> Result<Profile, ConfigError> {
    let merge = Merge { file };
    let key = match flags.key {
        Some(raw) => key_uri(raw.as_str()).map_err(|e| flag_error(&KEY, e))?,
        None => merge.required(&KEY, key_uri)?,
    };
    let key = KeyRef::new(key).map_err(ConfigError::Key)?;
    let token_url_from_file = flags.token_url.is_none();
    let token_url: Option<TokenUrl> = match flags.token_url {
        Some(raw) => Some(parse(raw.as_str()).map_err(|e| flag_error(&TOKEN_URL, e))?),
        None => merge.optional(&TOKEN_URL, parse)?,
    };
    let account: AccountId = or_else(flags.account, || merge.required(&ACCOUNT, parse))?;
    if let (true, Some(url), Some(table)) = (token_url_from_file, &token_url, file) {
        account
            .check_token_url(url)
            .map_err(|e| merge.field_error(table, &TOKEN_URL, e))?;
    }
    let ca_file = match flags.ca_file {
        Some(path) => Some(CaFile::load(&path).map_err(|e| flag_error(&CA_FILE, e))?),
        None => merge.optional(&CA_FILE, |s| CaFile::load(&merge.relative_to_file(s)))?,
    };
    Ok(Profile {
        key,
        client_id: or_else(flags.client_id, || merge.required(&CLIENT_ID, parse))?,
        certificate_id: or_else(flags.certificate_id, || {
            merge.required(&CERTIFICATE_ID, parse)
        })?,
        account,
        alg: or_else(flags.alg.map(Some), || merge.optional(&ALG, parse))?,
        scopes: or_else(flags.scopes, || {
            merge.optional(&SCOPE, parse).map(Option::unwrap_or_default)
        })?,
        token_url,
        module: or_else(flags.module.map(Some), || {
            merge.optional(&MODULE, |s| Ok::<_, Refusal>(PathBuf::from(s)))
        })?,
        ca_file,
        timeout: or_else(flags.timeout.map(Some), || merge.optional(&TIMEOUT, parse))?,
    })
}

fn or_else<T>(
    flag: Option<T>,
    file: impl FnOnce() -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    match flag {
        Some(value) => Ok(value),
        None => file(),
    }
}

fn parse<T: FromStr>(s: &str) -> Result<T, T::Err> {
    s.parse()
}

fn flag_error<E: std::error::Error + Send + Sync + 'static>(field: &Field, e: E) -> ConfigError {
    ConfigError::Flag {
        flag: field.flag,
        source: Box::new(e),
    }
}

/// Reads fields from the profile table, if there is one.
struct Merge<'a> {
    file: Option<&'a ProfileTable>,
}

impl Merge<'_> {
    fn optional<T, E>(
        &self,
        field: &Field,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, ConfigError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let Some(table) = self.file else {
            return Ok(None);
        };
        let Some(text) = table.get(field) else {
            return Ok(None);
        };
        parse(text)
            .map(Some)
            .map_err(|e| self.field_error(table, field, e))
    }

    fn field_error<E>(&self, table: &ProfileTable, field: &Field, e: E) -> ConfigError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        ConfigError::Field {
            origin: table.origin.clone(),
            field: field.key,
            source: Box::new(e),
        }
    }

    /// A path from the file, relative to the file's directory unless absolute.
    fn relative_to_file(&self, path: &str) -> PathBuf {
        let dir = self
            .file
            .and_then(|t| t.origin.path.parent().map(Path::to_owned));
        match dir {
            Some(dir) => dir.join(path),
            None => PathBuf::from(path),
        }
    }

    fn required<T, E>(
        &self,
        field: &Field,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<T, ConfigError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        self.optional(field, parse)?
            .ok_or_else(|| ConfigError::Missing {
                origin: self.file.map(|t| t.origin.clone()),
                field: field.key,
                flag: field.flag,
                env: field.env,
            })
    }
}

/// Why a key URI is refused.
#[derive(Debug, thiserror::Error)]
enum KeyUriError {
    /// Not an RFC 7512 URI suitekey accepts.
    #[error(transparent)]
    Uri(#[from] UriError),
    /// It carries the PIN itself.
    #[error(
        "the key URI carries a pin-value, which exposes the PIN to anyone who sees the command line or the file; \
         put the PIN in a file only you can read and use pin-source=file:PATH, or set SUITEKEY_PIN"
    )]
    PinValue,
}

/// Parses a key URI, refusing a `pin-value` wherever it was written.
fn key_uri(text: &str) -> Result<Pkcs11Uri, KeyUriError> {
    let uri: Pkcs11Uri = text.parse()?;
    if uri.pin_value.is_some() {
        return Err(KeyUriError::PinValue);
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FULL: &str = r#"
[profiles.prod]
key = "pkcs11:token=acc;object=ns-prod?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/secrets/pin"
client-id = "abc123"
certificate-id = "Cert_ID-1"
account = "1234567_SB1"
alg = "ES256"
scope = ["restlets", "rest_webservices"]
token-url = "http://127.0.0.1:8080/token"
module = "/usr/lib/other.so"

[profiles.minimal]
key = "pkcs11:token=acc;object=ns-dev"
client-id = "def456"
certificate-id = "kid2"
account = "7654321"
scope = "suite_analytics, restlets"
"#;

    fn path() -> PathBuf {
        PathBuf::from("/home/u/.config/suitekey/config.toml")
    }

    fn config(text: &str) -> Config {
        Config::parse(&path(), text).unwrap()
    }

    fn resolve_text(text: &str, name: &str, flags: ProfileOverrides) -> Result<Profile, String> {
        let config = Config::parse(&path(), text).map_err(|e| e.to_string())?;
        let table = config.profile(name).map_err(|e| e.to_string())?;
        resolve(Some(table), flags).map_err(|e| e.to_string())
    }

    #[test]
    fn full_profile_resolves() {
        let p = resolve_text(FULL, "prod", ProfileOverrides::default()).unwrap();
        assert_eq!(p.client_id.to_string(), "abc123");
        assert_eq!(p.certificate_id.to_string(), "Cert_ID-1");
        assert_eq!(p.account.to_string(), "1234567_SB1");
        assert_eq!(p.alg, Some(Alg::ES256));
        assert_eq!(p.scopes.to_string(), "restlets,rest_webservices");
        assert_eq!(
            p.endpoint().unwrap().as_str(),
            "http://127.0.0.1:8080/token"
        );
        assert_eq!(p.module, Some(PathBuf::from("/usr/lib/other.so")));
        assert_eq!(p.key.object.as_deref(), Some("ns-prod"));
        let ctx = p.exchange_context().unwrap();
        assert_eq!(ctx.token_url.as_str(), "http://127.0.0.1:8080/token");
    }

    #[test]
    fn optional_fields_default_and_scope_may_be_a_string() {
        let p = resolve_text(FULL, "minimal", ProfileOverrides::default()).unwrap();
        assert_eq!(p.alg, None);
        assert_eq!(p.scopes.to_string(), "suite_analytics,restlets");
        assert_eq!(p.token_url, None);
        assert_eq!(
            p.endpoint().unwrap().as_str(),
            "https://7654321.suitetalk.api.netsuite.com/services/rest/auth/oauth2/v1/token"
        );
        let text = FULL.replace("scope = \"suite_analytics, restlets\"\n", "");
        let p = resolve_text(&text, "minimal", ProfileOverrides::default()).unwrap();
        assert_eq!(p.scopes, Scopes::default());
    }

    #[test]
    fn flags_and_environment_override_the_file() {
        // clap merges flags and SUITEKEY_* into the same struct; either way they win.
        let flags = ProfileOverrides {
            key: Some(RawArg::from("pkcs11:token=other;object=k".to_owned())),
            client_id: Some("fromflag".parse().unwrap()),
            account: Some("999_SB2".parse().unwrap()),
            alg: Some(Alg::PS256),
            scopes: Some("suite_analytics".parse().unwrap()),
            token_url: Some(RawArg::from("http://127.0.0.1:9/t".to_owned())),
            module: Some("/flag.so".into()),
            ..ProfileOverrides::default()
        };
        let p = resolve_text(FULL, "prod", flags).unwrap();
        assert_eq!(p.key.token.as_deref(), Some("other"));
        assert_eq!(p.client_id.to_string(), "fromflag");
        assert_eq!(p.certificate_id.to_string(), "Cert_ID-1", "not overridden");
        assert_eq!(p.account.to_string(), "999_SB2");
        assert_eq!(p.alg, Some(Alg::PS256));
        assert_eq!(p.scopes.to_string(), "suite_analytics");
        assert_eq!(p.endpoint().unwrap().as_str(), "http://127.0.0.1:9/t");
        assert_eq!(p.module, Some(PathBuf::from("/flag.so")));
    }

    #[test]
    fn a_token_url_from_the_file_must_be_on_the_accounts_host() {
        let foreign = FULL.replace("http://127.0.0.1:8080/token", "https://evil.example/token");
        let err = resolve_text(&foreign, "prod", ProfileOverrides::default()).unwrap_err();
        for want in [
            "profile 'prod'",
            "field 'token-url'",
            "'evil.example'",
            "1234567-sb1.suitetalk.api.netsuite.com",
            "pass --token-url to override",
        ] {
            assert!(err.contains(want), "{want} missing from {err}");
        }
        // The account's own hosts are fine, checked against the account in effect.
        let own = FULL.replace(
            "http://127.0.0.1:8080/token",
            "https://1234567-sb1.restlets.api.netsuite.com/services/rest/auth/oauth2/v1/token",
        );
        assert!(resolve_text(&own, "prod", ProfileOverrides::default()).is_ok());
        let other_account = ProfileOverrides {
            account: Some("7654321".parse().unwrap()),
            ..ProfileOverrides::default()
        };
        let err = resolve_text(&own, "prod", other_account).unwrap_err();
        assert!(err.contains("does not belong to account 7654321"), "{err}");
        // Given as a flag (or SUITEKEY_TOKEN_URL, which clap merges into it), it is deliberate.
        let explicit = ProfileOverrides {
            token_url: Some(RawArg::from("https://evil.example/token".to_owned())),
            ..ProfileOverrides::default()
        };
        let p = resolve_text(&foreign, "prod", explicit).unwrap();
        assert_eq!(p.endpoint().unwrap().as_str(), "https://evil.example/token");
    }

    #[test]
    fn ca_file_is_relative_to_the_config_and_checked_when_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("config.toml");
        let text = format!("{FULL}\nca-file = \"ca.pem\"\ntimeout = 5\n");
        let config = Config::parse(&config_path, &text).unwrap();
        let table = config.profile("minimal").unwrap();
        let err = resolve(Some(table), ProfileOverrides::default())
            .unwrap_err()
            .to_string();
        let expected = dir.path().join("ca.pem");
        assert!(
            err.contains("field 'ca-file'")
                && err.contains(&format!("cannot read CA file '{}'", expected.display())),
            "{err}"
        );
        std::fs::write(
            &expected,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = resolve(Some(table), ProfileOverrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not a list of PEM certificates"), "{err}");
        assert!(!err.contains("AAAA"), "{err}");
        std::fs::write(&expected, "").unwrap();
        let err = resolve(Some(table), ProfileOverrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds no PEM block"), "{err}");
    }

    #[test]
    fn timeouts_are_whole_seconds_up_to_five_minutes() {
        assert_eq!(
            "30".parse::<Timeout>().unwrap(),
            Timeout(std::time::Duration::from_secs(30))
        );
        for bad in ["0", "301", "1.5", "-1", "soon", ""] {
            let err = bad.parse::<Timeout>().unwrap_err().to_string();
            assert!(err.contains("1 to 300"), "{bad}: {err}");
        }
        let text = FULL.replace("alg = \"ES256\"", "alg = \"ES256\"\ntimeout = 7");
        let p = resolve_text(&text, "prod", ProfileOverrides::default()).unwrap();
        let url = p.endpoint().unwrap();
        let options = p.client_options(&url);
        assert_eq!(options.total_timeout, std::time::Duration::from_secs(7));
        assert!(options.connect_timeout <= options.total_timeout);
        let text = FULL.replace("alg = \"ES256\"", "alg = \"ES256\"\ntimeout = true");
        let err = Config::parse(&path(), &text).unwrap_err().to_string();
        assert!(err.contains("field 'timeout'"), "{err}");
    }

    #[test]
    fn a_flag_replaces_a_bad_file_value() {
        let text = FULL.replace("1234567_SB1", "bad account!");
        let flags = ProfileOverrides {
            account: Some("1234567".parse().unwrap()),
            ..ProfileOverrides::default()
        };
        assert!(resolve_text(&text, "prod", flags).is_ok());
    }

    #[test]
    fn flags_alone_suffice() {
        let flags = ProfileOverrides {
            key: Some(RawArg::from("pkcs11:object=k".to_owned())),
            client_id: Some("c".parse().unwrap()),
            certificate_id: Some("k".parse().unwrap()),
            account: Some("1".parse().unwrap()),
            ..ProfileOverrides::default()
        };
        let p = resolve(None, flags).unwrap();
        assert_eq!(p.scopes, Scopes::default());
    }

    #[test]
    fn missing_fields_are_named_with_file_and_profile() {
        let text = FULL.replace("client-id = \"abc123\"\n", "");
        let err = resolve_text(&text, "prod", ProfileOverrides::default()).unwrap_err();
        assert_eq!(
            err,
            "config '/home/u/.config/suitekey/config.toml', profile 'prod': missing field 'client-id'; add it or pass --client-id or set SUITEKEY_CLIENT_ID"
        );
        let err = resolve(None, ProfileOverrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("missing --key: pass it or set SUITEKEY_KEY"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_named_with_the_known_ones() {
        let text = FULL.replace("client-id = \"abc123\"", "clientid = \"abc123\"");
        let err = Config::parse(&path(), &text).unwrap_err().to_string();
        assert_eq!(
            err,
            "config '/home/u/.config/suitekey/config.toml', profile 'prod': unknown key 'clientid' (known: key, client-id, certificate-id, account, alg, scope, token-url, module, ca-file, timeout)"
        );
        let err = Config::parse(&path(), "[prod]\nkey = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unexpected top-level key 'prod'") && err.contains("[profiles.NAME]"),
            "{err}"
        );
        let err = Config::parse(&path(), "[profiles]\nprod = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("'profiles.prod' must be a table"), "{err}");
    }

    #[test]
    fn the_agent_table_lists_allowed_uids_and_refuses_anything_else() {
        let config = Config::parse(
            &path(),
            &format!("{FULL}\n[agent]\nallowed-uids = [1001, 0]\n"),
        )
        .unwrap();
        assert_eq!(config.allowed_uids(), [1001, 0]);
        assert_eq!(config.profile_names().count(), 2);
        let issue_spelling = Config::parse(&path(), "[agent]\nallowed_uids = [7]\n").unwrap();
        assert_eq!(issue_spelling.allowed_uids(), [7]);
        assert!(
            Config::parse(&path(), FULL)
                .unwrap()
                .allowed_uids()
                .is_empty()
        );
        for (text, expected) in [
            ("[agent]\nallowed-uids = [-1]\n", "'-1', which is not a uid"),
            ("[agent]\nallowed-uids = [4294967296]\n", "not a uid"),
            (
                "[agent]\nallowed-uids = [\"alice\"]\n",
                "\"alice\"', which is not a uid",
            ),
            ("[agent]\nallowed-uids = 1001\n", "must be a list of uids"),
            ("[agent]\nsocket = \"/tmp/x\"\n", "unknown key 'socket'"),
            ("agent = 1\n", "'agent' must be a table"),
        ] {
            let err = Config::parse(&path(), text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn unknown_profile_lists_the_known_ones() {
        let err = config(FULL).profile("staging").unwrap_err().to_string();
        assert_eq!(
            err,
            "config '/home/u/.config/suitekey/config.toml' has no profile 'staging' (known: minimal, prod)"
        );
        let err = config("").profile("x").unwrap_err().to_string();
        assert!(err.ends_with("(known: none)"), "{err}");
    }

    #[test]
    fn bad_values_name_the_field() {
        let text = FULL.replace("1234567_SB1", "1234567.evil.com");
        let err = resolve_text(&text, "prod", ProfileOverrides::default()).unwrap_err();
        assert!(
            err.starts_with("config '/home/u/.config/suitekey/config.toml', profile 'prod': field 'account': account id '1234567.evil.com' is not valid"),
            "{err}"
        );
        let text = FULL.replace("\"ES256\"", "\"RS256\"");
        let err = resolve_text(&text, "prod", ProfileOverrides::default()).unwrap_err();
        assert!(err.contains("field 'alg'"), "{err}");
        let text = FULL.replace("\"rest_webservices\"]", "\"rest\"]");
        let err = resolve_text(&text, "prod", ProfileOverrides::default()).unwrap_err();
        assert!(err.contains("field 'scope': unknown scope 'rest'"), "{err}");
        let text = FULL.replace("account = \"1234567_SB1\"", "account = 1234567");
        let err = Config::parse(&path(), &text).unwrap_err().to_string();
        assert!(
            err.ends_with("field 'account': expected a string, found integer"),
            "{err}"
        );
        let text = FULL.replace("[\"restlets\", \"rest_webservices\"]", "[\"restlets\", 2]");
        let err = Config::parse(&path(), &text).unwrap_err().to_string();
        assert!(
            err.contains("field 'scope': expected a list of strings"),
            "{err}"
        );
    }

    #[test]
    fn pin_values_are_refused_in_the_file_and_in_flags() {
        let text = FULL.replace("pin-source=file:/run/secrets/pin", "pin-value=S3CRET");
        let err = resolve_text(&text, "prod", ProfileOverrides::default()).unwrap_err();
        assert!(
            err.contains("field 'key'") && err.contains("pin-source=file:"),
            "{err}"
        );
        assert!(!err.contains("S3CRET"), "{err}");
        let flags = ProfileOverrides {
            key: Some(RawArg::from("pkcs11:object=k?pin-value=S3CRET".to_owned())),
            ..ProfileOverrides::default()
        };
        let err = resolve_text(FULL, "prod", flags).unwrap_err();
        assert!(
            err.starts_with("--key: ") && !err.contains("S3CRET"),
            "{err}"
        );
        let table = config(&text);
        let shown = format!("{:?}", table.profile("prod").unwrap());
        assert!(!shown.contains("S3CRET"), "{shown}");
    }

    #[test]
    fn syntax_errors_give_a_position_but_not_the_line() {
        let text = "[profiles.prod]\nkey = \"pkcs11:object=k?pin-value=S3CRET\nclient-id = 1\n";
        let err = Config::parse(&path(), text).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains("S3CRET"), "{err}");
    }

    #[test]
    fn default_path_follows_xdg() {
        let p = default_path_from(Some("/x".into()), Some("/home/u".into()));
        assert_eq!(p, Some(PathBuf::from("/x/suitekey/config.toml")));
        let p = default_path_from(Some("relative".into()), Some("/home/u".into()));
        assert_eq!(
            p,
            Some(PathBuf::from("/home/u/.config/suitekey/config.toml"))
        );
        assert_eq!(default_path_from(None, None), None);
    }

    #[test]
    fn a_missing_default_file_is_fine_but_an_explicit_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("config.toml");
        assert!(
            open_with_default(None, Some(absent.clone()))
                .unwrap()
                .is_none()
        );
        let err = open_with_default(Some(&absent), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot read config '") && err.contains("config.toml"),
            "{err}"
        );
        std::fs::write(&absent, FULL).unwrap();
        let loaded = open_with_default(None, Some(absent.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(
            loaded.profile_names().collect::<Vec<_>>(),
            ["minimal", "prod"]
        );
        assert_eq!(loaded.path(), absent);
    }

    #[test]
    fn a_file_over_the_limit_is_refused_and_one_at_the_limit_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let at_limit = dir.path().join("at-limit.toml");
        // A comment line filling the file to exactly the limit: valid, empty TOML.
        let comment = format!("#{}\n", "x".repeat(MAX_CONFIG_LEN as usize - 2));
        std::fs::write(&at_limit, &comment).unwrap();
        let config = Config::load(&at_limit).unwrap();
        assert_eq!(config.profile_names().count(), 0);
        let over = dir.path().join("over.toml");
        std::fs::write(&over, format!("{comment}#")).unwrap();
        let err = Config::load(&over).unwrap_err();
        assert!(matches!(err, ConfigError::TooLarge { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("1048576 bytes"), "{message}");
        assert!(
            message.contains("check that --config names the config file"),
            "{message}"
        );
    }

    /// A FIFO reports a length of 0 and never ends: only a bounded read stops.
    #[test]
    fn an_endless_fifo_is_refused_after_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("endless");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("skipped: mkfifo is not available");
            return;
        }
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                use std::io::Write as _;
                let mut pipe = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
                let chunk = [b'#'; 64 * 1024];
                let mut sent = 0u64;
                // Stops when the reader closes the pipe (EPIPE), or at 64 MiB.
                while sent < 64 * MAX_CONFIG_LEN && pipe.write_all(&chunk).is_ok() {
                    sent += chunk.len() as u64;
                }
                sent
            })
        };
        let err = Config::load(&fifo).unwrap_err();
        assert!(matches!(err, ConfigError::TooLarge { .. }), "{err}");
        let sent = writer.join().unwrap();
        assert!(
            sent < 4 * MAX_CONFIG_LEN,
            "read {sent} bytes before refusing"
        );
    }

    #[test]
    fn non_utf8_and_deeply_nested_files_are_refused_with_a_reason() {
        let err = read_limited(&b"[profiles.p]\nkey = \"\xff\"\n"[..], &path()).unwrap_err();
        assert!(matches!(err, ConfigError::NotUtf8 { .. }), "{err}");
        assert!(err.to_string().contains("save it as UTF-8"), "{err}");
        for deep in [
            format!("a = {}1{}", "[".repeat(100_000), "]".repeat(100_000)),
            format!("a = {}1{}", "{b = ".repeat(100_000), "}".repeat(100_000)),
            format!("[{}]", vec!["a"; 100_000].join(".")),
            format!("{} = 1", vec!["a"; 100_000].join(".")),
        ] {
            let err = Config::parse(&path(), &deep).map(|_| ()).unwrap_err();
            assert!(
                matches!(err, ConfigError::Syntax { .. } | ConfigError::Layout { .. }),
                "{err}"
            );
        }
    }

    proptest! {
        #[test]
        fn parsing_never_panics(text in any::<String>()) {
            let _ = Config::parse(&path(), &text);
        }

        #[test]
        fn parsing_and_resolving_profile_like_text_never_panics(
            lines in proptest::collection::vec(
                "(key|client-id|certificate-id|account|alg|scope|token-url|module|x) = (\"[ -~]{0,30}\"|\\[\"[a-z_]{0,12}\"\\]|[0-9]{1,3})",
                0..8,
            )
        ) {
            let text = format!("[profiles.p]\n{}\n", lines.join("\n"));
            if let Ok(config) = Config::parse(&path(), &text)
                && let Ok(table) = config.profile("p")
            {
                let _ = resolve(Some(table), ProfileOverrides::default());
            }
        }

        #[test]
        fn arbitrary_bytes_are_read_and_parsed_without_panic(
            data in prop::collection::vec(any::<u8>(), 0..512)
        ) {
            crate::fuzzing::config(&data);
        }

        #[test]
        fn input_over_the_limit_is_refused_with_the_size_error(
            extra in 1..4096usize,
            fill in any::<u8>(),
        ) {
            let data = vec![fill; MAX_CONFIG_LEN as usize + extra];
            let err = read_limited(&data[..], &path());
            let refused = matches!(err, Err(ConfigError::TooLarge { max: MAX_CONFIG_LEN, .. }));
            prop_assert!(refused, "{:?}", err.map(|_| ()));
        }
    }
}
