//! One rotation, on a blocking thread (the rotation signs in the token and waits for NetSuite on
//! a small runtime of its own): the token's turn, [`crate::rotation::rotate`] with the agent's
//! credential, its progress logged and shown in `/v1/profiles`, and, before step 6 revokes the
//! old certificate, the profile reopened with its new key and swapped in without a gap.

use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime};

use super::state::{Failure, Phase, Rotations, retry_after};
use crate::agent::api::Agent;
use crate::agent::logins::Logins;
use crate::agent::profiles::{self, Options};
use crate::cert::rfc3339;
use crate::config::ProfileOverrides;
use crate::pkcs11::{Credential, TokenId};
use crate::report::chain;
use crate::rotation::{self, Outcome, Progress, Request, RotationError, Step};

/// What a rotation needs of the agent.
#[derive(Clone)]
pub(super) struct Agency {
    pub(super) agent: Arc<Agent>,
    pub(super) options: Arc<Options>,
    pub(super) logins: Arc<Logins>,
    pub(super) runtime: tokio::runtime::Handle,
}

/// How long the reopened profile may take to get its first access token before it is served.
const TAKE_UP_LIMIT: Duration = Duration::from_secs(60);

/// Rotates profile `name` on a blocking thread, in `token`'s turn, logged in with `credential`;
/// then asks for a check (the next due date, or the retry).
pub(super) fn start(agency: Agency, name: &str, token: TokenId, credential: Arc<Credential>) {
    let name = name.to_owned();
    let runtime = agency.runtime.clone();
    runtime.spawn_blocking(move || {
        let rotations = agency.agent.rotations();
        let turn = rotations.turn(&token);
        // One rotation at a time per token: the others wait here, shown as waiting.
        let _turn = turn.lock().unwrap_or_else(PoisonError::into_inner);
        rotations.update(&name, |e| e.phase = Phase::Running(Step::Preflight));
        tracing::info!(profile = %name, "rotation of profile '{name}' begins");
        match rotate(&agency, &name, credential) {
            Ok(id) => {
                rotations.update(&name, |e| {
                    e.ok += 1;
                    e.failures = 0;
                    e.phase = Phase::Idle;
                    e.last = Some((rfc3339(SystemTime::now()), id.clone()));
                });
                tracing::info!(profile = %name, certificate_id = %id, "rotation of profile '{name}' ended: it uses certificate {id} now");
            }
            Err((step, error)) => failed(rotations, &agency, &name, (step, &error)),
        }
        rotations.wake();
    });
}

/// Runs the rotation; the new certificate id when it is complete, else the step that failed
/// (if one did) and the error with what to do.
fn rotate(
    agency: &Agency,
    name: &str,
    credential: Arc<Credential>,
) -> Result<String, (Option<Step>, String)> {
    let config = profiles::load_config(agency.options.config.as_deref())
        .map(|c| c.path().to_owned())
        .map_err(|e| (None, chain(&e)))?;
    let request = Request {
        config: &config,
        profile: name,
        flags: ProfileOverrides {
            module: agency.options.module.clone(),
            ..ProfileOverrides::default()
        },
        options: rotation::Options::default(),
        state_dir: None,
        credential: Some(credential),
    };
    let mut progress = Logged { agency, name };
    let outcome =
        rotation::rotate(request, &mut progress).map_err(|e: RotationError| (e.step, chain(&e)))?;
    match outcome {
        Outcome::Rotated { certificate_id, .. } => {
            // Taken up before the revoke already, unless an earlier run revoked (then the
            // profile was opened from the rewritten config); this only makes sure.
            if let Err(e) = take_up(agency, name) {
                tracing::warn!(profile = %name, "{e}");
            }
            Ok(certificate_id.to_string())
        }
        // Not asked for (no dry run).
        Outcome::Planned { .. } => Ok(String::new()),
    }
}

