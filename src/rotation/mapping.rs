//! The steps that talk to NetSuite's certificates API: 3, the new certificate uploaded; 4, the
//! new key proven with an access token of its own; 6, the old certificate revoked.
//!
//! Each looks at the list before it acts and after: an upload is never repeated when the list
//! already has the new certificate (an earlier run may have uploaded it and stopped before
//! writing the journal), a revoke is not repeated when the list shows it done, and a call
//! whose answer was lost is judged by the list.

use std::time::{Duration, Instant};

use super::Progress;
use super::context::{Context, Which};
use super::error::StepError;
use super::journal::Journal;
use super::plan::Plan;
use super::preflight::MAX_ACTIVE;
use crate::netsuite::{CertificateId, ListedCertificate, Upload};

/// How long a new certificate is given to start working at the token endpoint.
pub const PROPAGATION: Duration = Duration::from_secs(60);

/// Runs step 3 with the old key's token.
pub(super) fn upload(ctx: &mut Context, journal: &Journal) -> Result<String, StepError> {
    let plan = &journal.plan;
    let new_id = new_id(plan)?;
    let pem = journal.certificate.as_deref().ok_or_else(|| {
        StepError::usage("the journal holds no new certificate although step 2 is done; remove the journal and rotate again")
    })?;
    let kid = &plan.old_certificate_id;
    let listed = ctx.list_as(Which::Old, plan, kid)?;
    if let Some(entry) = find(&listed, &new_id) {
        return already_there(entry, "uploaded by an earlier run");
    }
    let active = listed
        .iter()
        .filter(|c| c.is_active(std::time::SystemTime::now()))
        .count();
    if active >= MAX_ACTIVE {
        return Err(StepError::netsuite(format!(
            "the integration now has {active} active certificates, NetSuite's limit, so the new one cannot be uploaded; revoke one that is no longer used and run rotate again"
        )));
    }
    let upload = Upload {
        file_content: pem,
        role: plan.role,
        entity: plan.entity,
    };
    match ctx.upload_as(Which::Old, plan, kid, &upload)? {
        Ok(Some(answered)) if answered != new_id => Err(StepError::netsuite(format!(
            "NetSuite answered the upload with certificate id '{answered}', not the '{new_id}' computed from the certificate (base64url SHA-256 of its DER); check with 'suitekey check --cert' and NetSuite's list before going on"
        ))),
        Ok(_) => confirm_listed(ctx, plan, &new_id),
        Err(e) if e.outcome_unknown() => match confirm_listed(ctx, plan, &new_id) {
            Ok(summary) => Ok(summary),
            Err(_) => Err(e.into()),
        },
        Err(e) => Err(e.into()),
    }
}

/// Runs step 4: a token with the new key and id (waiting up to [`PROPAGATION`] for NetSuite
/// to accept it), then the list with that token.
pub(super) fn prove(
    ctx: &mut Context,
    journal: &Journal,
    progress: &mut dyn Progress,
) -> Result<String, StepError> {
    let plan = &journal.plan;
    let new_id = new_id(plan)?;
    let started = Instant::now();
    let mut wait = Duration::from_secs(1);
    loop {
        match ctx.renew_token(Which::New, plan, &new_id) {
            Ok(()) => break,
            Err(StepError::Exchange(e))
                if e.is_permanent() && started.elapsed() + wait <= PROPAGATION =>
            {
                progress.note(&format!(
                    "NetSuite does not accept the new certificate yet ({}); trying again in {} s",
                    e.to_string().lines().next().unwrap_or_default(),
                    wait.as_secs()
                ));
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(16));
            }
            Err(e) => return Err(e),
        }
    }
    let listed = ctx.list_as(Which::New, plan, &new_id)?;
    match find(&listed, &new_id) {
        Some(entry) if entry.is_active(std::time::SystemTime::now()) => Ok(format!(
            "the new key got an access token with certificate id {new_id} after {} s, and the certificates API answered it",
            started.elapsed().as_secs()
        )),
        _ => Err(StepError::netsuite(format!(
            "the new key got a token, but NetSuite's list does not show certificate {new_id} active; check the integration's certificates in NetSuite"
        ))),
    }
}

