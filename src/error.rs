//! The top-level error: every layer's error converted at the boundary. What kind of failure
//! each is (and so the exit code) is asked of the layer's error ([`crate::kind`]); how it is
//! printed is [`crate::report`]'s.

use crate::kind::{HasKind, Kind};
use crate::{agent, cert, config, emulator, exchange, netsuite, pkcs11, rotation};

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
    Alg(#[from] netsuite::AlgError),
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
        source: netsuite::AlgError,
    },
    /// The token layer failed.
    #[error(transparent)]
    Pkcs11(#[from] pkcs11::Error),
    /// Assembling the assertion failed.
    #[error(transparent)]
    Assertion(#[from] netsuite::AssertionError),
    /// A certificate file could not be read or parsed.
    #[error(transparent)]
    Cert(#[from] cert::Error),
    /// A certificate could not be made.
    #[error(transparent)]
    CertBuild(Box<cert::BuildError>),
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
    /// `doctor` found checks that failed (already printed).
    #[error("{count} check(s) failed; see the remedies above")]
    DoctorFailed {
        /// How many checks failed.
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
    Exchange(Box<exchange::ExchangeError>),
    /// The agent cannot start or stopped.
    #[error(transparent)]
    Agent(#[from] agent::Error),
    /// The agent named by `SUITEKEY_AUTH_SOCK` gave no token.
    #[error(transparent)]
    AgentClient(#[from] agent::client::ClientError),
    /// The HTTP client could not be set up.
    #[error(transparent)]
    Client(#[from] exchange::ClientBuildError),
    /// A rotation stopped (the step, the cause, what to do), or its journal cannot be read.
    #[error(transparent)]
    Rotation(Box<rotation::RotationError>),
    /// The rotation journal cannot be read (`rotate --status`).
    #[error(transparent)]
    Journal(#[from] rotation::JournalError),
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

impl HasKind for Error {
    /// The wrapped layer's kind, or what the variant itself says.
    fn kind(&self) -> Kind {
        match self {
            Error::Uri(e) => e.kind(),
            Error::NetSuite(e) => e.kind(),
            Error::Alg(e) => e.kind(),
            Error::Config(e) => e.kind(),
            Error::Cert(e) => e.kind(),
            Error::Pkcs11(e) => e.kind(),
            Error::Assertion(e) => e.kind(),
            Error::CertBuild(e) => e.kind(),
            Error::Exchange(e) => e.kind(),
            Error::Client(e) => e.kind(),
            Error::Rotation(e) => e.kind(),
            Error::Journal(e) => e.kind(),
            Error::Emulator(e) => e.kind(),
            Error::Agent(e) => e.kind(),
            Error::AgentClient(e) => e.kind(),
            Error::AfterKeygen { source, .. } => source.kind(),
            Error::Usage(_) => Kind::Usage,
            // The key was found and read: NetSuite's rules refuse what the token holds.
            Error::KeyRefused { .. } => Kind::Token,
            Error::Unfit { .. } | Error::DoctorFailed { .. } => Kind::Unfit,
            Error::Output(_) | Error::OutputFile { .. } => Kind::Output,
            // Without a runtime no token request can be made.
            Error::Runtime(_) => Kind::Endpoint,
            Error::Spawn { .. } => Kind::NotStarted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::{JwsError, SigningError};
    use crate::netsuite::AssertionError;

    fn refused_pin() -> pkcs11::Error {
        pkcs11::Error::PinIncorrect {
            token: "acc".into(),
            origin: "SUITEKEY_PIN".into(),
            tries: String::new(),
        }
    }

    fn unknown_object() -> pkcs11::Error {
        pkcs11::Error::NoObject("pkcs11:token=acc;object=gone".into())
    }

    /// What `token` fails with when the key cannot sign: the key's error in the assertion, in
    /// the exchange.
    fn exchange_failing_with(e: pkcs11::Error) -> Error {
        let assertion = AssertionError::Jws(JwsError::Sign(SigningError::new(e)));
        Error::Exchange(Box::new(exchange::ExchangeError::Assertion(
            SigningError::new(assertion),
        )))
    }

    #[test]
    fn a_refused_pin_exits_4_through_every_layer_and_reads_as_before() {
        assert_eq!(Error::Pkcs11(refused_pin()).kind().exit_code(), 4);
        let assertion = AssertionError::Jws(JwsError::Sign(SigningError::new(refused_pin())));
        assert_eq!(Error::Assertion(assertion).kind().exit_code(), 4);
        let exchanged = exchange_failing_with(refused_pin());
        assert_eq!(exchanged.kind().exit_code(), 4);
        let after_keygen = Error::AfterKeygen {
            key: "pkcs11:token=acc;object=k".into(),
            source: Box::new(Error::CertBuild(Box::new(cert::BuildError::Sign(
                SigningError::new(Error::Pkcs11(refused_pin())),
            )))),
        };
        assert_eq!(after_keygen.kind().exit_code(), 4);
        // Carried as a signing error, the key's error is shown exactly as it was.
        assert_eq!(
            crate::report::chain(&exchanged),
            format!("signing the JWS failed\n  caused by: {}", refused_pin())
        );
    }

    #[test]
    fn the_keys_other_failures_keep_their_kinds_through_the_layers() {
        assert_eq!(exchange_failing_with(unknown_object()).kind(), Kind::Usage);
        let call = pkcs11::Error::Call {
            call: "C_Sign".into(),
            module: "/usr/lib/softhsm/libsofthsm2.so".into(),
            rv: cryptoki::error::RvError::DeviceError.into(),
        };
        assert_eq!(exchange_failing_with(call).kind(), Kind::Token);
        let clock = exchange::ExchangeError::Assertion(SigningError::new(AssertionError::Clock));
        assert_eq!(Error::Exchange(Box::new(clock)).kind().exit_code(), 3);
    }
}
