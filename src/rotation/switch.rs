//! Step 5, the switch: the profile's `key` and `certificate-id` (and `alg` when the new key
//! needs it said) are rewritten in the config file, in place and atomically (see
//! [`ConfigFile::set_profile_values`]), and only if the file is still as this run read it. Until
//! the rename the profile names the old key and certificate, after it the new ones: a reader
//! (an agent reloading) never sees anything in between.
//!
//! Steps 6 and 7 read the file again before they act ([`confirm_switched`]): they must find
//! the profile switched, whatever happened to the file since.

use std::path::Path;

use super::error::StepError;
use super::journal::Journal;
use super::plan::Plan;
use crate::config::ConfigFile;
use crate::jose::Scheme;
use crate::netsuite::{CertificateId, default_alg};
use crate::pkcs11::Pkcs11Uri;

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
        Some(id) if id == *new_id && names_new_key(table.get("key"), plan) => {
            return Ok(format!(
                "the profile already uses the new key and certificate {new_id}"
            ));
        }
        Some(id) if id == plan.old_certificate_id || id == *new_id => {}
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

/// Refuses unless the profile `name`, as the config file at `path` holds it now (read again),
/// names the rotation's new key and certificate. Steps 6 and 7 check it just before they act:
/// the old certificate and key must never be revoked or retired while the profile uses them,
/// however the file was changed since the switch (by hand, a restored backup, configuration
/// management).
pub(super) fn confirm_switched(path: &Path, name: &str, plan: &Plan) -> Result<(), StepError> {
    let file = ConfigFile::read(path)?;
    let config = file.parse()?;
    let table = config.profile(name)?;
    let id = configured_id(table.get("certificate-id"));
    if id.is_some() && id == plan.new_certificate_id && names_new_key(table.get("key"), plan) {
        return Ok(());
    }
    let names = match id {
        Some(id) if id == plan.old_certificate_id => {
            format!("the old certificate-id '{id}' again")
        }
        Some(id) if Some(&id) == plan.new_certificate_id.as_ref() => format!(
            "the new certificate-id '{id}' but not the new key ({})",
            plan.new_key
        ),
        Some(id) => format!("certificate-id '{id}'"),
        None => "no usable certificate-id".to_owned(),
    };
    Err(StepError::NotSwitched(format!(
        "profile '{name}' in '{}' no longer names the rotation's new key and certificate (it has {names}): the file was changed since step 5 switched it, so the old certificate {} is not revoked and the old key not retired, which would break a profile that uses them; nothing was changed",
        path.display(),
        plan.old_certificate_id
    )))
}

/// Whether the key URI written in the profile names the rotation's new key (its label and
/// id; the rest of the URI may have been edited since).
fn names_new_key(key: Option<&str>, plan: &Plan) -> bool {
    key.and_then(|k| k.parse::<Pkcs11Uri>().ok())
        .is_some_and(|uri| is_new_key(&uri, plan))
}

/// Whether `uri` names the rotation's new key: its label and id.
fn is_new_key(uri: &Pkcs11Uri, plan: &Plan) -> bool {
    uri.object == plan.new_key.object && uri.id == plan.new_key.id
}

/// Whether the profile as resolved for this run names the rotation's new key and certificate.
pub(super) fn profile_names_new(profile: &crate::config::Profile, plan: &Plan) -> bool {
    Some(&profile.certificate_id) == plan.new_certificate_id.as_ref()
        && is_new_key(profile.key.uri(), plan)
}

/// The certificate id written in the profile, if it is one.
fn configured_id(text: Option<&str>) -> Option<CertificateId> {
    text?.parse().ok()
}

/// Whether the key decides the new algorithm by itself (so the profile need not name it).
fn is_default_alg(plan: &Plan) -> bool {
    let kind = match plan.alg.scheme() {
        Scheme::Ecdsa(curve) => crate::jose::KeyKind::Ec(curve),
        Scheme::Pss => crate::jose::KeyKind::Rsa {
            bits: plan.rsa_bits.unwrap_or(3072) as usize,
        },
    };
    default_alg(&kind).is_ok_and(|alg| alg == plan.alg)
}

/// The profile names neither the old nor the new certificate: someone changed it.
fn changed(name: &str, found: Option<CertificateId>, plan: &Plan) -> StepError {
    let found = found.map_or_else(
        || "no usable certificate-id".to_owned(),
        |id| format!("certificate-id '{id}'"),
    );
    StepError::usage(format!(
        "profile '{name}' has {found}, neither the rotation's old '{}' nor its new one: it was changed since the rotation began, so it is not switched; set certificate-id back to '{}' to let the rotation finish, or remove the rotation's journal to abandon it",
        plan.old_certificate_id, plan.old_certificate_id
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config file with profile `prod` naming `key` and `id`.
    fn config(dir: &Path, key: &str, id: &str) -> std::path::PathBuf {
        let path = dir.join("config.toml");
        let text = format!(
            "[profiles.prod]\nkey = \"{key}\"\nclient-id = \"c\"\ncertificate-id = \"{id}\"\naccount = \"1\"\n"
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn revoking_needs_the_file_to_name_the_new_key_and_certificate_now() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan = super::super::journal::tests::plan();
        let new_id: CertificateId = "Q3Wx1MST4MIlpfQnkY3cIPbW05n7jcJQX0rXv8WvN5M"
            .parse()
            .unwrap();
        plan.new_certificate_id = Some(new_id.clone());
        let (old_key, new_key) = (plan.old_key.to_string(), plan.new_key.to_string());
        let old_id = plan.old_certificate_id.to_string();
        let path = config(dir.path(), &new_key, new_id.as_str());
        confirm_switched(&path, "prod", &plan).unwrap();
        // Another spelling of the same key (its label and id) is the same key.
        let edited = new_key.replace("module-path=/m.so", "module-path=/other.so");
        confirm_switched(&config(dir.path(), &edited, new_id.as_str()), "prod", &plan).unwrap();
        for (key, id, says) in [
            (old_key.as_str(), old_id.as_str(), "the old certificate-id"),
            (old_key.as_str(), new_id.as_str(), "but not the new key"),
            (new_key.as_str(), old_id.as_str(), "the old certificate-id"),
        ] {
            let path = config(dir.path(), key, id);
            let err = confirm_switched(&path, "prod", &plan).unwrap_err();
            assert!(matches!(err, StepError::NotSwitched(_)), "{err:?}");
            let text = err.to_string();
            for want in [
                says,
                "no longer names the rotation's new key",
                "is not revoked",
                "nothing was changed",
            ] {
                assert!(text.contains(want), "{want}: {text}");
            }
        }
    }
}
