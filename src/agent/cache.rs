//! One profile's access token cache: a fresh token is answered at once; a cold or expired one
//! is fetched by a single exchange that every concurrent request shares (single flight); a
//! background task renews the token ahead of its expiry. A failed exchange is remembered with a
//! backoff (1 s doubling to 60 s): until it ends, requests without a fresh token get that
//! failure at once, and then the background task (or a request) tries again; a still valid
//! cached token is served meanwhile. Tokens live only in memory.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
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
/// Pauses after failed exchanges: doubling from the first to the last.
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
        let counted = AtomicBool::new(false);
        let result = self
            .client
            .fetch(&self.context, || {
                let (signer, request) = (self.signer.clone(), self.request.clone());
                let (counted, metrics) = (&counted, &self.metrics);
                async move {
                    let signed = signer.sign(request).await;
                    if signed.is_ok() && !counted.swap(true, Relaxed) {
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
        ExchangeError::Tls { .. } => upstream("tls"),
        ExchangeError::Http { .. } => upstream("http"),
        ExchangeError::Redirect { .. } => upstream("redirect"),
        ExchangeError::Malformed { .. } => upstream("malformed"),
    }
}

/// The last exchange failed: its failure is the answer until `retry_at`, when a request or
/// the renewal task tries again (so an outage costs one exchange per backoff step, not one per
/// request).
struct Backoff {
    failure: Arc<Failure>,
    retry_at: SystemTime,
    /// Failed exchanges in a row; the wait doubles with each.
    failures: u32,
}

/// No token to hand out: why, and when the agent will try again.
#[derive(Clone, Debug)]
pub struct Unavailable {
    /// The last exchange's failure.
    pub failure: Arc<Failure>,
    /// When the next exchange may be made (the `Retry-After` of the answer).
    pub retry_at: SystemTime,
}

/// The pause after `failures` failed exchanges in a row: [`BACKOFF`] doubling, with jitter
/// (half to all of it), so that profiles that failed together do not retry together.
fn backoff_after(failures: u32) -> Duration {
    let doubled = BACKOFF
        .0
        .saturating_mul(1 << failures.saturating_sub(1).min(16));
    doubled
        .min(BACKOFF.1)
        .mul_f64(0.5 + 0.5 * random_fraction())
}

/// One profile's token cache.
pub struct TokenCache {
    fetcher: Fetcher,
    current: RwLock<Option<Arc<Cached>>>,
    /// The last exchange's failure, until an exchange succeeds.
    failed: RwLock<Option<Backoff>>,
    /// Held during an exchange (single flight).
    flight: Mutex<()>,
    /// Bumped after every exchange, to wake the renewal task.
    outcomes: watch::Sender<u64>,
}

impl TokenCache {
    /// An empty cache; the first request fetches.
    pub fn new(fetcher: Fetcher) -> TokenCache {
        TokenCache {
            fetcher,
            current: RwLock::new(None),
            failed: RwLock::new(None),
            flight: Mutex::new(()),
            outcomes: watch::Sender::new(0),
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

    /// The last exchange's failure, until an exchange succeeds; a still valid cached token
    /// is served meanwhile.
    pub fn last_failure(&self) -> Option<Arc<Failure>> {
        let failed = self.failed.read().unwrap_or_else(PoisonError::into_inner);
        failed.as_ref().map(|b| Arc::clone(&b.failure))
    }

    /// The last exchange's failure when the token (not the endpoint) caused it, until an
    /// exchange succeeds: the profile shows as failed meanwhile, even while a cached token is
    /// still served.
    pub fn token_failure(&self) -> Option<Failure> {
        self.last_failure()
            .filter(|f| f.kind == FailureKind::Token)
            .map(|f| (*f).clone())
    }

    fn fresh(&self, now: SystemTime) -> Option<Arc<Cached>> {
        self.current().filter(|c| c.is_fresh(now))
    }

    /// The last failure, while its backoff lasts.
    fn backing_off(&self, now: SystemTime) -> Option<Unavailable> {
        let failed = self.failed.read().unwrap_or_else(PoisonError::into_inner);
        failed
            .as_ref()
            .filter(|b| b.retry_at > now)
            .map(|b| Unavailable {
                failure: Arc::clone(&b.failure),
                retry_at: b.retry_at,
            })
    }

    /// A token fresh enough to hand out: the cached one, or one from an exchange shared with
    /// every request that arrives meanwhile. After a failed exchange, requests get its failure
    /// until the backoff ends rather than starting another.
    pub async fn get(&self) -> Result<Arc<Cached>, Unavailable> {
        if let Some(answer) = self.answer_now(SystemTime::now()) {
            return answer;
        }
        let _flight = self.flight.lock().await;
        if let Some(answer) = self.answer_now(SystemTime::now()) {
            return answer;
        }
        self.exchange().await
    }

    /// The answer that needs no exchange: a fresh token, or the failure being backed off.
    fn answer_now(&self, now: SystemTime) -> Option<Result<Arc<Cached>, Unavailable>> {
        if let Some(cached) = self.fresh(now) {
            self.fetcher.metrics.cache_hit();
            return Some(Ok(cached));
        }
        self.backing_off(now).map(Err)
    }

    /// Runs one exchange (the caller holds the flight lock) and stores its outcome. A stopped
    /// signer is answered at once: nothing is signed, sent or counted.
    async fn exchange(&self) -> Result<Arc<Cached>, Unavailable> {
        if let Some(stopped) = self.stopped() {
            return Err(self.back_off(stopped));
        }
        let result = self.fetcher.fetch().await;
        let outcome = match result {
            Ok(token) => {
                let cached = Arc::new(Cached::new(token, SystemTime::now()));
                *self.current.write().unwrap_or_else(PoisonError::into_inner) =
                    Some(Arc::clone(&cached));
                *self.failed.write().unwrap_or_else(PoisonError::into_inner) = None;
                Ok(cached)
            }
            Err(failure) => Err(self.back_off(failure)),
        };
        self.outcomes.send_modify(|n| *n += 1);
        outcome
    }

    fn back_off(&self, failure: Failure) -> Unavailable {
        let mut failed = self.failed.write().unwrap_or_else(PoisonError::into_inner);
        let failures = failed.as_ref().map_or(0, |b| b.failures) + 1;
        let wait = backoff_after(failures);
        tracing::info!(
            profile = %self.fetcher.name,
            wait_ms = wait.as_millis() as u64,
            "no new token; requests get this error until the next attempt"
        );
        let backoff = Backoff {
            failure: Arc::new(failure),
            retry_at: SystemTime::now() + wait,
            failures,
        };
        let unavailable = Unavailable {
            failure: Arc::clone(&backoff.failure),
            retry_at: backoff.retry_at,
        };
        *failed = Some(backoff);
        unavailable
    }

    /// When the renewal task has work: the end of a failure's backoff (except a refused PIN,
    /// which waits for a reload), else the cached token's renewal time; `None` while cold.
    fn due(&self) -> Option<SystemTime> {
        let failed = self.failed.read().unwrap_or_else(PoisonError::into_inner);
        match failed.as_ref() {
            Some(b) if b.failure.kind == FailureKind::Pin => None,
            Some(b) => Some(b.retry_at),
            None => self.current().map(|c| c.refresh_at),
        }
    }

    /// Renews the token unless someone else already did.
    async fn refresh(&self) {
        let _flight = self.flight.lock().await;
        if self.due().is_some_and(|due| due > SystemTime::now()) {
            return;
        }
        let _ = self.exchange().await;
    }

    /// The renewal task: sleeps until the cached token is due for renewal and renews it;
    /// after a failure (of a renewal or of a cold profile's first exchange) it tries again when
    /// the backoff ends, so a profile recovers without waiting for a client. Idle while the
    /// profile is cold and has not failed. Runs until aborted.
    pub async fn keep_fresh(self: Arc<Self>) {
        let mut outcomes = self.outcomes.subscribe();
        loop {
            outcomes.borrow_and_update();
            let Some(due) = self.due() else {
                if outcomes.changed().await.is_err() {
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
                    changed = outcomes.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        continue;
                    }
                }
            }
            self.refresh().await;
        }
    }
}
