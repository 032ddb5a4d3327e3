//! Reading a certificate: a PEM or DER file (no larger than any certificate), its exact DER
//! bytes (which the certificate id hashes), and what suitekey asks of it: subject, validity,
//! certificate id and public key.

use std::path::Path;
use std::time::SystemTime;

use der::{Decode as _, EncodePem as _};

use super::spki::public_key_from_spki;
use super::time::signed_secs;
use crate::jose::{KeyKind, PublicKey};
use crate::kind::{HasKind, Kind};
use crate::netsuite::CertificateId;

/// Largest certificate file suitekey reads; real ones are a few KiB.
const MAX_CERT_FILE: u64 = 1 << 20;

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

impl HasKind for Error {
    /// A certificate file is the user's input.
    fn kind(&self) -> Kind {
        Kind::Usage
    }
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
        // The id NetSuite shows hashes the bytes as uploaded, and der would drop an explicitly
        // encoded DEFAULT on re-encoding: keep what was read, never a re-encoding.
        let der = if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
            let (label, der) = der::pem::decode_vec(bytes).map_err(|e| parse_err(e.to_string()))?;
            if label != "CERTIFICATE" {
                return Err(parse_err(format!(
                    "it holds a PEM '{label}', not a CERTIFICATE"
                )));
            }
            der
        } else {
            bytes.to_vec()
        };
        let inner = x509_cert::Certificate::from_der(&der).map_err(|e| parse_err(e.to_string()))?;
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

    /// The to-be-signed part exactly as read, which the self-signature covers.
    pub(super) fn tbs_bytes(&self) -> Result<&[u8], der::Error> {
        let mut reader = der::SliceReader::new(&self.der)?;
        der::Header::decode(&mut reader)?;
        der::Reader::tlv_bytes(&mut reader)
    }

    /// The underlying x509-cert certificate.
    pub fn x509(&self) -> &x509_cert::Certificate {
        &self.inner
    }
}
