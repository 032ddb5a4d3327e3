//! The one process-wide registry of PKCS#11 state: the modules this process has loaded, each
//! with its lifecycle (the generation its sessions belong to, the lock that keeps `C_Finalize`
//! from running under a call, the ration of reinitializations), and for each token the lock
//! that takes its logins one at a time and the PINs it refused or accepted.
//!
//! This state belongs to the process, not to a command or a profile: PKCS#11 allows one
//! `C_Initialize` per process and module, and login state is per token and process.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use cryptoki::context::Pkcs11;

use super::Error;
use super::pin::Pin;

/// Everything this process shares about PKCS#11 modules and tokens.
struct Registry {
    /// Loaded modules, one per path.
    modules: Mutex<Vec<Arc<Loaded>>>,
    /// Each token logged in to, with what its logins taught this process.
    tokens: Mutex<Vec<(TokenId, Arc<TokenState>)>>,
}

static REGISTRY: Registry = Registry {
    modules: Mutex::new(Vec::new()),
    tokens: Mutex::new(Vec::new()),
};

/// A loaded and initialized module, shared by every user of it in this process.
pub(super) struct Loaded {
    /// The module's file, as it was loaded.
    pub(super) path: PathBuf,
    /// The module's functions.
    pub(super) ctx: Pkcs11,
    /// Its generations and the lock around its calls.
    pub(super) lifecycle: Lifecycle,
}

/// The module loaded from `path`, or the one `load` loads and initializes (under the registry's
/// lock: two threads never initialize one module twice).
pub(super) fn module(
    path: &Path,
    load: impl FnOnce() -> Result<Pkcs11, Error>,
) -> Result<Arc<Loaded>, Error> {
    let mut loaded = REGISTRY
        .modules
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(module) = loaded.iter().find(|m| m.path == path) {
        return Ok(Arc::clone(module));
    }
    let module = Arc::new(Loaded {
        path: path.to_owned(),
        ctx: load()?,
        lifecycle: Lifecycle::default(),
    });
    loaded.push(Arc::clone(&module));
    Ok(module)
}

/// Every module this process loaded.
pub(super) fn modules() -> Vec<Arc<Loaded>> {
    REGISTRY
        .modules
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// How many handles on `module` this process holds besides the registry's own.
pub(super) fn users(module: &Arc<Loaded>) -> usize {
    Arc::strong_count(module) - 1
}

/// Which reinitialization of a module a session or handle belongs to: one from an earlier
/// generation is void (see [`Lifecycle`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Generation(u64);

/// What every user of one loaded module shares, so that the module can be reinitialized
/// (`C_Finalize` + `C_Initialize`) under them: SoftHSM2 reads its token directory only in
/// `C_Initialize`, so a token whose directory was removed or replaced comes back only then.
#[derive(Default)]
pub(super) struct Lifecycle {
    /// Held shared around the calls of long-lived signers, exclusively by a reinitialization:
    /// `C_Finalize` never runs under another thread's call.
    calls: RwLock<()>,
    /// Bumped by every reinitialization: sessions and handles from before are void, and a
    /// void session is never closed (its handle may since name another signer's session).
    generation: AtomicU64,
    /// When the next reinitialization may run.
    budget: Mutex<ReinitBudget>,
}

/// A shared hold on a module (see [`Lifecycle::hold`]): no reinitialization while it lasts.
pub(crate) struct Hold<'a> {
    _calls: RwLockReadGuard<'a, ()>,
    /// The module's generation during the hold.
    pub generation: Generation,
}

/// The exclusive hold of a reinitialization: no call of another thread is in flight.
pub(super) struct Exclusive<'a> {
    _calls: RwLockWriteGuard<'a, ()>,
    /// The module's generation when the hold was taken.
    pub generation: Generation,
}