/// Runs step 6 with the new key's token: revokes the old certificate, then sees it revoked.
/// The old certificate must be in the list before and after (a list without it may be cut
/// short, or paged: nothing is concluded from it), and `confirm` (the profile still names the
/// new key and certificate) must pass just before the revoke.
pub(super) fn revoke(
    ctx: &mut Context,
    journal: &Journal,
    confirm: &dyn Fn() -> Result<(), StepError>,
) -> Result<String, StepError> {
    let plan = &journal.plan;
    let old_id = &plan.old_certificate_id;
    let kid = new_id(plan)?;
    let listed = ctx.list_as(Which::New, plan, &kid)?;
    match find(&listed, old_id) {
        None => return Err(not_listed(old_id, listed.len(), "nothing was revoked")),
        Some(entry) if entry.revoked => {
            return Ok(format!("the old certificate {old_id} was already revoked"));
        }
        Some(_) => {}
    }
    confirm()?;
    let answer = ctx.revoke_as(Which::New, plan, &kid, old_id)?;
    let listed = ctx.list_as(Which::New, plan, &kid)?;
    match (find(&listed, old_id), answer) {
        (Some(entry), _) if entry.revoked => Ok(format!(
            "revoked the old certificate {old_id}; NetSuite lists it revoked"
        )),
        (_, Err(e)) => Err(e.into()),
        (None, Ok(())) => Err(not_listed(
            old_id,
            listed.len(),
            "NetSuite answered the revoke, but whether it took effect cannot be seen",
        )),
        (Some(_), Ok(())) => Err(StepError::netsuite(format!(
            "NetSuite answered the revoke of {old_id}, but its list does not show it revoked; check the integration's certificates in NetSuite"
        ))),
    }
}

/// The old certificate is missing from a list of `count` certificates.
fn not_listed(id: &CertificateId, count: usize, what: &str) -> StepError {
    StepError::netsuite(format!(
        "NetSuite's list of the integration's certificates ({count} shown) does not hold the old certificate {id}, which step 1 found there; the list may be cut short (paged), so {what}; check the integration's certificates in NetSuite (Setup > Integration > Manage Authentication > OAuth 2.0 Client Credentials (M2M) Setup): if {id} was removed there, remove the rotation's journal (the profile already uses the new key)"
    ))
}

/// The new certificate's id, which step 2 recorded.
fn new_id(plan: &Plan) -> Result<CertificateId, StepError> {
    plan.new_certificate_id.clone().ok_or_else(|| {
        StepError::usage("the journal holds no new certificate id although step 2 is done; remove the journal and rotate again")
    })
}

fn find<'a>(listed: &'a [ListedCertificate], id: &CertificateId) -> Option<&'a ListedCertificate> {
    listed.iter().find(|c| c.id == *id)
}

/// An upload found in the list: fine unless NetSuite revoked it.
fn already_there(entry: &ListedCertificate, how: &str) -> Result<String, StepError> {
    if entry.revoked {
        return Err(StepError::netsuite(format!(
            "the new certificate {} is revoked in NetSuite, and a revoked certificate cannot be uploaded again; remove the rotation's journal to start over with another key (the profile still uses the old one)",
            entry.id
        )));
    }
    Ok(format!(
        "the new certificate {} is listed ({how})",
        entry.id
    ))
}

/// After an upload: the list must show the new certificate.
fn confirm_listed(ctx: &mut Context, plan: &Plan, id: &CertificateId) -> Result<String, StepError> {
    let listed = ctx.list_as(Which::Old, plan, &plan.old_certificate_id)?;
    match find(&listed, id) {
        Some(entry) => already_there(entry, "uploaded now"),
        None => Err(StepError::netsuite(format!(
            "NetSuite accepted the upload, but its list does not show certificate {id}; check the integration's certificates in NetSuite"
        ))),
    }
}
