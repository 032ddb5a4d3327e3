//! Step 1, preflight: nothing changes. The current key gets an access token; the certificates
//! API lists the integration's certificates with it; the profile's certificate is among them
//! and not revoked; fewer than five are active; the role and entity are known; and the new key
//! is decided (kind, algorithm, a free label and id, a subject) — which the token confirms it
//! can make, without making it.

use std::time::SystemTime;

use super::Options;
use super::context::{Context, Which};
use super::error::StepError;
use super::plan::{self, Plan};
use crate::cert::{Certificate, subject_name};
use crate::config::ConfigFile;
use crate::jose::Signer as _;
use crate::netsuite::{CertificateId, InternalId, ListedCertificate};
use crate::pkcs11::{self, KeySigner, KeySpec, KeygenPlan, Pkcs11Uri, hex};

/// NetSuite's limit of active certificates per integration record (2026.1).
pub const MAX_ACTIVE: usize = 5;

/// Another profile of the config file, as far as step 1 compares it with the one rotated.
pub(super) struct OtherProfile {
    name: String,
    key: Option<Pkcs11Uri>,
    certificate_id: Option<CertificateId>,
}

/// The profiles of `file` other than `name`, with the key and certificate id each names
/// (a value that does not parse is left out: that profile cannot use it).
pub(super) fn other_profiles(
    file: &ConfigFile,
    name: &str,
) -> Result<Vec<OtherProfile>, StepError> {
    let config = file.parse()?;
    let mut others = Vec::new();
    for other in config.profile_names().filter(|n| *n != name) {
        let table = config.profile(other)?;
        others.push(OtherProfile {
            name: other.to_owned(),
            key: table.get("key").and_then(|k| k.parse().ok()),
            certificate_id: table.get("certificate-id").and_then(|c| c.parse().ok()),
        });
    }
    Ok(others)
}

/// Runs step 1: returns the plan and a line saying what was found. `others` are the config
/// file's other profiles, none of which may use the key or certificate rotated.
pub(super) fn preflight(
    ctx: &mut Context,
    options: &Options,
    others: &[OtherProfile],
    now: SystemTime,
) -> Result<(Plan, String), StepError> {
    let profile = ctx.profile.clone();
    let old = ctx.open_key(&profile.key, profile.alg)?;
    check_unshared(&old, &profile.certificate_id, others)?;
    let token = ctx
        .fetch_with(&old, &profile.certificate_id)
        .map_err(StepError::from)?;
    let listed = ctx.list(&token)?;
    let current = current_entry(&listed, &profile.certificate_id)?;
    let active = check_room(&listed, now)?;
    let role = mapping("role", profile.role.or(current.role))?;
    let entity = mapping("entity", profile.entity.or(current.entity))?;
    let alg = options.alg.unwrap_or(old.alg());
    let spec = plan::key_spec(alg, options.rsa_bits, old.kind())?;
    let (new_label, new_key_id) = free_slot(ctx, &old, spec, options, now)?;
    let subject = subject(
        options.subject.as_deref(),
        &old,
        &profile.certificate_id,
        &new_label,
    )?;
    let old_key = profile.key.uri().clone();
    let plan = Plan {
        new_key: plan::new_key_uri(&old_key, &new_label, &new_key_id),
        old_key,
        old_key_id: hex(old.id()),
        old_label: old.label().map(str::to_owned),
        old_alg: profile.alg,
        old_certificate_id: profile.certificate_id.clone(),
        new_label,
        new_key_id,
        alg,
        rsa_bits: match spec {
            KeySpec::Rsa { bits } => Some(bits),
            KeySpec::Ec(_) => None,
        },
        days: options.days.unwrap_or_default().days(),
        subject,
        role,
        entity,
        new_certificate_id: None,
        delete_old_key: options.delete_old_key,
    };
    ctx.keep(Which::Old, old, Some(token));
    let summary = format!(
        "a token from the current key works; {} lists {} certificate(s), {active} active; role {role}, entity {entity}",
        ctx.api_url(),
        listed.len()
    );
    Ok((plan, summary))
}

/// Refuses a key whose `CKA_ID` another private key shares (step 7 could not tell their
/// objects apart), and a key or certificate id another profile of the file uses (step 6 would
/// revoke, and step 7 relabel or delete, what that profile uses).
fn check_unshared(
    old: &KeySigner,
    certificate_id: &CertificateId,
    others: &[OtherProfile],
) -> Result<(), StepError> {
    let twins = old.private_keys_sharing_its_id()?;
    if !twins.is_empty() {
        return Err(StepError::usage(format!(
            "the key's CKA_ID {} is shared by {} other private key(s) on the token ({}), so the objects stored with the key (its public key, its certificates) cannot be told apart from theirs when the old key is retired; give the keys distinct ids with the token's tools, then rotate again",
            hex(old.id()),
            twins.len(),
            twins.join(", ")
        )));
    }
    for other in others {
        if other.certificate_id.as_ref() == Some(certificate_id) {
            return Err(shared(
                &other.name,
                &format!("certificate-id '{certificate_id}'"),
            ));
        }
        if let Some(key) = &other.key
            && old.is_named_by(key)?
        {
            return Err(shared(&other.name, &format!("key ({})", old.uri())));
        }
    }
    Ok(())
}

