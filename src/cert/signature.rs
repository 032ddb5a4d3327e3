//! How a certificate is signed: the signature algorithms suitekey makes certificates with
//! (ECDSA, RSASSA-PSS with NetSuite's parameters) and the algorithm identifiers that name
//! them, and reading a certificate's algorithm back (PSS parameters included) to verify its
//! self-signature.

use der::asn1::ObjectIdentifier;
use der::{Decode as _, Encode as _};
use x509_cert::spki::AlgorithmIdentifierOwned;

use crate::jose::{Alg, Hash, Scheme, SignatureForm};

const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OID_ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const OID_ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const OID_SHA256_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const OID_SHA384_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const OID_SHA512_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const OID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const OID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const OID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
/// Also used as an SPKI algorithm, for RSA keys restricted to PSS (`openssl -newkey rsa-pss`).
pub(super) const OID_RSASSA_PSS: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");

/// How the certificate itself is signed (the key's type decides what is possible).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertSignature {
    /// ecdsa-with-SHA256/384/512, DER signature.
    Ecdsa(Hash),
    /// RSASSA-PSS with MGF1 over the same hash and salt = hash length (NetSuite's recipe).
    Pss(Hash),
    /// sha256WithRSAEncryption (RSASSA-PKCS1-v1_5).
    Pkcs1Sha256,
}

impl CertSignature {
    /// The certificate signature matching a JWS algorithm: same hash, ECDSA or PSS.
    pub fn for_alg(alg: Alg) -> CertSignature {
        match alg.scheme() {
            Scheme::Ecdsa(_) => CertSignature::Ecdsa(alg.hash()),
            Scheme::Pss => CertSignature::Pss(alg.hash()),
        }
    }

    pub(super) fn algorithm_identifier(self) -> Result<AlgorithmIdentifierOwned, der::Error> {
        let plain = |oid| AlgorithmIdentifierOwned {
            oid,
            parameters: None,
        };
        Ok(match self {
            CertSignature::Ecdsa(Hash::Sha256) => plain(OID_ECDSA_SHA256),
            CertSignature::Ecdsa(Hash::Sha384) => plain(OID_ECDSA_SHA384),
            CertSignature::Ecdsa(Hash::Sha512) => plain(OID_ECDSA_SHA512),
            CertSignature::Pss(hash) => {
                let id = match hash {
                    Hash::Sha256 => rsa::pss::get_default_pss_signature_algo_id::<sha2::Sha256>(),
                    Hash::Sha384 => rsa::pss::get_default_pss_signature_algo_id::<sha2::Sha384>(),
                    Hash::Sha512 => rsa::pss::get_default_pss_signature_algo_id::<sha2::Sha512>(),
                };
                id.map_err(|_| der::Error::from(der::ErrorKind::Failed))?
            }
            CertSignature::Pkcs1Sha256 => AlgorithmIdentifierOwned {
                oid: OID_SHA256_RSA,
                parameters: Some(der::asn1::Null.into()),
            },
        })
    }

    /// The layout of this signature, for verification.
    pub(super) fn form(self) -> SignatureForm {
        match self {
            CertSignature::Ecdsa(hash) => SignatureForm::Ecdsa { hash, der: true },
            CertSignature::Pss(hash) => SignatureForm::Pss {
                hash,
                salt_len: hash.output_len(),
            },
            CertSignature::Pkcs1Sha256 => SignatureForm::Pkcs1(Hash::Sha256),
        }
    }

    /// Reads a certificate's signature algorithm; `Err` names one suitekey cannot check.
    pub(super) fn of(algorithm: &AlgorithmIdentifierOwned) -> Result<SignatureForm, String> {
        let table = [
            (OID_ECDSA_SHA256, CertSignature::Ecdsa(Hash::Sha256)),
            (OID_ECDSA_SHA384, CertSignature::Ecdsa(Hash::Sha384)),
            (OID_ECDSA_SHA512, CertSignature::Ecdsa(Hash::Sha512)),
            (OID_SHA256_RSA, CertSignature::Pkcs1Sha256),
        ];
        if let Some((_, sig)) = table.iter().find(|(oid, _)| *oid == algorithm.oid) {
            return Ok(sig.form());
        }
        let pkcs1 = [
            (OID_SHA384_RSA, Hash::Sha384),
            (OID_SHA512_RSA, Hash::Sha512),
        ];
        if let Some((_, hash)) = pkcs1.iter().find(|(oid, _)| *oid == algorithm.oid) {
            return Ok(SignatureForm::Pkcs1(*hash));
        }
        if algorithm.oid == OID_RSASSA_PSS {
            return pss_form(algorithm);
        }
        Err(format!("signature algorithm {}", algorithm.oid))
    }
}

/// The hash and salt length in RSASSA-PSS parameters (MGF1 is assumed to use the same hash).
fn pss_form(algorithm: &AlgorithmIdentifierOwned) -> Result<SignatureForm, String> {
    let encoded = algorithm
        .parameters
        .as_ref()
        .ok_or("RSASSA-PSS without parameters")?
        .to_der()
        .map_err(|e| format!("RSASSA-PSS parameters: {e}"))?;
    let params = rsa::pkcs1::RsaPssParamsOwned::from_der(&encoded)
        .map_err(|e| format!("RSASSA-PSS parameters: {e}"))?;
    let hash = [
        (OID_SHA256, Hash::Sha256),
        (OID_SHA384, Hash::Sha384),
        (OID_SHA512, Hash::Sha512),
    ]
    .into_iter()
    .find(|(oid, _)| *oid == params.hash.oid)
    .map(|(_, h)| h)
    .ok_or_else(|| format!("RSASSA-PSS with hash {}", params.hash.oid))?;
    Ok(SignatureForm::Pss {
        hash,
        salt_len: usize::from(params.salt_len),
    })
}
