//! `suitekey cert`: a self-signed certificate for a key already in the token. Also the
//! certificate half of `keygen`.

use std::io::Write;
use std::sync::Arc;
use std::time::SystemTime;

use der::Encode as _;
use x509_cert::name::Name;

use super::outfile::OutFile;
use crate::cert::{self, CertRequest, CertSignature, Certificate};
use crate::cli::{CertArgs, CertSig};
use crate::error::Error;
use crate::jose::{Alg, Scheme, Signer as _};
use crate::pkcs11::{Key, KeySigner, ManagementKey};

pub(super) fn run(args: &CertArgs, quiet: bool, out: &mut dyn Write) -> Result<(), Error> {
    let outfile = OutFile::check(&args.cert.out, args.cert.force)?;
    let management_key = super::management_key(args.cert.management_key_source.as_ref())?;
    let uri = super::key_uri(&args.key)?;
    let key = Key::open_writable(&uri, args.cert.module.path.as_deref())?;
    let subject = subject_name(args.cert.subject.as_deref(), key.label())?;
    let signer = super::signer_for(key, args.alg)?;
    let alg = signer.alg();
    let signature = cert_signature(alg, args.cert.cert_sig)?;
    signer.check_certificate_slot(args.replace, management_key.clone())?;
    let request = CertRequest {
        subject,
        days: args.cert.days,
        signature,
    };
    let store = Store {
        replace: args.replace,
        management_key,
    };
    issue(&signer, &request, (&outfile, store), quiet, out)
}

/// How the certificate is stored on the token: replacing the one there for the key or not, and
/// with the management key (a PIV card through ykcs11).
pub(super) struct Store {
    /// Replace the certificate objects the token holds for the key.
    pub(super) replace: bool,
    /// The PIV card's management key, where the module needs it.
    pub(super) management_key: Option<Arc<ManagementKey>>,
}

/// The certificate's subject: as given (RFC 4514), or `CN=<key label>`.
pub(super) fn subject_name(given: Option<&str>, label: Option<&str>) -> Result<Name, Error> {
    cert::subject_name(given, label).map_err(|e| Error::Usage(e.to_string()))
}

/// How the certificate is signed: like the assertions (same hash; ECDSA or PSS), or with
/// PKCS#1 v1.5 SHA-256 for RSA when asked.
pub(super) fn cert_signature(alg: Alg, wanted: CertSig) -> Result<CertSignature, Error> {
    match (wanted, alg.scheme()) {
        (CertSig::Pss, _) => Ok(CertSignature::for_alg(alg)),
        (CertSig::Pkcs1, Scheme::Pss) => Ok(CertSignature::Pkcs1Sha256),
        (CertSig::Pkcs1, Scheme::Ecdsa(_)) => Err(Error::Usage(format!(
            "--cert-sig pkcs1 is for RSA keys; {alg} certificates are signed with ECDSA, leave --cert-sig out"
        ))),
    }
}

/// Builds the certificate in the token, stores it on the token beside the key (as `store`
/// says), then writes the PEM: no file claims a certificate the token refused to keep. Prints
/// the certificate id on `out` (the details on stderr).
pub(super) fn issue(
    signer: &KeySigner,
    request: &CertRequest,
    (outfile, store): (&OutFile, Store),
    quiet: bool,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let subject_der = request
        .subject
        .to_der()
        .map_err(|e| Error::Usage(format!("the subject cannot be encoded: {e}")))?;
    let public = signer.public_key()?;
    let now = SystemTime::now();
    let certificate = cert::issue_with(signer, request, &public, now)
        .map_err(|e| Error::CertBuild(Box::new(e)))?;
    let pem = certificate
        .to_pem()
        .map_err(|e| Error::Usage(format!("the certificate cannot be encoded as PEM: {e}")))?;
    signer.store_certificate(
        certificate.der(),
        &subject_der,
        (store.replace, store.management_key),
    )?;
    outfile.write(pem.as_bytes())?;
    if !quiet {
        describe(&certificate, outfile, now);
    }
    writeln!(out, "{}", certificate.certificate_id())?;
    Ok(())
}

/// What was made, and what the administrator does next (stderr).
fn describe(certificate: &Certificate, outfile: &OutFile, now: SystemTime) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "certificate written to {} ({}, valid until {}, {} days)\n\
         certificate id NetSuite will show: {}\n\
         next: upload {} at Setup > Integration > Manage Authentication > OAuth 2.0 Client Credentials (M2M) Setup",
        outfile.path().display(),
        certificate.subject(),
        cert::rfc3339(certificate.not_after()),
        certificate.days_left(now),
        certificate.certificate_id(),
        outfile.path().display(),
    );
}
