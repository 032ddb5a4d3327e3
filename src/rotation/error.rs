//! Why a rotation stopped: the step, the cause (each layer's own error, the journal's, or one
//! of the rotation's rules), and what to do — which always includes whether anything changed
//! and how to continue.

use std::fmt;
use std::path::PathBuf;

use super::step::Step;
use crate::cert::{BuildError, SubjectError};
use crate::config::{ConfigError, RewriteError};
use crate::exchange::{ApiError, ClientBuildError, ExchangeError};
use crate::kind::{HasKind, Kind};
use crate::netsuite::{self, AlgError};
use crate::pkcs11;
use crate::private_dir::Unsafe;

/// Why the journal cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// No directory to keep it in.
    #[error(
        "no directory for the rotation journal: neither XDG_STATE_HOME nor HOME is an absolute path; set XDG_STATE_HOME"
    )]
    NoStateDir,
    /// The directory, or one above it, could be changed by another user.
    #[error(
        "the rotation journal's directory '{}' cannot be used: '{}' {reason}, so another user could change the journal; make it yours and not writable by others, or set XDG_STATE_HOME to a directory only you can change", .dir.display(), .path.display()
    )]
    Unsafe {
        /// The journal's directory.
        dir: PathBuf,
        /// What others could change.
        path: PathBuf,
        /// How.
        reason: Unsafe,
    },
    /// The directory is a symbolic link.
    #[error(
        "the rotation journal's directory '{}' is a symbolic link, which suitekey does not follow (whoever can change the link could redirect the journal); make it a real directory, or set XDG_STATE_HOME", .0.display()
    )]
    Symlink(PathBuf),
    /// The journal file is a symbolic link or not a plain file of this user.
    #[error(
        "the rotation journal '{}' is {what}, which suitekey does not use; remove it (no rotation of this profile is recorded then)", .path.display()
    )]
    NotAFile {
        /// The file.
        path: PathBuf,
        /// What it is.
        what: String,
    },
    /// The directory or file cannot be read or written.
    #[error("cannot use the rotation journal '{}': {source}", .path.display())]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a journal this version can read.
    #[error(
        "the rotation journal '{}' cannot be read: {reason}; if no rotation of this profile is in progress, remove it", .path.display()
    )]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Another process is rotating the profile.
    #[error(
        "another 'suitekey rotate' (or an agent) is rotating profile '{profile}' now (it holds '{}'); wait for it to finish, then run rotate --status", .path.display()
    )]
    Busy {
        /// The profile.
        profile: String,
        /// The lock file.
        path: PathBuf,
    },
}

impl HasKind for JournalError {
    /// A place to change is the user's; a file that cannot be written is an output failure.
    fn kind(&self) -> Kind {
        match self {
            JournalError::Io { .. } => Kind::Output,
            _ => Kind::Usage,
        }
    }
}

