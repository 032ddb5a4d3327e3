//! Replay: an assertion is accepted once. What marks it as used is its `jti`, or a hash of its
//! signature when it has none, remembered until it expires.

use std::collections::HashMap;
use std::time::SystemTime;

use super::refusal::{AuditReason, Refusal};
use super::{Grant, clip, unix_secs};

/// Assertions already used, until they expire.
#[derive(Debug, Default)]
pub struct ReplayLog {
    used: HashMap<String, f64>,
}

impl ReplayLog {
    /// Whether an assertion with this replay key was accepted before.
    pub fn contains(&self, key: &str) -> bool {
        self.used.contains_key(key)
    }

    /// Marks a granted assertion as used, and forgets those that expired before `now`
    /// (they would be refused as expired anyway, so the log stays small).
    pub fn record(&mut self, grant: &Grant, now: SystemTime) {
        let now = unix_secs(now);
        self.used.retain(|_, exp| *exp > now);
        self.used.insert(grant.replay_key.clone(), grant.expires_at);
    }
}

/// The key that marks an assertion with `jti` (if any) and `signature` as used: `jti:<jti>`,
/// else `sig:<hash>` of the signature (so an identical assertion cannot be replayed either).
/// Refused when `replays` holds it already.
pub(super) fn check_unused(
    jti: Option<&str>,
    signature: &[u8],
    replays: &ReplayLog,
) -> Result<String, Refusal> {
    let replay_key = match jti {
        Some(j) => format!("jti:{j}"),
        None => format!(
            "sig:{}",
            crate::jose::b64url(&crate::jose::Hash::Sha256.digest(signature))
        ),
    };
    if replays.contains(&replay_key) {
        return Err(Refusal::grant(
            AuditReason::Replayed,
            match jti {
                Some(j) => format!("jti {:?} was already used", clip(j)),
                None => "this assertion (it has no jti) was already used".to_owned(),
            },
        ));
    }
    Ok(replay_key)
}
