//! Step 2, the new key: a key pair made in the same token as the current key (sensitive, never
//! extractable), with the label and id step 1 chose, and its self-signed certificate stored
//! beside it; the certificate id NetSuite will show is computed here.
//!
//! Repeated after an interruption, it uses what the earlier run made: the key when the token
//! holds it under the planned label and id, and a certificate stored with it that holds its
//! public key. Nothing is ever overwritten.

use std::time::SystemTime;

use der::Encode as _;

use super::context::{Context, Which};
use super::error::StepError;
use super::journal::Journal;
use crate::cert::{CertRequest, CertSignature, Certificate, issue_with, subject_name};
use crate::jose::{PublicKey, Signer as _};
use crate::netsuite::ValidityDays;
use crate::pkcs11::{self, KeySigner, KeygenPlan};

/// Runs step 2, recording the certificate and its id in the journal.
pub(super) fn make_new_key(
    ctx: &mut Context,
    journal: &mut Journal,
    now: SystemTime,
) -> Result<String, StepError> {
    let plan = journal.plan.clone();
    let (signer, made) = match ctx.open_key(&plan.new_key_ref()?, Some(plan.alg)) {
        Ok(signer) => (signer, false),
        Err(StepError::Key(pkcs11::Error::KeyNotFound { .. })) => (generate(ctx, &plan)?, true),
        Err(e) => return Err(e),
    };
    let public = signer.public_key()?;
    let (certificate, stored) = match stored_certificate(signer.stored_certificates(), &public)? {
        Some(certificate) => (certificate, false),
        None => (issue(&signer, &public, &plan, now)?, true),
    };
    let id = certificate.certificate_id();
    let pem = certificate.to_pem().map_err(|e| {
        StepError::token(format!("the new certificate cannot be encoded as PEM: {e}"))
    })?;
    journal.certificate = Some(pem);
    journal.plan.new_certificate_id = Some(id.clone());
    let key = if made { "made" } else { "found the" };
    let cert = if stored { "made and stored" } else { "found" };
    let summary = format!(
        "{key} {} key '{}' (id {}; sensitive, never extractable) in the token, {cert} its certificate, whose id will be {id}",
        plan.spec(),
        plan.new_label,
        plan.new_key_id
    );
    ctx.keep(Which::New, signer, None);
    Ok(summary)
}

/// Makes the planned key pair, logging in with the credential the old key was opened with.
fn generate(ctx: &mut Context, plan: &super::plan::Plan) -> Result<KeySigner, StepError> {
    let credential = ctx.credential();
    let uri = plan.new_key.clone();
    let prepared = KeygenPlan::prepare_with(
        &uri,
        ctx.profile.module.as_deref(),
        (plan.spec(), plan.alg),
        None,
        &|token| match &credential {
            Some(credential) => Ok(std::sync::Arc::clone(credential)),
            None => token.credential(&uri).map(std::sync::Arc::new),
        },
    )?;
    let key = prepared.generate()?;
    ctx.signer(key, Some(plan.alg))
}

/// Among the certificates stored with the key (`stored`, as the token answered), the one that
/// holds its public key (made by an earlier run). A token that cannot list them is an error,
/// never "none stored": a repeated step 2 would then make, and later upload, a second one.
fn stored_certificate(
    stored: Result<Vec<Vec<u8>>, pkcs11::Error>,
    public: &PublicKey,
) -> Result<Option<Certificate>, StepError> {
    let stored = stored.map_err(|e| {
        StepError::token(format!(
            "the certificates stored with the new key cannot be read, so it is unknown whether an earlier run stored one already: {e}"
        ))
    })?;
    Ok(stored
        .iter()
        .filter_map(|der| Certificate::from_bytes(der, "a certificate on the token").ok())
        .find(|c| c.public_key().as_ref() == Ok(public)))
}

/// Makes the new certificate in the token and stores it beside the key.
fn issue(
    signer: &KeySigner,
    public: &PublicKey,
    plan: &super::plan::Plan,
    now: SystemTime,
) -> Result<Certificate, StepError> {
    let subject = subject_name(Some(&plan.subject), None)?;
    let subject_der = subject
        .to_der()
        .map_err(|e| StepError::usage(format!("the subject cannot be encoded: {e}")))?;
    let request = CertRequest {
        subject,
        days: plan.days.to_string().parse::<ValidityDays>()?,
        signature: CertSignature::for_alg(signer.alg()),
    };
    let certificate = issue_with(signer, &request, public, now)?;
    signer.store_certificate(certificate.der(), &subject_der, (false, None))?;
    Ok(certificate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_that_cannot_list_the_stored_certificates_stops_step_2() {
        let public = PublicKey::Ec {
            curve: crate::jose::Curve::P256,
            point: vec![4; 65],
        };
        let failed = Err(pkcs11::Error::TokenReadOnly {
            token: "acc".into(),
        });
        let err = stored_certificate(failed, &public).unwrap_err().to_string();
        assert!(err.contains("cannot be read"), "{err}");
        assert!(err.contains("earlier run"), "{err}");
        assert!(
            stored_certificate(Ok(Vec::new()), &public)
                .unwrap()
                .is_none()
        );
        let junk = Ok(vec![b"not a certificate".to_vec()]);
        assert!(stored_certificate(junk, &public).unwrap().is_none());
    }
}
