//! The algorithm table: everything that differs between ES256 … PS512 (the name, the hash,
//! ECDSA on which curve or RSA-PSS) lives in one row per algorithm ([`Alg::spec`]); the rest of
//! the program asks the table instead of matching on algorithm names.

use std::fmt;

use serde::Serialize;

use super::key::{Curve, Hash, KeyKind};

/// A JWS signature algorithm suitekey signs with: ECDSA or RSASSA-PSS (RFC 7518). A name the
/// user gives is parsed by `Alg`'s `FromStr`, which lives with NetSuite's rules in `netsuite`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alg {
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// ECDSA P-521 with SHA-512.
    ES512,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256, 32-byte salt.
    PS256,
    /// RSASSA-PSS with SHA-384, MGF1-SHA-384, 48-byte salt.
    PS384,
    /// RSASSA-PSS with SHA-512, MGF1-SHA-512, 64-byte salt.
    PS512,
}

/// The signature scheme behind an [`Alg`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// ECDSA on this curve; JWS carries the raw `r || s`.
    Ecdsa(Curve),
    /// RSASSA-PSS, MGF1 with the same hash, salt length = hash length.
    Pss,
}

/// One row of the algorithm table.
#[derive(Debug)]
pub struct AlgSpec {
    /// The JWS `alg` name.
    pub name: &'static str,
    /// The message digest.
    pub hash: Hash,
    /// ECDSA on a curve, or RSA-PSS.
    pub scheme: Scheme,
}

const TABLE: [(Alg, AlgSpec); 6] = [
    (
        Alg::ES256,
        AlgSpec {
            name: "ES256",
            hash: Hash::Sha256,
            scheme: Scheme::Ecdsa(Curve::P256),
        },
    ),
    (
        Alg::ES384,
        AlgSpec {
            name: "ES384",
            hash: Hash::Sha384,
            scheme: Scheme::Ecdsa(Curve::P384),
        },
    ),
    (
        Alg::ES512,
        AlgSpec {
            name: "ES512",
            hash: Hash::Sha512,
            scheme: Scheme::Ecdsa(Curve::P521),
        },
    ),
    (
        Alg::PS256,
        AlgSpec {
            name: "PS256",
            hash: Hash::Sha256,
            scheme: Scheme::Pss,
        },
    ),
    (
        Alg::PS384,
        AlgSpec {
            name: "PS384",
            hash: Hash::Sha384,
            scheme: Scheme::Pss,
        },
    ),
    (
        Alg::PS512,
        AlgSpec {
            name: "PS512",
            hash: Hash::Sha512,
            scheme: Scheme::Pss,
        },
    ),
];

impl Alg {
    /// All six algorithms, EC first.
    pub const ALL: [Alg; 6] = [
        Alg::ES256,
        Alg::ES384,
        Alg::ES512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
    ];

    /// This algorithm's row in the table.
    pub fn spec(self) -> &'static AlgSpec {
        // The table lists every variant, in declaration order.
        &TABLE[self as usize].1
    }

    /// The JWS `alg` header value.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The message digest.
    pub fn hash(self) -> Hash {
        self.spec().hash
    }

    /// ECDSA on a curve or RSA-PSS.
    pub fn scheme(self) -> Scheme {
        self.spec().scheme
    }

    /// The algorithm with this JWS name, in any case and with surrounding spaces ignored, if it
    /// is one of the six. (A name the user gives is parsed by `Alg`'s `FromStr`, in
    /// `netsuite`, which explains NetSuite's refusals.)
    pub fn from_name(name: &str) -> Option<Alg> {
        let upper = name.trim().to_ascii_uppercase();
        Alg::ALL.into_iter().find(|a| a.name() == upper)
    }

    /// Whether the key's type suits the algorithm's scheme (the right curve, or any RSA key),
    /// before any rule on sizes (NetSuite's are in `netsuite`).
    pub fn fits(self, key: &KeyKind) -> bool {
        match (self.scheme(), key) {
            (Scheme::Ecdsa(curve), KeyKind::Ec(have)) => curve == *have,
            (Scheme::Pss, KeyKind::Rsa { .. }) => true,
            _ => false,
        }
    }

    /// Length of a JWS signature for this algorithm, when it does not depend on the key.
    pub fn fixed_signature_len(self) -> Option<usize> {
        match self.scheme() {
            Scheme::Ecdsa(curve) => Some(2 * curve.field_len()),
            Scheme::Pss => None,
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Alg {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}
