//! The PIN a URI may carry in its `pin-value` attribute.

use std::fmt;

use secrecy::{ExposeSecret as _, SecretString};

/// The user PIN of a URI's `pin-value`: zeroized when dropped and never shown (`Debug` writes
/// `<redacted>`, and nothing else formats it), so that a [`super::Pkcs11Uri`] holding one can
/// derive `Debug`, `Clone` and `PartialEq` like any other value.
#[derive(Clone)]
pub struct PinValue(SecretString);

impl PinValue {
    /// Holds a decoded `pin-value`.
    pub(super) fn new(pin: SecretString) -> PinValue {
        PinValue(pin)
    }

    /// The PIN, to log in with.
    #[must_use]
    pub fn pin(&self) -> &SecretString {
        &self.0
    }
}

impl fmt::Debug for PinValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Compares the PINs' text: two URIs are equal only if they log in with the same PIN.
impl PartialEq for PinValue {
    fn eq(&self, other: &Self) -> bool {
        self.0.expose_secret() == other.0.expose_secret()
    }
}

impl Eq for PinValue {}
