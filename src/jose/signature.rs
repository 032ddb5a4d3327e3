//! Signature formats and verification: ECDSA signatures as raw `r || s` (JWS) or DER (X.509),
//! the [`SignatureForm`] a signature to check is in, and checking it with RustCrypto.

use super::alg::{Alg, Scheme};
use super::key::{Curve, Hash, PublicKey};

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
    /// RSASSA-PKCS1-v1_5 (for certificates only: no algorithm of the table uses it).
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
