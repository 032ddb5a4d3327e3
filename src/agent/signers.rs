//! Signing workers: each profile's key, with its PKCS#11 session, is owned by one blocking
//! thread (cryptoki sessions are `Send`, not `Sync`); async code sends it assertion requests.
//!
//! When the token loses the session (`CKR_SESSION_HANDLE_INVALID`, `CKR_USER_NOT_LOGGED_IN`,
//! `CKR_DEVICE_REMOVED`, … see [`crate::pkcs11::Error::is_session_lost`]) the worker opens a new
//! one, logs in once with the PIN it was started with, and retries that signature once. When
//! the key or its token cannot be found again (the token was re-initialized, its directory
//! removed), the signature fails with [`SignError::Lost`], and the next one (after the
//! cache's backoff) looks again, so the profile recovers by itself once the key is back (see
//! [`KeySigner::reopen`]). A refused PIN stops the worker for good: tokens lock after a few
//! wrong PINs, so it is never tried again. The stop is shared with the profile, which then
//! reports itself failed and is reopened by a reload.

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;

use super::metrics::ProfileMetrics;
use crate::cert::{Certificate, StoredWithKey};
use crate::config::Profile;
use crate::jose::{Alg, JwsError, Signer as _, SigningError};
use crate::kind::{HasKind, Kind};
use crate::netsuite::{AssertionError, AssertionRequest, CertificateId, ClientAssertion};
use crate::pkcs11::{self, Credential, CredentialFor, KeySigner, Token};

/// Opens a profile's key and a signer for it (the same as `token` does), logging in with the
/// credential the second argument gives for the key's token.
pub type Opener = fn(&Profile, CredentialFor<'_>) -> Result<KeySigner, OpenError>;

/// Why a profile's key could not be opened, carried without the agent knowing the opener's
/// error type (the command layer's): its kind, and the opener's error, which it shows as
/// (display and causes).
#[derive(Debug)]
pub struct OpenError {
    kind: Kind,
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl OpenError {
    /// Carries `error`, keeping its kind.
    pub fn new<E: std::error::Error + HasKind + Send + Sync + 'static>(error: E) -> OpenError {
        OpenError {
            kind: error.kind(),
            source: Box::new(error),
        }
    }
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.source.fmt(f)
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.source()
    }
}

impl HasKind for OpenError {
    fn kind(&self) -> Kind {
        self.kind
    }
}

/// The signing worker could not start, or ended before its key was open.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the async runtime: {0}")]
struct WorkerFailed(#[source] std::io::Error);

impl HasKind for WorkerFailed {
    /// As for the async runtime: without its worker, a profile makes no token request.
    fn kind(&self) -> Kind {
        Kind::Endpoint
    }
}

/// Where a worker gets the credential for its key's token (see [`super::logins::Logins`]).
pub type LoginFor = Box<dyn Fn(&Token) -> Result<Arc<Credential>, pkcs11::Error> + Send>;

/// Why a worker could not sign.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The token (or the assertion around the signature) failed.
    #[error(transparent)]
    Assertion(#[from] AssertionError),
    /// The token lost the session and the key could not be found again. What to do depends
    /// on what was seen (see `lost_advice`); never "initialize the token", which would
    /// destroy the keys of a token that is only unreadable for a moment.
    #[error(
        "key '{key}' cannot be used: the token lost it ({source}); {advice}: the agent looks for it again by itself, with backoff, no reload needed"
    )]
    Lost {
        /// The key URI (without secrets).
        key: String,
        /// Why it could not be found again, or signed with once found.
        source: Box<dyn std::error::Error + Send + Sync>,
        /// What to do, from `lost_advice`.
        advice: &'static str,
    },
    /// An earlier PIN refusal stopped this profile; the PIN is not tried again.
    #[error(
        "this profile is stopped: {0}; fix the PIN source, then reload the agent (SIGHUP) or restart it"
    )]
    Stopped(String),
    /// The worker thread is gone (it panicked, or the agent is shutting down).
    #[error("the signing worker of this profile has stopped; restart the agent")]
    WorkerGone,
    /// The token has not answered within the agent's bound: a key that waits for a touch.
    #[error(
        "the token has not finished the signature within {} s: touch the key if it is a YubiKey whose key has touch policy 'always' or 'cached' (it waits for a touch, 15 s at most); an unattended agent needs a key with touch policy 'never' (e.g. ykman piv keys generate --touch-policy NEVER); the signature goes on meanwhile, and the profile signs again once the token answers (agent --sign-timeout sets the bound)",
        .0.as_secs()
    )]
    NoAnswer(Duration),
}

