//! Modules and tokens: loading a PKCS#11 library once per process, choosing the token a URI
//! names, opening sessions and logging in.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::MechanismType;
use cryptoki::session::{Session, UserType};
use cryptoki::slot::{Slot, TokenInfo};

use super::pin::{self, Pin, PinOrigin};
use super::uri::{Pkcs11Uri, escaped_path};
use super::{Error, describe, rv_of};

/// Loaded modules, keyed by path: PKCS#11 allows one `C_Initialize` per process and module.
static MODULES: Mutex<Vec<(PathBuf, Pkcs11, Arc<Lifecycle>)>> = Mutex::new(Vec::new());

/// What every user of one loaded module shares, so that the module can be reinitialized
/// (`C_Finalize` + `C_Initialize`) under them: SoftHSM2 reads its token directory only in
/// `C_Initialize`, so a token whose directory was removed or replaced comes back only then.
#[derive(Default)]
struct Lifecycle {
    /// Held shared around the calls of long-lived signers, exclusively by a reinitialization:
    /// `C_Finalize` never runs under another thread's call.
    calls: RwLock<()>,
    /// Bumped by every reinitialization: sessions and handles from before are void, and a
    /// void session is never closed (its handle may since name another signer's session).
    generation: AtomicU64,
    /// When the next reinitialization may run (see [`Module::reinitialize`]).
    budget: Mutex<ReinitBudget>,
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

/// Where `module-name=NAME` is looked for: p11-kit's module configs, then library folders.
const MODULE_CONFIG_DIRS: [&str; 2] = ["/etc/pkcs11/modules", "/usr/share/p11-kit/modules"];
const MODULE_LIB_DIRS: [&str; 4] = [
    "/usr/lib/x86_64-linux-gnu/pkcs11",
    "/usr/lib/aarch64-linux-gnu/pkcs11",
    "/usr/lib64/pkcs11",
    "/usr/lib/pkcs11",
];

/// Decides which module file to load: the URI's `module-path` or `module-name`, else `fallback`
/// (from `--module` or `SUITEKEY_MODULE`).
pub fn resolve_module(uri: &Pkcs11Uri, fallback: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(path) = &uri.module_path {
        return Ok(path.clone());
    }
    if let Some(name) = &uri.module_name {
        return find_module_by_name(name);
    }
    fallback.map(Path::to_path_buf).ok_or(Error::NoModule)
}

fn find_module_by_name(name: &str) -> Result<PathBuf, Error> {
    // p11-kit resolves a relative `module:` against its module directory.
    let in_lib_dirs = |file: &str| {
        MODULE_LIB_DIRS
            .iter()
            .map(|dir| Path::new(dir).join(file))
            .find(|p| p.is_file())
    };
    let from_config = MODULE_CONFIG_DIRS.iter().find_map(|dir| {
        let text = std::fs::read_to_string(Path::new(dir).join(format!("{name}.module"))).ok()?;
        let module = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("module:"))?
            .trim();
        if Path::new(module).is_absolute() {
            Some(PathBuf::from(module))
        } else {
            in_lib_dirs(module)
        }
    });
    from_config
        .or_else(|| in_lib_dirs(&format!("{name}.so")))
        .or_else(|| in_lib_dirs(&format!("lib{name}.so")))
        .ok_or_else(|| {
            let name = escaped_path(Path::new(name));
            Error::ModuleName {
                looked: format!(
                    "{}/{name}.module and {}",
                    MODULE_CONFIG_DIRS.join(", "),
                    MODULE_LIB_DIRS.join(", ")
                ),
                name,
            }
        })
}

/// A loaded and initialized PKCS#11 module.
#[derive(Clone)]
pub struct Module {
    path: PathBuf,
    ctx: Pkcs11,
    lifecycle: Arc<Lifecycle>,
}

/// A shared hold on a module (see [`Module::hold`]): no reinitialization while it lasts.
pub(crate) struct Hold<'a> {
    _calls: RwLockReadGuard<'a, ()>,
    /// The module's generation during the hold.
    pub generation: u64,
}

/// One slot of a module, with its token's description when a token is present.
#[derive(Clone, Debug)]
pub struct SlotSummary {
    /// The slot id (changes between runs on some modules: select tokens by label or serial).
    pub slot_id: u64,
    /// The slot's description.
    pub description: String,
    /// The slot's manufacturer.
    pub manufacturer: String,
    /// The token in the slot, if any.
    pub token: Option<TokenSummary>,
}

