//! JOSE: the six signature algorithms NetSuite accepts, base64url, and compact JWS assembly.
//!
//! Everything that differs between ES256 … PS512 lives in one table ([`Alg::spec`]); the rest of
//! the program asks the table instead of matching on algorithm names.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use der::asn1::ObjectIdentifier;
use serde::Serialize;
use sha2::Digest as _;

use crate::kind::{HasKind, Kind};

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

    /// Digest length in bytes; also the PSS salt length NetSuite expects.
    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }
}

/// An elliptic curve NetSuite accepts for certificates and ES* assertions.
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
    /// Every accepted curve, in order of size.
    pub const ALL: [Curve; 3] = [Curve::P256, Curve::P384, Curve::P521];

    /// The curve's name as NIST and NetSuite's documentation write it.
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

    /// The curve with this named-curve OID, if NetSuite accepts it.
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

/// What kind of key a token holds, as far as NetSuite's rules care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// An EC key on a curve NetSuite accepts.
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

/// Names a few curves NetSuite refuses, so the refusal says which one the key is on.
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

/// A JWS algorithm NetSuite accepts for client assertions.
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
    /// before NetSuite's rules on sizes.
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

/// base64url without padding, as JOSE uses everywhere.
pub fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// A public key, as the certificate uploaded to NetSuite carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    /// An EC point on a curve NetSuite accepts.
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

/// Why an ECDSA signature from a module could not be turned into JOSE form.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "the module returned a {len}-byte ECDSA signature that is neither raw r||s ({raw} bytes) nor DER for {curve}"
)]
pub struct EcdsaFormatError {
    /// Length of what the module returned.
    pub len: usize,
    /// The raw length expected.
    pub raw: usize,
    /// The curve's name.
    pub curve: &'static str,
}

/// Normalizes an ECDSA signature to JOSE's raw `r || s`, each padded to the field size.
///
/// PKCS#11 says `CKM_ECDSA` returns raw `r || s`, but some modules return DER; which one it is
/// is decided by length and a strict DER parse, never by the first byte alone.
pub fn ecdsa_to_raw(sig: &[u8], curve: Curve) -> Result<Vec<u8>, EcdsaFormatError> {
    let n = curve.field_len();
    if sig.len() == 2 * n {
        return Ok(sig.to_vec());
    }
    let err = || EcdsaFormatError {
        len: sig.len(),
        raw: 2 * n,
        curve: curve.name(),
    };
    let parsed: EcdsaSigValue = der::Decode::from_der(sig).map_err(|_| err())?;
    let mut raw = vec![0u8; 2 * n];
    for (int, half) in [parsed.r, parsed.s].iter().zip(raw.chunks_mut(n)) {
        let bytes = int.as_bytes();
        let start = n.checked_sub(bytes.len()).ok_or_else(err)?;
        half[start..].copy_from_slice(bytes);
    }
    Ok(raw)
}

/// Encodes a raw `r || s` ECDSA signature as the DER `Ecdsa-Sig-Value` X.509 wants.
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Result<Vec<u8>, der::Error> {
    let (r, s) = raw.split_at(raw.len() / 2);
    let value = EcdsaSigValue {
        r: der::asn1::UintRef::new(r)?,
        s: der::asn1::UintRef::new(s)?,
    };
    der::Encode::to_der(&value)
}

/// `Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` (RFC 3279).
#[derive(der::Sequence)]
struct EcdsaSigValue<'a> {
    r: der::asn1::UintRef<'a>,
    s: der::asn1::UintRef<'a>,
}

/// How a signature to verify is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureForm {
    /// ECDSA over this hash of the message: raw `r || s` (JWS) or DER (X.509).
    Ecdsa {
        /// The message digest.
        hash: Hash,
        /// DER `Ecdsa-Sig-Value` rather than raw `r || s`.
        der: bool,
    },
    /// RSASSA-PSS with MGF1 over the same hash.
    Pss {
        /// The message digest (and MGF1's).
        hash: Hash,
        /// Salt length in bytes.
        salt_len: usize,
    },
    /// RSASSA-PKCS1-v1_5 (for certificates only; NetSuite refuses it for assertions).
    Pkcs1(Hash),
}

