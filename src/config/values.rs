//! The values of profile fields, and how each is read from a flag (or its variable) and from
//! the config file's text ([`Setting`]): a value as typed (for secrets clap must not echo), the
//! token request timeout, and key URIs as users may write them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use zeroize::Zeroizing;

use crate::exchange::CaFile;
use crate::netsuite::{CertificatesUrl, TokenUrl};
use crate::pkcs11::Pkcs11Uri;
use crate::pkcs11::uri::{KeyRef, UriError};

/// How a profile field's value is read: from what clap gave for its flag or variable (a
/// `Given`), and from the text a profile table holds. A type clap parses itself is given as
/// itself, and the file's text is parsed the same way; the others are given as typed (or as a
/// path) and read here.
pub trait Setting<Given>: Sized {
    /// The value of a flag or variable.
    fn from_flag(given: Given) -> Result<Self, Refused>;

    /// The value `text` of the config file at `file`.
    fn from_file(text: &str, file: &Path) -> Result<Self, Refused>;
}

/// Why a profile field's value is refused.
#[derive(Debug)]
pub enum Refused {
    /// The value is not acceptable; the message is shown after where the value came from
    /// (`--flag: …`, or `config '…', profile '…': field '…': …`).
    Value(Box<dyn std::error::Error + Send + Sync>),
    /// A key URI that does not name one private key: its message names the URI itself, as it
    /// did when keys were checked as they were opened.
    Key(crate::pkcs11::Error),
}

impl Refused {
    fn value(e: impl std::error::Error + Send + Sync + 'static) -> Refused {
        Refused::Value(Box::new(e))
    }
}

impl<T> Setting<T> for T
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    fn from_flag(given: T) -> Result<T, Refused> {
        Ok(given)
    }

    fn from_file(text: &str, _: &Path) -> Result<T, Refused> {
        text.parse().map_err(Refused::value)
    }
}

/// Typed as given: clap would quote a refused URI whole, `pin-value` included.
impl Setting<RawArg> for KeyRef {
    fn from_flag(given: RawArg) -> Result<KeyRef, Refused> {
        key_ref(given.as_str())
    }

    fn from_file(text: &str, _: &Path) -> Result<KeyRef, Refused> {
        key_ref(text)
    }
}

/// Typed as given: clap would quote a refused URL whole, `user:password@` included.
impl Setting<RawArg> for TokenUrl {
    fn from_flag(given: RawArg) -> Result<TokenUrl, Refused> {
        given.as_str().parse().map_err(Refused::value)
    }

    fn from_file(text: &str, _: &Path) -> Result<TokenUrl, Refused> {
        text.parse().map_err(Refused::value)
    }
}

/// Typed as given, like the token URL.
impl Setting<RawArg> for CertificatesUrl {
    fn from_flag(given: RawArg) -> Result<CertificatesUrl, Refused> {
        given.as_str().parse().map_err(Refused::value)
    }

    fn from_file(text: &str, _: &Path) -> Result<CertificatesUrl, Refused> {
        text.parse().map_err(Refused::value)
    }
}

/// The CA file is read when the profile is resolved; a relative path in the config file is
/// relative to the file's directory.
impl Setting<PathBuf> for CaFile {
    fn from_flag(given: PathBuf) -> Result<CaFile, Refused> {
        CaFile::load(&given).map_err(Refused::value)
    }

    fn from_file(text: &str, file: &Path) -> Result<CaFile, Refused> {
        let path = match file.parent() {
            Some(dir) => dir.join(text),
            None => PathBuf::from(text),
        };
        CaFile::load(&path).map_err(Refused::value)
    }
}

/// A text error, for refusals that have no error type of their own.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub(super) String);

/// A value as typed, parsed by the command rather than by clap: clap's errors quote the whole
/// value, and these may carry secrets (a key URI's `pin-value`, a URL's `user:password@`).
#[derive(Clone)]
pub struct RawArg(pub Zeroizing<String>);

impl From<String> for RawArg {
    fn from(s: String) -> Self {
        RawArg(Zeroizing::new(s))
    }
}

impl fmt::Debug for RawArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RawArg(<not shown>)")
    }
}

impl RawArg {
    /// The value as typed.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `--timeout`: seconds each attempt at the token endpoint may take, from connecting to the
/// answer's last byte (1 to 300); a retry has a limit of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout(pub(super) std::time::Duration);

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

/// `rotate-before-days`: the agent rotates the profile's certificate once it has this many days
/// or fewer left (1 to 365).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotateBeforeDays(u16);

impl RotateBeforeDays {
    /// The most days: a certificate lives two years at most, so a year ahead is plenty.
    pub const MAX: u16 = 365;

    /// The number of days.
    pub fn days(self) -> u16 {
        self.0
    }
}

impl FromStr for RotateBeforeDays {
    type Err = Refusal;

    fn from_str(s: &str) -> Result<Self, Refusal> {
        match s.trim().parse::<u16>() {
            Ok(days @ 1..=RotateBeforeDays::MAX) => Ok(RotateBeforeDays(days)),
            _ => Err(Refusal(format!(
                "rotate-before-days '{s}' is not a whole number of days from 1 to {}: the agent rotates the certificate once it has that many days or fewer left",
                RotateBeforeDays::MAX
            ))),
        }
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

/// A key URI as a user wrote it: no `pin-value`, and one private key named.
fn key_ref(text: &str) -> Result<KeyRef, Refused> {
    KeyRef::new(key_uri(text).map_err(Refused::value)?).map_err(Refused::Key)
}

/// Parses a key URI, refusing a `pin-value` wherever it was written.
fn key_uri(text: &str) -> Result<Pkcs11Uri, KeyUriError> {
    let uri: Pkcs11Uri = text.parse()?;
    if uri.pin_value.is_some() {
        return Err(KeyUriError::PinValue);
    }
    Ok(uri)
}