/// Records and logs a failed rotation, with when it is tried again.
fn failed(rotations: &Rotations, agency: &Agency, name: &str, (step, error): (Option<Step>, &str)) {
    let config = agency
        .options
        .config
        .clone()
        .or_else(crate::config::Config::default_path)
        .unwrap_or_default();
    let first = agency.options.rotation.retry;
    let retry_at = rotations.update(name, |entry| {
        entry.failures += 1;
        entry.failed += 1;
        let retry_at = SystemTime::now() + retry_after(first, entry.failures);
        entry.phase = Phase::Failed(Failure {
            step,
            error: error.to_owned(),
            retry_at,
        });
        retry_at
    });
    let step = step.map(Step::number);
    tracing::error!(
        profile = %name,
        step,
        "{error}\n  the agent tries again at {} (or run 'suitekey --config {} --profile {name} rotate' now, which continues it); the profile keeps serving meanwhile",
        rfc3339(retry_at),
        config.display()
    );
}

/// The agent's [`Progress`]: each step logged and shown, and the new key taken up before the
/// revoke.
struct Logged<'a> {
    agency: &'a Agency,
    name: &'a str,
}

impl Progress for Logged<'_> {
    fn step(&mut self, step: Step) {
        let name = self.name;
        self.agency
            .agent
            .rotations()
            .update(name, |e| e.phase = Phase::Running(step));
        tracing::info!(profile = %name, step = step.number(), "rotation of profile '{name}': {step}");
    }

    fn done(&mut self, step: Step, what: &str) {
        let name = self.name;
        tracing::info!(profile = %name, step = step.number(), "rotation of profile '{name}': {what}");
    }

    fn note(&mut self, text: &str) {
        let name = self.name;
        tracing::info!(profile = %name, "rotation of profile '{name}': {text}");
    }

    fn before_revoke(&mut self) -> Result<(), String> {
        take_up(self.agency, self.name)
    }
}

/// Serves profile `name` as the config file defines it now (rewritten by step 5), unless it
/// already is: reopened like a reload reopens a changed profile, with the counters kept and
/// the credential the token's profiles share; swapped in only once it has an access token of
/// its own, so no request waits or fails on the way. Requests already under way finish with
/// the old profile.
///
/// Cached tokens: NetSuite does not say whether an access token made with a certificate stays
/// valid once that certificate is revoked (the emulator keeps it valid until it expires). So
/// the safe order is this one: the old profile, with its cache, is out of service before
/// step 6 revokes, and no token of the old mapping is handed out after the revoke; tokens
/// handed out before it are the clients' (as after any renewal, a client that gets a 401 asks
/// again and gets the new mapping's).
fn take_up(agency: &Agency, name: &str) -> Result<(), String> {
    let agent = &agency.agent;
    let _changing = agent.changing_profiles();
    let config = profiles::load_config(agency.options.config.as_deref()).map_err(|e| chain(&e))?;
    let table = config.profile(name).map_err(|e| chain(&e))?;
    let current = agent.profiles();
    let Some(previous) = current.get(name) else {
        return Err(format!(
            "the agent does not serve profile '{name}' any more; the old certificate is not revoked"
        ));
    };
    if previous.table() == table && previous.failure().is_none() {
        return Ok(());
    }
    let not_taken = |why: String| {
        format!(
            "the agent cannot serve profile '{name}' with its new key ({why}), so the old certificate is not revoked yet"
        )
    };
    let reopened = profiles::reopen(
        name,
        table,
        previous,
        &agency.options,
        (&agency.logins, &agency.runtime),
    );
    let active = reopened
        .state
        .as_ref()
        .map_err(|f| not_taken(f.message.clone()))?;
    let first = agency
        .runtime
        .block_on(tokio::time::timeout(TAKE_UP_LIMIT, active.cache.get()));
    match first {
        Ok(Ok(_)) => {}
        Ok(Err(unavailable)) => return Err(not_taken(unavailable.failure.message.clone())),
        Err(_) => {
            return Err(not_taken(format!(
                "no access token within {} s",
                TAKE_UP_LIMIT.as_secs()
            )));
        }
    }
    let mut served = (*current).clone();
    let id = reopened
        .certificate_id
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    served.insert(name.to_owned(), Arc::new(reopened));
    agent.replace(served);
    tracing::info!(profile = %name, certificate_id = %id, "profile '{name}' now serves tokens of its new key and certificate {id}; the old one's cached token is no longer handed out");
    Ok(())
}
