//! Step 7, the old key: kept on the token by default, its objects relabelled
//! `<label>-revoked-<date of the revocation>` where the token allows it (the listing then says
//! what it was); deleted with `--delete-old-key`. It runs only after step 6, when NetSuite no
//! longer accepts the old certificate.
//!
//! Only the old key's own objects are touched: the private key found by its id and label (the
//! label it had, or the one an interrupted step 7 gave it), the public key object holding its
//! public key, and the certificates holding that key or being the old certificate. Other
//! applications' objects that happen to share its `CKA_ID` are left alone (step 1 refused a
//! key whose id another private key shares).

use super::context::Context;
use super::error::StepError;
use super::journal::Journal;
use super::plan::{Plan, date_of, retired_label, yyyymmdd};
use super::step::Step;
use crate::cert::Certificate;
use crate::jose::{PublicKey, Signer as _};
use crate::pkcs11::{self, KeySigner, OwnObjects};

/// Runs step 7 for the old key.
pub(super) fn retire(ctx: &mut Context, journal: &Journal) -> Result<String, StepError> {
    let plan = &journal.plan;
    let revoked_on = journal
        .finished_at(Step::Revoke)
        .and_then(date_of)
        .unwrap_or_else(|| yyyymmdd(std::time::SystemTime::now()));
    let label = retired_label(plan.old_label.as_deref().unwrap_or("suitekey"), &revoked_on);
    let Some(signer) = open_old_key(ctx, plan, &label)? else {
        return Ok("the old key is no longer on the token: nothing to do".to_owned());
    };
    let public = public_key(&signer, plan);
    let is_own_certificate = |der: &[u8]| {
        Certificate::from_bytes(der, "a certificate on the token").is_ok_and(|c| {
            c.certificate_id() == plan.old_certificate_id
                || public
                    .as_ref()
                    .is_some_and(|p| c.public_key().as_ref() == Ok(p))
        })
    };
    let own = OwnObjects {
        public_key: public.as_ref(),
        certificate: &is_own_certificate,
    };
    if plan.delete_old_key {
        let done = signer.destroy_objects(&own)?;
        return Ok(format!(
            "deleted the old key's {} object(s) (private key, its public key and certificates) from the token{}",
            done.deleted,
            left_alone(done.others)
        ));
    }
    let done = signer.relabel_objects(&label, &own)?;
    let mut summary = format!(
        "kept the old key on the token, relabelled '{label}' ({} object(s){}){}",
        done.changed + done.already,
        if done.already > 0 {
            ", some by an earlier run"
        } else {
            ""
        },
        left_alone(done.others)
    );
    if !done.refused.is_empty() {
        summary.push_str(&format!(
            "; the token kept the label of {}",
            done.refused.join(", ")
        ));
    }
    Ok(summary)
}

/// The old key, found by its id and the label it had, else the retired `label` an interrupted
/// step 7 gave it; `None` when it is no longer on the token.
fn open_old_key(
    ctx: &mut Context,
    plan: &Plan,
    label: &str,
) -> Result<Option<KeySigner>, StepError> {
    for key in plan.old_key_refs(label)? {
        match ctx.open_key(&key, plan.old_alg) {
            Ok(signer) => return Ok(Some(signer)),
            Err(StepError::Key(pkcs11::Error::KeyNotFound { .. })) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// The old key's public key: from the token's public key object (or, for RSA, the private
/// key), else from the old certificate stored with it; `None` when neither tells it.
fn public_key(signer: &KeySigner, plan: &Plan) -> Option<PublicKey> {
    if let Ok(key) = signer.public_key() {
        return Some(key);
    }
    signer
        .stored_certificates()
        .ok()?
        .iter()
        .filter_map(|der| Certificate::from_bytes(der, "a certificate on the token").ok())
        .find(|c| c.certificate_id() == plan.old_certificate_id)
        .and_then(|c| c.public_key().ok())
}

/// What the summary says of other objects sharing the old key's id.
fn left_alone(others: usize) -> String {
    match others {
        0 => String::new(),
        n => format!(
            "; {n} other object(s) with the same id, not the old key's, were left as they are"
        ),
    }
}
