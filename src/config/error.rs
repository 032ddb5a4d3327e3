//! Why a configuration or profile is not usable, and where it came from.

use std::fmt;
use std::path::PathBuf;

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
    /// The file is larger than [`MAX_CONFIG_LEN`](super::MAX_CONFIG_LEN).
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
    #[error("{origin}: unknown key '{key}' (known: {})", .known.join(", "))]
    UnknownKey {
        /// The file and profile.
        origin: Origin,
        /// The key found.
        key: String,
        /// The keys a profile table may have.
        known: &'static [&'static str],
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

impl crate::kind::HasKind for ConfigError {
    /// The config file and the flags are the user's input; a key URI refused for what it names
    /// keeps the kind the token layer gives that refusal.
    fn kind(&self) -> crate::kind::Kind {
        match self {
            ConfigError::Key(e) => e.kind(),
            _ => crate::kind::Kind::Usage,
        }
    }
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
