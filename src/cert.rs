//! X.509 certificates for NetSuite: reading one (PEM or DER), the certificate id NetSuite will
//! show for it, and its public key.

use std::path::Path;
use std::time::SystemTime;

use der::asn1::ObjectIdentifier;
use der::{Decode as _, DecodePem as _, Encode as _, EncodePem as _};
use x509_cert::spki::SubjectPublicKeyInfoOwned;

use crate::jose::{Curve, KeyKind, PublicKey};
use crate::netsuite::CertificateId;

/// Largest certificate file suitekey reads; real ones are a few KiB.
const MAX_CERT_FILE: u64 = 1 << 20;

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// Also used as an SPKI algorithm, for RSA keys restricted to PSS (`openssl -newkey rsa-pss`).
const OID_RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");

/// Why a certificate could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read certificate file '{path}': {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than any certificate.
    #[error(
        "certificate file '{path}' is {size} bytes, too large for a certificate; give the PEM or DER certificate NetSuite gets"
    )]
    TooLarge {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
    },
    /// The bytes are not an X.509 certificate.
    #[error(
        "{what} is not an X.509 certificate in PEM ('-----BEGIN CERTIFICATE-----') or DER form: {reason}"
    )]
    Parse {
        /// What was read (a file name, or "the token's certificate object").
        what: String,
        /// The parser's complaint.
        reason: String,
    },
}

/// A parsed X.509 certificate together with its exact DER bytes (which the certificate id
/// hashes, so they are kept as read, never re-encoded).
#[derive(Clone, Debug)]
pub struct Certificate {
    der: Vec<u8>,
    inner: x509_cert::Certificate,
}

impl Certificate {
    /// Parses a certificate from PEM or DER bytes; `what` names the source in errors.
    pub fn from_bytes(bytes: &[u8], what: &str) -> Result<Certificate, Error> {
        let parse_err = |reason: String| Error::Parse {
            what: what.to_owned(),
            reason,
        };
        let inner = if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
            x509_cert::Certificate::from_pem(bytes).map_err(|e| parse_err(e.to_string()))?
        } else {
            x509_cert::Certificate::from_der(bytes).map_err(|e| parse_err(e.to_string()))?
        };
        let der = inner.to_der().map_err(|e| parse_err(e.to_string()))?;
        Ok(Certificate { der, inner })
    }

    /// Reads a certificate file (PEM or DER).
    pub fn load(path: &Path) -> Result<Certificate, Error> {
        let shown = path.display().to_string();
        let read_err = |source| Error::Read {
            path: shown.clone(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read_err)?.len();
        if size > MAX_CERT_FILE {
            return Err(Error::TooLarge { path: shown, size });
        }
        let bytes = std::fs::read(path).map_err(read_err)?;
        Certificate::from_bytes(&bytes, &format!("'{shown}'"))
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The PEM text, as uploaded to NetSuite.
    pub fn to_pem(&self) -> Result<String, der::Error> {
        self.inner.to_pem(der::pem::LineEnding::LF)
    }

    /// The id NetSuite shows for this certificate once uploaded (the JOSE `x5t#S256`).
    pub fn certificate_id(&self) -> CertificateId {
        CertificateId::of_certificate(&self.der)
    }

    /// The subject, as an RFC 4514 string.
    pub fn subject(&self) -> String {
        self.inner.tbs_certificate().subject().to_string()
    }

    /// Start of the validity period.
    pub fn not_before(&self) -> SystemTime {
        self.inner
            .tbs_certificate()
            .validity()
            .not_before
            .to_system_time()
    }

    /// End of the validity period.
    pub fn not_after(&self) -> SystemTime {
        self.inner
            .tbs_certificate()
            .validity()
            .not_after
            .to_system_time()
    }

    /// Whole days from `now` until the certificate expires (negative once it has).
    pub fn days_left(&self, now: SystemTime) -> i64 {
        signed_secs(now, self.not_after()).div_euclid(86_400)
    }

    /// The certificate's key type and size or curve, including kinds NetSuite refuses.
    pub fn key_kind(&self) -> KeyKind {
        match self.public_key() {
            Ok(key) => key.kind(),
            Err(kind) => kind,
        }
    }

    /// The public key, when it is an RSA key or an EC key on a curve NetSuite accepts;
    /// otherwise what kind of key it is.
    pub fn public_key(&self) -> Result<PublicKey, KeyKind> {
        public_key_from_spki(self.inner.tbs_certificate().subject_public_key_info())
    }

    /// The underlying x509-cert certificate.
    pub fn x509(&self) -> &x509_cert::Certificate {
        &self.inner
    }
}

/// `b - a` in seconds, negative when `b` is earlier.
pub(crate) fn signed_secs(a: SystemTime, b: SystemTime) -> i64 {
    match b.duration_since(a) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

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
