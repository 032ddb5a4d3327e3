//! One profile's access token cache: a fresh token is answered at once; a cold or expired one
//! is fetched by a single exchange that every concurrent request shares (single flight); a
//! background task renews the token ahead of its expiry. A failed exchange is remembered with a
//! backoff (1 s doubling to 60 s; 15 min doubling to 6 h after NetSuite refused the client
//! itself, see [`crate::netsuite::PERMANENT_CODES`]; longer if the server's `Retry-After` says
//! so): until it ends, requests without a fresh token get that failure at once, and then the
//! background task (or a request) tries again; a still valid cached token is served meanwhile.
//! A reload ([`TokenCache::retry_now`]) ends the wait at once. Tokens live only in memory.
//!
//! Every expiry and wait is on the monotonic clock: a step of the wall clock (NTP, a suspended
//! virtual machine, an administrator) neither keeps an expired token in service nor delays a
//! renewal.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, watch};

use super::metrics::ProfileMetrics;
use super::signers::{SignError, SignerHandle};
use crate::exchange::{AccessToken, ExchangeContext, ExchangeError, TokenClient};
use crate::jose::SigningError;
use crate::kind::{HasKind, Kind};
use crate::netsuite::AssertionRequest;

/// Renew when less than this remains (NetSuite tokens live 60 minutes) …
const REFRESH_AHEAD: Duration = Duration::from_secs(300);
/// … but never serve a token with less than this left: the client needs time to use it.
const MIN_REMAINING: Duration = Duration::from_secs(30);
/// The least time left a token is served with, however short-lived: `expires_in` is given in
/// whole seconds, and a client refuses 0.
const MIN_REMAINING_FLOOR: Duration = Duration::from_secs(1);
/// Background renewals are at least this far apart, however short the tokens: an idle agent
/// must not hammer the token endpoint (each exchange is a login in NetSuite's audit trail).
/// NetSuite's tokens are renewed every 55 minutes or so; only test endpoints come near this.
pub const MIN_RENEWAL_INTERVAL: Duration = Duration::from_secs(4);
/// Pauses after failed exchanges: doubling from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));
/// Pauses after NetSuite refused the client itself: doubling from the first to the last.
const REFUSED_BACKOFF: (Duration, Duration) =
    (Duration::from_secs(15 * 60), Duration::from_secs(6 * 3600));

/// The least time left with which a token of `lifetime` is handed out: 30 s, or a tenth of
/// the lifetime for short-lived tokens, and never under 1 s.
pub fn min_remaining(lifetime: Duration) -> Duration {
    (lifetime / 10).clamp(MIN_REMAINING_FLOOR, MIN_REMAINING)
}

/// Why no token could be had, with the full explanation (it never holds a secret).
#[derive(Clone, Debug)]
pub struct Failure {
    /// What kind of failure (the profile's config, its PIN, its token, or the token
    /// endpoint): it decides the answer's HTTP status and `error` name, and so the client's
    /// exit code.
    pub kind: Kind,
    /// The error and its causes.
    pub message: String,
}

/// What a failed exchange says about trying again.
#[derive(Clone, Copy, Debug, Default)]
struct RetryAdvice {
    /// NetSuite refused the client itself: no retry helps until the setup changes.
    refused: bool,
    /// The server's `Retry-After`.
    retry_after: Option<Duration>,
}

/// A cached access token and when to renew it.
pub struct Cached {
    /// The token.
    pub token: AccessToken,
    refresh_at: Instant,
}

impl Cached {
    fn new(token: AccessToken) -> Cached {
        // Short-lived tokens (tests) are renewed a quarter of their life ahead.
        let margin = REFRESH_AHEAD.min(token.lifetime() / 4);
        // Jitter, so that agents started together do not renew together.
        let margin = margin + margin.mul_f64(0.25 * random_fraction());
        let now = Instant::now();
        let refresh_at =
            (now + token.remaining().saturating_sub(margin)).max(now + MIN_RENEWAL_INTERVAL);
        Cached { token, refresh_at }
    }

