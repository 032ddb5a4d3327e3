//! One profile's access token cache: a fresh token is answered at once; a cold or expired one
//! is fetched by a single exchange that every concurrent request shares (single flight); a
//! background task renews the token ahead of its expiry and, while the cached token is still
//! valid, keeps retrying a failed renewal with backoff. Tokens live only in memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::{Mutex, watch};

use super::metrics::ProfileMetrics;
use super::signers::{SignError, SignerHandle};
use crate::exchange::{AccessToken, ExchangeContext, ExchangeError, TokenClient};
use crate::netsuite::AssertionRequest;

/// Renew when less than this remains (NetSuite tokens live 60 minutes) …
const REFRESH_AHEAD: Duration = Duration::from_secs(300);
/// … but never serve a token with less than this left: the client needs time to use it.
const MIN_REMAINING: Duration = Duration::from_secs(30);
/// Waits between failed renewals: doubling from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));

/// What kind of failure kept a profile from a token; decides the HTTP status and the client's
/// exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The profile's config is not usable.
    Config,
    /// No usable PIN, or the token refused it (never retried).
    Pin,
    /// The module, token or key failed.
    Token,
    /// The token endpoint refused, failed or could not be reached.
    Upstream,
}

impl FailureKind {
    /// The `error` field of the JSON answer.
    pub fn code(self) -> &'static str {
        match self {
            FailureKind::Config => "profile_config",
            FailureKind::Pin => "pin",
            FailureKind::Token => "token",
            FailureKind::Upstream => "upstream",
        }
    }
}

/// Why no token could be had, with the full explanation (it never holds a secret).
#[derive(Clone, Debug)]
pub struct Failure {
    /// What failed.
    pub kind: FailureKind,
    /// The error and its causes.
    pub message: String,
}

/// A cached access token and when to renew it.
pub struct Cached {
    /// The token.
    pub token: AccessToken,
    received: SystemTime,
    refresh_at: SystemTime,
}

impl Cached {
    fn new(token: AccessToken, received: SystemTime) -> Cached {
        let lifetime = token.expires_in(received);
        // Short-lived tokens (tests) are renewed a quarter of their life ahead.
        let margin = REFRESH_AHEAD.min(lifetime / 4);
        // Jitter, so that agents started together do not renew together.
        let margin = margin + margin.mul_f64(0.25 * random_fraction());
        let refresh_at = token.expires_at().checked_sub(margin).unwrap_or(received);
        Cached {
            token,
            received,
            refresh_at,
        }
    }

    /// Whether it may still be handed out at `now`.
    fn is_fresh(&self, now: SystemTime) -> bool {
        let lifetime = self.token.expires_in(self.received);
        self.token.expires_in(now) > MIN_REMAINING.min(lifetime / 10)
    }
}

fn random_fraction() -> f64 {
    let mut random = [0u8; 8];
    match getrandom::fill(&mut random) {
        Ok(()) => u64::from_le_bytes(random) as f64 / u64::MAX as f64,
        Err(_) => 0.5,
    }
}

/// What an exchange needs: the HTTP client, the request to sign and the signer.
pub struct Fetcher {
    /// The profile's name, for logs.
    pub name: String,
    /// The HTTP client (shared by all profiles).
    pub client: TokenClient,
    /// What requests use, for error messages.
    pub context: ExchangeContext,
    /// The assertion to sign for each attempt.
    pub request: AssertionRequest,
    /// The profile's signing worker.
    pub signer: SignerHandle,
    /// The profile's counters.
    pub metrics: Arc<ProfileMetrics>,
}

impl Fetcher {
    /// One exchange, counted once its first assertion is signed (when the token endpoint is
    /// actually asked).
    async fn fetch(&self) -> Result<AccessToken, Failure> {
        let counted = std::sync::atomic::AtomicBool::new(false);
        let result = self
            .client
            .fetch(&self.context, || {
                let (signer, request) = (self.signer.clone(), self.request.clone());
                let (counted, metrics) = (&counted, &self.metrics);
                async move {
                    let signed = signer.sign(request).await;
                    if signed.is_ok() && !counted.swap(true, Ordering::Relaxed) {
                        metrics.exchange();
                    }
                    signed
                }
            })
            .await;
        result.map_err(|e| {
            let (kind, code) = classify(&e);
            self.metrics.failure(&code);
            let message = crate::error::chain(&e);
            tracing::warn!(profile = %self.name, code, "no access token: {message}");
            Failure { kind, message }
        })
    }
}

/// The failure's kind and its label in the metrics: NetSuite's error code where it sent one.
fn classify(e: &ExchangeError<SignError>) -> (FailureKind, String) {
    let status = |s: &crate::exchange::StatusError| {
        s.code
            .clone()
            .unwrap_or_else(|| format!("http_{}", s.status.as_u16()))
    };
    let upstream = |code: &str| (FailureKind::Upstream, code.to_owned());
    match e {
        ExchangeError::Assertion(s) if s.is_pin() => (FailureKind::Pin, "pin".into()),
        ExchangeError::Assertion(_) => (FailureKind::Token, "signing".into()),
        ExchangeError::Status(s) => (FailureKind::Upstream, status(s)),
        ExchangeError::RetryAfterTooLong { last, .. } => (FailureKind::Upstream, status(last)),
        ExchangeError::Connect { .. } => upstream("connect"),
        ExchangeError::Timeout { .. } => upstream("timeout"),
        ExchangeError::Http { .. } => upstream("http"),
        ExchangeError::Redirect { .. } => upstream("redirect"),
        ExchangeError::Malformed { .. } => upstream("malformed"),
    }
}

