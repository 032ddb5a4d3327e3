//! The checks: at start, on [`state::Rotations::wake`] (a reload, a rotation's end) and every
//! check interval, which `rotate-before-days` profile is due (or has a rotation in progress in
//! its journal) and may be rotated now; a due one is started (`run`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::run::{self, Agency};
use super::state::{self, EXPIRY_UNKNOWN, Entry, Phase, Rotations};
use crate::agent::api::Agent;
use crate::agent::logins::Logins;
use crate::agent::profiles::{self, Options, ProfileMap, Served};
use crate::netsuite::CertificateId;
use crate::pkcs11::{Credential, TokenId};

/// Starts the task that checks the profiles: now, on [`Rotations::wake`], and at least every
/// check interval. Call inside the runtime.
pub fn spawn(agent: Arc<Agent>, options: Arc<Options>, logins: Arc<Logins>) {
    let agency = Agency {
        agent,
        options,
        logins,
        runtime: tokio::runtime::Handle::current(),
    };
    tokio::spawn(async move {
        loop {
            let checking = agency.clone();
            let interval = agency.options.rotation.check_interval;
            // Reading journals and the config file blocks: not on the async workers.
            let wait = tokio::task::spawn_blocking(move || check(&checking))
                .await
                .unwrap_or(interval);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = agency.agent.rotations().woken() => {}
            }
        }
    });
}

/// The shortest wait between two checks: a due date or retry time passing is met within it.
const MIN_WAIT: Duration = Duration::from_millis(500);

/// Checks every profile, starts the rotations that are due, and returns how long to wait
/// before the next check (the interval, or sooner for a due date or a retry).
fn check(agency: &Agency) -> Duration {
    let now = SystemTime::now();
    let profiles = agency.agent.profiles();
    let rotations = agency.agent.rotations();
    rotations
        .entries()
        .retain(|name, e| profiles.contains_key(name) || matches!(e.phase, Phase::Running(_)));
    let mut wait = agency.options.rotation.check_interval;
    for served in profiles.values() {
        match next(agency, &profiles, served, now) {
            Next::Later(at) => wait = wait.min(at.duration_since(now).unwrap_or_default()),
            Next::Start(token, credential) => {
                run::start(agency.clone(), &served.name, token, credential);
            }
            Next::Nothing => {}
        }
    }
    wait.max(MIN_WAIT)
}

/// What a check does for one profile.
enum Next {
    /// Nothing until a reload, an interval or a rotation's end.
    Nothing,
    /// Check again at this time.
    Later(SystemTime),
    /// Rotate it now, in the token's turn, logged in with this credential.
    Start(TokenId, Arc<Credential>),
}

/// Whether `served` is due (its certificate has its `rotate-before-days` or fewer left, or its
/// journal holds a rotation in progress) and can be rotated now.
fn next(agency: &Agency, profiles: &ProfileMap, served: &Served, now: SystemTime) -> Next {
    let rotations = agency.agent.rotations();
    let name = served.name.as_str();
    let Some(days) = served.rotate_before_days else {
        rotations.entries().remove(name);
        return Next::Nothing;
    };
    match rotations.phase(name) {
        Phase::Running(_) | Phase::Waiting => return Next::Nothing,
        Phase::Failed(f) if f.retry_at > now => return Next::Later(f.retry_at),
        _ => {}
    }
    let journal = crate::rotation::status(None, name).ok().flatten();
    let in_progress = journal.as_ref().is_some_and(|j| !j.complete);
    let switched = journal.as_ref().filter(|j| !j.complete).and_then(|j| {
        Some((
            j.plan.new_certificate_id.clone()?,
            j.plan.new_key.redacted(),
        ))
    });
    let last = journal.filter(|j| j.complete).and_then(|j| {
        let id = j.plan.new_certificate_id?;
        Some((j.updated, id.to_string()))
    });
    rotations.update(name, |e| e.last = last.or(e.last.take()));
    if !in_progress {
        // Not due (any more): a failure before (the certificate since rotated by hand) is over.
        let idle = |e: &mut Entry| {
            e.phase = Phase::Idle;
            e.failures = 0;
        };
        match state::due_at(served, days) {
            None => return block(rotations, name, EXPIRY_UNKNOWN.to_owned()),
            Some(due) if due > now => {
                rotations.update(name, idle);
                return Next::Later(due);
            }
            Some(_) => {}
        }
    }
    match ready(agency, profiles, served, switched.as_ref()) {
        Ok((token, credential)) => {
            rotations.update(name, |e| e.phase = Phase::Waiting);
            Next::Start(token, credential)
        }
        Err(reason) => block(rotations, name, reason),
    }
}

fn block(rotations: &Rotations, name: &str, reason: String) -> Next {
    let changed = rotations.update(name, |e| {
        let changed = !matches!(&e.phase, Phase::Blocked(r) if *r == reason);
        e.phase = Phase::Blocked(reason.clone());
        changed
    });
    if changed {
        tracing::warn!(profile = name, "the certificate is not rotated: {reason}");
    }
    Next::Nothing
}

/// The token and credential a rotation of `served` logs in with, or why it cannot run now:
/// the profile gives no tokens, another profile uses its certificate (the revoke would break
/// that one), the config file's profile is not the one served (its new settings gave no token), or
/// the agent holds no login for its token.
///
/// A rotation in progress whose file names its new key and certificate (`switched`: a step 5
/// switched it, even if a later run went back to prove the new key again) may have the agent
/// still serve the old ones (taking up the new ones failed): that difference is expected, and
/// the rotation continues; its step 6 takes them up before it revokes anything.
fn ready(
    agency: &Agency,
    profiles: &ProfileMap,
    served: &Served,
    switched: Option<&(CertificateId, String)>,
) -> Result<(TokenId, Arc<Credential>), String> {
    let name = &served.name;
    if let Some(f) = served.failure() {
        return Err(format!(
            "the profile gives no tokens ({}); it is rotated once it does",
            f.message
        ));
    }
    let shared = profiles
        .values()
        .find(|p| p.name != *name && p.certificate_id == served.certificate_id);
    if let Some(other) = shared {
        return Err(format!(
            "profile '{}' uses the same certificate, which the rotation would revoke under it: give each profile its own key and certificate, or rotate by hand (suitekey rotate) and point both profiles at the new key",
            other.name
        ));
    }
    let config = profiles::load_config(agency.options.config.as_deref())
        .map_err(|e| crate::report::chain(&e))?;
    let table = config.profile(name).map_err(|e| crate::report::chain(&e))?;
    let names_new = |(id, key): &(CertificateId, String)| {
        crate::config::resolve(Some(table), run::overrides(agency))
            .is_ok_and(|p| p.certificate_id == *id && p.key.redacted() == *key)
    };
    if table != served.table() && !switched.is_some_and(names_new) {
        return Err(format!(
            "profile '{name}' in '{}' is not the one the agent serves (the agent reloads a changed file within seconds, but keeps a changed profile on its old settings while the new ones give no token: its log says why); fix the profile, then save the file again or reload the agent (SIGHUP), so that it serves what will be rotated",
            config.path().display()
        ));
    }
    agency.logins.held(name).ok_or_else(|| {
        "the agent holds no login for the profile's token (its PIN was refused); fix the PIN source and reload the agent".to_owned()
    })
}