/// What a token says about itself, without secrets.
#[derive(Clone, Debug)]
pub struct TokenSummary {
    /// `CKA_LABEL` of the token.
    pub label: String,
    /// Manufacturer id.
    pub manufacturer: String,
    /// Model.
    pub model: String,
    /// Serial number.
    pub serial: String,
    /// The token has been initialized (a free SoftHSM2 slot's token has not).
    pub initialized: bool,
    /// A login is needed to see private objects and to sign.
    pub login_required: bool,
    /// The user PIN is locked.
    pub pin_locked: bool,
    /// The next wrong PIN locks the user PIN.
    pub pin_final_try: bool,
    /// The PIN is entered on the device itself.
    pub protected_auth_path: bool,
    /// The token refuses to create or change objects.
    pub write_protected: bool,
    /// Human-readable flags, for `list`.
    pub flags: Vec<&'static str>,
}

impl TokenSummary {
    fn from_info(info: &TokenInfo) -> TokenSummary {
        let flags = [
            (info.login_required(), "login-required"),
            (info.user_pin_initialized(), "user-pin-initialized"),
            (info.token_initialized(), "initialized"),
            (info.write_protected(), "write-protected"),
            (info.protected_authentication_path(), "protected-auth-path"),
            (info.rng(), "rng"),
            (info.user_pin_count_low(), "user-pin-count-low"),
            (info.user_pin_final_try(), "user-pin-final-try"),
            (info.user_pin_locked(), "user-pin-locked"),
            (info.user_pin_to_be_changed(), "user-pin-to-be-changed"),
        ];
        TokenSummary {
            label: info.label().trim_end_matches(padding).to_owned(),
            manufacturer: info.manufacturer_id().trim_end_matches(padding).to_owned(),
            model: info.model().trim_end_matches(padding).to_owned(),
            serial: info.serial_number().trim_end_matches(padding).to_owned(),
            initialized: info.token_initialized(),
            login_required: info.login_required(),
            pin_locked: info.user_pin_locked(),
            pin_final_try: info.user_pin_final_try(),
            protected_auth_path: info.protected_authentication_path(),
            write_protected: info.write_protected(),
            flags: flags
                .into_iter()
                .filter_map(|(on, name)| on.then_some(name))
                .collect(),
        }
    }

    fn describe(&self, slot_id: u64) -> String {
        format!(
            "'{}' (serial {}, slot-id {slot_id})",
            self.label, self.serial
        )
    }
}

/// The padding of PKCS#11's fixed-width text fields: spaces by the standard, NULs in some
/// modules (tpm2-pkcs11 pads the token model with them).
fn padding(c: char) -> bool {
    c.is_whitespace() || c == '\0'
}

/// `C_GetInfo`'s answer, trimmed. Displays as `manufacturer description version (Cryptoki x.y)`.
#[derive(Clone, Debug)]
pub(crate) struct LibraryInfo {
    /// The library's manufacturer.
    pub manufacturer: String,
    /// The library's description.
    pub description: String,
    /// The library's version.
    pub version: String,
    /// The Cryptoki version it implements.
    pub cryptoki: String,
}

impl std::fmt::Display for LibraryInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} (Cryptoki {})",
            self.manufacturer, self.description, self.version, self.cryptoki
        )
    }
}