    /// Whether it may still be handed out: more than [`min_remaining`] is left.
    fn is_fresh(&self) -> bool {
        self.token.remaining() > min_remaining(self.token.lifetime())
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
    async fn fetch(&self) -> Result<AccessToken, (Failure, RetryAdvice)> {
        let counted = AtomicBool::new(false);
        let result = self
            .client
            .fetch(&self.context, || {
                let (signer, request) = (self.signer.clone(), self.request.clone());
                let (counted, metrics) = (&counted, &self.metrics);
                async move {
                    let signed = signer.sign(request).await.map_err(SigningError::new);
                    if signed.is_ok() && !counted.swap(true, Relaxed) {
                        metrics.exchange();
                    }
                    signed
                }
            })
            .await;
        result.map_err(|e| {
            let (kind, code) = classify(&e);
            let message = crate::report::chain(&e);
            let advice = RetryAdvice {
                refused: e.is_permanent(),
                retry_after: e.retry_after(),
            };
            (self.failed(kind, &code, message), advice)
        })
    }

    /// Counts and logs a failed exchange.
    fn failed(&self, kind: Kind, code: &str, message: String) -> Failure {
        self.metrics.failure(code);
        tracing::warn!(profile = %self.name, code, "no access token: {message}");
        Failure { kind, message }
    }

    /// The failure for a token too short-lived to be handed out at all.
    fn too_short(&self, token: &AccessToken) -> Failure {
        let lifetime = token.lifetime();
        let message = format!(
            "the token endpoint issued an access token valid for {} s, too short to hand out: \
             the agent hands out tokens only while at least {} s is left (30 s; a tenth of \
             the lifetime for short-lived tokens, at least 1 s); check that the token URL is \
             NetSuite's, whose tokens live 3600 s",
            lifetime.as_secs(),
            min_remaining(lifetime).as_secs()
        );
        self.failed(Kind::Endpoint, "short_lifetime", message)
    }
}

/// The failure's kind (a signing worker's is its PIN's or its token's, see
/// [`SignError`]'s kind) and its label in the metrics: NetSuite's error code where it sent one.
fn classify(e: &ExchangeError) -> (Kind, String) {
    let status = |s: &crate::exchange::StatusError| {
        s.code
            .clone()
            .unwrap_or_else(|| format!("http_{}", s.status.as_u16()))
    };
    let code = match e {
        ExchangeError::Assertion(s) if s.kind() == Kind::Pin => "pin".into(),
        ExchangeError::Assertion(_) => "signing".into(),
        ExchangeError::Status(s) => status(s),
        ExchangeError::RetryAfterTooLong { last, .. } => status(last),
        ExchangeError::Connect { .. } => "connect".into(),
        ExchangeError::Timeout { .. } => "timeout".into(),
        ExchangeError::Tls { .. } => "tls".into(),
        ExchangeError::Http { .. } => "http".into(),
        ExchangeError::Redirect { .. } => "redirect".into(),
        ExchangeError::Malformed { .. } => "malformed".into(),
    };
    (e.kind(), code)
}

/// The last exchange failed: its failure is the answer until `retry_at`, when a request or
/// the renewal task tries again (so an outage costs one exchange per backoff step, not one per
/// request).
struct Backoff {
    failure: Arc<Failure>,
    retry_at: Instant,
    /// Failed exchanges in a row; the wait doubles with each.
    failures: u32,
    /// Of those, the refusals of the client itself in a row (0: the last failure was not one).
    refusals: u32,
}

/// No token to hand out: why, and when the agent will try again.
#[derive(Clone, Debug)]
pub struct Unavailable {
    /// The last exchange's failure.
    pub failure: Arc<Failure>,
    /// When the next exchange may be made (the `Retry-After` of the answer).
    pub retry_at: Instant,
}

/// `range.0` doubled for each of `n` events in a row after the first, at most `range.1`.
fn doubling(range: (Duration, Duration), n: u32) -> Duration {
    range
        .0
        .saturating_mul(1 << n.saturating_sub(1).min(16))
        .min(range.1)
}

/// The pause after `failures` failed exchanges in a row: [`BACKOFF`] doubling, with jitter
/// (half to all of it), so that profiles that failed together do not retry together.
fn backoff_after(failures: u32) -> Duration {
    doubling(BACKOFF, failures).mul_f64(0.5 + 0.5 * random_fraction())
}

/// The pause after `refusals` refusals of the client in a row: [`REFUSED_BACKOFF`] doubling
/// (no jitter: it is long, and documented as is).
fn refused_backoff_after(refusals: u32) -> Duration {
    doubling(REFUSED_BACKOFF, refusals)
}

/// A wait as people read it: seconds, minutes or hours.
fn human(wait: Duration) -> String {
    match wait.as_secs() {
        s if s < 120 => format!("{s} s"),
        s if s < 2 * 3600 => format!("{} min", s / 60),
        s => format!("{:.1} h", s as f64 / 3600.0),
    }
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
            kind: Kind::Pin,
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
            .filter(|f| f.kind == Kind::Token)
            .map(|f| (*f).clone())
    }