/// How long a request waits for its signature by default (`agent --sign-timeout`): a YubiKey
/// waits 15 s for a touch, and a person touching it usually needs a few.
pub const DEFAULT_SIGN_TIMEOUT: Duration = Duration::from_secs(10);

/// What to do about a key that could not be found again after `source`: a token that did not
/// answer may be passing; one not seen, or a key not in it, may have been removed and can be put
/// back. A key made non-extractable exists only in its token: if it was deleted, no advice brings
/// it back, so none pretends to.
fn lost_advice(source: &pkcs11::Error) -> &'static str {
    match source {
        pkcs11::Error::KeyNotFound { .. } => {
            "the token answers without it: if the key (or the token's directory) was moved or replaced, put the key back; if it was deleted, it is gone for good: make a new key and certificate (suitekey rotate)"
        }
        e if e.may_pass() => {
            "the token did not answer, which is often passing (another process writing it at that moment, or this process short of file descriptors); if the token was removed or its directory moved, put the key back where it was"
        }
        _ => TOKEN_GONE,
    }
}

/// What to do about a key whose token is not there.
const TOKEN_GONE: &str = "its token is not there: if it was removed (a smart card pulled out, a SoftHSM2 token directory moved), put the key back by putting the token back";

impl SignError {
    /// The key's signing failure as the assertion carries it.
    fn signing(e: pkcs11::Error) -> SignError {
        SignError::Assertion(AssertionError::Jws(JwsError::Sign(SigningError::new(e))))
    }

    /// `signer`'s key could not be opened again: a PIN problem as such, anything else as a
    /// lost key, with what to do.
    fn not_reopened(signer: &KeySigner, e: pkcs11::Error) -> SignError {
        if e.is_pin() {
            return SignError::signing(e);
        }
        SignError::Lost {
            key: signer.uri().to_owned(),
            advice: lost_advice(&e),
            source: Box::new(e),
        }
    }

    /// The PKCS#11 error underneath, if any.
    pub fn pkcs11(&self) -> Option<&pkcs11::Error> {
        match self {
            SignError::Assertion(AssertionError::Jws(JwsError::Sign(e))) => e.downcast_ref(),
            _ => None,
        }
    }

    /// Whether a PIN problem is the cause (so the client's exit code says so).
    pub fn is_pin(&self) -> bool {
        self.kind() == Kind::Pin
    }
}

impl HasKind for SignError {
    /// A PIN problem (now or the one that stopped the profile), else the token's: a profile
    /// whose signing fails otherwise is told as failing in its token, whatever the cause.
    fn kind(&self) -> Kind {
        match self {
            SignError::Stopped(_) => Kind::Pin,
            SignError::Assertion(e) if e.kind() == Kind::Pin => Kind::Pin,
            SignError::Assertion(_)
            | SignError::Lost { .. }
            | SignError::WorkerGone
            | SignError::NoAnswer(_) => Kind::Token,
        }
    }
}

struct Job {
    request: AssertionRequest,
    reply: oneshot::Sender<Result<ClientAssertion, SignError>>,
}

/// A handle to one profile's signing worker; the worker ends when every handle is dropped.
#[derive(Clone)]
pub struct SignerHandle {
    jobs: mpsc::Sender<Job>,
    stopped: Stopped,
    /// How long a request waits for its signature.
    timeout: Duration,
}

