//! Where a token PIN comes from: a file, an environment variable, or a prompt — never argv.
//!
//! The PIN lives in a [`Pin`] (a `SecretString`, zeroized on drop, redacted in `Debug`) from
//! the moment it is read; intermediate buffers are `Zeroizing`.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::uri::{PinSource, escaped_path};

/// A token PIN. Cannot be printed; zeroized when dropped.
pub type Pin = SecretString;

/// The environment variable a PIN may come from when the URI names no source.
pub const PIN_ENV: &str = "SUITEKEY_PIN";

/// PIN files larger than this are not PIN files.
const MAX_PIN_FILE: u64 = 4096;

/// How long a PIN file may take to give its PIN: a FIFO (named pipe) gives it only when its
/// writer comes, and one that nothing writes to must not hold suitekey forever.
pub const PIN_FILE_TIMEOUT: Duration = Duration::from_secs(10);

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
            PinOrigin::File(p) => write!(f, "file '{}'", escaped_path(p)),
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
    #[error("cannot read the PIN file '{}': {source}; check pin-source=file:… in the key URI", escaped_path(.path))]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The PIN file is not a small file.
    #[error(
        "the PIN file '{}' is larger than 4 KiB; pin-source must name a file holding only the PIN",
        escaped_path(.0)
    )]
    FileTooLarge(PathBuf),
    /// The PIN file gave no PIN in time: a FIFO that nothing writes to.
    #[error(
        "the PIN file '{}' gave no PIN within {} s: it is {kind} that nothing wrote a PIN to; start what writes the PIN there, or name a regular file in pin-source=file:",
        escaped_path(.path),
        PIN_FILE_TIMEOUT.as_secs()
    )]
    FileTimeout {
        /// The file.
        path: PathBuf,
        /// What kind of file it is, e.g. "a FIFO (named pipe)".
        kind: &'static str,
    },
    /// The PIN source holds nothing.
    #[error("the PIN from {0} is empty; put the token's user PIN there")]
    Empty(PinOrigin),
    /// The PIN holds what no PIN should, so it was not risked on the token.
    #[error(
        "the PIN from {origin} {problem}, so it was not sent to the token (a wrong PIN costs one of the few tries before the token locks): put the PIN there alone, followed by at most one line ending"
    )]
    Malformed {
        /// Where it came from (never the PIN).
        origin: PinOrigin,
        /// What is wrong with it, e.g. "begins or ends with whitespace".
        problem: &'static str,
    },
    /// The PIN is not text.
    #[error("the PIN from {0} is not valid UTF-8 text")]
    NotUtf8(PinOrigin),
    /// The environment variable named by `pin-source=env:` is not set.
    #[error("environment variable {0} (named by pin-source=env:{0}) is not set")]
    EnvMissing(String),
    /// `pin-source=credential:NAME` outside a systemd service that loads credentials.
    #[error(
        "pin-source=credential:{0} reads the PIN from systemd's $CREDENTIALS_DIRECTORY, which is not set (or not an absolute path): run suitekey from a unit with LoadCredential={0}:/path/to/pin, or use pin-source=file:PATH"
    )]
    NoCredentialsDirectory(String),
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
        return finish(pin.expose_secret(), PinOrigin::UriValue).map(Some);
    }
    match source {
        Some(PinSource::File(path)) => read_file(path, Readers::Warn).map(Some),
        Some(PinSource::Env(name)) => read_env(name)?
            .ok_or_else(|| PinError::EnvMissing(name.clone()))
            .map(Some),
        Some(PinSource::Credential(name)) => read_credential(name).map(Some),
        None => read_env(PIN_ENV),
    }
}

/// The variable systemd sets to the directory of a service's credentials (`LoadCredential=`).
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// Reads the credential `name` (a plain file name, checked when the URI was parsed) from
/// `$CREDENTIALS_DIRECTORY`, as a PIN file.
fn read_credential(name: &str) -> Result<(Pin, PinOrigin), PinError> {
    let dir = std::env::var_os(CREDENTIALS_DIRECTORY)
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .ok_or_else(|| PinError::NoCredentialsDirectory(name.to_owned()))?;
    // systemd grants the file to the service's user by an ACL, whose mask shows as group bits:
    // only a file every user may read is worth a warning there.
    read_file(&dir.join(name), Readers::AclGranted)
}

