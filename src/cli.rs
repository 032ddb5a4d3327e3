//! The command line (clap derive): one struct per command. Names here are a contract
//! (see DESIGN.md): scripts depend on them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::ProfileOverrides;
pub use crate::config::{ModuleArg, RawArg};
use crate::jose::Alg;
use crate::netsuite::{CertificateId, Lifetime, ValidityDays};

/// The version `--version` and the man pages show: the crate's, and the git commit it was built
/// from (`build.rs`: `-dirty` when the sources differed from it, `unknown` outside a checkout).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SUITEKEY_COMMIT"),
    ")"
);

/// NetSuite machine-to-machine access with the private key kept inside a PKCS#11 token.
#[derive(Debug, Parser)]
#[command(name = "suitekey", version = VERSION, about, max_term_width = 100)]
#[command(
    after_help = "PINs come from the key URI's pin-source=file:PATH (or env:NAME), SUITEKEY_PIN, or a prompt; never from a flag.\nExit codes: 0 ok, 1 check: certificate unfit, doctor: a check failed, 2 bad input, 3 module/token/key problem, 4 PIN problem, 5 output error, 6 token endpoint refused or failed, 7 agent unreachable; exec: the command's own status."
)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, display_order = 100)]
    pub verbose: u8,
    /// Profiles file [default: $XDG_CONFIG_HOME/suitekey/config.toml, else ~/.config/suitekey/config.toml].
    #[arg(
        long,
        global = true,
        env = "SUITEKEY_CONFIG",
        value_name = "FILE",
        display_order = 98
    )]
    pub config: Option<PathBuf>,
    /// Use the [profiles.NAME] table of the config file; flags and SUITEKEY_* variables override its fields.
    #[arg(
        long,
        global = true,
        env = "SUITEKEY_PROFILE",
        value_name = "NAME",
        display_order = 99
    )]
    pub profile: Option<String>,
    /// Only errors on stderr.
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "verbose",
        display_order = 101
    )]
    pub quiet: bool,
    /// Send the PIN even when the token says the next wrong PIN locks it (CKF_USER_PIN_FINAL_TRY); only when you are sure of the PIN.
    #[arg(long, global = true, display_order = 102)]
    pub final_pin_try: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show slots, tokens, keys (with ready-to-paste pkcs11: URIs) and certificates; no secrets.
    List(ListArgs),
    /// Print a signed NetSuite client assertion (compact JWS) on stdout.
    Assertion(Box<AssertionArgs>),
    /// Get an access token from NetSuite (assertion signed in the token) and print it.
    Token(Box<TokenArgs>),
    /// Run a command with NETSUITE_ACCESS_TOKEN in its environment; exits with its status.
    Exec(Box<ExecArgs>),
    /// Make a non-extractable key pair in the token and a self-signed certificate to upload.
    Keygen(Box<KeygenArgs>),
    /// Make a self-signed certificate for a key already in the token (ykman, HSM console…).
    Cert(Box<CertArgs>),
    /// Check a certificate against NetSuite's rules and print the certificate id NetSuite shows.
    #[command(
        after_help = "Exit codes: 0 fit to upload, 1 not fit (reasons on stderr), 2 bad input, 3 token/key problem, 4 PIN problem."
    )]
    Check(CheckArgs),
    /// Serve a strict NetSuite token endpoint and certificate API on loopback, for CI and demos
    /// (prints its base URL on stdout, its token URL on stderr).
    Emulate(EmulateArgs),
    /// Hold every profile's token session, cache access tokens and serve them on a Unix socket
    /// (foreground; prints the socket path; SIGHUP, or a change of the config file, reloads the
    /// config).
    Agent(AgentArgs),
    /// Replace the profile's key and certificate: a new key in the same token, uploaded through
    /// NetSuite's certificate API, proven, the profile switched, the old certificate revoked
    /// (resumable; prints the new certificate id).
    Rotate(Box<RotateArgs>),
    /// Print the shell completion script for SHELL on stdout (e.g. `suitekey completions bash >
    /// ~/.local/share/bash-completion/completions/suitekey`).
    Completions(CompletionsArgs),
    /// Write the man pages (suitekey.1 and one suitekey-COMMAND.1 per command) into DIR; for
    /// packaging.
    #[command(hide = true)]
    Man(ManArgs),
    /// Check a profile the way a support engineer would, in order, each with its remedy:
    /// module, token, PIN source, key, certificate, token URL, TLS, clock, agent.
    #[command(
        after_help = "No PIN is sent without --login, and no assertion is ever sent.\nExit codes: 0 every check passed (warnings allowed), 1 a check failed, 2 bad input."
    )]
    Doctor(Box<DoctorArgs>),
}

