//! A certificate's public key, as its SubjectPublicKeyInfo carries it: read into the
//! [`PublicKey`] suitekey verifies with (or the kind of key it is, when suitekey cannot use
//! it), and written from a token key's public key into a new certificate.

use der::asn1::ObjectIdentifier;
use der::{Decode as _, Encode as _};
use x509_cert::spki::SubjectPublicKeyInfoOwned;

use super::signature::OID_RSASSA_PSS;
use crate::jose::{Curve, KeyKind, PublicKey};

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// The public key in an SPKI, or the kind of key it is when suitekey cannot use it.
pub fn public_key_from_spki(spki: &SubjectPublicKeyInfoOwned) -> Result<PublicKey, KeyKind> {
    let bits = spki.subject_public_key.raw_bytes();
    let oid = spki.algorithm.oid;
    if oid == OID_RSA_ENCRYPTION || oid == OID_RSASSA_PSS {
        let key = rsa::pkcs1::RsaPublicKey::<der::asn1::UintRef<'_>>::from_der(bits)
            .map_err(|_| KeyKind::Other("RSA with a malformed public key".into()))?;
        return Ok(PublicKey::Rsa {
            modulus: trim_zeros(key.modulus.as_bytes()),
            exponent: trim_zeros(key.public_exponent.as_bytes()),
        });
    }
    if oid == OID_EC_PUBLIC_KEY {
        let curve_oid = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        return match curve_oid.as_ref().map(|c| (c, Curve::from_oid(c))) {
            Some((_, Some(curve))) => Ok(PublicKey::Ec {
                curve,
                point: bits.to_vec(),
            }),
            Some((other, None)) => Err(KeyKind::EcOther(crate::jose::curve_name(other))),
            None => Err(KeyKind::EcOther("with explicit parameters".into())),
        };
    }
    Err(KeyKind::Other(algorithm_name(&oid)))
}

/// The SPKI for a public key, as a certificate carries it.
pub fn spki_of(key: &PublicKey) -> Result<SubjectPublicKeyInfoOwned, der::Error> {
    let (algorithm, bits) = match key {
        PublicKey::Ec { curve, point } => (
            x509_cert::spki::AlgorithmIdentifierOwned {
                oid: OID_EC_PUBLIC_KEY,
                parameters: Some(der::Any::encode_from(&curve.oid())?),
            },
            point.clone(),
        ),
        PublicKey::Rsa { modulus, exponent } => (
            x509_cert::spki::AlgorithmIdentifierOwned {
                oid: OID_RSA_ENCRYPTION,
                parameters: Some(der::asn1::Null.into()),
            },
            rsa::pkcs1::RsaPublicKey {
                modulus: der::asn1::UintRef::new(modulus)?,
                public_exponent: der::asn1::UintRef::new(exponent)?,
            }
            .to_der()?,
        ),
    };
    Ok(SubjectPublicKeyInfoOwned {
        algorithm,
        subject_public_key: der::asn1::BitString::from_bytes(&bits)?,
    })
}

fn trim_zeros(be: &[u8]) -> Vec<u8> {
    let start = be.iter().position(|b| *b != 0).unwrap_or(be.len());
    be[start..].to_vec()
}

/// Names the key algorithms people most often try to upload by mistake.
fn algorithm_name(oid: &ObjectIdentifier) -> String {
    let known = [
        ("1.3.101.112", "Ed25519"),
        ("1.3.101.113", "Ed448"),
        ("1.2.840.10040.4.1", "DSA"),
    ];
    known
        .iter()
        .find(|(o, _)| oid.to_string() == *o)
        .map_or_else(|| format!("key algorithm {oid}"), |(_, n)| (*n).to_owned())
}