impl Lifecycle {
    /// A shared hold, with the generation: sessions opened in another generation are void.
    pub(super) fn hold(&self) -> Hold<'_> {
        let calls = self.calls.read().unwrap_or_else(PoisonError::into_inner);
        Hold {
            _calls: calls,
            generation: Generation(self.generation.load(Ordering::SeqCst)),
        }
    }

    /// The exclusive hold, once the calls in flight are done.
    pub(super) fn exclusive(&self) -> Exclusive<'_> {
        let calls = self.calls.write().unwrap_or_else(PoisonError::into_inner);
        Exclusive {
            _calls: calls,
            generation: Generation(self.generation.load(Ordering::SeqCst)),
        }
    }

    /// Starts a new generation, under the exclusive hold: every session of the module is void
    /// from here on.
    pub(super) fn next_generation(&self, _hold: &Exclusive<'_>) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Takes the reinitialization budget if it is due now, and sets the next wait.
    pub(super) fn take_budget(&self) -> bool {
        self.budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(Instant::now())
    }

    /// A lost token was found again: the next loss may reinitialize the module at once.
    pub(super) fn reset_budget(&self) {
        *self.budget.lock().unwrap_or_else(PoisonError::into_inner) = ReinitBudget::default();
    }
}

/// Reinitializations of one module are rationed: each ends every session and login of the
/// module's other signers (a PIN pad asks again; tpm2-pkcs11 and kryoptic restart slowly), so
/// a token that stays gone must not cause one per retry of each of its profiles.
#[derive(Default)]
struct ReinitBudget {
    /// Not before this instant; `None`: the next may run now.
    next: Option<Instant>,
    /// The wait after the last one: doubles from [`REINIT_FIRST_WAIT`] to [`REINIT_MAX_WAIT`].
    wait: Duration,
}

/// The wait after the first reinitialization of a module that did not bring its token back.
const REINIT_FIRST_WAIT: Duration = Duration::from_secs(10);
/// The longest wait between two reinitializations of one module.
const REINIT_MAX_WAIT: Duration = Duration::from_secs(600);

impl ReinitBudget {
    /// Takes the budget if it is due now, and sets the next wait.
    fn take(&mut self, now: Instant) -> bool {
        if self.next.is_some_and(|next| now < next) {
            return false;
        }
        self.wait = if self.wait.is_zero() {
            REINIT_FIRST_WAIT
        } else {
            (self.wait * 2).min(REINIT_MAX_WAIT)
        };
        self.next = Some(now + self.wait);
        true
    }
}

/// Whether a PIN may be sent while the token says the next wrong one locks it
/// (`CKF_USER_PIN_FINAL_TRY`): only when the user said so (`--final-pin-try`), for the whole
/// process.
static FINAL_PIN_TRY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Lets this process send a PIN on the token's final try (the user's explicit choice).
pub(super) fn allow_final_pin_try() {
    FINAL_PIN_TRY.store(true, Ordering::SeqCst);
}

/// Whether this process may send a PIN on the token's final try.
pub(super) fn final_pin_try_allowed() -> bool {
    FINAL_PIN_TRY.load(Ordering::SeqCst)
}

/// Which token a login is to: the module file and the token's serial and label. Login state is
/// per token and process, so this is what PINs are remembered by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TokenId {
    module: PathBuf,
    serial: String,
    label: String,
}

impl TokenId {
    /// The token with `serial` and `label` in the module loaded from `module`.
    pub(super) fn new(module: &Path, serial: &str, label: &str) -> TokenId {
        TokenId {
            module: module.to_owned(),
            serial: serial.to_owned(),
            label: label.to_owned(),
        }
    }
}

/// What this process keeps about one token's logins.
#[derive(Default)]
pub(super) struct TokenState {
    /// Held from the refused-PIN check through `C_Login` to recording the answer: two signers
    /// logging in to one token at once would otherwise both pass the check and send a wrong
    /// PIN twice.
    login: Mutex<()>,
    /// What this process learnt from logging in to the token.
    pins: Mutex<PinHistory>,
}

/// What this process learnt from logging in to one token.
#[derive(Default)]
struct PinHistory {
    /// PINs the token refused: never sent to it again by this process.
    refused: Vec<PinDigest>,
    /// The PIN of this process's last successful login.
    accepted: Option<PinDigest>,
}