/// Why the worker stopped signing, once a PIN was refused.
type Stopped = Arc<Mutex<Option<String>>>;

/// What the worker found when it opened the key.
pub struct Opened {
    /// The algorithm it signs with.
    pub alg: Alg,
    /// The token's certificate whose id is the profile's `kid`, if the token holds it.
    pub certificate: Option<Certificate>,
    /// The certificates stored with the key, to check against the profile.
    pub stored: StoredWithKey,
}

impl SignerHandle {
    /// Starts the worker thread, which opens the profile's key with `open`, logging in with
    /// the credential `login` gives (a PIN prompt, if need be), and then owns it; returns once
    /// the key is open or has failed, so that prompts come one at a time.
    pub fn spawn(
        name: &str,
        profile: Profile,
        (open, login): (Opener, LoginFor),
        metrics: Arc<ProfileMetrics>,
    ) -> Result<(SignerHandle, Opened), OpenError> {
        let (jobs, queue) = mpsc::channel();
        let (ready, opened) = mpsc::channel();
        let stopped = Stopped::default();
        let stop = Arc::clone(&stopped);
        let live = Live::enter();
        std::thread::Builder::new()
            .name(format!("sign-{name}"))
            .spawn(move || {
                run_worker(profile, (open, login), ready, queue, metrics, stop);
                // Only now: everything the worker owned, the credential included, is dropped.
                drop(live);
            })
            .map_err(|e| OpenError::new(WorkerFailed(e)))?;
        let gone = || {
            OpenError::new(WorkerFailed(std::io::Error::other(
                "the signing worker ended while opening the key",
            )))
        };
        let opened = opened.recv().map_err(|_| gone())??;
        let handle = SignerHandle {
            jobs,
            stopped,
            timeout: DEFAULT_SIGN_TIMEOUT,
        };
        Ok((handle, opened))
    }

    /// The same handle, whose requests wait at most `timeout` for their signature (see
    /// [`SignerHandle::sign`]).
    pub fn answer_within(self, timeout: Duration) -> SignerHandle {
        SignerHandle { timeout, ..self }
    }

    /// Why the worker stopped signing, if a refused PIN stopped it.
    pub fn stopped(&self) -> Option<String> {
        self.stopped
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Signs a client assertion for `request` in the token, waiting without blocking the
    /// runtime, and no longer than the handle's bound: a token that waits for a touch must not
    /// hold the request forever. The worker finishes the signature anyway (a PKCS#11 call
    /// cannot be cancelled), and later requests are signed once it has. The runtime needs its
    /// timers (`enable_time`).
    pub async fn sign(&self, request: AssertionRequest) -> Result<ClientAssertion, SignError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { request, reply })
            .map_err(|_| SignError::WorkerGone)?;
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(answer) => answer.map_err(|_| SignError::WorkerGone)?,
            Err(_) => {
                tracing::warn!(
                    timeout_s = self.timeout.as_secs(),
                    "the token has not finished a signature in time (waiting for a touch?)"
                );
                Err(SignError::NoAnswer(self.timeout))
            }
        }
    }
}

/// The worker thread: opens the key, reports it on `ready`, then signs until every handle is
/// gone. Takes everything by value so that all of it is dropped when it returns.
fn run_worker(
    profile: Profile,
    (open, login): (Opener, LoginFor),
    ready: mpsc::Sender<Result<Opened, OpenError>>,
    queue: mpsc::Receiver<Job>,
    metrics: Arc<ProfileMetrics>,
    stop: Stopped,
) {
    let signer = match open(&profile, &*login) {
        Ok(signer) => signer,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(Opened {
        alg: signer.alg(),
        certificate: certificate_on_token(&signer, &profile.certificate_id),
        stored: StoredWithKey::read(signer.stored_certificates(), signer.public_key().ok()),
    }));
    work(signer, &queue, &metrics, &stop);
}

