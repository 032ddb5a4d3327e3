//! A URI that names one private key: what every command that signs is given.

use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use super::{ObjectType, Pkcs11Uri, UriError};
use crate::pkcs11::Error;

/// A PKCS#11 URI checked to name one private key: its `type` is `private` or absent, `object=`
/// or `id=` names the key, and it has no vendor path attribute (`x-…`), a constraint suitekey
/// cannot honour (RFC 7512 §2.5: such a URI matches nothing). Only [`KeyRef::new`] makes one,
/// so a `KeyRef` is never wrong in these ways; it reads as the URI it holds.
///
/// A `pin-value` is allowed: a program may hold the PIN in a URI it builds. The command line
/// and the config file, where it would be exposed, refuse one as they read the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRef {
    uri: Pkcs11Uri,
}

impl KeyRef {
    /// Checks that `uri` names one private key.
    pub fn new(uri: Pkcs11Uri) -> Result<KeyRef, Error> {
        if let Some(kind) = uri.object_type.filter(|t| *t != ObjectType::Private) {
            return Err(Error::NotAPrivateKey {
                key: uri.redacted(),
                kind: kind.to_string(),
            });
        }
        if uri.object.is_none() && uri.id.is_none() {
            return Err(Error::NoObject(uri.redacted()));
        }
        if let Some((name, _)) = uri.vendor_path.first() {
            return Err(Error::VendorAttribute {
                key: uri.redacted(),
                name: name.clone(),
            });
        }
        Ok(KeyRef { uri })
    }

    /// The URI.
    #[must_use]
    pub fn uri(&self) -> &Pkcs11Uri {
        &self.uri
    }
}

/// Why a text is not a [`KeyRef`].
#[derive(Debug, thiserror::Error)]
pub enum KeyRefError {
    /// Not a PKCS#11 URI suitekey accepts.
    #[error(transparent)]
    Uri(#[from] UriError),
    /// A URI that does not name one private key.
    #[error(transparent)]
    Key(#[from] Error),
}

/// Parses the URI and checks it (see [`KeyRef::new`]).
impl FromStr for KeyRef {
    type Err = KeyRefError;

    fn from_str(text: &str) -> Result<KeyRef, KeyRefError> {
        Ok(KeyRef::new(text.parse()?)?)
    }
}

/// Read-only: every URI attribute can be read, none changed.
impl Deref for KeyRef {
    type Target = Pkcs11Uri;

    fn deref(&self) -> &Pkcs11Uri {
        &self.uri
    }
}

/// The canonical URI, as [`Pkcs11Uri`] writes it (never with the `pin-value`).
impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.uri.fmt(f)
    }
}