/// Whether a PIN file's mode is worth a warning when others could read it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Readers {
    /// A file the user placed: warn when its group or others can read it.
    Warn,
    /// A systemd credential: group bits are an ACL's mask, so only world-readable is warned of.
    AclGranted,
}

/// Reads a PIN file: the PIN, optionally followed by one line ending.
fn read_file(path: &Path, readers: Readers) -> Result<(Pin, PinOrigin), PinError> {
    let origin = PinOrigin::File(path.to_owned());
    let bytes = read_secret_file(path, "PIN", readers).map_err(|problem| match problem {
        FileProblem::Io(source) => PinError::File {
            path: path.to_owned(),
            source,
        },
        FileProblem::TooLarge => PinError::FileTooLarge(path.to_owned()),
        FileProblem::Timeout(kind) => PinError::FileTimeout {
            path: path.to_owned(),
            kind,
        },
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|_| PinError::NotUtf8(origin.clone()))?;
    finish(text, origin)
}

/// Why a small secret file gave nothing usable.
#[derive(Debug)]
pub(super) enum FileProblem {
    /// It could not be opened or read.
    Io(io::Error),
    /// It is larger than [`MAX_PIN_FILE`].
    TooLarge,
    /// It gave nothing within [`PIN_FILE_TIMEOUT`]: a FIFO (or device) that nothing wrote to;
    /// which of the two.
    Timeout(&'static str),
}

/// Reads a small file holding a secret (`what`: "PIN", "management key"), whole, into a buffer
/// that is zeroized when dropped: a regular file, or a FIFO whose writer has
/// [`PIN_FILE_TIMEOUT`] to write it. Warns when other users may read it.
pub(super) fn read_secret_file(
    path: &Path,
    what: &str,
    readers: Readers,
) -> Result<Zeroizing<Vec<u8>>, FileProblem> {
    // Non-blocking, so that opening a FIFO without a writer returns at once; reading then
    // waits for its writer no longer than PIN_FILE_TIMEOUT.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits().cast_signed())
        .open(path)
        .map_err(FileProblem::Io)?;
    let meta = file.metadata().map_err(FileProblem::Io)?;
    if meta.len() > MAX_PIN_FILE {
        return Err(FileProblem::TooLarge);
    }
    let mode = meta.permissions().mode();
    let shown = match readers {
        Readers::Warn => mode,
        Readers::AclGranted => mode & !0o070,
    };
    warn_if_readable_by_others(path, shown, what);
    let bytes = read_within(&file, PIN_FILE_TIMEOUT)
        .map_err(FileProblem::Io)?
        .ok_or(FileProblem::Timeout(if meta.file_type().is_fifo() {
            "a FIFO (named pipe)"
        } else {
            "a device"
        }))?;
    if bytes.len() as u64 > MAX_PIN_FILE {
        return Err(FileProblem::TooLarge);
    }
    Ok(bytes)
}

/// A secret file that the group or everyone may read is one other users may read.
fn warn_if_readable_by_others(path: &Path, mode: u32, what: &str) {
    let readers = if mode & 0o004 != 0 {
        "every user on this machine"
    } else if mode & 0o040 != 0 {
        "the members of its group"
    } else {
        return;
    };
    tracing::warn!(path = %escaped_path(path), "the {what} file is readable by other users ({readers}); chmod 600 it");
}

/// Reads `file` (opened non-blocking) to its end, at most `MAX_PIN_FILE + 1` bytes, waiting
/// for data as long as a FIFO's writer may still come; `None` when it takes longer than
/// `limit`. On Linux, a FIFO that never had a writer polls as not ready (not as hung up).
fn read_within(file: &File, limit: Duration) -> io::Result<Option<Zeroizing<Vec<u8>>>> {
    let deadline = Instant::now() + limit;
    // Room for the whole file up front: a growing Vec would leave PIN copies behind.
    let mut bytes = Zeroizing::new(vec![0u8; MAX_PIN_FILE as usize + 1]);
    let mut filled = 0;
    while filled < bytes.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if !readable_within(file, left)? {
            return Ok(None);
        }
        match (&*file).read(&mut bytes[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
    bytes.truncate(filled);
    Ok(Some(bytes))
}

/// Whether `file` has data (or its end) to read within `limit`.
fn readable_within(file: &File, limit: Duration) -> io::Result<bool> {
    let timeout = Timespec::try_from(limit).map_err(io::Error::other)?;
    let mut fds = [PollFd::new(file, PollFlags::IN)];
    match rustix::event::poll(&mut fds, Some(&timeout)) {
        Ok(ready) => Ok(ready > 0),
        // A signal: the caller polls again with what is left of its time.
        Err(rustix::io::Errno::INTR) => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// The text without one trailing line ending: `\n`, `\r\n` or `\r`.
pub(super) fn strip_line_ending(text: &str) -> &str {
    text.strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .or_else(|| text.strip_suffix('\r'))
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

/// The PIN in `text` from any source, without one trailing line ending. A PIN still holding
/// what no PIN should is refused before it reaches the token, where it would cost a try.
fn finish(text: &str, origin: PinOrigin) -> Result<(Pin, PinOrigin), PinError> {
    let pin = strip_line_ending(text);
    if pin.is_empty() {
        return Err(PinError::Empty(origin));
    }
    if let Some(problem) = malformation(pin) {
        return Err(PinError::Malformed { origin, problem });
    }
    Ok((SecretString::from(pin), origin))
}

/// What makes `pin` (its line ending gone) one that editors, `echo` or copy-paste spoilt.
fn malformation(pin: &str) -> Option<&'static str> {
    if pin.contains('\u{feff}') {
        Some("holds a byte order mark (U+FEFF, which some editors put at the start of a file)")
    } else if pin.chars().any(char::is_control) {
        Some("holds a control character (a second line ending, a tab, an escape …)")
    } else if pin.starts_with(char::is_whitespace) || pin.ends_with(char::is_whitespace) {
        Some("begins or ends with whitespace")
    } else {
        None
    }
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
            (b"1234\r", "1234"),
            (b"12 34", "12 34"),
            (b"1234", "1234"),
        ] {
            let f = file_with(content);
            let (pin, origin) = obtain(Some(&PinSource::File(f.path().into())), None, "t").unwrap();
            assert_eq!(pin.expose_secret(), want);
            assert_eq!(origin, PinOrigin::File(f.path().into()));
        }
    }

    #[test]
    fn spoilt_pins_are_refused_naming_the_problem_and_the_file_never_the_pin() {
        // "1234\n\n" was read as "1234\n" before: a second line ending is no longer a PIN.
        for (content, problem) in [
            (&b"\xef\xbb\xbfPIN-70913\n"[..], "byte order mark"),
            (b"PIN-70913\n\n", "control character"),
            (b"PIN-70913\r\n\r\n", "control character"),
            (b"PIN-\t70913", "control character"),
            (b"PIN-70913\x1b[0m", "control character"),
            (b"PIN-70913 \n", "whitespace"),
            (b" PIN-70913", "whitespace"),
            (b"PIN-70913\xc2\xa0", "whitespace"),
        ] {
            let f = file_with(content);
            let err = obtain(Some(&PinSource::File(f.path().into())), None, "t").unwrap_err();
            let message = err.to_string();
            assert!(
                matches!(err, PinError::Malformed { .. })
                    && message.contains(problem)
                    && message.contains(&f.path().display().to_string())
                    && message.contains("not sent to the token"),
                "{content:?}: {message}"
            );
            assert!(!message.contains("PIN-70913"), "{message}");
        }
        let value = SecretString::from(" PIN-70913");
        let err = from_sources(None, Some(&value)).unwrap_err().to_string();
        assert!(
            err.contains("pin-value") && !err.contains("PIN-70913"),
            "{err}"
        );
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
