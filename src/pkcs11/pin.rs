//! Where a token PIN comes from: a file, an environment variable, or a prompt — never argv.
//!
//! The PIN lives in a [`Pin`] (a `SecretString`, zeroized on drop, redacted in `Debug`) from
//! the moment it is read; intermediate buffers are `Zeroizing`.

use std::fmt;
use std::io::{IsTerminal, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use zeroize::Zeroizing;

use super::uri::PinSource;

/// A token PIN. Cannot be printed; zeroized when dropped.
pub type Pin = SecretString;

/// The environment variable a PIN may come from when the URI names no source.
pub const PIN_ENV: &str = "SUITEKEY_PIN";

/// PIN files larger than this are not PIN files.
const MAX_PIN_FILE: u64 = 4096;

/// Where a PIN came from, for messages (it never holds the PIN).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinOrigin {
    /// A file, by path.
    File(PathBuf),
    /// An environment variable, by name.
    Env(String),
    /// The URI's `pin-value` attribute.
    UriValue,
    /// Typed at a prompt.
    Prompt,
    /// Entered on the token's own PIN pad.
    PinPad,
}

impl fmt::Display for PinOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinOrigin::File(p) => write!(f, "file '{}'", p.display()),
            PinOrigin::Env(name) => write!(f, "environment variable {name}"),
            PinOrigin::UriValue => f.write_str("the URI's pin-value"),
            PinOrigin::Prompt => f.write_str("the prompt"),
            PinOrigin::PinPad => f.write_str("the token's PIN pad"),
        }
    }
}

/// Why a PIN could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The PIN file could not be read.
    #[error("cannot read the PIN file '{path}': {source}; check pin-source=file:… in the key URI")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The PIN file is not a small file.
    #[error(
        "the PIN file '{0}' is larger than 4 KiB; pin-source must name a file holding only the PIN"
    )]
    FileTooLarge(PathBuf),
    /// The PIN source holds nothing.
    #[error("the PIN from {0} is empty; put the token's user PIN there")]
    Empty(PinOrigin),
    /// The PIN is not text.
    #[error("the PIN from {0} is not valid UTF-8 text")]
    NotUtf8(PinOrigin),
    /// The environment variable named by `pin-source=env:` is not set.
    #[error("environment variable {0} (named by pin-source=env:{0}) is not set")]
    EnvMissing(String),
    /// Nowhere to get a PIN from.
    #[error(
        "no PIN for token '{token}': add pin-source=file:PATH to the key URI, set SUITEKEY_PIN, or run on a terminal to be prompted"
    )]
    NoSource {
        /// The token label.
        token: String,
    },
    /// The prompt failed.
    #[error("cannot read the PIN from the terminal: {0}")]
    Prompt(#[source] std::io::Error),
}

/// Gets the PIN for `token`: [`from_sources`], else a prompt when stdin is a terminal.
pub fn obtain(
    source: Option<&PinSource>,
    value: Option<&Pin>,
    token: &str,
) -> Result<(Pin, PinOrigin), PinError> {
    match from_sources(source, value)? {
        Some(found) => Ok(found),
        None if std::io::stdin().is_terminal() => prompt(token),
        None => Err(PinError::NoSource {
            token: token.to_owned(),
        }),
    }
}

/// The PIN from the URI's `pin-value` or `pin-source`, else from `SUITEKEY_PIN`; `None` when
/// none of them is set (a PIN pad or a prompt may then supply it).
pub fn from_sources(
    source: Option<&PinSource>,
    value: Option<&Pin>,
) -> Result<Option<(Pin, PinOrigin)>, PinError> {
    if let Some(pin) = value {
        return Ok(Some((pin.clone(), PinOrigin::UriValue)));
    }
    match source {
        Some(PinSource::File(path)) => read_file(path).map(Some),
        Some(PinSource::Env(name)) => read_env(name)?
            .ok_or_else(|| PinError::EnvMissing(name.clone()))
            .map(Some),
        None => read_env(PIN_ENV),
    }
}

