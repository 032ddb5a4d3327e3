//! Step 5, the switch: the profile's `key` and `certificate-id` (and `alg` when the new key
//! needs it said) are rewritten in the config file, in place and atomically (see
//! [`ConfigFile::set_profile_values`]), and only if the file is still as this run read it. Until
//! the rename the profile names the old key and certificate, after it the new ones: a reader
//! (an agent reloading) never sees anything in between.

use super::error::StepError;
use super::journal::Journal;
use crate::config::ConfigFile;
use crate::jose::Scheme;
use crate::netsuite::{CertificateId, default_alg};

/// Runs step 5 on the profile `name` of `file` (as read at the start of this run).
pub(super) fn switch(
    file: &ConfigFile,
    name: &str,
    journal: &Journal,
) -> Result<String, StepError> {
    let plan = &journal.plan;
    let new_id = plan.new_certificate_id.as_ref().ok_or_else(|| {
        StepError::usage("the journal holds no new certificate id although step 2 is done; remove the journal and rotate again")
    })?;
    let config = file.parse()?;
    let table = config.profile(name)?;
    match configured_id(table.get("certificate-id")) {
        Some(id) if id == *new_id => {
            return Ok(format!(
                "the profile already uses the new key and certificate {new_id}"
            ));
        }
        Some(id) if id == plan.old_certificate_id => {}
        other => return Err(changed(name, other, plan)),
    }
    let key = plan.new_key.to_string();
    let alg = plan.alg.to_string();
    let mut values = vec![("key", key.as_str()), ("certificate-id", new_id.as_str())];
    if table.get("alg").is_some() || !is_default_alg(plan) {
        values.push(("alg", alg.as_str()));
    }
    file.set_profile_values(name, &values)?;
    Ok(format!(
        "profile '{name}' in '{}' now uses key {key} and certificate {new_id}",
        file.path().display()
    ))
}

/// The certificate id written in the profile, if it is one.
fn configured_id(text: Option<&str>) -> Option<CertificateId> {
    text?.parse().ok()
}

/// Whether the key decides the new algorithm by itself (so the profile need not name it).
fn is_default_alg(plan: &super::plan::Plan) -> bool {
    let kind = match plan.alg.scheme() {
        Scheme::Ecdsa(curve) => crate::jose::KeyKind::Ec(curve),
        Scheme::Pss => crate::jose::KeyKind::Rsa {
            bits: plan.rsa_bits.unwrap_or(3072) as usize,
        },
    };
    default_alg(&kind).is_ok_and(|alg| alg == plan.alg)
}

/// The profile names neither the old nor the new certificate: someone changed it.
fn changed(name: &str, found: Option<CertificateId>, plan: &super::plan::Plan) -> StepError {
    let found = found.map_or_else(
        || "no usable certificate-id".to_owned(),
        |id| format!("certificate-id '{id}'"),
    );
    StepError::usage(format!(
        "profile '{name}' has {found}, neither the rotation's old '{}' nor its new one: it was changed since the rotation began, so it is not switched; set certificate-id back to '{}' to let the rotation finish, or remove the rotation's journal to abandon it",
        plan.old_certificate_id, plan.old_certificate_id
    ))
}