/// How many signing workers are running, so that the agent can wait at exit until each has
/// dropped its session and credential (a worker notices its closed channel on its own time).
static LIVE: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// One running worker, counted from before its thread starts until it has dropped everything.
struct Live;

impl Live {
    fn enter() -> Live {
        *LIVE.0.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        Live
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        *LIVE.0.lock().unwrap_or_else(PoisonError::into_inner) -= 1;
        LIVE.1.notify_all();
    }
}

/// Waits up to `limit` for every signing worker to end, once all their handles are dropped;
/// returns how many are still running (one stuck in a PKCS#11 call, say).
pub fn wait_for_workers(limit: Duration) -> usize {
    let running = LIVE.0.lock().unwrap_or_else(PoisonError::into_inner);
    let (running, _) = LIVE
        .1
        .wait_timeout_while(running, limit, |n| *n > 0)
        .unwrap_or_else(PoisonError::into_inner);
    *running
}

fn work(
    mut signer: KeySigner,
    queue: &mpsc::Receiver<Job>,
    metrics: &ProfileMetrics,
    stopped: &Mutex<Option<String>>,
) {
    while let Ok(job) = queue.recv() {
        // Its request was answered already (it waited too long behind a signature waiting for
        // a touch): no signature, and no touch, for nobody.
        if job.reply.is_closed() {
            continue;
        }
        let reason = stopped
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let result = match reason {
            Some(reason) => Err(SignError::Stopped(reason)),
            None => sign_recovering(&mut signer, &job.request, metrics),
        };
        if let Err(e) = &result
            && e.pkcs11().is_some_and(pkcs11::Error::is_pin)
        {
            let reason = crate::report::chain(e);
            tracing::error!(key = signer.uri(), "{reason}; this profile stops signing");
            *stopped.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason);
        }
        let _ = job.reply.send(result);
    }
}

/// One signature; after a lost session, one reopen with one login and one more try; when that
/// fails the same way, the module is reinitialized (rationed) and the key found afresh for a
/// third. Only signatures made are counted.
fn sign_recovering(
    signer: &mut KeySigner,
    request: &AssertionRequest,
    metrics: &ProfileMetrics,
) -> Result<ClientAssertion, SignError> {
    let signed = match request.sign(&*signer, SystemTime::now()) {
        // A lost token (CKR_GENERAL_ERROR, CKR_DEVICE_ERROR, …) is looked for again too.
        Err(AssertionError::Jws(JwsError::Sign(e))) if lost(&e) => {
            tracing::warn!(
                key = signer.uri(),
                "the token lost the session ({e}); opening a new one and logging in again"
            );
            signer
                .reopen()
                .map_err(|e| SignError::not_reopened(signer, e))?;
            metrics.session_reopened();
            match request.sign(&*signer, SystemTime::now()) {
                Err(AssertionError::Jws(JwsError::Sign(e))) if token_lost(&e) => {
                    sign_afresh(signer, request, metrics, e)?
                }
                other => other?,
            }
        }
        other => other?,
    };
    metrics.signature();
    Ok(signed)
}

/// After a reopened session failed like the one before it (`failed`): the key found again in a
/// reinitialized module, and one more try; the key is reported lost when no reinitialization
/// is due yet.
fn sign_afresh(
    signer: &mut KeySigner,
    request: &AssertionRequest,
    metrics: &ProfileMetrics,
    failed: SigningError,
) -> Result<ClientAssertion, SignError> {
    tracing::warn!(
        key = signer.uri(),
        "the reopened session failed too ({failed}); looking for the token afresh"
    );
    let found = signer
        .reopen_afresh()
        .map_err(|e| SignError::not_reopened(signer, e))?;
    if !found {
        let advice = failed
            .downcast_ref::<pkcs11::Error>()
            .map_or(TOKEN_GONE, lost_advice);
        return Err(SignError::Lost {
            key: signer.uri().to_owned(),
            source: Box::new(failed),
            advice,
        });
    }
    metrics.session_reopened();
    Ok(request.sign(&*signer, SystemTime::now())?)
}

