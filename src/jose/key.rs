//! Hashes, curves and keys: what an algorithm hashes with, the curves of the ES* algorithms,
//! the kind of key a token holds, and a public key as a certificate carries it.

use std::fmt;

use der::asn1::ObjectIdentifier;
use sha2::Digest as _;

/// A hash function used by a JWS algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    /// SHA-256 (32-byte digest).
    Sha256,
    /// SHA-384 (48-byte digest).
    Sha384,
    /// SHA-512 (64-byte digest).
    Sha512,
}

impl Hash {
    /// The digest of `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Hash::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Hash::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    /// The hash's name, e.g. `SHA-256`.
    pub fn name(self) -> &'static str {
        match self {
            Hash::Sha256 => "SHA-256",
            Hash::Sha384 => "SHA-384",
            Hash::Sha512 => "SHA-512",
        }
    }

    /// Digest length in bytes; also the salt length of the PS* algorithms (RFC 7518).
    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }
}

/// An elliptic curve of the ES* algorithms (RFC 7518): P-256, P-384 or P-521.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    /// NIST P-256 (secp256r1), for ES256.
    P256,
    /// NIST P-384 (secp384r1), for ES384.
    P384,
    /// NIST P-521 (secp521r1), for ES512.
    P521,
}

impl Curve {
    /// Every ES* curve, in order of size.
    pub const ALL: [Curve; 3] = [Curve::P256, Curve::P384, Curve::P521];

    /// The curve's name as NIST writes it.
    pub fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
        }
    }

    /// The named-curve object identifier found in `CKA_EC_PARAMS` and X.509 SPKIs.
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            Curve::P256 => ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7"),
            Curve::P384 => ObjectIdentifier::new_unwrap("1.3.132.0.34"),
            Curve::P521 => ObjectIdentifier::new_unwrap("1.3.132.0.35"),
        }
    }

    /// The curve with this named-curve OID, if it is one of the three.
    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Curve> {
        Curve::ALL.into_iter().find(|c| c.oid() == *oid)
    }

    /// Size of one field element (and so of `r` and of `s`) in bytes.
    pub fn field_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }

    /// The curve's size in bits, as PKCS#11 states EC key sizes.
    pub fn bits(self) -> usize {
        match self {
            Curve::P256 => 256,
            Curve::P384 => 384,
            Curve::P521 => 521,
        }
    }
}

/// What kind of key a token holds, as far as choosing an algorithm (and the rules on keys)
/// care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// An EC key on one of the ES* curves.
    Ec(Curve),
    /// An EC key on some other curve (named by OID or description).
    EcOther(String),
    /// An RSA key with a modulus of this many bits.
    Rsa {
        /// Modulus length in bits.
        bits: usize,
    },
    /// Any other key type (EdDSA, DSA, …), by name.
    Other(String),
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyKind::Ec(c) => write!(f, "EC {}", c.name()),
            KeyKind::EcOther(c) => write!(f, "EC {c}"),
            KeyKind::Rsa { bits } => write!(f, "RSA {bits}"),
            KeyKind::Other(name) => f.write_str(name),
        }
    }
}

/// Names a few curves other than the ES* ones, so that a refusal says which one a key is on.
pub fn curve_name(oid: &ObjectIdentifier) -> String {
    let known = [
        ("1.3.132.0.33", "P-224"),
        ("1.3.132.0.10", "secp256k1"),
        ("1.2.840.10045.3.1.1", "P-192"),
    ];
    known
        .iter()
        .find(|(o, _)| oid.to_string() == *o)
        .map_or_else(|| format!("curve {oid}"), |(_, n)| (*n).to_owned())
}

/// A public key, as a certificate carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    /// An EC point on one of the ES* curves.
    Ec {
        /// The curve.
        curve: Curve,
        /// The SEC1 uncompressed point `04 || x || y`.
        point: Vec<u8>,
    },
    /// An RSA public key.
    Rsa {
        /// The modulus, big-endian.
        modulus: Vec<u8>,
        /// The public exponent, big-endian.
        exponent: Vec<u8>,
    },
}

impl PublicKey {
    /// The key's type and size, as the rules on keys ask for it.
    pub fn kind(&self) -> KeyKind {
        match self {
            PublicKey::Ec { curve, .. } => KeyKind::Ec(*curve),
            PublicKey::Rsa { modulus, .. } => KeyKind::Rsa {
                bits: rsa::BoxedUint::from_be_slice_vartime(modulus).bit_width() as usize,
            },
        }
    }
}
