//! What each profile's rotation is doing, as `/v1/profiles` shows it (its `rotation` object),
//! its counters and `/metrics` lines, the pause after a failed rotation, and one turn per
//! token.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};
use tokio::sync::Notify;

use crate::agent::metrics;
use crate::agent::profiles::{ProfileMap, Served};
use crate::cert::rfc3339;
use crate::config::RotateBeforeDays;
use crate::pkcs11::TokenId;
use crate::rotation::Step;

/// The longest pause between failed rotations of a profile (unless `--rotation-retry` is
/// longer).
pub const MAX_RETRY: Duration = Duration::from_secs(6 * 3600);

/// Why a `rotate-before-days` profile cannot be scheduled: its certificate's end is unknown.
pub(super) const EXPIRY_UNKNOWN: &str = "the token holds no certificate with the profile's certificate id, so the agent cannot tell when it expires: store the certificate beside the key (suitekey cert --key URI --out FILE stores it on the token), then reload the agent";

/// What a profile's rotation is doing.
#[derive(Clone, Debug, Default)]
pub(super) enum Phase {
    /// Nothing under way: scheduled, or due at the next check.
    #[default]
    Idle,
    /// It cannot be rotated now: why, and what to do.
    Blocked(String),
    /// Due, and waiting for another rotation on the same token to finish.
    Waiting,
    /// Running this step.
    Running(Step),
    /// The last attempt failed.
    Failed(Failure),
}

/// A failed attempt.
#[derive(Clone, Debug)]
pub(super) struct Failure {
    /// The step that failed (`None`: before the first, e.g. the journal).
    pub(super) step: Option<Step>,
    /// The error, with what to do.
    pub(super) error: String,
    /// When the agent tries again.
    pub(super) retry_at: SystemTime,
}

/// A profile's rotation state and counters, kept by name across the reopen a rotation causes.
#[derive(Clone, Debug, Default)]
pub(super) struct Entry {
    pub(super) phase: Phase,
    /// Failed attempts in a row.
    pub(super) failures: u32,
    /// Rotations that finished.
    pub(super) ok: u64,
    /// Attempts that failed.
    pub(super) failed: u64,
    /// When the last rotation finished (RFC 3339) and the certificate id it switched to.
    pub(super) last: Option<(String, String)>,
}

/// The rotations of the agent's profiles: their state and counters by profile name, and one
/// turn per token.
#[derive(Default)]
pub struct Rotations {
    entries: Mutex<BTreeMap<String, Entry>>,
    turns: Mutex<HashMap<TokenId, Arc<Mutex<()>>>>,
    wake: Notify,
}

impl Rotations {
    /// The `rotation` object of `served` in `/v1/profiles`.
    pub fn view(&self, served: &Served, now: SystemTime) -> Value {
        let entries = self.entries();
        let idle = Entry::default();
        view(entries.get(&served.name).unwrap_or(&idle), served, now)
    }

    /// Adds the rotation lines of `/metrics` for `profiles` to `out`.
    pub fn render(&self, out: &mut String, profiles: &ProfileMap) {
        let entries = self.entries();
        let rows = profiles.values().map(|p| {
            let counts = entries.get(&p.name).map_or((0, 0), |e| (e.ok, e.failed));
            let not_after = p
                .certificate
                .as_ref()
                .map(crate::cert::Certificate::not_after);
            (p.name.as_str(), counts, not_after)
        });
        metrics::render_rotations(out, rows);
    }

    /// Asks for a check now (after a reload, or when a rotation ended).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Completes on the next [`Rotations::wake`] (or at once, for one that came meanwhile).
    pub(super) async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Whether a rotation is under way or about to start (the config file may be rewritten
    /// by it; the rotation takes up the new key itself).
    pub fn busy(&self) -> bool {
        self.entries()
            .values()
            .any(|e| matches!(e.phase, Phase::Running(_) | Phase::Waiting))
    }

    pub(super) fn entries(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn update<T>(&self, name: &str, change: impl FnOnce(&mut Entry) -> T) -> T {
        change(self.entries().entry(name.to_owned()).or_default())
    }

    pub(super) fn phase(&self, name: &str) -> Phase {
        self.entries()
            .get(name)
            .map_or(Phase::Idle, |e| e.phase.clone())
    }

    /// The lock whose holder may rotate a key of `token`.
    pub(super) fn turn(&self, token: &TokenId) -> Arc<Mutex<()>> {
        let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(turns.entry(token.clone()).or_default())
    }
}

/// The pause after `failures` failed rotations in a row: `first`, doubling with each, at most
/// [`MAX_RETRY`] (or `first`, when that is longer).
pub(super) fn retry_after(first: Duration, failures: u32) -> Duration {
    first
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(MAX_RETRY.max(first))
}

/// When `served` becomes due: its certificate's end less `days`, when the token holds it.
pub(super) fn due_at(served: &Served, days: RotateBeforeDays) -> Option<SystemTime> {
    let ahead = Duration::from_secs(u64::from(days.days()) * 86_400);
    let not_after = served.certificate.as_ref()?.not_after();
    Some(
        not_after
            .checked_sub(ahead)
            .unwrap_or(SystemTime::UNIX_EPOCH),
    )
}

/// The `rotation` object of `served` in `/v1/profiles`: `state` (`off`, `scheduled`, `due`,
/// `blocked`, `waiting`, `running`, `failed`) with what goes with it, and the last rotation.
pub(super) fn view(entry: &Entry, served: &Served, now: SystemTime) -> Value {
    let mut view = Map::new();
    let mut put = |key: &str, value: Value| {
        view.insert(key.to_owned(), value);
    };
    let step = |put: &mut dyn FnMut(&str, Value), step: Step| {
        put("step", json!(step.number()));
        put("step_name", json!(step.name()));
    };
    let state = match (&entry.phase, served.rotate_before_days) {
        (Phase::Running(s), _) => {
            step(&mut put, *s);
            "running"
        }
        (Phase::Waiting, _) => "waiting",
        (Phase::Failed(f), _) => {
            if let Some(s) = f.step {
                step(&mut put, s);
            }
            put("error", json!(f.error));
            put("failures", json!(entry.failures));
            put("next_retry_at", json!(rfc3339(f.retry_at)));
            "failed"
        }
        (_, None) => "off",
        (Phase::Blocked(reason), Some(_)) => {
            put("reason", json!(reason));
            "blocked"
        }
        (Phase::Idle, Some(days)) => match due_at(served, days) {
            Some(due) => {
                put("due_at", json!(rfc3339(due)));
                if due <= now { "due" } else { "scheduled" }
            }
            None => {
                put("reason", json!(EXPIRY_UNKNOWN));
                "blocked"
            }
        },
    };
    put("state", json!(state));
    put(
        "rotate_before_days",
        json!(served.rotate_before_days.map(RotateBeforeDays::days)),
    );
    if let Some((at, id)) = &entry.last {
        put("last_rotated_at", json!(at));
        put("last_certificate_id", json!(id));
    }
    Value::Object(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_after_failures_doubles_up_to_the_cap() {
        let first = Duration::from_secs(900);
        assert_eq!(retry_after(first, 1), first);
        assert_eq!(retry_after(first, 2), first * 2);
        assert_eq!(retry_after(first, 4), first * 8);
        assert_eq!(retry_after(first, 9), MAX_RETRY);
        assert_eq!(retry_after(first, u32::MAX), MAX_RETRY);
        let long = Duration::from_secs(8 * 3600);
        assert_eq!(
            retry_after(long, 3),
            long,
            "a longer first pause is its own cap"
        );
    }
}
