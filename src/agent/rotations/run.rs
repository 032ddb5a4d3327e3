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
use crate::netsuite::CertificateId;
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
/// (if one did) and the error (without the remedy: `failed` gives the agent's).
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
        flags: overrides(agency),
        options: rotation::Options::default(),
        state_dir: None,
        credential: Some(credential),
    };
    let mut progress = Logged { agency, name };
    let outcome = rotation::rotate(request, &mut progress)
        .map_err(|e: RotationError| (e.step, stopped(&e)))?;
    match outcome {
        Outcome::Rotated { certificate_id, .. } => {
            // Taken up before the revoke already, unless an earlier run revoked (then the
            // profile was opened from the rewritten config); this only makes sure.
            if let Err(e) = NewMapping::of_journal(name).and_then(|new| take_up(agency, name, &new))
            {
                tracing::warn!(profile = %name, "{e}");
            }
            Ok(certificate_id.to_string())
        }
        // Not asked for (no dry run).
        Outcome::Planned { .. } => Ok(String::new()),
    }
}

/// The profile fields the agent gives every profile (its `--module`).
pub(super) fn overrides(agency: &Agency) -> ProfileOverrides {
    ProfileOverrides {
        module: agency.options.module.clone(),
        ..ProfileOverrides::default()
    }
}

/// Where and why `e` stopped the rotation, without the command's remedy (which tells a user
/// to run `suitekey rotate`: the agent says what it does instead).
fn stopped(e: &RotationError) -> String {
    let cause = chain(&*e.source);
    match e.step {
        Some(step) => format!(
            "rotating profile '{}' stopped at {step}: {cause}",
            e.profile
        ),
        None => format!("rotating profile '{}': {cause}", e.profile),
    }
}

/// Where a rotation that stopped leaves the profile, as its journal and the agent tell.
enum Left {
    /// Before the switch (or no journal): the profile names the old key and certificate.
    Old,
    /// Switched, and the agent serves the new key and certificate.
    New,
    /// Switched in the config file, but the agent still serves the old key and certificate:
    /// the old certificate must not be revoked until the agent serves the new one.
    Switching,
}

impl Left {
    fn of(agency: &Agency, name: &str) -> Left {
        let journal = crate::rotation::status(None, name).ok().flatten();
        let Some(new) = journal
            .filter(|j| j.is_done(Step::Switch))
            .and_then(|j| j.plan.new_certificate_id)
        else {
            return Left::Old;
        };
        let served = agency.agent.profiles();
        match served.get(name).and_then(|p| p.certificate_id.as_ref()) {
            Some(id) if *id == new => Left::New,
            _ => Left::Switching,
        }
    }

    /// Where the profile is, in a line.
    fn describe(&self) -> &'static str {
        match self {
            Left::Old => "the profile still uses the old key and certificate, which keep working",
            Left::New => "the profile already uses the new key and certificate",
            Left::Switching => {
                "step 5 switched the config file to the new key and certificate, but the agent still serves the old ones, which stay valid: the old certificate is revoked only once the agent serves the new one"
            }
        }
    }
}

/// Records and logs a failed rotation, with when it is tried again.
fn failed(rotations: &Rotations, agency: &Agency, name: &str, (step, error): (Option<Step>, &str)) {
    let config = crate::agent::reload::config_path(&agency.options).unwrap_or_default();
    let left = Left::of(agency, name);
    let error = format!("{error}\n  {}", left.describe());
    let first = agency.options.rotation.retry;
    let retry_at = rotations.update(name, |entry| {
        entry.failures += 1;
        entry.failed += 1;
        let retry_at = SystemTime::now() + retry_after(first, entry.failures);
        entry.phase = Phase::Failed(Failure {
            step,
            error: error.clone(),
            retry_at,
        });
        retry_at
    });
    let step = step.map(Step::number);
    let retry = rfc3339(retry_at);
    match left {
        // A rotation by hand now would find the agent serving the old certificate: the agent
        // finishes it itself once it can serve the new one.
        Left::Switching => tracing::error!(
            profile = %name,
            step,
            "{error}\n  the agent tries again at {retry}: it takes up the new key, then revokes the old certificate; the profile keeps serving with the old one meanwhile"
        ),
        Left::Old | Left::New => tracing::error!(
            profile = %name,
            step,
            "{error}\n  the agent tries again at {retry} (or run 'suitekey --config {} --profile {name} rotate' now, which continues it); the profile keeps serving meanwhile",
            config.display()
        ),
    }
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
        let new = NewMapping::of_journal(self.name)?;
        take_up(self.agency, self.name, &new)
    }
}