/// Whether a signature failed because the token lost the session or is gone.
fn lost(e: &SigningError) -> bool {
    e.downcast_ref::<pkcs11::Error>()
        .is_some_and(|e| e.is_session_lost() || e.is_token_lost())
}

/// Whether a signature failed because the token is gone or broken.
fn token_lost(e: &SigningError) -> bool {
    e.downcast_ref::<pkcs11::Error>()
        .is_some_and(pkcs11::Error::is_token_lost)
}

/// The token's certificate whose id is the profile's `kid`, if the token holds it.
fn certificate_on_token(signer: &KeySigner, id: &CertificateId) -> Option<Certificate> {
    let values = match signer.certificates() {
        Ok(values) => values,
        Err(e) => {
            tracing::debug!("cannot list the token's certificates: {e}");
            return None;
        }
    };
    let found = values
        .iter()
        .filter_map(|der| Certificate::from_bytes(der, "a certificate on the token").ok())
        .find(|c| c.certificate_id() == *id);
    if found.is_none() {
        tracing::info!(key = signer.uri(), certificate_id = %id, "the token holds no certificate with the profile's certificate id; its expiry is not watched");
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::error::RvError;

    /// The forms a lost key's cause takes: a token that does not answer (SoftHSM2's token file
    /// read mid-rewrite, a descriptor shortage), a token not seen, a key not in the token.
    fn causes() -> Vec<pkcs11::Error> {
        let call = |rv: RvError| pkcs11::Error::Call {
            call: "C_GetTokenInfo".into(),
            module: "/usr/lib/softhsm/libsofthsm2.so".into(),
            rv: rv.into(),
        };
        let not_found = |unsure| pkcs11::Error::TokenNotFound {
            selector: "pkcs11:token=t".into(),
            module: "/usr/lib/softhsm/libsofthsm2.so".into(),
            available: "slot-id 3 does not answer".into(),
            unsure,
        };
        vec![
            call(RvError::GeneralError),
            call(RvError::DeviceError),
            call(RvError::HostMemory),
            call(RvError::TokenNotPresent),
            not_found(true),
            not_found(false),
            pkcs11::Error::KeyNotFound {
                key: "pkcs11:token=t;object=k".into(),
                token: "t".into(),
                present: "object=other;id=%01 (EC P-256)".into(),
                module: "/usr/lib/softhsm/libsofthsm2.so".into(),
            },
        ]
    }

    #[test]
    fn an_open_error_reads_and_kinds_as_the_openers_error() {
        let refused = || pkcs11::Error::PinIncorrect {
            token: "t".into(),
            origin: "SUITEKEY_PIN".into(),
            tries: String::new(),
        };
        let carried = OpenError::new(refused());
        assert_eq!(
            crate::report::chain(&carried),
            crate::report::chain(&refused())
        );
        assert_eq!(carried.kind(), Kind::Pin);
        let gone = OpenError::new(WorkerFailed(std::io::Error::other("no thread")));
        assert_eq!(
            crate::report::chain(&gone),
            "cannot start the async runtime: no thread"
        );
        assert_eq!(gone.kind(), Kind::Endpoint);
    }

    #[test]
    fn a_lost_key_is_never_met_with_advice_to_initialize_its_token() {
        for source in causes() {
            let passing = source.may_pass();
            let message = SignError::Lost {
                key: "pkcs11:token=t;object=k".into(),
                advice: lost_advice(&source),
                source: Box::new(source),
            }
            .to_string();
            // Saying that a token is initialized is no advice to initialize one.
            let advice = message.to_lowercase().replace("initialized", "");
            assert!(
                !advice.contains("initializ") && !advice.contains("import"),
                "{message}"
            );
            assert!(message.contains("put the key back"), "{message}");
            assert!(message.contains("no reload needed"), "{message}");
            assert_eq!(message.contains("often passing"), passing, "{message}");
        }
    }
}