/// `suitekey completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// `suitekey man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// The directory to write the pages into (made if missing); pages there are replaced.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// `suitekey doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The integration and key.
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Also log in (one C_Login with the PIN from the key URI's source): checks the PIN and the
    /// private key itself. Never sent again after a refusal, nor on the token's final try.
    #[arg(long)]
    pub login: bool,
    /// text: one line per check (✓/!/✗/– on a terminal, ok/warn/FAIL/skip elsewhere or with
    /// NO_COLOR); json: {"checks": [{name, status, detail, remedy}], "ok"} on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// `suitekey list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The PKCS#11 module.
    #[command(flatten)]
    pub module: ModuleArg,
    /// Only the token with this label.
    #[arg(long, value_name = "LABEL")]
    pub token: Option<String>,
    /// Log in (PIN from SUITEKEY_PIN or a prompt) to see private keys; needs a single token.
    #[arg(long)]
    pub login: bool,
    /// Also show, per token, which of ES256…PS512 it can make keys for and sign, with the
    /// mechanism it would use or why it cannot.
    #[arg(long)]
    pub mechanisms: bool,
    /// text (for people) or json (the same facts, one document; schema in the README).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// How `list`, `check` and `doctor` write what they found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// For people.
    Text,
    /// One JSON document on stdout.
    Json,
}

/// The flags that describe one NetSuite integration and its key (a profile). Each may also come
/// from the `--profile` table of the config file; a flag or SUITEKEY_* variable wins.
#[derive(Debug, Args)]
pub struct ProfileArgs {
    /// The profile's fields (declared in `config`, which reads them from the file too), but
    /// `--module`, which comes next.
    #[command(flatten)]
    pub fields: ProfileOverrides,
    /// The PKCS#11 module: every command's flag, a profile field too.
    #[command(flatten)]
    pub module: ModuleArg,
}

impl ProfileArgs {
    /// The profile fields these flags (and `SUITEKEY_*` variables) give.
    pub fn overrides(&self) -> ProfileOverrides {
        ProfileOverrides {
            module: self.module.path.clone(),
            ..self.fields.clone()
        }
    }

    /// Whether any profile field but `--module` is given.
    pub fn changes_the_profile(&self) -> bool {
        !self.fields.is_empty()
    }
}

/// `suitekey assertion`.
#[derive(Debug, Args)]
pub struct AssertionArgs {
    /// The integration and key.
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Seconds until the assertion expires (1 to 3600).
    #[arg(long, value_name = "SECONDS", default_value = "300")]
    pub lifetime: Lifetime,
}

/// `suitekey token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The integration and key.
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// raw: the token; json: {access_token, token_type, expires_at, expires_in}; header: an Authorization header; env: NETSUITE_ACCESS_TOKEN='…' (for eval); curl-config: a header line for `curl -K -`, which keeps the token out of curl's argv.
    #[arg(long, value_enum, default_value_t = TokenFormat::Raw)]
    pub format: TokenFormat,
    /// Sign and exchange here even when SUITEKEY_AUTH_SOCK names an agent.
    #[arg(long)]
    pub no_agent: bool,
}

/// How `suitekey token` prints the access token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenFormat {
    /// The token alone.
    Raw,
    /// A JSON object with the token and its expiry.
    Json,
    /// `Authorization: Bearer …`.
    Header,
    /// `NETSUITE_ACCESS_TOKEN='…'`, quoted for a POSIX shell's `eval`.
    Env,
    /// `header = "Authorization: Bearer …"`: a curl config, read with `curl -K -` from a pipe
    /// (argv, which every local user can read, never holds the token).
    CurlConfig,
}

