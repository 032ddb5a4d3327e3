//! Building a self-signed certificate around a token key: x509-cert's builder makes the
//! to-be-signed part (with the [`SelfSignedLeaf`] profile and the key's SPKI and signature
//! algorithm), the token signs it, and the signature is verified before the certificate is
//! handed out.

use std::time::{Duration, SystemTime};

use der::Encode as _;
use x509_cert::TbsCertificate;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder as _, CertificateBuilder};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, KeyUsages, SubjectKeyIdentifier,
};
use x509_cert::ext::{Extension, ToExtension as _};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{
    AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, EncodePublicKey,
    SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef,
};
use x509_cert::time::{Time, Validity};

use super::certificate::Certificate;
use super::signature::CertSignature;
use super::spki::spki_of;
use crate::jose::{PublicKey, SigningError, VerifyError};
use crate::kind::{HasKind, Kind};
use crate::netsuite::ValidityDays;

/// What goes into a new self-signed certificate.
#[derive(Clone, Debug)]
pub struct CertRequest {
    /// Subject and issuer.
    pub subject: Name,
    /// Validity in days from `now` (a minute earlier, for clock skew).
    pub days: ValidityDays,
    /// How the certificate is signed.
    pub signature: CertSignature,
}

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Encoding the certificate failed.
    #[error("cannot encode the certificate: {0}")]
    Encode(String),
    /// The token could not sign it.
    #[error("the token could not sign the certificate")]
    Sign(#[source] SigningError),
    /// The token's signature does not verify with its own public key: never hand that out.
    #[error(
        "the certificate's signature made by the token does not verify with the key's public key ({0}); the token's public key object may not belong to the private key"
    )]
    Verify(VerifyError),
}

impl HasKind for BuildError {
    /// The signer's kind when it failed; otherwise the token's key or objects are at fault.
    fn kind(&self) -> Kind {
        match self {
            BuildError::Sign(e) => e.kind(),
            BuildError::Encode(_) | BuildError::Verify(_) => Kind::Token,
        }
    }
}

/// Builds a self-signed X.509 v3 leaf certificate for `key`, signing the to-be-signed part
/// with `sign` (the token), which returns the signature in X.509 form (DER for ECDSA).
pub fn build<E: std::error::Error + HasKind + Send + Sync + 'static>(
    request: &CertRequest,
    key: &PublicKey,
    now: SystemTime,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
) -> Result<Certificate, BuildError> {
    let enc = |e: &dyn std::fmt::Display| BuildError::Encode(e.to_string());
    let signer = TokenKeyInfo {
        spki: spki_of(key).map_err(|e| enc(&e))?,
        algorithm: request
            .signature
            .algorithm_identifier()
            .map_err(|e| enc(&e))?,
    };
    let validity = Validity::new(
        Time::try_from(now - CLOCK_SKEW).map_err(|e| enc(&e))?,
        Time::try_from(now + request.days.duration()).map_err(|e| enc(&e))?,
    );
    let mut builder = CertificateBuilder::new(
        SelfSignedLeaf {
            subject: request.subject.clone(),
        },
        random_serial().map_err(|e| enc(&e))?,
        validity,
        signer.spki.clone(),
    )
    .map_err(|e| enc(&e))?;
    let tbs = builder.finalize(&signer).map_err(|e| enc(&e))?;
    let signature = sign(&tbs).map_err(|e| BuildError::Sign(SigningError::new(e)))?;
    key.verify(request.signature.form(), &tbs, &signature)
        .map_err(BuildError::Verify)?;
    let bits = der::asn1::BitString::from_bytes(&signature).map_err(|e| enc(&e))?;
    let cert = builder.assemble(bits, &signer).map_err(|e| enc(&e))?;
    let der = cert.to_der().map_err(|e| enc(&e))?;
    Certificate::from_bytes(&der, "the new certificate").map_err(|e| enc(&e))
}

/// How far back `notBefore` goes, so a NetSuite clock a little behind still accepts it.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// A positive 16-byte serial with no leading zero byte (RFC 5280 §4.1.2.2).
fn random_serial() -> Result<SerialNumber, String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for the serial: {e}"))?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::new(&bytes).map_err(|e| e.to_string())
}

/// The x509-cert builder's view of the token key: its SPKI and signature algorithm. The
/// signing itself happens outside the builder, in the token.
struct TokenKeyInfo {
    spki: SubjectPublicKeyInfoOwned,
    algorithm: AlgorithmIdentifierOwned,
}

/// The SPKI as x509-cert's builder wants a verifying key.
#[derive(Clone)]
struct Spki(SubjectPublicKeyInfoOwned);

impl EncodePublicKey for Spki {
    fn to_public_key_der(&self) -> x509_cert::spki::Result<der::Document> {
        Ok(der::Document::encode_msg(&self.0)?)
    }
}

impl signature::Keypair for TokenKeyInfo {
    type VerifyingKey = Spki;

    fn verifying_key(&self) -> Spki {
        Spki(self.spki.clone())
    }
}

impl DynSignatureAlgorithmIdentifier for TokenKeyInfo {
    fn signature_algorithm_identifier(&self) -> x509_cert::spki::Result<AlgorithmIdentifierOwned> {
        Ok(self.algorithm.clone())
    }
}

/// A self-signed end-entity certificate: issuer = subject, CA=false, digitalSignature only,
/// a subject key identifier, and an authority key identifier naming that same key (RFC 5280
/// §4.2.1.1 requires it in every certificate but a self-signed CA's; linters flag its absence).
/// The deprecated CABF profiles reject most such subjects.
struct SelfSignedLeaf {
    subject: Name,
}

impl BuilderProfile for SelfSignedLeaf {
    fn get_issuer(&self, subject: &Name) -> Name {
        subject.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        spk: SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let subject = tbs.subject();
        let ski = SubjectKeyIdentifier::try_from(spk)?;
        // Self-signed: the issuer's key is the subject's, so its identifier is the SKI itself.
        let aki = AuthorityKeyIdentifier {
            key_identifier: Some(ski.0.clone()),
            authority_cert_issuer: None,
            authority_cert_serial_number: None,
        };
        Ok(vec![
            BasicConstraints {
                ca: false,
                path_len_constraint: None,
            }
            .to_extension(subject, &[])?,
            KeyUsage(KeyUsages::DigitalSignature.into()).to_extension(subject, &[])?,
            ski.to_extension(subject, &[])?,
            aki.to_extension(subject, &[])?,
        ])
    }
}