impl SignatureForm {
    /// The form of a JWS signature made with `alg`.
    pub fn jws(alg: Alg) -> SignatureForm {
        let hash = alg.hash();
        match alg.scheme() {
            Scheme::Ecdsa(_) => SignatureForm::Ecdsa { hash, der: false },
            Scheme::Pss => SignatureForm::Pss {
                hash,
                salt_len: hash.output_len(),
            },
        }
    }
}

/// Why a signature did not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// The signature is not the key's over this message.
    #[error("the signature does not verify with the public key")]
    Invalid,
    /// The key cannot make signatures of this form.
    #[error("an {key} key cannot make a {form:?} signature")]
    Mismatch {
        /// The key's type.
        key: String,
        /// The form asked for.
        form: SignatureForm,
    },
    /// The public key itself is malformed.
    #[error("the public key is malformed: {0}")]
    BadKey(String),
}

/// ECDSA verification over a prehash, for one RustCrypto curve crate.
macro_rules! ecdsa_verify {
    ($curve:ident, $point:expr, $prehash:expr, $raw:expr) => {{
        use $curve::ecdsa::signature::hazmat::PrehashVerifier as _;
        let key = $curve::ecdsa::VerifyingKey::from_sec1_bytes($point)
            .map_err(|e| VerifyError::BadKey(e.to_string()))?;
        let sig = $curve::ecdsa::Signature::from_slice($raw).map_err(|_| VerifyError::Invalid)?;
        key.verify_prehash($prehash, &sig)
            .map_err(|_| VerifyError::Invalid)
    }};
}

impl PublicKey {
    /// Checks that `signature` is this key's signature over `message` in `form`.
    ///
    /// This is RustCrypto, not the token: the emulator and `check` verify with a library
    /// independent of the one that signed.
    pub fn verify(
        &self,
        form: SignatureForm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), VerifyError> {
        match (self, form) {
            (PublicKey::Ec { curve, point }, SignatureForm::Ecdsa { hash, der }) => {
                let raw = if der {
                    ecdsa_to_raw(signature, *curve).map_err(|_| VerifyError::Invalid)?
                } else {
                    signature.to_vec()
                };
                let prehash = hash.digest(message);
                match curve {
                    Curve::P256 => ecdsa_verify!(p256, point, &prehash, &raw),
                    Curve::P384 => ecdsa_verify!(p384, point, &prehash, &raw),
                    Curve::P521 => ecdsa_verify!(p521, point, &prehash, &raw),
                }
            }
            (
                PublicKey::Rsa { modulus, exponent },
                SignatureForm::Pss { .. } | SignatureForm::Pkcs1(_),
            ) => {
                let key = rsa::PublicKey::new(
                    rsa::BoxedUint::from_be_slice_vartime(modulus),
                    rsa::BoxedUint::from_be_slice_vartime(exponent),
                )
                .map_err(|e| VerifyError::BadKey(e.to_string()))?;
                match form.hash() {
                    Hash::Sha256 => rsa_verify::<sha2::Sha256>(key, form, message, signature),
                    Hash::Sha384 => rsa_verify::<sha2::Sha384>(key, form, message, signature),
                    Hash::Sha512 => rsa_verify::<sha2::Sha512>(key, form, message, signature),
                }
            }
            (key, form) => Err(VerifyError::Mismatch {
                key: key.kind().to_string(),
                form,
            }),
        }
    }

    /// The key's type and size, for NetSuite's rules.
    pub fn kind(&self) -> KeyKind {
        match self {
            PublicKey::Ec { curve, .. } => KeyKind::Ec(*curve),
            PublicKey::Rsa { modulus, .. } => KeyKind::Rsa {
                bits: rsa::BoxedUint::from_be_slice_vartime(modulus).bit_width() as usize,
            },
        }
    }
}

