//! What the emulator remembers while it runs: its counters ([`Stats`]), the assertions already
//! used, and the access tokens it issued (kept only as their SHA-256), behind one lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use serde::Serialize;

use super::rules::ReplayLog;
use super::{Config, TOKEN_PATH, base_url};
use crate::netsuite::Scope;

/// Counters served at [`STATS_PATH`](super::STATS_PATH).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    /// Token POSTs received (faulted ones included).
    pub token_requests: u64,
    /// Access tokens issued.
    pub tokens_issued: u64,
    /// The `jti` of every accepted assertion, in order (tests check retries use fresh ones).
    pub jtis: Vec<String>,
}

/// An issued access token's record; the token itself is kept only as its SHA-256.
#[derive(Clone)]
pub(super) struct Issued {
    /// When it stops opening anything.
    pub(super) expires: SystemTime,
    /// The scopes it was granted.
    pub(super) scopes: Vec<Scope>,
}

/// Everything that changes while the emulator runs.
#[derive(Default)]
pub(super) struct Mutable {
    pub(super) stats: Stats,
    pub(super) replays: ReplayLog,
    /// Issued tokens by [`token_hash`].
    pub(super) tokens: HashMap<Vec<u8>, Issued>,
}

/// The state every handler shares: the configuration, the emulator's own token URL and the
/// [`Mutable`] part behind a lock.
pub(super) struct Shared {
    pub(super) config: Config,
    pub(super) token_url: String,
    state: Mutex<Mutable>,
}

impl Shared {
    pub(super) fn new(config: Config, addr: std::net::SocketAddr) -> Arc<Shared> {
        Arc::new(Shared {
            token_url: format!("{}{TOKEN_PATH}", base_url(addr)),
            config,
            state: Mutex::default(),
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Mutable> {
        // A panicking handler leaves counters that are still meaningful.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What an issued token is remembered by: its SHA-256, so the emulator's memory holds no
/// usable token.
pub(super) fn token_hash(token: &str) -> Vec<u8> {
    crate::jose::Hash::Sha256.digest(token.as_bytes())
}