/// Reads a PIN file: the PIN, optionally followed by one line ending.
fn read_file(path: &Path) -> Result<(Pin, PinOrigin), PinError> {
    let origin = PinOrigin::File(path.to_owned());
    let file_err = |source| PinError::File {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(file_err)?;
    let meta = file.metadata().map_err(file_err)?;
    if meta.len() > MAX_PIN_FILE {
        return Err(PinError::FileTooLarge(path.to_owned()));
    }
    if meta.permissions().mode() & 0o004 != 0 {
        tracing::warn!(path = %path.display(), "the PIN file is readable by every user on this machine; chmod 600 it");
    }
    // Room for the whole file up front: a growing Vec would leave PIN copies behind.
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_PIN_FILE as usize + 1));
    file.take(MAX_PIN_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(file_err)?;
    if bytes.len() as u64 > MAX_PIN_FILE {
        return Err(PinError::FileTooLarge(path.to_owned()));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| PinError::NotUtf8(origin.clone()))?;
    finish(strip_line_ending(text), origin)
}

fn strip_line_ending(text: &str) -> &str {
    text.strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(text)
}

fn read_env(name: &str) -> Result<Option<(Pin, PinOrigin)>, PinError> {
    let origin = PinOrigin::Env(name.to_owned());
    match std::env::var_os(name) {
        None => Ok(None),
        Some(raw) => {
            let raw = Zeroizing::new(raw.into_encoded_bytes());
            let text = std::str::from_utf8(&raw).map_err(|_| PinError::NotUtf8(origin.clone()))?;
            finish(text, origin).map(Some)
        }
    }
}

/// Asks on the terminal (echo off, see [`super::prompt`]).
fn prompt(token: &str) -> Result<(Pin, PinOrigin), PinError> {
    // The label comes from the device: no control characters reach the terminal.
    let label: String = token.chars().filter(|c| !c.is_control()).collect();
    let typed = super::prompt::read_secret_line(
        &format!("PIN for token '{label}': "),
        MAX_PIN_FILE as usize,
    )
    .map_err(PinError::Prompt)?;
    let text = std::str::from_utf8(&typed).map_err(|_| PinError::NotUtf8(PinOrigin::Prompt))?;
    finish(text, PinOrigin::Prompt)
}

fn finish(pin: &str, origin: PinOrigin) -> Result<(Pin, PinOrigin), PinError> {
    if pin.is_empty() {
        return Err(PinError::Empty(origin));
    }
    Ok((SecretString::from(pin), origin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn file_with(content: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, content).unwrap();
        f
    }

    #[test]
    fn pin_files_lose_exactly_one_line_ending() {
        for (content, want) in [
            (&b"1234\n"[..], "1234"),
            (b"1234\r\n", "1234"),
            (b"12 34", "12 34"),
            (b"1234\n\n", "1234\n"),
        ] {
            let f = file_with(content);
            let (pin, origin) = obtain(Some(&PinSource::File(f.path().into())), None, "t").unwrap();
            assert_eq!(pin.expose_secret(), want);
            assert_eq!(origin, PinOrigin::File(f.path().into()));
        }
    }

    #[test]
    fn empty_missing_and_oversized_pin_files_are_refused_by_name() {
        let empty = file_with(b"\n");
        let err = obtain(Some(&PinSource::File(empty.path().into())), None, "t").unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err}");
        let err = obtain(Some(&PinSource::File("/nonexistent/pin".into())), None, "t").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/pin"), "{err}");
        let big = file_with(&[b'1'; 5000]);
        assert!(matches!(
            obtain(Some(&PinSource::File(big.path().into())), None, "t"),
            Err(PinError::FileTooLarge(_))
        ));
    }

    #[test]
    fn a_missing_env_source_is_named() {
        let err = obtain(
            Some(&PinSource::Env("SUITEKEY_TEST_SURELY_UNSET".into())),
            None,
            "t",
        )
        .unwrap_err();
        assert!(err.to_string().contains("SUITEKEY_TEST_SURELY_UNSET"));
    }
}
