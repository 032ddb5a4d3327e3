//! JOSE: the six JWS signature algorithms suitekey signs with (ES256 … PS512, RFC 7518), the
//! hashes, curves and keys behind them, compact JWS assembly, and signature verification.
//!
//! A generic layer: which of these NetSuite accepts, and for which keys, is `netsuite`'s.
//!
//! - `alg`: the algorithm table ([`Alg`], [`AlgSpec`], [`Scheme`]);
//! - `key`: [`Hash`](enum@Hash), [`Curve`], [`KeyKind`], [`PublicKey`];
//! - `jws`: [`Signer`], [`SigningError`], [`compact_jws`], [`b64url`];
//! - `signature`: ECDSA raw and DER forms, [`SignatureForm`], [`PublicKey::verify`].

mod alg;
mod jws;
mod key;
mod signature;

pub use alg::{Alg, AlgSpec, Scheme};
pub use jws::{JwsError, Signer, SigningError, b64url, compact_jws};
pub use key::{Curve, Hash, KeyKind, PublicKey, curve_name};
pub use signature::{EcdsaFormatError, SignatureForm, VerifyError, ecdsa_raw_to_der, ecdsa_to_raw};

#[cfg(test)]
mod tests;
