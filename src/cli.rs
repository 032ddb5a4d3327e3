//! The command line (clap derive): one struct per command. Names here are a contract
//! (see DESIGN.md): scripts depend on them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::jose::Alg;
use crate::netsuite::{AccountId, CertificateId, ClientId, Lifetime, Scopes};

/// NetSuite machine-to-machine access with the private key kept inside a PKCS#11 token.
#[derive(Debug, Parser)]
#[command(name = "suitekey", version, about, max_term_width = 100)]
#[command(
    after_help = "PINs come from the key URI's pin-source=file:PATH (or env:NAME), SUITEKEY_PIN, or a prompt; never from a flag.\nExit codes: 0 ok, 2 bad input, 3 module/token/key problem, 4 PIN problem, 5 output error."
)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, display_order = 100)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "verbose",
        display_order = 101
    )]
    pub quiet: bool,
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
    /// Serve a strict NetSuite token endpoint on loopback, for CI and demos (prints its URL).
    Emulate(EmulateArgs),
}

/// `suitekey list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// PKCS#11 module to load.
    #[arg(
        long,
        env = "SUITEKEY_MODULE",
        value_name = "PATH",
        hide_env_values = true
    )]
    pub module: Option<PathBuf>,
    /// Only the token with this label.
    #[arg(long, value_name = "LABEL")]
    pub token: Option<String>,
    /// Log in (PIN from SUITEKEY_PIN or a prompt) to see private keys; needs a single token.
    #[arg(long)]
    pub login: bool,
}

/// The flags that describe one NetSuite integration and its key (a profile).
#[derive(Debug, Args)]
pub struct ProfileArgs {
    /// The private key, as an RFC 7512 URI: pkcs11:token=…;object=…?module-path=…&pin-source=file:…
    #[arg(long, env = "SUITEKEY_KEY", value_name = "URI", hide_env_values = true)]
    pub key: RawArg,
    /// The integration record's client id (consumer key): the assertion's iss.
    #[arg(
        long,
        env = "SUITEKEY_CLIENT_ID",
        value_name = "ID",
        hide_env_values = true
    )]
    pub client_id: ClientId,
    /// The certificate id NetSuite shows for the uploaded certificate: the assertion's kid.
    #[arg(
        long,
        env = "SUITEKEY_CERTIFICATE_ID",
        value_name = "ID",
        hide_env_values = true
    )]
    pub certificate_id: CertificateId,
    /// The NetSuite account id, e.g. 1234567 or 1234567_SB1.
    #[arg(
        long,
        env = "SUITEKEY_ACCOUNT",
        value_name = "ACCOUNT",
        hide_env_values = true
    )]
    pub account: AccountId,
    /// ES256, ES384, ES512, PS256, PS384 or PS512 [default: from the key].
    #[arg(long, value_name = "ALG")]
    pub alg: Option<Alg>,
    /// Scopes, comma-separated: restlets, rest_webservices, suite_analytics.
    #[arg(
        long,
        value_name = "SCOPES",
        default_value = "restlets,rest_webservices"
    )]
    pub scope: Scopes,
    /// Token endpoint (and aud) instead of the account's NetSuite URL; http:// only on loopback.
    #[arg(
        long,
        env = "SUITEKEY_TOKEN_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub token_url: Option<RawArg>,
    /// PKCS#11 module, when the key URI has no module-path.
    #[arg(
        long,
        env = "SUITEKEY_MODULE",
        value_name = "PATH",
        hide_env_values = true
    )]
    pub module: Option<PathBuf>,
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

/// `suitekey emulate`: a strict NetSuite token endpoint on loopback.
#[derive(Debug, Args)]
pub struct EmulateArgs {
    /// Loopback IP and port to listen on (127.0.0.0/8 or [::1]; port 0 picks a free one). The
    /// base URL is printed as stdout's only line.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: String,
    /// A certificate uploaded to the emulated account (repeatable):
    /// client-id=ID,cert=FILE[,scopes=restlets+rest_webservices][,account=ACCT][,certificate-id=ID]
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
    /// Lifetime of issued access tokens in seconds (NetSuite: 3600); for tests of expiry.
    #[arg(long, value_name = "SECS", default_value_t = 3600, hide = true,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub token_lifetime: u64,
}

/// A value as typed, parsed by the command rather than by clap: clap's errors quote the whole
/// value, and these may carry secrets (a key URI's `pin-value`, a URL's `user:password@`).
#[derive(Clone)]
pub struct RawArg(pub zeroize::Zeroizing<String>);

impl From<String> for RawArg {
    fn from(s: String) -> Self {
        RawArg(zeroize::Zeroizing::new(s))
    }
}

impl std::fmt::Debug for RawArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawArg(<not shown>)")
    }
}

impl RawArg {
    /// The value as typed.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