/// Another profile uses `what` too.
fn shared(other: &str, what: &str) -> StepError {
    StepError::usage(format!(
        "profile '{other}' in the same config file uses the same {what}: the rotation would revoke the certificate and retire the key that profile still uses; give each profile its own key and certificate, then rotate again"
    ))
}

/// The profile's certificate in the list; it must be there and not revoked.
fn current_entry<'a>(
    listed: &'a [ListedCertificate],
    id: &crate::netsuite::CertificateId,
) -> Result<&'a ListedCertificate, StepError> {
    let entry = listed.iter().find(|c| c.id == *id).ok_or_else(|| {
        StepError::usage(format!(
            "the profile's certificate-id '{id}' is not among the integration's {} certificate(s) that NetSuite lists; check certificate-id (NetSuite shows it under Setup > Integration > Manage Authentication > OAuth 2.0 Client Credentials (M2M) Setup) and the client id",
            listed.len()
        ))
    })?;
    if entry.revoked {
        return Err(StepError::netsuite(format!(
            "the profile's certificate '{id}' is revoked in NetSuite, so it cannot be rotated (its role and entity need a new mapping made by an administrator); set the profile to a working certificate first"
        )));
    }
    Ok(entry)
}

/// Refuses when the integration already has [`MAX_ACTIVE`] active certificates, naming them;
/// else how many it has.
fn check_room(listed: &[ListedCertificate], now: SystemTime) -> Result<usize, StepError> {
    let active: Vec<String> = listed
        .iter()
        .filter(|c| c.is_active(now))
        .map(ToString::to_string)
        .collect();
    if active.len() < MAX_ACTIVE {
        return Ok(active.len());
    }
    Err(StepError::netsuite(format!(
        "the integration already has {} active certificates, NetSuite's limit, so no new one can be uploaded: {}; revoke one that is no longer used (Setup > Integration > Manage Authentication > OAuth 2.0 Client Credentials (M2M) Setup) and run rotate again",
        active.len(),
        active.join("; ")
    )))
}

/// The role or entity for the new mapping, which must be known.
fn mapping(what: &str, id: Option<InternalId>) -> Result<InternalId, StepError> {
    id.ok_or_else(|| {
        StepError::usage(format!(
            "NetSuite's list does not say which {what} the current certificate is mapped to; give it with --{what} ID (or '{what} = ID' in the profile), the internal id NetSuite shows for it"
        ))
    })
}

/// A label and a random `CKA_ID` for the new key that the token does not hold yet, checked by
/// preparing (not making) the key: the token can make this kind of key, and can sign with it.
fn free_slot(
    ctx: &Context,
    old: &KeySigner,
    spec: KeySpec,
    options: &Options,
    now: SystemTime,
) -> Result<(String, String), StepError> {
    let profile = &ctx.profile;
    let current = old
        .label()
        .or(profile.key.uri().object.as_deref())
        .unwrap_or("suitekey");
    let candidates =
        plan::label_candidates(current, options.new_label.as_deref(), &plan::yyyymmdd(now));
    let credential = ctx.credential();
    let alg = options.alg.unwrap_or(old.alg());
    for label in &candidates {
        let id = plan::random_id()?;
        let uri: Pkcs11Uri = plan::new_key_uri(profile.key.uri(), label, &id);
        let prepared = KeygenPlan::prepare_with(
            &uri,
            profile.module.as_deref(),
            (spec, alg),
            None,
            &|token| match &credential {
                Some(credential) => Ok(std::sync::Arc::clone(credential)),
                None => token.credential(&uri).map(std::sync::Arc::new),
            },
        );
        match prepared {
            Ok(_) => return Ok((label.clone(), id)),
            Err(pkcs11::Error::LabelTaken { .. }) if options.new_label.is_none() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StepError::usage(format!(
        "the token already holds keys labelled {} … {}; pass --new-label LABEL",
        candidates.first().map_or("", String::as_str),
        candidates.last().map_or("", String::as_str)
    )))
}

/// The new certificate's subject: `--subject`; else the current certificate's (the one stored
/// with the old key under the profile's certificate id); else `CN=<new label>` as `keygen`.
fn subject(
    given: Option<&str>,
    old: &KeySigner,
    old_id: &crate::netsuite::CertificateId,
    new_label: &str,
) -> Result<String, StepError> {
    if given.is_none() {
        let stored = old.stored_certificates().unwrap_or_default();
        let current = stored
            .iter()
            .filter_map(|der| Certificate::from_bytes(der, "a certificate on the token").ok())
            .find(|c| c.certificate_id() == *old_id);
        if let Some(current) = current {
            return Ok(current.subject());
        }
    }
    Ok(subject_name(given, Some(new_label))?.to_string())
}