impl Module {
    /// Loads and initializes the module at `path`, or returns the one this process already has.
    pub fn load(path: &Path) -> Result<Module, Error> {
        let mut loaded = MODULES.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, ctx, lifecycle)) = loaded.iter().find(|(p, _, _)| p == path) {
            return Ok(Module {
                path: path.to_owned(),
                ctx: ctx.clone(),
                lifecycle: Arc::clone(lifecycle),
            });
        }
        let load_err = |reason: String| Error::Load {
            path: escaped_path(path),
            reason,
        };
        if path.is_dir() {
            return Err(load_err(
                "it is a directory; name the module's .so file in it".into(),
            ));
        }
        if !path.is_file() {
            return Err(load_err("no such file".into()));
        }
        let ctx = Pkcs11::new(path).map_err(|e| load_err(describe(&e)))?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            // Another part of this process (a plugin, a test harness) got there first.
            Err(e) if rv_of(&e) == Some(RvError::CryptokiAlreadyInitialized) => {}
            Err(e) => {
                let hint = softhsm2_conf_unset(path, std::env::var_os(SOFTHSM2_CONF).as_deref());
                return Err(load_err(format!(
                    "C_Initialize returned {}{hint}",
                    describe(&e)
                )));
            }
            Ok(()) => {}
        }
        let lifecycle = Arc::new(Lifecycle::default());
        loaded.push((path.to_owned(), ctx.clone(), Arc::clone(&lifecycle)));
        Ok(Module {
            path: path.to_owned(),
            ctx,
            lifecycle,
        })
    }

    /// A shared hold on the module, with its generation: sessions opened in another
    /// generation are void.
    pub(crate) fn hold(&self) -> Hold<'_> {
        let calls = self
            .lifecycle
            .calls
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        Hold {
            _calls: calls,
            generation: self.lifecycle.generation.load(Ordering::SeqCst),
        }
    }

    /// Reinitializes the module (`C_Finalize`, `C_Initialize`) unless that already happened
    /// since generation `seen` (then `Ok(true)`: look again) or the module's budget is spent
    /// (`Ok(false)`: the last one was too recent), waiting for the calls in flight. Every
    /// session and login of this process on the module's tokens ends: their signers open new
    /// ones and log in again with the credential they kept (a refused PIN is still never sent
    /// again). The budget allows one at once, then one per wait, the wait doubling from 10 s
    /// to 10 min until [`Module::token_found`].
    pub(crate) fn reinitialize(&self, seen: u64) -> Result<bool, Error> {
        let _calls = self
            .lifecycle
            .calls
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if self.lifecycle.generation.load(Ordering::SeqCst) != seen {
            return Ok(true);
        }
        let due = self
            .lifecycle
            .budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(Instant::now());
        if !due {
            return Ok(false);
        }
        tracing::warn!(module = %self.shown_path(), "reinitializing the module to look for its lost tokens again");
        self.restart().map(|()| true)
    }

    /// Looks at the module's tokens afresh (`C_Finalize` + `C_Initialize`) before another try
    /// at opening a key, unless that already happened since generation `seen` (`Ok(true)`:
    /// look again). Only when nothing else in this process holds the module (a command, or an
    /// agent's first profile on it): a reinitialization ends every other signer's session and
    /// login, which only a lost key's recovery may cost them, rationed ([`Module::reinitialize`]).
    pub(crate) fn refresh_tokens(&self, seen: u64) -> Result<bool, Error> {
        // The registry's reference and this one: no other user of the module in this process.
        if Arc::strong_count(&self.lifecycle) > 2 {
            return Ok(false);
        }
        let _calls = self
            .lifecycle
            .calls
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if self.lifecycle.generation.load(Ordering::SeqCst) != seen {
            return Ok(true);
        }
        tracing::debug!(module = %self.shown_path(), "reinitializing the module to see its tokens afresh");
        self.restart().map(|()| true)
    }

    /// `C_Finalize` + `C_Initialize`, the caller holding `calls` exclusively. Every session of
    /// the module is void from here on, whatever `C_Finalize` answers.
    fn restart(&self) -> Result<(), Error> {
        self.lifecycle.generation.fetch_add(1, Ordering::SeqCst);
        match self.ctx.clone().finalize() {
            Err(e) if rv_of(&e) != Some(RvError::CryptokiNotInitialized) => {
                tracing::warn!(module = %self.shown_path(), "C_Finalize returned {}", describe(&e));
            }
            _ => {}
        }
        match self
            .ctx
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        {
            Err(e) if rv_of(&e) != Some(RvError::CryptokiAlreadyInitialized) => {
                Err(self.call_err("C_Initialize", &e))
            }
            _ => Ok(()),
        }
    }

    /// A lost token was found again: the next loss may reinitialize the module at once.
    pub(crate) fn token_found(&self) {
        *self
            .lifecycle
            .budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = ReinitBudget::default();
    }

    /// The module's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The module's file for messages and logs, escaped (see [`escaped_path`]).
    pub fn shown_path(&self) -> String {
        escaped_path(&self.path)
    }

    /// `manufacturer description version (Cryptoki x.y)`, for `list`.
    pub fn description(&self) -> Result<String, Error> {
        Ok(self.library()?.to_string())
    }

    /// What `C_GetInfo` says of the library: what identifies the implementation behind the
    /// file.
    pub(crate) fn library(&self) -> Result<LibraryInfo, Error> {
        let info = self
            .ctx
            .get_library_info()
            .map_err(|e| self.call_err("C_GetInfo", &e))?;
        Ok(LibraryInfo {
            manufacturer: info.manufacturer_id().trim_end_matches(padding).to_owned(),
            description: info
                .library_description()
                .trim_end_matches(padding)
                .to_owned(),
            version: info.library_version().to_string(),
            cryptoki: info.cryptoki_version().to_string(),
        })
    }

    /// Every slot, with its token if one is present.
    pub fn slots(&self) -> Result<Vec<SlotSummary>, Error> {
        let slots = self
            .ctx
            .get_all_slots()
            .map_err(|e| self.call_err("C_GetSlotList", &e))?;
        slots
            .into_iter()
            .map(|slot| self.slot_summary(slot))
            .collect()
    }

    fn slot_summary(&self, slot: Slot) -> Result<SlotSummary, Error> {
        let info = self
            .ctx
            .get_slot_info(slot)
            .map_err(|e| self.call_err("C_GetSlotInfo", &e))?;
        let token = if info.token_present() {
            let t = self
                .ctx
                .get_token_info(slot)
                .map_err(|e| self.call_err("C_GetTokenInfo", &e))?;
            Some(TokenSummary::from_info(&t))
        } else {
            None
        };
        Ok(SlotSummary {
            slot_id: slot.id(),
            description: info.slot_description().trim_end_matches(padding).to_owned(),
            manufacturer: info.manufacturer_id().trim_end_matches(padding).to_owned(),
            token,
        })
    }

    /// The one token the URI's token attributes select. None and several are both errors.
    pub fn select(&self, uri: &Pkcs11Uri) -> Result<Token, Error> {
        let library_ok = self.library_matches(uri)?;
        let slots = self
            .ctx
            .get_slots_with_token()
            .map_err(|e| self.call_err("C_GetSlotList", &e))?;
        let mut all = Vec::new();
        let mut broken = Vec::new();
        for slot in slots {
            // A slot whose token fails (SoftHSM2: its directory was removed) must not hide
            // the others.
            let summary = match self.slot_summary(slot) {
                Ok(summary) => summary,
                Err(e) => {
                    tracing::debug!("skipping slot-id {}: {e}", slot.id());
                    broken.push(format!("slot-id {} does not answer ({e})", slot.id()));
                    continue;
                }
            };
            // An uninitialized token (SoftHSM2's spare slot) holds no keys to select.
            if let Some(token) = summary.token.clone().filter(|t| t.initialized) {
                all.push((slot, summary, token));
            }
        }
        let (mut matching, others): (Vec<_>, Vec<_>) = all
            .into_iter()
            .partition(|(_, s, t)| library_ok && token_matches(uri, s, t));
        let describe = |found: &[(Slot, SlotSummary, TokenSummary)]| {
            let names: Vec<String> = found.iter().map(|(s, _, t)| t.describe(s.id())).collect();
            names.join(", ")
        };
        match matching.len() {
            0 => {
                let present =
                    (!others.is_empty()).then(|| format!("tokens present: {}", describe(&others)));
                Err(self.not_found(uri, present, broken))
            }
            1 => {
                let (slot, _, summary) = matching.remove(0);
                Ok(Token {
                    module: self.clone(),
                    slot,
                    summary,
                })
            }
            count => Err(Error::TokenAmbiguous {
                selector: token_selector(uri),
                count,
                candidates: describe(&matching),
            }),
        }
    }

    /// The token in a slot that [`Module::slots`] listed (no URI matching: for listings).
    pub fn token_in(&self, slot: &SlotSummary) -> Result<Token, Error> {
        let summary = slot.token.clone().ok_or_else(|| Error::TokenNotFound {
            selector: format!("slot-id={}", slot.slot_id),
            module: self.shown_path(),
            available: "the slot is empty".into(),
            unsure: false,
        })?;
        let slot = Slot::try_from(slot.slot_id).map_err(|e| self.call_err("C_GetSlotInfo", &e))?;
        Ok(Token {
            module: self.clone(),
            slot,
            summary,
        })
    }

    /// No token matched: what is there (`present`, the slots that did not answer) and what to
    /// do. A token may be there but unreadable at that moment (SoftHSM2 shows a token whose file
    /// another process is rewriting as broken or uninitialized), so this never advises
    /// initializing a token: that would destroy the keys of one that is only unreadable.
    fn not_found(&self, uri: &Pkcs11Uri, present: Option<String>, broken: Vec<String>) -> Error {
        let softhsm2 = self.is_softhsm2();
        let none_seen = present.is_none() && broken.is_empty();
        let unsure = none_seen || !broken.is_empty();
        let hint = if !broken.is_empty() {
            let busy = if softhsm2 {
                "another process may have been writing it at that moment (SoftHSM2 rewrites its token file at every login)"
            } else {
                "another process may have been using it at that moment"
            };
            Some(format!(
                "a token that does not answer is often passing: {busy}, or this process may be short of file descriptors; try again, and if it lasts, check that the token is in place and readable by this user"
            ))
        } else if none_seen && softhsm2 {
            Some(softhsm2_none_seen(
                std::env::var_os(SOFTHSM2_CONF).as_deref(),
            ))
        } else if none_seen {
            Some("the module shows no initialized token: check that the token is inserted (a software token: that the module's configuration names it) and that this user can read it, and try again".to_owned())
        } else {
            None
        };
        Error::TokenNotFound {
            selector: token_selector(uri),
            module: self.shown_path(),
            available: present
                .into_iter()
                .chain(broken)
                .chain(hint)
                .collect::<Vec<_>>()
                .join("; "),
            unsure,
        }
    }

    /// Whether this is SoftHSM2, by its file name or its own description.
    fn is_softhsm2(&self) -> bool {
        let named = self
            .path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().to_lowercase().contains("softhsm"));
        named
            || self
                .library()
                .is_ok_and(|l| l.manufacturer.contains("SoftHSM"))
    }

    fn library_matches(&self, uri: &Pkcs11Uri) -> Result<bool, Error> {
        if uri.library_manufacturer.is_none()
            && uri.library_description.is_none()
            && uri.library_version.is_none()
        {
            return Ok(true);
        }
        let info = self
            .ctx
            .get_library_info()
            .map_err(|e| self.call_err("C_GetInfo", &e))?;
        let version = info.library_version().to_string();
        Ok(same(&uri.library_manufacturer, info.manufacturer_id())
            && same(&uri.library_description, info.library_description())
            && same(&uri.library_version, &version))
    }

    pub(crate) fn call_err(&self, call: &str, err: &CkError) -> Error {
        Error::Call {
            call: call.to_owned(),
            module: self.shown_path(),
            rv: describe(err),
        }
    }

    pub(crate) fn mechanisms(&self, slot: Slot) -> Result<Vec<MechanismType>, Error> {
        self.ctx
            .get_mechanism_list(slot)
            .map_err(|e| self.call_err("C_GetMechanismList", &e))
    }

    pub(crate) fn key_sizes(
        &self,
        slot: Slot,
        mech: MechanismType,
    ) -> Result<(usize, usize), Error> {
        let info = self
            .ctx
            .get_mechanism_info(slot, mech)
            .map_err(|e| self.call_err("C_GetMechanismInfo", &e))?;
        Ok((info.min_key_size(), info.max_key_size()))
    }
}

