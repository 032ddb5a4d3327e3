//! The agent rotating a profile's certificate by itself: a profile with `rotate-before-days = N`
//! is rotated by [`crate::rotation::rotate`] (the code `suitekey rotate` runs) once its
//! certificate has N days or fewer left, or when its journal holds a rotation in progress.
//!
//! Checked at start, after each reload, every `--rotation-check-interval` and when a retry or a
//! due date comes; a rotation runs on a blocking thread, one at a time per token (the turn is
//! keyed by the token's identity: a rotation makes and relabels keys in it), logged in with the
//! credential the agent holds for that token (never a PIN read or prompted for again). A failed
//! rotation is logged with its step and remedy and retried after `--rotation-retry`, doubling
//! up to [`state::MAX_RETRY`]; until step 5 the profile keeps serving with its old key, which
//! keeps working. Before step 6 revokes the old certificate the agent serves the profile with
//! the rotation's new key and certificate (as its journal records them, and as the rewritten
//! config must name them), reopened and swapped in once it has a token (`run`); if it cannot,
//! nothing is revoked, the old key keeps serving, and the rotation is retried from step 6 with
//! the same backoff (the served profile differing from the file is expected then).
//!
//! | file | holds |
//! | --- | --- |
//! | [`state`] | [`state::Rotations`]: each profile's phase, counters, `/v1/profiles` view and `/metrics` lines; the backoff; one turn per token |
//! | `schedule` | the checks: which profile is due and may be rotated now |
//! | `run` | one rotation on its blocking thread, its progress, taking up the new key |

mod run;
mod schedule;
pub mod state;

use std::time::Duration;

pub use schedule::spawn;
pub use state::MAX_RETRY;

/// How often the certificates are checked by default (besides at start and on reload).
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(4 * 3600);
/// The pause after a first failed rotation by default.
pub const DEFAULT_RETRY: Duration = Duration::from_secs(15 * 60);

/// When the agent checks its `rotate-before-days` profiles, and how it retries.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// How often the certificates are checked (`--rotation-check-interval`).
    pub check_interval: Duration,
    /// The pause after a first failed rotation, doubling after each (`--rotation-retry`).
    pub retry: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            check_interval: DEFAULT_CHECK_INTERVAL,
            retry: DEFAULT_RETRY,
        }
    }
}
