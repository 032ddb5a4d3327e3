//! The top-level error: every layer's error converted at the boundary, and the exit codes.

use crate::{emulator, jose, netsuite, pkcs11};

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: bad command-line input (flags, URI, account, scope, lifetime, token URL).
pub const EXIT_USAGE: u8 = 2;
/// Exit status: the module, token or key cannot do what was asked.
pub const EXIT_TOKEN: u8 = 3;
/// Exit status: no usable PIN, or the token refused it.
pub const EXIT_PIN: u8 = 4;
/// Exit status: writing the output failed.
pub const EXIT_IO: u8 = 5;

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
    /// The emulator cannot start or stopped (bad flags exit 2, socket failures 5).
    #[error(transparent)]
    Emulator(#[from] emulator::Error),
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
            Error::Output(_) => EXIT_IO,
            Error::Emulator(e) => e.exit_code(),
        }
    }
}

fn pkcs11_exit_code(e: &pkcs11::Error) -> u8 {
    use pkcs11::Error as E;
    match e {
        E::Pin(_) | E::PinIncorrect { .. } | E::PinLocked { .. } | E::PinRefused { .. } => EXIT_PIN,
        E::NoModule
        | E::ModuleName { .. }
        | E::NotAPrivateKey { .. }
        | E::NoObject(_)
        | E::VendorAttribute { .. } => EXIT_USAGE,
        _ => EXIT_TOKEN,
    }
}