/// The variable that names SoftHSM2's configuration file, and so its token directory.
const SOFTHSM2_CONF: &str = "SOFTHSM2_CONF";

/// What to do when SoftHSM2, configured by `conf` (the value of `SOFTHSM2_CONF`), shows no
/// initialized token.
fn softhsm2_none_seen(conf: Option<&std::ffi::OsStr>) -> String {
    match conf.filter(|c| !c.is_empty()) {
        None => format!(
            "the module shows no initialized token, and {SOFTHSM2_CONF} is not set, so SoftHSM2 read its default configuration instead of your token's: export {SOFTHSM2_CONF}=DIR/softhsm2.conf for your token's directory (the line softhsm/setup-token.sh DIR prints)"
        ),
        Some(conf) => format!(
            "the module shows no initialized token in the token directory that {SOFTHSM2_CONF}={} names: check that it is your token's softhsm2.conf and that this user can read that directory; a token that another process was writing at that moment reads this way too: try again (a new token goes in a new directory: softhsm/setup-token.sh DIR LABEL)",
            Path::new(conf).display()
        ),
    }
}

/// The hint for a SoftHSM2 module at `path` whose `C_Initialize` failed while `conf` (the value
/// of `SOFTHSM2_CONF`) is unset: it then reads a default configuration, which may be missing.
fn softhsm2_conf_unset(path: &Path, conf: Option<&std::ffi::OsStr>) -> &'static str {
    let softhsm2 = path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().to_lowercase().contains("softhsm"));
    if softhsm2 && conf.is_none_or(|c| c.is_empty()) {
        "; SOFTHSM2_CONF is not set, so SoftHSM2 looked for its default configuration: export SOFTHSM2_CONF=DIR/softhsm2.conf for your token's directory (the line softhsm/setup-token.sh DIR prints)"
    } else {
        ""
    }
}