/// `suitekey exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The integration and key.
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Sign and exchange here even when SUITEKEY_AUTH_SOCK names an agent.
    #[arg(long)]
    pub no_agent: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<std::ffi::OsString>,
}

/// `suitekey agent`: serve every profile of the config file on a Unix socket.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The socket to listen on [default: $XDG_RUNTIME_DIR/suitekey/agent.sock]; its directory is made 0700, the socket 0600.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Also serve this user id (repeatable; also `[agent] allowed-uids` in the config); the agent's own uid is always served, others get 403. The socket is then made 0666 and its directory searchable, the peer uid being the gate.
    #[arg(long = "allow-uid", value_name = "UID")]
    pub allow_uids: Vec<u32>,
    /// On SIGTERM/SIGINT, wait at most this long for the requests in flight, then exit anyway.
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub drain_timeout: u64,
    /// How log lines are written on stderr: text, or one JSON object per line (for journald,
    /// Loki, …).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// How long a request waits for its signature before it is answered with an error (a YubiKey key with touch policy 'always' waits for a touch); the signature goes on meanwhile.
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub sign_timeout: u64,
    /// How often the certificates of profiles with rotate-before-days are checked (also at
    /// start and on every reload); a due one is rotated by the agent, as rotate does.
    #[arg(long, value_name = "SECS", default_value_t = 4 * 3600,
          value_parser = clap::value_parser!(u64).range(1..=7 * 86_400))]
    pub rotation_check_interval: u64,
    /// After a failed rotation, wait this long before trying again, doubling after each
    /// failure up to 6 hours.
    #[arg(long, value_name = "SECS", default_value_t = 15 * 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub rotation_retry: u64,
    /// The PKCS#11 module.
    #[command(flatten)]
    pub module: ModuleArg,
}

/// How the agent writes its log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line: timestamp, level, target, message and the event's fields.
    Json,
}

/// The flags shared by `keygen` and `cert`: the certificate to make and where it goes.
#[derive(Debug, Args)]
pub struct CertOutArgs {
    // The doc comment is clap's help text, shown as written: rustdoc must not read it as HTML.
    #[allow(rustdoc::invalid_html_tags)]
    /// Subject of the certificate, RFC 4514 (e.g. 'CN=NetSuite M2M prod,O=Acme') [default: CN=<key label>].
    #[arg(long, value_name = "DN")]
    pub subject: Option<String>,
    /// Days the certificate is valid, at most 730 (NetSuite's two years).
    #[arg(long, value_name = "N", default_value = "730")]
    pub days: ValidityDays,
    /// How an RSA certificate is signed: pss (RSASSA-PSS, NetSuite's recipe) or pkcs1 (sha256WithRSAEncryption).
    #[arg(long, value_name = "SCHEME", value_enum, default_value_t = CertSig::Pss)]
    pub cert_sig: CertSig,
    /// Where to write the certificate (PEM): a .pem, .cer or .crt file.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Overwrite --out if it exists.
    #[arg(long)]
    pub force: bool,
    /// Where a PIV card's management key is, in hex (file:PATH or env:NAME; never the key itself): Yubico's ykcs11 makes keys and stores certificates only with it.
    #[arg(long, value_name = "SOURCE")]
    pub management_key_source: Option<RawArg>,
    /// The PKCS#11 module.
    #[command(flatten)]
    pub module: ModuleArg,
}

/// How an RSA certificate is signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CertSig {
    /// RSASSA-PSS with the algorithm's hash.
    Pss,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Pkcs1,
}

/// `suitekey keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The key to make: pkcs11:token=…;object=LABEL?module-path=…&pin-source=file:… (object= names it; on a PIV card id= picks the slot: %01 = 9a, %02 = 9c, %03 = 9d, %04 = 9e).
    #[arg(long, value_name = "URI")]
    pub key: RawArg,
    /// ES256 (P-256), ES384 (P-384), ES512 (P-521), or PS256/PS384/PS512 (RSA).
    #[arg(long, value_name = "ALG")]
    pub alg: Alg,
    /// RSA modulus size for PS* keys: 3072 or 4096.
    #[arg(long, value_name = "BITS")]
    pub rsa_bits: Option<u32>,
    /// The certificate.
    #[command(flatten)]
    pub cert: CertOutArgs,
}

