//! Value types that profiles, flags and the file share: a value as typed (for secrets clap
//! must not echo), the token request timeout, and key URIs as users may write them.

use std::fmt;
use std::str::FromStr;

use zeroize::Zeroizing;

use super::Refusal;
use crate::pkcs11::Pkcs11Uri;
use crate::pkcs11::uri::UriError;

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

/// Why a key URI is refused.
#[derive(Debug, thiserror::Error)]
pub(super) enum KeyUriError {
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

/// Parses a key URI, refusing a `pin-value` wherever it was written.
pub(super) fn key_uri(text: &str) -> Result<Pkcs11Uri, KeyUriError> {
    let uri: Pkcs11Uri = text.parse()?;
    if uri.pin_value.is_some() {
        return Err(KeyUriError::PinValue);
    }
    Ok(uri)
}
