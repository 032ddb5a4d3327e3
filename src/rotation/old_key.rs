//! Step 7, the old key: kept on the token by default, its objects relabelled
//! `<label>-revoked-<date of the revocation>` where the token allows it (the listing then says
//! what it was); deleted with `--delete-old-key`. It runs only after step 6, when NetSuite no
//! longer accepts the old certificate.

use super::context::Context;
use super::error::StepError;
use super::journal::Journal;
use super::plan::{date_of, retired_label, yyyymmdd};
use super::step::Step;
use crate::pkcs11;

/// Runs step 7 for the old key, found by its `CKA_ID` (its label may already be changed).
pub(super) fn retire(ctx: &mut Context, journal: &Journal) -> Result<String, StepError> {
    let plan = &journal.plan;
    let signer = match ctx.open_key(&plan.old_key_by_id()?, plan.old_alg) {
        Ok(signer) => signer,
        Err(StepError::Key(pkcs11::Error::KeyNotFound { .. })) => {
            return Ok("the old key is no longer on the token: nothing to do".to_owned());
        }
        Err(e) => return Err(e),
    };
    if plan.delete_old_key {
        let deleted = signer.destroy_objects()?;
        return Ok(format!(
            "deleted the old key's {deleted} object(s) (private and public key, certificates) from the token"
        ));
    }
    let revoked_on = journal
        .finished_at(Step::Revoke)
        .and_then(date_of)
        .unwrap_or_else(|| yyyymmdd(std::time::SystemTime::now()));
    let old_label = plan.old_label.as_deref().unwrap_or("suitekey");
    let label = retired_label(old_label, &revoked_on);
    let done = signer.relabel_objects(&label)?;
    let mut summary = format!(
        "kept the old key on the token, relabelled '{label}' ({} object(s){})",
        done.changed + done.already,
        if done.already > 0 {
            ", some by an earlier run"
        } else {
            ""
        }
    );
    if !done.refused.is_empty() {
        summary.push_str(&format!(
            "; the token kept the label of {}",
            done.refused.join(", ")
        ));
    }
    Ok(summary)
}