/// Why a step could not be done.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The config file or profile.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Switching the profile in the config file.
    #[error(transparent)]
    Rewrite(#[from] RewriteError),
    /// The journal.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The token or a key in it.
    #[error(transparent)]
    Key(#[from] pkcs11::Error),
    /// A key NetSuite's rules (or the algorithm) refuse.
    #[error("key '{key}': {source}")]
    KeyRefused {
        /// The key URI, without secrets.
        key: String,
        /// The rule.
        #[source]
        source: AlgError,
    },
    /// The token endpoint.
    #[error(transparent)]
    Exchange(Box<ExchangeError>),
    /// The certificates API.
    #[error(transparent)]
    Api(Box<ApiError>),
    /// The HTTP client.
    #[error(transparent)]
    Client(#[from] ClientBuildError),
    /// Making the new certificate.
    #[error(transparent)]
    Build(Box<BuildError>),
    /// The new certificate's subject.
    #[error(transparent)]
    Subject(#[from] SubjectError),
    /// A NetSuite value (an URL, an id).
    #[error(transparent)]
    NetSuite(#[from] netsuite::Error),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The profile no longer names the new key and certificate after the switch: steps 6
    /// and 7 stop before they act (see the remedy).
    #[error("{0}")]
    NotSwitched(String),
    /// One of the rotation's own rules stops it; the message says which and what to do.
    #[error("{message}")]
    Refused {
        /// What is wrong and what to do.
        message: String,
        /// What kind of failure it is.
        kind: Kind,
    },
}

impl StepError {
    /// A refusal the user's input or setup causes.
    pub(super) fn usage(message: impl Into<String>) -> StepError {
        StepError::Refused {
            message: message.into(),
            kind: Kind::Usage,
        }
    }

    /// A refusal because of what NetSuite holds or answered.
    pub(super) fn netsuite(message: impl Into<String>) -> StepError {
        StepError::Refused {
            message: message.into(),
            kind: Kind::Endpoint,
        }
    }

    /// A refusal because of what the token holds.
    pub(super) fn token(message: impl Into<String>) -> StepError {
        StepError::Refused {
            message: message.into(),
            kind: Kind::Token,
        }
    }
}

impl From<ExchangeError> for StepError {
    fn from(e: ExchangeError) -> StepError {
        StepError::Exchange(Box::new(e))
    }
}

impl From<ApiError> for StepError {
    fn from(e: ApiError) -> StepError {
        StepError::Api(Box::new(e))
    }
}

impl From<BuildError> for StepError {
    fn from(e: BuildError) -> StepError {
        StepError::Build(Box::new(e))
    }
}

impl HasKind for StepError {
    /// The wrapped layer's kind, or the refusal's.
    fn kind(&self) -> Kind {
        match self {
            StepError::Config(e) => e.kind(),
            StepError::Rewrite(e) => e.kind(),
            StepError::Journal(e) => e.kind(),
            StepError::Key(e) => e.kind(),
            StepError::KeyRefused { .. } => Kind::Token,
            StepError::Exchange(e) => e.kind(),
            StepError::Api(e) => e.kind(),
            StepError::Client(e) => e.kind(),
            StepError::Build(e) => e.kind(),
            StepError::Subject(e) => e.kind(),
            StepError::NetSuite(e) => e.kind(),
            StepError::Runtime(_) => Kind::Endpoint,
            StepError::NotSwitched(_) => Kind::Usage,
            StepError::Refused { kind, .. } => *kind,
        }
    }
}

/// A rotation that stopped: where, why, and what to do.
#[derive(Debug)]
pub struct RotationError {
    /// The profile.
    pub profile: String,
    /// The step that failed; `None` before the first (the config, the journal, the flags).
    pub step: Option<Step>,
    /// The journal that records the rotation, when one was written.
    pub journal: Option<PathBuf>,
    /// Why.
    pub source: Box<StepError>,
}

impl RotationError {
    /// A failure before any step ran.
    pub(super) fn before(profile: &str, source: impl Into<StepError>) -> RotationError {
        RotationError {
            profile: profile.to_owned(),
            step: None,
            journal: None,
            source: Box::new(source.into()),
        }
    }

    /// What to do next: whether anything changed, and how to continue.
    fn remedy(&self) -> String {
        let again = "then run the same 'suitekey rotate' command again";
        match (&self.journal, self.step) {
            (Some(journal), Some(step)) if matches!(*self.source, StepError::NotSwitched(_)) => {
                format!(
                    "the rotation is recorded in '{}'. To finish it, run the same 'suitekey rotate' command again: it proves the new key again and switches the profile back to it before {step}. If the profile was switched back on purpose, remove '{}' to abandon the rotation instead (the new certificate stays active in NetSuite and the new key on the token until you revoke or delete them)",
                    journal.display(),
                    journal.display()
                )
            }
            (Some(journal), Some(step)) => {
                let mapping = if step <= Step::Switch {
                    "the profile still uses the old key and certificate, which keep working"
                } else {
                    "the profile already uses the new key and certificate"
                };
                format!(
                    "the rotation is recorded in '{}' and {mapping}; fix the cause, {again}: it continues from {step} ('rotate --status' shows where it is)",
                    journal.display()
                )
            }
            _ => format!("nothing was changed; fix the cause, {again}"),
        }
    }
}

impl fmt::Display for RotationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.step {
            Some(step) => write!(
                f,
                "rotating profile '{}' stopped at {step}: {}",
                self.profile, self.source
            )?,
            None => write!(f, "rotating profile '{}': {}", self.profile, self.source)?,
        }
        write!(f, "\n  {}", self.remedy())
    }
}

impl std::error::Error for RotationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

impl HasKind for RotationError {
    /// The cause's kind.
    fn kind(&self) -> Kind {
        self.source.kind()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_step_and_says_whether_anything_changed() {
        let before = RotationError::before("prod", StepError::usage("bad flag"));
        let text = before.to_string();
        assert!(
            text.starts_with("rotating profile 'prod': bad flag\n"),
            "{text}"
        );
        assert!(text.contains("nothing was changed"), "{text}");
        assert_eq!(before.kind().exit_code(), 2);
        let upload = RotationError {
            profile: "prod".into(),
            step: Some(Step::Upload),
            journal: Some("/state/prod.json".into()),
            source: Box::new(StepError::netsuite("NetSuite said no")),
        };
        let text = upload.to_string();
        for want in [
            "stopped at step 3 of 7 (upload the new certificate): NetSuite said no",
            "'/state/prod.json'",
            "still uses the old key",
            "continues from step 3 of 7",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
        assert_eq!(upload.kind().exit_code(), 6);
        let revoke = RotationError {
            step: Some(Step::Revoke),
            ..upload
        };
        assert!(revoke.to_string().contains("already uses the new key"));
        let switched_back = RotationError {
            source: Box::new(StepError::NotSwitched(
                "the profile was switched back".into(),
            )),
            ..revoke
        };
        let text = switched_back.to_string();
        for want in [
            "stopped at step 6 of 7 (revoke the old certificate): the profile was switched back",
            "switches the profile back to it before step 6",
            "remove '/state/prod.json' to abandon",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
        assert!(!text.contains("already uses the new key"), "{text}");
        assert_eq!(switched_back.kind().exit_code(), 2);
    }
}
