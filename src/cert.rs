//! X.509 certificates for NetSuite: reading one (PEM or DER), the certificate id NetSuite will
//! show for it and its public key; building a self-signed one around a token key; and checking
//! one against NetSuite's rules.

use std::path::Path;
use std::time::{Duration, SystemTime};

use der::asn1::ObjectIdentifier;
use der::{Decode as _, Encode as _, EncodePem as _};
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

use crate::jose::{
    Alg, Curve, Hash, KeyKind, PublicKey, Scheme, SignatureForm, SigningError, VerifyError,
};
use crate::kind::{HasKind, Kind};
use crate::netsuite::{CertificateId, ValidityDays};

/// Largest certificate file suitekey reads; real ones are a few KiB.
const MAX_CERT_FILE: u64 = 1 << 20;

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
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
    fn tbs_bytes(&self) -> Result<&[u8], der::Error> {
        let mut reader = der::SliceReader::new(&self.der)?;
        der::Header::decode(&mut reader)?;
        der::Reader::tlv_bytes(&mut reader)
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

// ---- building a self-signed certificate around a token key ----------------------------------

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

    fn algorithm_identifier(self) -> Result<AlgorithmIdentifierOwned, der::Error> {
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
}

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

impl CertSignature {
    /// The layout of this signature, for verification.
    fn form(self) -> SignatureForm {
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
    fn of(algorithm: &AlgorithmIdentifierOwned) -> Result<SignatureForm, String> {
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

// ---- checking a certificate against NetSuite's rules ----------------------------------------

/// What `check` found: facts to show, problems that make the certificate unfit to upload, and
/// warnings that do not.
#[derive(Debug, Default)]
pub struct Report {
    /// `(name, value)` lines describing the certificate.
    pub facts: Vec<(&'static str, String)>,
    /// Reasons NetSuite would refuse the certificate, or it would not work.
    pub problems: Vec<String>,
    /// Things to act on soon, or to double-check.
    pub warnings: Vec<String>,
}

impl Report {
    /// The certificate is fit to upload.
    pub fn fit(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks a certificate against NetSuite's rules as of `now`.
pub fn check(cert: &Certificate, now: SystemTime) -> Report {
    let mut report = Report::default();
    let kind = cert.key_kind();
    report.facts.push(("subject", cert.subject()));
    match crate::netsuite::default_alg(&kind) {
        Ok(_) => {
            let algs: Vec<&str> = crate::netsuite::usable_algs(&kind)
                .iter()
                .map(|a| a.name())
                .collect();
            report
                .facts
                .push(("key", format!("{kind} (assertions: {})", algs.join(", "))));
        }
        Err(e) => {
            report.facts.push(("key", kind.to_string()));
            report.problems.push(e.to_string());
        }
    }
    check_validity(cert, now, &mut report);
    check_self_signature(cert, &mut report);
    report
        .facts
        .push(("certificate-id", cert.certificate_id().to_string()));
    report
}

fn check_validity(cert: &Certificate, now: SystemTime, report: &mut Report) {
    let (from, to) = (cert.not_before(), cert.not_after());
    let span_days = signed_secs(from, to) as f64 / 86_400.0;
    let left = cert.days_left(now);
    report.facts.push((
        "valid",
        format!(
            "{} to {} ({span_days:.0} days, {left} left)",
            rfc3339(from),
            rfc3339(to)
        ),
    ));
    if signed_secs(from, to) > i64::from(ValidityDays::MAX + 1) * 86_400 {
        report.problems.push(format!(
            "it is valid for {span_days:.0} days; NetSuite allows at most two years ({} days) and silently cuts longer certificates; make one with --days {} or less",
            ValidityDays::MAX,
            ValidityDays::MAX
        ));
    }
    if to <= now {
        report.problems.push(format!(
            "it expired on {}; make a new certificate ('suitekey cert --key URI --out FILE') and upload it",
            rfc3339(to)
        ));
    } else if let Some(notice) = EXPIRY_NOTICE_DAYS
        .iter()
        .rev()
        .find(|d| left < i64::from(**d))
    {
        report.warnings.push(format!(
            "it expires in {left} days (on {}), within NetSuite's {notice}-day notice; make a new certificate with 'suitekey cert' and upload it before then",
            rfc3339(to)
        ));
    }
    if from > now {
        report.problems.push(format!(
            "it is not valid until {}; check this machine's clock, or wait",
            rfc3339(from)
        ));
    }
}

fn check_self_signature(cert: &Certificate, report: &mut Report) {
    let x509 = cert.x509();
    let tbs = x509.tbs_certificate();
    if tbs.issuer() != tbs.subject() {
        report.warnings.push(format!(
            "it is issued by '{}', not self-signed; its signature was not checked (NetSuite only uses the public key)",
            tbs.issuer()
        ));
        return;
    }
    let outcome = match (
        cert.public_key(),
        CertSignature::of(x509.signature_algorithm()),
    ) {
        (Err(_), _) => return, // the key problem is already reported
        (_, Err(unsupported)) => Err(format!("its {unsupported} cannot be checked by suitekey")),
        (Ok(key), Ok(form)) => match (cert.tbs_bytes(), x509.signature().as_bytes()) {
            (Ok(tbs_der), Some(sig)) => key
                .verify(form, tbs_der, sig)
                .map_err(|e| format!("its self-signature is invalid: {e}")),
            _ => Err("its signature cannot be read".into()),
        },
    };
    match outcome {
        Ok(()) => report.facts.push(("self-signature", "valid".into())),
        Err(problem) => report.problems.push(problem),
    }
}

// ---- the certificate stored with a signing key ------------------------------------------

/// How much a [`Finding`] matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth acting on; tokens may still be had.
    Warning,
    /// NetSuite will refuse the profile's assertions.
    Failed,
}

/// What is wrong with the certificate stored with a key, as a profile uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// How much it matters.
    pub severity: Severity,
    /// What is wrong and what to do.
    pub message: String,
}

/// The certificates stored on the token with a signing key (same `CKA_ID`), which is where
/// `keygen` and `cert` put the one to upload, and the key's public key when it could be read.
#[derive(Clone, Debug, Default)]
pub struct StoredWithKey {
    certificates: Vec<Certificate>,
    key: Option<PublicKey>,
}

impl StoredWithKey {
    /// From the certificate objects' values as read from the token (those that are not X.509
    /// are left out; a token that cannot list them has none to check: that is only logged,
    /// since the check must never stop a signature) and the key's public key.
    pub fn read<E: std::fmt::Display>(
        values: Result<Vec<Vec<u8>>, E>,
        key: Option<PublicKey>,
    ) -> StoredWithKey {
        let values = values.unwrap_or_else(|e| {
            tracing::debug!("cannot read the certificates stored with the key: {e}");
            Vec::new()
        });
        let certificates = values
            .iter()
            .filter_map(|der| Certificate::from_bytes(der, "a certificate on the token").ok())
            .collect();
        StoredWithKey { certificates, key }
    }

    /// The stored certificate a profile with certificate id `configured` is judged by: the one
    /// with that id, else the one that expires last.
    fn relevant(&self, configured: &CertificateId) -> Option<&Certificate> {
        self.certificates
            .iter()
            .find(|c| c.certificate_id() == *configured)
            .or_else(|| self.certificates.iter().max_by_key(|c| c.not_after()))
    }

    /// What is wrong, at `now`, with the stored certificate for a profile whose certificate
    /// id is `configured`: another id (a warning: NetSuite may hold another certificate of the
    /// same key), or another key's public key, expired, not yet valid (failures when it is the
    /// configured certificate, else warnings), or within NetSuite's last expiry notice. Nothing
    /// when the token stores no certificate with the key.
    pub fn check(&self, configured: &CertificateId, now: SystemTime) -> Vec<Finding> {
        let Some(cert) = self.relevant(configured) else {
            return Vec::new();
        };
        let id = cert.certificate_id();
        let mut findings = Vec::new();
        let severity = if id == *configured {
            Severity::Failed
        } else {
            findings.push(Finding {
                severity: Severity::Warning,
                message: format!(
                    "the certificate stored with the key has id '{id}', which is not the configured certificate-id '{configured}': if NetSuite shows '{configured}', another certificate was uploaded for this key and its expiry is not checked here; if it shows '{id}', set certificate-id to it"
                ),
            });
            Severity::Warning
        };
        let key = self.key.as_ref();
        if key.is_some_and(|key| cert.public_key().as_ref() != Ok(key)) {
            findings.push(Finding {
                severity,
                message: format!(
                    "the certificate stored with the key (id '{id}') holds another public key, so NetSuite would refuse assertions signed with the key (invalid_grant); make one for this key with 'suitekey cert --replace --key URI --out FILE' and upload it"
                ),
            });
        }
        findings.extend(validity_finding(cert, severity, now));
        findings
    }
}

/// What is wrong with the dates of `cert` at `now`, if anything: expired or not yet valid
/// (with `severity`), or within NetSuite's last expiry notice (a warning).
fn validity_finding(cert: &Certificate, severity: Severity, now: SystemTime) -> Option<Finding> {
    let id = cert.certificate_id();
    let (from, to) = (cert.not_before(), cert.not_after());
    let notice = EXPIRY_NOTICE_DAYS.iter().min().copied().unwrap_or(14);
    let left = cert.days_left(now);
    let (severity, message) = if to <= now {
        let ago = signed_secs(to, now).div_euclid(86_400);
        (
            severity,
            format!(
                "the certificate stored with the key (id '{id}') expired on {}, {ago} days ago; NetSuite refuses assertions for an expired certificate (invalid_grant): make a new one with 'suitekey cert --replace --key URI --out FILE', upload it and set certificate-id to the id it prints",
                rfc3339(to)
            ),
        )
    } else if from > now {
        (
            severity,
            format!(
                "the certificate stored with the key (id '{id}') is not valid until {}; check this machine's clock",
                rfc3339(from)
            ),
        )
    } else if left < i64::from(notice) {
        (
            Severity::Warning,
            format!(
                "the certificate stored with the key (id '{id}') expires in {left} days (on {}), within NetSuite's {notice}-day notice: make a new one with 'suitekey cert --replace --key URI --out FILE' and upload it before then",
                rfc3339(to)
            ),
        )
    } else {
        return None;
    };
    Some(Finding { severity, message })
}

/// NetSuite mails administrators this many days before a certificate expires.
pub const EXPIRY_NOTICE_DAYS: [u32; 3] = [60, 30, 14];

/// A time as RFC 3339 UTC, seconds precision.
pub fn rfc3339(t: SystemTime) -> String {
    match Time::try_from(t) {
        Ok(Time::UtcTime(u)) => u.to_date_time().to_string(),
        Ok(Time::GeneralTime(g)) => g.to_date_time().to_string(),
        Err(_) => "(out of range)".into(),
    }
}