/// `suitekey cert`.
#[derive(Debug, Args)]
pub struct CertArgs {
    /// The existing private key, as an RFC 7512 URI.
    #[arg(long, value_name = "URI")]
    pub key: RawArg,
    /// The algorithm the key will sign assertions with; decides the certificate's hash [default: from the key].
    #[arg(long, value_name = "ALG")]
    pub alg: Option<Alg>,
    /// Replace the certificate object(s) the token already holds for this key (renewal).
    #[arg(long)]
    pub replace: bool,
    /// The certificate.
    #[command(flatten)]
    pub cert: CertOutArgs,
}

/// `suitekey check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The certificate to check (PEM or DER).
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,
    /// Also confirm that the certificate holds this token key's public key.
    #[arg(long, value_name = "URI")]
    pub key: Option<RawArg>,
    /// Warn when this (configured) certificate id differs from the certificate's.
    #[arg(long, value_name = "ID", allow_hyphen_values = true)]
    pub certificate_id: Option<CertificateId>,
    /// text: the certificate id on stdout, details on stderr; json: one document on stdout with
    /// the id, the facts, the warnings and the problems (schema in the README).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// The PKCS#11 module.
    #[command(flatten)]
    pub module: ModuleArg,
}

/// `suitekey rotate`: a new key and certificate for a profile of the config file. The profile
/// flags that name the mapping rotated are hidden (and refused if given), and `--alg` names the
/// new key's algorithm.
#[derive(Debug, Args)]
#[command(
    mut_arg("key", |a| a.hide(true)),
    mut_arg("client_id", |a| a.hide(true)),
    mut_arg("certificate_id", |a| a.hide(true)),
    mut_arg("account", |a| a.hide(true)),
    mut_arg("alg", |a| a.help("The new key's algorithm: ES256, ES384, ES512, PS256, PS384 or PS512 [default: the current key's]")),
    after_help = "Steps: 1 preflight, 2 new key and certificate, 3 upload, 4 prove with a token, 5 switch the profile, 6 revoke the old certificate, 7 relabel (or delete) the old key. An interrupted rotation continues from its journal when rotate runs again.\nExit codes: 0 rotated (or planned, or status shown), 2 bad input or profile, 3 token/key problem, 4 PIN problem, 5 journal or config not writable, 6 NetSuite refused or failed."
)]
pub struct RotateArgs {
    /// The profile's fields for this run (--timeout, --ca-file, --role, --entity,
    /// --certificates-url, …); --alg is the new key's algorithm; --key, --client-id,
    /// --certificate-id and --account are hidden and refused.
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// RSA modulus size of a new PS* key: 3072 or 4096 [default: the current RSA key's, else 3072].
    #[arg(long, value_name = "BITS")]
    pub rsa_bits: Option<u32>,
    /// Days the new certificate is valid, at most 730 [default: 730].
    #[arg(long, value_name = "N")]
    pub days: Option<ValidityDays>,
    // The doc comment is clap's help text, shown as written: rustdoc must not read it as HTML.
    #[allow(rustdoc::invalid_html_tags)]
    /// Subject of the new certificate, RFC 4514 [default: the current certificate's, else CN=<new label>].
    #[arg(long, value_name = "DN")]
    pub subject: Option<String>,
    // The doc comment is clap's help text, shown as written: rustdoc must not read it as HTML.
    #[allow(rustdoc::invalid_html_tags)]
    /// Label of the new key [default: <current label>-YYYYMMDD, then -2, -3 … if taken]; a label that is taken is refused.
    #[arg(long, value_name = "LABEL")]
    pub new_label: Option<String>,
    /// Do step 1 only (every check, nothing changed) and print the plan on stdout.
    #[arg(long)]
    pub dry_run: bool,
    // The doc comment is clap's help text, shown as written: rustdoc must not read it as HTML.
    #[allow(rustdoc::invalid_html_tags)]
    /// Delete the old key from the token once its certificate is revoked, instead of keeping
    /// it relabelled <label>-revoked-YYYYMMDD.
    #[arg(long)]
    pub delete_old_key: bool,
    /// Print the profile's rotation journal (in progress, or the last one finished); change nothing.
    #[arg(
        long,
        conflicts_with_all = ["dry_run", "delete_old_key", "rsa_bits", "days", "subject", "new_label"]
    )]
    pub status: bool,
}