impl SignatureForm {
    fn hash(self) -> Hash {
        match self {
            SignatureForm::Ecdsa { hash, .. }
            | SignatureForm::Pss { hash, .. }
            | SignatureForm::Pkcs1(hash) => hash,
        }
    }
}

fn rsa_verify<D>(
    key: rsa::PublicKey,
    form: SignatureForm,
    message: &[u8],
    signature: &[u8],
) -> Result<(), VerifyError>
where
    D: sha2::Digest + sha2::digest::FixedOutputReset + rsa::pkcs8::AssociatedOid,
{
    use rsa::signature::Verifier as _;
    let ok = match form {
        SignatureForm::Pss { salt_len, .. } => {
            let sig = rsa::pss::Signature::try_from(signature).map_err(|_| VerifyError::Invalid)?;
            rsa::pss::VerifyingKey::<D>::new_with_salt_len(key, salt_len).verify(message, &sig)
        }
        _ => {
            let sig =
                rsa::pkcs1v15::Signature::try_from(signature).map_err(|_| VerifyError::Invalid)?;
            rsa::pkcs1v15::VerifyingKey::<D>::new(key).verify(message, &sig)
        }
    };
    ok.map_err(|_| VerifyError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_rows_match_their_variants() {
        for alg in Alg::ALL {
            assert_eq!(alg.name(), format!("{alg:?}"));
            assert_eq!(alg.name().parse::<Alg>(), Ok(alg));
        }
    }

    #[test]
    fn ecdsa_der_and_raw_convert_both_ways() {
        // r has a leading zero byte to strip and s a high bit that DER must pad.
        let mut raw = vec![0u8; 64];
        raw[1] = 0x12;
        raw[31] = 0x34;
        raw[32] = 0x80;
        raw[63] = 0x01;
        let der = ecdsa_raw_to_der(&raw).unwrap();
        assert_eq!(der[0], 0x30);
        assert_eq!(ecdsa_to_raw(&der, Curve::P256).unwrap(), raw);
        assert_eq!(ecdsa_to_raw(&raw, Curve::P256).unwrap(), raw);
        assert!(ecdsa_to_raw(&raw[..63], Curve::P256).is_err());
        // A P-521 signature in DER whose integers are 66 bytes long.
        let raw521: Vec<u8> = (0..132)
            .map(|i| if i % 66 == 0 { 1 } else { i as u8 })
            .collect();
        let der = ecdsa_raw_to_der(&raw521).unwrap();
        assert_eq!(ecdsa_to_raw(&der, Curve::P521).unwrap(), raw521);
    }

    /// A signer's failure in tests.
    #[derive(Debug, thiserror::Error)]
    #[error("no key")]
    struct NoKey;

    impl HasKind for NoKey {
        fn kind(&self) -> Kind {
            Kind::Token
        }
    }

    struct Fixed(Vec<u8>, Alg);
    impl Signer for Fixed {
        type Error = NoKey;
        fn alg(&self) -> Alg {
            self.1
        }
        fn public_key(&self) -> Result<PublicKey, Self::Error> {
            Err(NoKey)
        }
        fn sign(&self, _: &[u8]) -> Result<Vec<u8>, Self::Error> {
            Ok(self.0.clone())
        }
    }

    #[test]
    fn compact_jws_has_three_base64url_parts_and_checks_signature_length() {
        let jws = compact_jws(
            &serde_json::json!({"a": 1}),
            &serde_json::json!({"b": "?"}),
            &Fixed(vec![0xfb; 64], Alg::ES256),
        )
        .unwrap();
        let parts: Vec<&str> = jws.split('.').collect();
        assert_eq!(parts, ["eyJhIjoxfQ", "eyJiIjoiPyJ9", &b64url(&[0xfb; 64])]);
        let err = compact_jws(&1, &2, &Fixed(vec![1; 63], Alg::ES256)).unwrap_err();
        assert!(err.to_string().contains("63 bytes, expected 64"));
    }
}
