//! The top-level error: every layer's error converted at the boundary, and the exit codes.
//! How an error is printed is [`crate::report`]'s.

use crate::{agent, cert, config, emulator, exchange, jose, netsuite, pkcs11};

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: `check` found the certificate unfit to upload.
pub const EXIT_UNFIT: u8 = 1;
/// Exit status: bad command-line input (flags, URI, account, scope, lifetime, token URL).
pub const EXIT_USAGE: u8 = 2;
/// Exit status: the module, token or key cannot do what was asked.
pub const EXIT_TOKEN: u8 = 3;
/// Exit status: no usable PIN, or the token refused it.
pub const EXIT_PIN: u8 = 4;
/// Exit status: writing the output failed.
pub const EXIT_IO: u8 = 5;
/// Exit status: the token endpoint refused the assertion or could not be reached.
pub const EXIT_EXCHANGE: u8 = 6;
/// Exit status: the agent named by `SUITEKEY_AUTH_SOCK` cannot be reached or misbehaved.
pub const EXIT_AGENT: u8 = 7;
/// Exit status of `exec` when the command cannot be started (as shells report it).
pub const EXIT_NOT_STARTED: u8 = 127;

/// Anything a command can fail with; `main` prints it with its causes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A PKCS#11 URI given by the user is malformed.
    #[error(transparent)]
    Uri(#[from] pkcs11::uri::UriError),
    /// A NetSuite value given by the user is not acceptable.
    #[error(transparent)]
    NetSuite(#[from] netsuite::Error),
    /// An algorithm name is not acceptable.
    #[error(transparent)]
    Alg(#[from] jose::AlgError),
    /// Other bad input, explained.
    #[error("{0}")]
    Usage(String),
    /// The key exists but NetSuite's rules (or the chosen algorithm) refuse it.
    #[error("key '{key}': {source}")]
    KeyRefused {
        /// The key URI, without secrets.
        key: String,
        /// The rule that refuses it.
        #[source]
        source: jose::AlgError,
    },
    /// The token layer failed.
    #[error(transparent)]
    Pkcs11(#[from] pkcs11::Error),
    /// Assembling the assertion failed.
    #[error(transparent)]
    Assertion(#[from] netsuite::AssertionError<pkcs11::Error>),
    /// A certificate file could not be read or parsed.
    #[error(transparent)]
    Cert(#[from] cert::Error),
    /// A certificate could not be made.
    #[error(transparent)]
    CertBuild(Box<cert::BuildError<Error>>),
    /// `keygen` made the key but a later step failed; the key stays in the token.
    #[error(
        "the key pair was made and stays in the token ({key}), but its certificate was not finished: {source}\nafter fixing that, make the certificate with: suitekey cert --key '{key}' --out FILE (add --force to overwrite FILE, --replace to replace a certificate already on the token)"
    )]
    AfterKeygen {
        /// The new key's URI (no secrets).
        key: String,
        /// What failed.
        #[source]
        source: Box<Error>,
    },
    /// `check` found problems (already printed).
    #[error("the certificate is not fit to upload to NetSuite ({count} problem(s) listed above)")]
    Unfit {
        /// How many problems.
        count: usize,
    },
    /// An output file could not be written; nothing was left half-written.
    #[error("cannot write '{path}': {reason}; nothing was written there")]
    OutputFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The emulator cannot start or stopped (bad flags exit 2, socket failures 5).
    #[error(transparent)]
    Emulator(#[from] emulator::Error),
    /// The config file or profile is not usable.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The token endpoint refused the assertion, failed, or could not be reached.
    #[error(transparent)]
    Exchange(Box<exchange::ExchangeError<netsuite::AssertionError<pkcs11::Error>>>),
    /// The agent cannot start or stopped.
    #[error(transparent)]
    Agent(#[from] agent::Error),
    /// The agent named by `SUITEKEY_AUTH_SOCK` gave no token.
    #[error(transparent)]
    AgentClient(#[from] agent::client::ClientError),
    /// The HTTP client could not be set up.
    #[error(transparent)]
    Client(#[from] exchange::ClientBuildError),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// `exec` could not start its command.
    #[error("cannot run '{program}': {source}; check the command name and PATH")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing to stdout failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl Error {
    /// The process exit status for this error (documented in the README).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Uri(_) | Error::NetSuite(_) | Error::Alg(_) | Error::Usage(_) => EXIT_USAGE,
            Error::KeyRefused { .. } => EXIT_TOKEN,
            Error::Pkcs11(e) => pkcs11_exit_code(e),
            Error::Assertion(netsuite::AssertionError::Jws(jose::JwsError::Sign(e))) => {
                pkcs11_exit_code(e)
            }
            Error::Assertion(_) => EXIT_TOKEN,
            Error::Output(_) | Error::OutputFile { .. } => EXIT_IO,
            Error::Cert(_) => EXIT_USAGE,
            Error::CertBuild(e) => match e.as_ref() {
                cert::BuildError::Sign(inner) => inner.exit_code(),
                _ => EXIT_TOKEN,
            },
            Error::AfterKeygen { source, .. } => source.exit_code(),
            Error::Unfit { .. } => EXIT_UNFIT,
            Error::Emulator(e) => e.exit_code(),
            Error::Agent(e) => e.exit_code(),
            Error::AgentClient(e) => e.exit_code(),
            Error::Config(_) => EXIT_USAGE,
            Error::Exchange(e) => match e.as_ref() {
                exchange::ExchangeError::Assertion(netsuite::AssertionError::Jws(
                    jose::JwsError::Sign(inner),
                )) => pkcs11_exit_code(inner),
                exchange::ExchangeError::Assertion(_) => EXIT_TOKEN,
                _ => EXIT_EXCHANGE,
            },
            Error::Client(_) | Error::Runtime(_) => EXIT_EXCHANGE,
            Error::Spawn { .. } => EXIT_NOT_STARTED,
        }
    }
}

fn pkcs11_exit_code(e: &pkcs11::Error) -> u8 {
    use pkcs11::Error as E;
    match e {
        e if e.is_pin() => EXIT_PIN,
        E::NoModule
        | E::PinSourceConflict { .. }
        | E::ModuleName { .. }
        | E::NotAPrivateKey { .. }
        | E::NoObject(_)
        | E::VendorAttribute { .. } => EXIT_USAGE,
        _ => EXIT_TOKEN,
    }
}