/// `token=…;serial=…` for messages: the URI's token attributes only.
pub(super) fn token_selector(uri: &Pkcs11Uri) -> String {
    let only_token = Pkcs11Uri {
        token: uri.token.clone(),
        manufacturer: uri.manufacturer.clone(),
        serial: uri.serial.clone(),
        model: uri.model.clone(),
        library_manufacturer: uri.library_manufacturer.clone(),
        library_description: uri.library_description.clone(),
        library_version: uri.library_version.clone(),
        slot_description: uri.slot_description.clone(),
        slot_manufacturer: uri.slot_manufacturer.clone(),
        slot_id: uri.slot_id,
        ..Pkcs11Uri::default()
    };
    let text = only_token.to_string();
    if text == "pkcs11:" {
        "any token".to_owned()
    } else {
        text
    }
}

fn same(wanted: &Option<String>, have: &str) -> bool {
    wanted
        .as_deref()
        .is_none_or(|w| w == have.trim_end_matches(padding))
}

/// RFC 7512 matching: every attribute given must match; vendor path attributes are not
/// understood here, so a URI carrying one matches nothing (section 2.5).
fn token_matches(uri: &Pkcs11Uri, slot: &SlotSummary, t: &TokenSummary) -> bool {
    uri.vendor_path.is_empty()
        && same(&uri.token, &t.label)
        && same(&uri.manufacturer, &t.manufacturer)
        && same(&uri.model, &t.model)
        && same(&uri.serial, &t.serial)
        && same(&uri.slot_description, &slot.description)
        && same(&uri.slot_manufacturer, &slot.manufacturer)
        && uri.slot_id.is_none_or(|id| id == slot.slot_id)
}