/// The key and certificate profile `name` must be served with before step 6 revokes the old
/// certificate: the rotation's new ones, as its journal records them.
struct NewMapping {
    certificate_id: CertificateId,
    /// The key URI, as `/v1/profiles` shows it (no secrets).
    key: String,
}

impl NewMapping {
    /// The new key and certificate of profile `name`'s rotation.
    fn of_journal(name: &str) -> Result<NewMapping, String> {
        let not_revoked = "so the old certificate is not revoked";
        let journal = crate::rotation::status(None, name)
            .map_err(|e| format!("{}; {not_revoked}", chain(&e)))?
            .ok_or_else(|| {
                format!("the journal of profile '{name}''s rotation is gone, {not_revoked}")
            })?;
        let certificate_id = journal.plan.new_certificate_id.ok_or_else(|| {
            format!("the journal of profile '{name}''s rotation holds no new certificate id, {not_revoked}")
        })?;
        Ok(NewMapping {
            certificate_id,
            key: journal.plan.new_key.redacted(),
        })
    }

    /// Whether `id` and `key` are the new certificate id and key.
    fn named_by(&self, id: Option<&CertificateId>, key: Option<&str>) -> bool {
        id == Some(&self.certificate_id) && key == Some(self.key.as_str())
    }
}

/// Serves profile `name` with the rotation's `new` key and certificate, which the config file
/// names now (step 5 rewrote it), unless it already is: reopened like a reload reopens a
/// changed profile, with the counters kept and the credential the token's profiles share;
/// swapped in only once it has an access token of its own, so no request waits or fails on
/// the way. Requests already under way finish with the old profile. Anything else (the file
/// changed back since, the agent no longer serving the profile, no token with the new key)
/// is an error, and step 6 does not revoke.
///
/// Cached tokens: NetSuite does not say whether an access token made with a certificate stays
/// valid once that certificate is revoked (the emulator keeps it valid until it expires). So
/// the safe order is this one: the old profile, with its cache, is out of service before
/// step 6 revokes, and no token of the old mapping is handed out after the revoke; tokens
/// handed out before it are the clients' (as after any renewal, a client that gets a 401 asks
/// again and gets the new mapping's).
fn take_up(agency: &Agency, name: &str, new: &NewMapping) -> Result<(), String> {
    let agent = &agency.agent;
    let _changing = agent.changing_profiles();
    let config = profiles::load_config(agency.options.config.as_deref()).map_err(|e| chain(&e))?;
    let table = config.profile(name).map_err(|e| chain(&e))?;
    let named = crate::config::resolve(Some(table), overrides(agency)).map_err(|e| chain(&e))?;
    let named_key = named.key.redacted();
    if !new.named_by(Some(&named.certificate_id), Some(&named_key)) {
        return Err(format!(
            "profile '{name}' in '{}' names certificate {} and key {named_key}, not the rotation's new certificate {} and key {}: it was changed after step 5 switched it, and the agent would go on signing with a certificate step 6 revokes, so the old certificate is not revoked; set the profile's key and certificate-id back to the new ones to let the rotation finish, or remove its journal to abandon it ('suitekey --profile {name} rotate --status' names it)",
            config.path().display(),
            named.certificate_id,
            new.certificate_id,
            new.key
        ));
    }
    let current = agent.profiles();
    let Some(previous) = current.get(name) else {
        return Err(format!(
            "the agent does not serve profile '{name}' any more; the old certificate is not revoked"
        ));
    };
    let serves_new = new.named_by(previous.certificate_id.as_ref(), previous.key.as_deref());
    if previous.table() == table && previous.failure().is_none() && serves_new {
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
    agency
        .runtime
        .block_on(profiles::first_token(&reopened, TAKE_UP_LIMIT))
        .map_err(not_taken)?;
    if !new.named_by(reopened.certificate_id.as_ref(), reopened.key.as_deref()) {
        return Err(not_taken(
            "the reopened profile names another key or certificate".to_owned(),
        ));
    }
    let mut served = (*current).clone();
    let id = new.certificate_id.to_string();
    served.insert(name.to_owned(), Arc::new(reopened));
    agent.replace(served);
    tracing::info!(profile = %name, certificate_id = %id, "profile '{name}' now serves tokens of its new key and certificate {id}; the old one's cached token is no longer handed out");
    Ok(())
}