/// `suitekey emulate`: a strict NetSuite token endpoint and certificate API on loopback.
#[derive(Debug, Args)]
pub struct EmulateArgs {
    // The doc comments are clap's help text, shown as written: rustdoc must not read their
    // brackets as links.
    #[allow(rustdoc::broken_intra_doc_links)]
    /// Loopback IP and port to listen on (127.0.0.0/8 or [::1]; port 0 picks a free one). The
    /// base URL is printed as stdout's only line, the full token URL on stderr.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: String,
    #[allow(rustdoc::broken_intra_doc_links)]
    /// A certificate uploaded to the emulated account (repeatable):
    /// client-id=ID,cert=FILE[,scopes=restlets+rest_webservices][,account=ACCT][,certificate-id=ID]
    /// [,role=ID][,entity=ID][,permissions=manage-certificates] (role 3 and entity -5 unless
    /// given; the permission lets the role use the certificate API)
    #[arg(long, value_name = "SPEC", required = true)]
    pub register: Vec<String>,
    /// Answer the first N token requests with HTTP 500 server_error.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        help_heading = "Fault injection (tests)"
    )]
    pub fail_first: u64,
    /// Answer the next N token requests with HTTP 429 and Retry-After: 1.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        help_heading = "Fault injection (tests)"
    )]
    pub rate_limit: u64,
    /// Wait this many milliseconds before answering each token request.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 0,
        help_heading = "Fault injection (tests)"
    )]
    pub delay_ms: u64,
    #[allow(rustdoc::broken_intra_doc_links)]
    /// Make a certificate API call fail (repeatable): CALL:FAULT[:N], CALL one of list,
    /// upload, revoke; FAULT 500 (before it acts), 500-after (it acts, then answers 500) or
    /// hang (no answer until the emulator stops, or for 10 minutes); its first N requests, or
    /// all of them.
    #[arg(
        long,
        value_name = "CALL:FAULT[:N]",
        help_heading = "Fault injection (tests)"
    )]
    pub fail_certificates: Vec<String>,
    /// Refuse a newly uploaded certificate at the token endpoint for this many milliseconds
    /// after its upload, as NetSuite may take a while to make it usable.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 0,
        help_heading = "Fault injection (tests)",
        value_parser = clap::value_parser!(u64).range(0..=3_600_000)
    )]
    pub certificate_propagation_ms: u64,
    /// Shape the certificate list differently, to test a client's leniency: comma-separated
    /// object (an object holding the list under "items", not a bare array), string-ids (ids
    /// as numeric strings), extra-field (an unknown field in each entry), newest-only (only
    /// the certificate uploaded last, as a list cut short).
    #[arg(
        long,
        value_name = "SHAPES",
        default_value = "",
        hide_default_value = true,
        help_heading = "Fault injection (tests)"
    )]
    pub certificate_list_shape: String,
    /// Lifetime of issued access tokens in seconds (NetSuite: 3600); for tests of expiry.
    #[arg(long, value_name = "SECS", default_value_t = 3600, hide = true,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub token_lifetime: u64,
    /// Also accept this token URL as aud (repeatable): a proxy or TLS front end that clients
    /// reach the emulator through; for tests.
    #[arg(long, value_name = "URL", hide = true)]
    pub accept_aud: Vec<String>,
    /// Shut down when stdin reaches end of file: a parent that holds the other end of a pipe
    /// (a test harness) then takes the emulator with it even if it is killed outright.
    #[arg(long, hide = true)]
    pub exit_on_stdin_eof: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_ids_may_start_with_a_hyphen() {
        // base64url ids begin with '-' one time in 64; clap must not take them for a flag.
        let cli = Cli::try_parse_from(["suitekey", "token", "--certificate-id", "-iXyZ"]).unwrap();
        let Command::Token(args) = cli.command else {
            panic!("not token")
        };
        assert_eq!(
            args.profile.fields.certificate_id.unwrap().to_string(),
            "-iXyZ"
        );
    }
}