/// One profile's token cache.
pub struct TokenCache {
    fetcher: Fetcher,
    current: RwLock<Option<Arc<Cached>>>,
    /// Exchanges finished so far; a request that waited for one may share its failure.
    finished: AtomicU64,
    /// Held during an exchange (single flight); holds the last exchange's failure.
    flight: Mutex<Option<Arc<Failure>>>,
    /// Bumped whenever a new token is stored, to wake the renewal task.
    stored: watch::Sender<u64>,
}

impl TokenCache {
    /// An empty cache; the first request fetches.
    pub fn new(fetcher: Fetcher) -> TokenCache {
        TokenCache {
            fetcher,
            current: RwLock::new(None),
            finished: AtomicU64::new(0),
            flight: Mutex::new(None),
            stored: watch::Sender::new(0),
        }
    }

    /// The cached token, fresh or not.
    pub fn current(&self) -> Option<Arc<Cached>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Why the profile's signer stopped, if a refused PIN stopped it.
    pub fn stopped(&self) -> Option<Failure> {
        self.fetcher.signer.stopped().map(|reason| Failure {
            kind: FailureKind::Pin,
            message: SignError::Stopped(reason).to_string(),
        })
    }

    fn fresh(&self, now: SystemTime) -> Option<Arc<Cached>> {
        self.current().filter(|c| c.is_fresh(now))
    }

    /// A token fresh enough to hand out: the cached one, or one from an exchange shared with
    /// every request that arrives meanwhile. Requests that waited for an exchange that failed
    /// get its failure rather than starting another.
    pub async fn get(&self) -> Result<Arc<Cached>, Arc<Failure>> {
        if let Some(cached) = self.fresh(SystemTime::now()) {
            self.fetcher.metrics.cache_hit();
            return Ok(cached);
        }
        let before = self.finished.load(Ordering::Acquire);
        let mut last = self.flight.lock().await;
        if let Some(cached) = self.fresh(SystemTime::now()) {
            self.fetcher.metrics.cache_hit();
            return Ok(cached);
        }
        if self.finished.load(Ordering::Acquire) != before
            && let Some(failure) = last.as_ref()
        {
            return Err(Arc::clone(failure));
        }
        self.exchange(&mut last).await
    }

    /// Runs one exchange while holding the flight lock (`last`), and stores its outcome. A
    /// stopped signer is answered at once: nothing is signed, sent, counted or logged.
    async fn exchange(&self, last: &mut Option<Arc<Failure>>) -> Result<Arc<Cached>, Arc<Failure>> {
        if let Some(stopped) = self.stopped() {
            return Err(Arc::new(stopped));
        }
        let result = self.fetcher.fetch().await;
        self.finished.fetch_add(1, Ordering::Release);
        match result {
            Ok(token) => {
                let cached = Arc::new(Cached::new(token, SystemTime::now()));
                *self.current.write().unwrap_or_else(PoisonError::into_inner) =
                    Some(Arc::clone(&cached));
                *last = None;
                self.stored.send_modify(|n| *n += 1);
                Ok(cached)
            }
            Err(failure) => {
                let failure = Arc::new(failure);
                *last = Some(Arc::clone(&failure));
                Err(failure)
            }
        }
    }

    /// Renews the token unless someone else already did.
    async fn refresh(&self) -> Result<(), Arc<Failure>> {
        let mut last = self.flight.lock().await;
        if self
            .current()
            .is_some_and(|c| c.refresh_at > SystemTime::now())
        {
            return Ok(());
        }
        self.exchange(&mut last).await.map(drop)
    }

    /// The renewal task: sleeps until the cached token is due for renewal, renews it, and
    /// retries failures with backoff (the cached token is served meanwhile while it is
    /// fresh). Idle until the first token is fetched. Runs until aborted.
    pub async fn keep_fresh(self: Arc<Self>) {
        let mut stored = self.stored.subscribe();
        let mut backoff = BACKOFF.0;
        loop {
            let Some(due) = self.current().map(|c| c.refresh_at) else {
                if stored.changed().await.is_err() {
                    return;
                }
                continue;
            };
            let wait = due
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            if !wait.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    changed = stored.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        continue;
                    }
                }
            }
            match self.refresh().await {
                Ok(()) => backoff = BACKOFF.0,
                Err(_) => {
                    let wait = backoff.mul_f64(0.5 + 0.5 * random_fraction());
                    tracing::info!(profile = %self.fetcher.name, wait_ms = wait.as_millis() as u64, "renewal failed; retrying after a pause");
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(BACKOFF.1);
                }
            }
        }
    }
}
