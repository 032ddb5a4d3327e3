//! Compact JWS assembly: base64url, the [`Signer`] a key implements, and the signing input
//! signed and joined into `header.claims.signature`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use super::alg::Alg;
use super::key::PublicKey;
use crate::kind::{HasKind, Kind};

/// base64url without padding, as JOSE uses everywhere.
pub fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Something that makes JWS signatures with a key it never reveals.
///
/// The PKCS#11 key is the implementation that matters; keeping the trait this small is what
/// lets the NetSuite layer stay ignorant of tokens and sessions.
pub trait Signer {
    /// Why a signature could not be made; its kind (a refused PIN, a failing token) is what
    /// the layers above keep when they carry it as a [`SigningError`].
    type Error: std::error::Error + HasKind + Send + Sync + 'static;

    /// The algorithm every signature is made with.
    fn alg(&self) -> Alg;

    /// The public half of the signing key.
    fn public_key(&self) -> Result<PublicKey, Self::Error>;

    /// The JWS signature over `signing_input`: raw `r || s` for ES*, the PSS block for PS*.
    fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, Self::Error>;
}

/// Why a signer could not sign, carried by layers that do not know the signer's error type
/// (the assertion, the exchange, a certificate): its kind, and the signer's own error, which it
/// shows as (display and causes) and which [`SigningError::downcast_ref`] gives back to a
/// layer that knows the signer (the agent, which tells a lost session from a refused PIN).
#[derive(Debug)]
pub struct SigningError {
    kind: Kind,
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl SigningError {
    /// Carries `error`, keeping its kind.
    pub fn new<E: std::error::Error + HasKind + Send + Sync + 'static>(error: E) -> SigningError {
        SigningError {
            kind: error.kind(),
            source: Box::new(error),
        }
    }

    /// The signer's error, if it is a `T`.
    pub fn downcast_ref<T: std::error::Error + 'static>(&self) -> Option<&T> {
        self.source.downcast_ref()
    }
}

impl fmt::Display for SigningError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.source.fmt(f)
    }
}

impl std::error::Error for SigningError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.source()
    }
}

impl HasKind for SigningError {
    fn kind(&self) -> Kind {
        self.kind
    }
}

/// Why a compact JWS could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum JwsError {
    /// The header or claims could not be serialized (a bug, not bad input).
    #[error("cannot serialize the JWS {part} as JSON")]
    Json {
        /// `header` or `claims`.
        part: &'static str,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// The signer failed.
    #[error("signing the JWS failed")]
    Sign(#[source] SigningError),
    /// The signer returned a signature of the wrong size for the algorithm.
    #[error(
        "the {alg} signature is {got} bytes, expected {expected}; the PKCS#11 module returned a malformed signature"
    )]
    SignatureLength {
        /// The algorithm.
        alg: Alg,
        /// The expected length.
        expected: usize,
        /// The length returned.
        got: usize,
    },
}

/// Serializes `header` and `claims`, signs them with `signer`, and returns the compact JWS.
pub fn compact_jws<S: Signer>(
    header: &impl Serialize,
    claims: &impl Serialize,
    signer: &S,
) -> Result<String, JwsError> {
    let mut out = format!(
        "{}.{}",
        b64url(&to_json("header", header)?),
        b64url(&to_json("claims", claims)?)
    );
    let signature = signer
        .sign(out.as_bytes())
        .map_err(|e| JwsError::Sign(SigningError::new(e)))?;
    let expected = signer.alg().fixed_signature_len();
    if let Some(expected) = expected.filter(|e| *e != signature.len()) {
        return Err(JwsError::SignatureLength {
            alg: signer.alg(),
            expected,
            got: signature.len(),
        });
    }
    out.push('.');
    out.push_str(&b64url(&signature));
    Ok(out)
}

impl HasKind for JwsError {
    /// The signer's kind; anything else here is the token's (a malformed signature) or a bug.
    fn kind(&self) -> Kind {
        match self {
            JwsError::Sign(e) => e.kind(),
            JwsError::Json { .. } | JwsError::SignatureLength { .. } => Kind::Token,
        }
    }
}

fn to_json(part: &'static str, value: &impl Serialize) -> Result<Vec<u8>, JwsError> {
    serde_json::to_vec(value).map_err(|source| JwsError::Json { part, source })
}
