//! What the emulator remembers while it runs: its counters ([`Stats`]), the assertions already
//! used, the access tokens it issued (kept only as their SHA-256), the account's certificates
//! and the certificate API's calls, behind one lock; and whether it is stopping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use serde::Serialize;

use super::certificates::calls::Calls;
use super::certificates::store::Store;
use super::rules::ReplayLog;
use super::{Config, TOKEN_PATH, base_url};
use crate::netsuite::{CertificateId, ClientId, Scope};

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
pub(in crate::emulator) struct Issued {
    /// When it stops opening anything.
    pub(in crate::emulator) expires: SystemTime,
    /// The scopes it was granted.
    pub(in crate::emulator) scopes: Vec<Scope>,
    /// The client it was issued to.
    pub(in crate::emulator) client_id: ClientId,
    /// The certificate whose key signed the assertion it was issued for.
    pub(in crate::emulator) certificate_id: CertificateId,
}

/// Everything that changes while the emulator runs.
#[derive(Default)]
pub(in crate::emulator) struct Mutable {
    pub(in crate::emulator) stats: Stats,
    pub(in crate::emulator) replays: ReplayLog,
    /// Issued tokens by [`token_hash`].
    pub(in crate::emulator) tokens: HashMap<Vec<u8>, Issued>,
    /// The account's certificates, which the token endpoint checks `kid`s against.
    pub(in crate::emulator) certificates: Store,
    /// The certificate API's requests so far.
    pub(in crate::emulator) calls: Calls,
}

/// The state every handler shares: the configuration, the emulator's own token URL and the
/// [`Mutable`] part behind a lock.
pub(in crate::emulator) struct Shared {
    pub(in crate::emulator) config: Config,
    pub(in crate::emulator) token_url: String,
    state: Mutex<Mutable>,
    /// Turns `true` when the emulator starts shutting down: a hanging call then ends.
    pub(in crate::emulator) stopping: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    pub(in crate::emulator) fn new(config: Config, addr: std::net::SocketAddr) -> Arc<Shared> {
        let state = Mutable {
            certificates: Store::new(config.registrations.clone()),
            ..Mutable::default()
        };
        Arc::new(Shared {
            token_url: format!("{}{TOKEN_PATH}", base_url(addr)),
            config,
            state: Mutex::new(state),
            stopping: tokio::sync::watch::Sender::new(false),
        })
    }

    pub(in crate::emulator) fn lock(&self) -> MutexGuard<'_, Mutable> {
        // A panicking handler leaves counters that are still meaningful.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What an issued token is remembered by: its SHA-256, so the emulator's memory holds no
/// usable token.
pub(in crate::emulator) fn token_hash(token: &str) -> Vec<u8> {
    crate::jose::Hash::Sha256.digest(token.as_bytes())
}