    /// The last exchange's failure when NetSuite refused the client itself, until an exchange
    /// succeeds: the profile shows as failed meanwhile (no retry can help until its setup
    /// changes), even while a cached token is still served.
    pub fn refusal(&self) -> Option<Failure> {
        let failed = self.failed.read().unwrap_or_else(PoisonError::into_inner);
        failed
            .as_ref()
            .filter(|b| b.refusals > 0)
            .map(|b| (*b.failure).clone())
    }

    /// Ends the wait after a failed exchange (a reload asks for this): the renewal task tries
    /// again at once, once; a further failure waits longer, as it would have.
    pub fn retry_now(&self) {
        let mut failed = self.failed.write().unwrap_or_else(PoisonError::into_inner);
        let Some(backoff) = failed.as_mut() else {
            return;
        };
        if backoff.failure.kind == Kind::Pin {
            return;
        }
        backoff.retry_at = Instant::now();
        drop(failed);
        tracing::info!(profile = %self.fetcher.name, "reload: trying the exchange again now");
        self.outcomes.send_modify(|n| *n += 1);
    }

    fn fresh(&self) -> Option<Arc<Cached>> {
        self.current().filter(|c| c.is_fresh())
    }

    /// The last failure, while its backoff lasts.
    fn backing_off(&self, now: Instant) -> Option<Unavailable> {
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
        if let Some(answer) = self.answer_now() {
            return answer;
        }
        let _flight = self.flight.lock().await;
        if let Some(answer) = self.answer_now() {
            return answer;
        }
        self.exchange().await
    }

    /// The answer that needs no exchange: a fresh token, or the failure being backed off.
    fn answer_now(&self) -> Option<Result<Arc<Cached>, Unavailable>> {
        let now = Instant::now();
        if let Some(cached) = self.fresh() {
            self.fetcher.metrics.cache_hit();
            return Some(Ok(cached));
        }
        self.backing_off(now).map(Err)
    }

    /// Runs one exchange (the caller holds the flight lock) and stores its outcome. A stopped
    /// signer is answered at once: nothing is signed, sent or counted. A token too short-lived
    /// to hand out is a failure like any other.
    async fn exchange(&self) -> Result<Arc<Cached>, Unavailable> {
        if let Some(stopped) = self.stopped() {
            return Err(self.back_off(stopped, RetryAdvice::default()));
        }
        let result = self.fetcher.fetch().await;
        let outcome = match result.map(Cached::new) {
            Ok(cached) if !cached.is_fresh() => Err(self.back_off(
                self.fetcher.too_short(&cached.token),
                RetryAdvice::default(),
            )),
            Ok(cached) => {
                let cached = Arc::new(cached);
                *self.current.write().unwrap_or_else(PoisonError::into_inner) =
                    Some(Arc::clone(&cached));
                *self.failed.write().unwrap_or_else(PoisonError::into_inner) = None;
                Ok(cached)
            }
            Err((failure, advice)) => Err(self.back_off(failure, advice)),
        };
        self.outcomes.send_modify(|n| *n += 1);
        outcome
    }