/// How the user proved themselves to a token; kept for context-specific logins and for
/// logging in again after the token lost a session.
pub enum Credential {
    /// The token needs no login.
    NotNeeded,
    /// A PIN (zeroized on drop) and where it came from.
    Pin(Pin, PinOrigin),
    /// The token collects the PIN on its own PIN pad.
    PinPad,
}

/// Which token a login is to: the module file and the token's serial and label. Login state is
/// per token and process, so this is what PINs are remembered by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TokenId {
    module: PathBuf,
    serial: String,
    label: String,
}

/// A keyed SHA-256 of a PIN: tells PINs apart without keeping one. The key is random per
/// process, so the digest says nothing outside it.
type PinDigest = [u8; 32];

/// What this process learnt from logging in to one token.
#[derive(Default)]
struct PinHistory {
    /// PINs the token refused: never sent to it again by this process.
    refused: Vec<PinDigest>,
    /// The PIN of this process's last successful login.
    accepted: Option<PinDigest>,
}

/// Every token's [`PinHistory`], for the life of the process.
static PIN_HISTORY: Mutex<Vec<(TokenId, PinHistory)>> = Mutex::new(Vec::new());

fn with_history<T>(token: &TokenId, f: impl FnOnce(&mut PinHistory) -> T) -> T {
    let mut all = PIN_HISTORY.lock().unwrap_or_else(PoisonError::into_inner);
    let index = match all.iter().position(|(t, _)| t == token) {
        Some(i) => i,
        None => {
            all.push((token.clone(), PinHistory::default()));
            all.len() - 1
        }
    };
    f(&mut all[index].1)
}

/// One lock per token, held from the refused-PIN check through `C_Login` to recording the
/// answer: two signers logging in to one token at once would otherwise both pass the check
/// and send a wrong PIN twice.
static LOGIN_LOCKS: Mutex<Vec<(TokenId, Arc<Mutex<()>>)>> = Mutex::new(Vec::new());

fn login_lock(token: &TokenId) -> Arc<Mutex<()>> {
    let mut all = LOGIN_LOCKS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, lock)) = all.iter().find(|(t, _)| t == token) {
        return Arc::clone(lock);
    }
    let lock = Arc::new(Mutex::new(()));
    all.push((token.clone(), Arc::clone(&lock)));
    lock
}

fn pin_digest(pin: &Pin) -> PinDigest {
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
    hasher.finalize().into()
}

impl Credential {
    /// Whether `token` refused this credential's PIN earlier in this process (then it is
    /// never sent again).
    pub fn refused_by(&self, token: &TokenId) -> bool {
        match self {
            Credential::Pin(pin, _) => {
                let digest = pin_digest(pin);
                with_history(token, |h| h.refused.contains(&digest))
            }
            Credential::NotNeeded | Credential::PinPad => false,
        }
    }
}

/// A token chosen by a URI, ready to open sessions on.
#[derive(Clone)]
pub struct Token {
    module: Module,
    slot: Slot,
    summary: TokenSummary,
}

impl Token {
    /// The token's label.
    pub fn label(&self) -> &str {
        &self.summary.label
    }

    /// Which token this is, for telling logins apart.
    pub fn id(&self) -> TokenId {
        TokenId {
            module: self.module.path.clone(),
            serial: self.summary.serial.clone(),
            label: self.summary.label.clone(),
        }
    }