/// The state of the token `id`, for the life of the process.
pub(super) fn token(id: &TokenId) -> Arc<TokenState> {
    let mut all = REGISTRY
        .tokens
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some((_, state)) = all.iter().find(|(t, _)| t == id) {
        return Arc::clone(state);
    }
    let state = Arc::new(TokenState::default());
    all.push((id.clone(), Arc::clone(&state)));
    state
}

impl TokenState {
    /// This thread's turn to log in to the token, until dropped.
    pub(super) fn login_turn(&self) -> MutexGuard<'_, ()> {
        self.login.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn pins(&self) -> MutexGuard<'_, PinHistory> {
        self.pins.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the token refused the PIN with this digest.
    pub(super) fn refused(&self, pin: &PinDigest) -> bool {
        self.pins().refused.contains(pin)
    }

    /// The digest of the PIN of the last successful login, if it is known.
    pub(super) fn accepted(&self) -> Option<PinDigest> {
        self.pins().accepted
    }

    /// A login succeeded, with this PIN (`None`: a PIN pad, which leaves the last one known).
    pub(super) fn record_accepted(&self, pin: Option<PinDigest>) {
        let mut pins = self.pins();
        pins.accepted = pin.or(pins.accepted);
    }

    /// The token refused this PIN: it is never sent again.
    pub(super) fn record_refused(&self, pin: PinDigest) {
        let mut pins = self.pins();
        pins.refused.push(pin);
        pins.accepted = pins.accepted.filter(|a| *a != pin);
    }
}

/// A keyed SHA-256 of a PIN: tells PINs apart without keeping one. The key is random per
/// process, so the digest says nothing outside it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct PinDigest([u8; 32]);

impl PinDigest {
    /// The digest of `pin`.
    pub(super) fn of(pin: &Pin) -> PinDigest {
        use secrecy::ExposeSecret as _;
        use sha2::Digest as _;
        static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
        let key = KEY.get_or_init(|| {
            let mut key = [0u8; 32];
            if getrandom::fill(&mut key).is_err() {
                // std's per-process random hasher keys, should the OS source fail.
                use std::hash::BuildHasher as _;
                for (i, chunk) in key.chunks_mut(8).enumerate() {
                    let word = std::collections::hash_map::RandomState::new().hash_one(i);
                    chunk.copy_from_slice(&word.to_le_bytes());
                }
            }
            key
        });
        let mut hasher = sha2::Sha256::new();
        hasher.update(key);
        hasher.update(pin.expose_secret().as_bytes());
        PinDigest(hasher.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reinitializations_are_rationed_with_a_doubling_wait_up_to_ten_minutes() {
        let mut budget = ReinitBudget::default();
        let start = Instant::now();
        assert!(budget.take(start), "the first one runs at once");
        assert!(!budget.take(start + REINIT_FIRST_WAIT / 2));
        let mut now = start + REINIT_FIRST_WAIT;
        let mut waits = Vec::new();
        for _ in 0..10 {
            assert!(budget.take(now));
            waits.push(budget.wait);
            now += budget.wait;
        }
        assert_eq!(waits[0], REINIT_FIRST_WAIT * 2);
        assert_eq!(waits[1], REINIT_FIRST_WAIT * 4);
        assert_eq!(waits.last(), Some(&REINIT_MAX_WAIT));
    }

    #[test]
    fn a_refused_pin_is_remembered_per_token_and_is_no_longer_the_accepted_one() {
        let id = |label: &str| TokenId::new(Path::new("/m.so"), "1", label);
        let (right, wrong) = (
            PinDigest::of(&Pin::from("1234")),
            PinDigest::of(&Pin::from("0000")),
        );
        let state = token(&id("refusals-test-a"));
        state.record_accepted(Some(wrong));
        state.record_refused(wrong);
        assert!(state.refused(&wrong) && !state.refused(&right));
        assert!(state.accepted().is_none());
        state.record_accepted(Some(right));
        state.record_accepted(None);
        assert!(
            state.accepted() == Some(right),
            "a PIN pad login keeps the PIN known"
        );
        assert!(Arc::ptr_eq(&state, &token(&id("refusals-test-a"))));
        assert!(!token(&id("refusals-test-b")).refused(&wrong));
    }
}