    /// Remembers a failed exchange and how long to wait before the next: the backoff, or the
    /// long one after a refusal of the client itself, or the server's `Retry-After` when it
    /// asks for longer (at most the longest refusal wait).
    fn back_off(&self, failure: Failure, advice: RetryAdvice) -> Unavailable {
        let mut failed = self.failed.write().unwrap_or_else(PoisonError::into_inner);
        let failures = failed.as_ref().map_or(0, |b| b.failures) + 1;
        let refusals = match advice.refused {
            true => failed.as_ref().map_or(0, |b| b.refusals) + 1,
            false => 0,
        };
        let wait = match refusals {
            0 => backoff_after(failures),
            n => refused_backoff_after(n),
        };
        let wait = wait.max(
            advice
                .retry_after
                .unwrap_or_default()
                .min(REFUSED_BACKOFF.1),
        );
        let failure = match refusals {
            0 => failure,
            _ => Failure {
                message: format!(
                    "{}\n  NetSuite refuses this client until its setup changes: the agent \
                     tries again in {} (then at longer intervals, up to 6 h), or at once when \
                     reloaded (SIGHUP) once the cause is fixed",
                    failure.message,
                    human(wait)
                ),
                ..failure
            },
        };
        tracing::info!(
            profile = %self.fetcher.name,
            wait_ms = wait.as_millis() as u64,
            "no new token; requests get this error until the next attempt"
        );
        let backoff = Backoff {
            failure: Arc::new(failure),
            retry_at: Instant::now() + wait,
            failures,
            refusals,
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
    fn due(&self) -> Option<Instant> {
        let failed = self.failed.read().unwrap_or_else(PoisonError::into_inner);
        match failed.as_ref() {
            Some(b) if b.failure.kind == Kind::Pin => None,
            Some(b) => Some(b.retry_at),
            None => self.current().map(|c| c.refresh_at),
        }
    }

    /// Renews the token unless someone else already did.
    async fn refresh(&self) {
        let _flight = self.flight.lock().await;
        if self.due().is_some_and(|due| due > Instant::now()) {
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
            let wait = due.saturating_duration_since(Instant::now());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::JwsError;
    use crate::netsuite::AssertionError;
    use crate::pkcs11;

    /// The exchange's failure when the signing worker could not sign for `e`.
    fn worker_failed(e: SignError) -> ExchangeError {
        ExchangeError::Assertion(SigningError::new(e))
    }

    fn key_failed(e: pkcs11::Error) -> ExchangeError {
        worker_failed(SignError::Assertion(AssertionError::Jws(JwsError::Sign(
            SigningError::new(e),
        ))))
    }

    #[test]
    fn signing_failures_are_the_pins_or_the_tokens_whatever_the_keys_error() {
        let pin = pkcs11::Error::PinIncorrect {
            token: "acc".into(),
            origin: "SUITEKEY_PIN".into(),
            tries: String::new(),
        };
        assert_eq!(classify(&key_failed(pin)), (Kind::Pin, "pin".into()));
        let stopped = worker_failed(SignError::Stopped("PIN rejected".into()));
        assert_eq!(classify(&stopped), (Kind::Pin, "pin".into()));
        // A mistake in the key URI is the user's at the command line, the token's in a profile
        // that was opened with it.
        let gone = pkcs11::Error::NoObject("pkcs11:token=acc;object=k".into());
        assert_eq!(classify(&key_failed(gone)), (Kind::Token, "signing".into()));
        let worker = worker_failed(SignError::WorkerGone);
        assert_eq!(classify(&worker), (Kind::Token, "signing".into()));
        // As the agent answers them, and as a client reads them back.
        let answers: Vec<(u16, &str, Option<u8>)> = [Kind::Pin, Kind::Token, Kind::Endpoint]
            .into_iter()
            .map(|k| {
                let name = k.name();
                let read = Kind::from_name(name).map(Kind::exit_code);
                (k.http_status().as_u16(), name, read)
            })
            .collect();
        assert_eq!(
            answers,
            [
                (503, "pin", Some(4)),
                (503, "token", Some(3)),
                (502, "upstream", Some(6))
            ]
        );
    }

    const fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn tokens_keep_30_s_a_tenth_of_a_short_life_and_never_under_1_s() {
        assert_eq!(min_remaining(secs(3600)), secs(30));
        assert_eq!(min_remaining(secs(300)), secs(30));
        assert_eq!(min_remaining(secs(60)), secs(6));
        assert_eq!(min_remaining(secs(5)), secs(1));
        assert_eq!(min_remaining(secs(1)), secs(1));
    }

    #[test]
    fn refusals_wait_15_min_doubling_to_6_h_and_other_failures_a_minute_at_most() {
        let waits: Vec<u64> = (1..=7)
            .map(|n| refused_backoff_after(n).as_secs() / 60)
            .collect();
        assert_eq!(waits, [15, 30, 60, 120, 240, 360, 360]);
        assert_eq!(refused_backoff_after(u32::MAX), secs(6 * 3600));
        for n in [1, 5, 10, 1000] {
            let wait = backoff_after(n);
            assert!(
                wait <= secs(60) && wait >= doubling(BACKOFF, n) / 2,
                "{wait:?}"
            );
        }
        assert_eq!(human(secs(90)), "90 s");
        assert_eq!(human(secs(15 * 60)), "15 min");
        assert_eq!(human(secs(6 * 3600)), "6.0 h");
    }
}