    /// What the token says about itself.
    pub fn summary(&self) -> &TokenSummary {
        &self.summary
    }

    /// The module the token lives in.
    pub fn module(&self) -> &Module {
        &self.module
    }

    /// The mechanisms the token offers.
    pub(crate) fn mechanisms(&self) -> Result<Vec<MechanismType>, Error> {
        self.module.mechanisms(self.slot)
    }

    /// A read-only session; signing needs no more.
    pub(crate) fn open(&self) -> Result<Session, Error> {
        self.module
            .ctx
            .open_ro_session(self.slot)
            .map_err(|e| self.module.call_err("C_OpenSession", &e))
    }

    /// A read-write session, for making keys and storing certificates. A write-protected
    /// token is refused up front, before any PIN is asked for.
    pub(crate) fn open_rw(&self) -> Result<Session, Error> {
        let read_only = || Error::TokenReadOnly {
            token: self.label().to_owned(),
        };
        if self.summary.write_protected {
            return Err(read_only());
        }
        self.module
            .ctx
            .open_rw_session(self.slot)
            .map_err(|e| match rv_of(&e) {
                Some(RvError::TokenWriteProtected) => read_only(),
                _ => self.module.call_err("C_OpenSession", &e),
            })
    }

    /// The smallest and largest key the module makes with `mech` (bits for RSA).
    pub(crate) fn key_sizes(&self, mech: MechanismType) -> Result<(usize, usize), Error> {
        self.module.key_sizes(self.slot, mech)
    }

    /// Logs the user in when the token requires it, with a PIN from the URI's source, the
    /// environment, the token's PIN pad, or a prompt. Returns what was used, for the
    /// context-specific logins of `CKA_ALWAYS_AUTHENTICATE` keys.
    ///
    /// A wrong PIN is reported, never retried: a second automatic try would spend one more of
    /// the few attempts the token allows before it locks.
    pub(crate) fn login(&self, session: &Session, uri: &Pkcs11Uri) -> Result<Credential, Error> {
        if !self.summary.login_required {
            return Ok(Credential::NotNeeded);
        }
        let credential = self.credential(uri)?;
        self.authenticate(session, UserType::User, &credential)?;
        Ok(credential)
    }

    /// The PIN to use: the URI's or the environment's, else the PIN pad, else a prompt.
    pub fn credential(&self, uri: &Pkcs11Uri) -> Result<Credential, Error> {
        if self.summary.pin_locked {
            return Err(Error::PinLocked {
                token: self.label().to_owned(),
            });
        }
        Ok(
            match pin::from_sources(
                uri.pin_source.as_ref(),
                uri.pin_value.as_ref().map(|v| v.pin()),
            )? {
                Some((pin, origin)) => Credential::Pin(pin, origin),
                None if self.summary.protected_auth_path => Credential::PinPad,
                None => {
                    let (pin, origin) = pin::obtain(None, None, self.label())?;
                    Credential::Pin(pin, origin)
                }
            },
        )
    }

    /// `C_Login` as `user` with `credential` (nothing to do for [`Credential::NotNeeded`]).
    pub(crate) fn authenticate(
        &self,
        session: &Session,
        user: UserType,
        credential: &Credential,
    ) -> Result<(), Error> {
        match credential {
            Credential::NotNeeded => Ok(()),
            Credential::Pin(pin, origin) => self.login_as(session, user, Some(pin), origin),
            Credential::PinPad => self.login_as(session, user, None, &PinOrigin::PinPad),
        }
    }

    /// `C_Login` as `user`, mapping the PIN failures to errors that say what to do.
    ///
    /// Guards the token's few PIN tries: a PIN the token refused before is not sent again, no
    /// PIN is sent while the token says the next wrong one locks it, and a PIN that cannot be
    /// checked because the token is already logged in with another one is an error.
    fn login_as(
        &self,
        session: &Session,
        user: UserType,
        pin: Option<&Pin>,
        origin: &PinOrigin,
    ) -> Result<(), Error> {
        let token = self.label().to_owned();
        let id = self.id();
        let lock = login_lock(&id);
        let _one_login = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let digest = pin.map(pin_digest);
        if let Some(d) = digest
            && with_history(&id, |h| h.refused.contains(&d))
        {
            return Err(Error::PinAlreadyRefused {
                token,
                origin: origin.to_string(),
            });
        }
        if pin.is_some() {
            self.check_pin_flags()?;
        }
        let err = match session.login(user, pin) {
            Ok(()) => {
                with_history(&id, |h| h.accepted = digest.or(h.accepted));
                return Ok(());
            }
            Err(e) => e,
        };
        let origin = origin.to_string();
        Err(match rv_of(&err) {
            // Login state is per token, shared by every session of this process: the PIN was
            // not checked, so it must be the one that logged in.
            Some(RvError::UserAlreadyLoggedIn) => {
                let accepted = with_history(&id, |h| h.accepted);
                match (accepted, digest) {
                    (Some(a), Some(d)) if a != d => Error::PinUnverified { token, origin },
                    _ => return Ok(()),
                }
            }
            Some(RvError::PinIncorrect) => {
                if let Some(d) = digest {
                    with_history(&id, |h| {
                        h.refused.push(d);
                        h.accepted = h.accepted.filter(|a| *a != d);
                    });
                }
                Error::PinIncorrect { token, origin }
            }
            Some(RvError::PinLocked) => Error::PinLocked { token },
            Some(RvError::PinExpired) => Error::PinRefused {
                token,
                origin,
                reason: "the PIN has expired; change it with the token's own tools",
            },
            Some(RvError::PinLenRange | RvError::PinInvalid) => Error::PinRefused {
                token,
                origin,
                reason: "its length or characters are outside what the token accepts (check for stray spaces or line endings)",
            },
            _ => self.module.call_err("C_Login", &err),
        })
    }

    /// Refuses to send a PIN while the token's flags, read now, say the PIN is locked or the
    /// next wrong one locks it: an automatic PIN that happens to be wrong would lock the token.
    fn check_pin_flags(&self) -> Result<(), Error> {
        let info = self
            .module
            .ctx
            .get_token_info(self.slot)
            .map_err(|e| self.module.call_err("C_GetTokenInfo", &e))?;
        let token = self.label().to_owned();
        if info.user_pin_locked() {
            return Err(Error::PinLocked { token });
        }
        if info.user_pin_final_try() {
            return Err(Error::PinFinalTry { token });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_path_in_the_uri_wins_and_a_missing_module_is_explained() {
        let uri: Pkcs11Uri = "pkcs11:token=a?module-path=/x/y.so".parse().unwrap();
        assert_eq!(
            resolve_module(&uri, Some(Path::new("/other.so"))).unwrap(),
            PathBuf::from("/x/y.so")
        );
        let bare: Pkcs11Uri = "pkcs11:token=a".parse().unwrap();
        assert_eq!(
            resolve_module(&bare, Some(Path::new("/other.so"))).unwrap(),
            PathBuf::from("/other.so")
        );
        let err = resolve_module(&bare, None).unwrap_err().to_string();
        assert!(
            err.contains("SUITEKEY_MODULE") && err.contains("--module"),
            "{err}"
        );
        let named: Pkcs11Uri = "pkcs11:token=a?module-name=surely-not-a-module"
            .parse()
            .unwrap();
        assert!(
            resolve_module(&named, None)
                .unwrap_err()
                .to_string()
                .contains("surely-not-a-module")
        );
    }

    #[test]
    fn softhsm2_without_its_configuration_is_told_to_set_softhsm2_conf_never_to_initialize() {
        let unset = softhsm2_none_seen(None);
        assert!(unset.contains("SOFTHSM2_CONF is not set"), "{unset}");
        let empty = softhsm2_none_seen(Some(std::ffi::OsStr::new("")));
        assert_eq!(empty, unset);
        let set = softhsm2_none_seen(Some(std::ffi::OsStr::new("/t/softhsm2.conf")));
        assert!(set.contains("SOFTHSM2_CONF=/t/softhsm2.conf") && set.contains("try again"));
        for text in [&unset, &set] {
            // Saying that no token is initialized is no advice to initialize one.
            let advice = text.to_lowercase().replace("initialized", "");
            assert!(!advice.contains("initializ"), "{text}");
        }
        let softhsm = Path::new("/usr/lib/softhsm/libsofthsm2.so");
        assert!(softhsm2_conf_unset(softhsm, None).contains("export SOFTHSM2_CONF="));
        assert!(softhsm2_conf_unset(softhsm, Some(std::ffi::OsStr::new("/t/c"))).is_empty());
        assert!(softhsm2_conf_unset(Path::new("/usr/lib/opensc-pkcs11.so"), None).is_empty());
    }

    #[test]
    fn loading_a_file_that_is_not_a_module_says_so() {
        let err = Module::load(Path::new("/etc/hostname"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("/etc/hostname") && err.contains("PKCS#11 library"),
            "{err}"
        );
    }
}
