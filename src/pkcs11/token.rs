//! Tokens: what a module's slots hold, choosing the one token a URI names, and opening
//! sessions on it.

use std::path::Path;

use cryptoki::error::RvError;
use cryptoki::mechanism::MechanismType;
use cryptoki::session::Session;
use cryptoki::slot::{Slot, TokenInfo};

use super::Error;
use super::module::{Module, SOFTHSM2_CONF, padding};
use super::registry::TokenId;
use super::rv::rv_of;
use super::uri::Pkcs11Uri;

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
    /// What the token says of the user PIN's tries left, when it says anything.
    pub pin_tries: Option<PinTries>,
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
            pin_tries: PinTries::of(info),
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

/// What a token says of its user PIN's tries left (PKCS#11 gives no number, only these flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinTries {
    /// `CKF_USER_PIN_COUNT_LOW`: wrong PINs were entered since the last right one.
    Low,
    /// `CKF_USER_PIN_FINAL_TRY`: the next wrong PIN locks it.
    FinalTry,
    /// `CKF_USER_PIN_LOCKED`: no tries left.
    Locked,
}

impl PinTries {
    /// What `info`'s flags say, the gravest first; `None` when they say nothing.
    pub(crate) fn of(info: &TokenInfo) -> Option<PinTries> {
        if info.user_pin_locked() {
            Some(PinTries::Locked)
        } else if info.user_pin_final_try() {
            Some(PinTries::FinalTry)
        } else if info.user_pin_count_low() {
            Some(PinTries::Low)
        } else {
            None
        }
    }
}

impl std::fmt::Display for PinTries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PinTries::Low => {
                "wrong PINs were entered and few tries are left (CKF_USER_PIN_COUNT_LOW)"
            }
            PinTries::FinalTry => "the next wrong PIN locks it (CKF_USER_PIN_FINAL_TRY)",
            PinTries::Locked => "it is locked, no tries left (CKF_USER_PIN_LOCKED)",
        })
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
        TokenId::new(
            self.module.path(),
            &self.summary.serial,
            &self.summary.label,
        )
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
            .ctx()
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
            .ctx()
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

    /// Whether `uri`'s token and library attributes select this token. The module is not
    /// compared: a URI that reaches the token through another module (p11-kit's proxy, say)
    /// names it too.
    pub fn is_named_by(&self, uri: &Pkcs11Uri) -> Result<bool, Error> {
        let slot = self.module.slot_summary(self.slot)?;
        Ok(self.module.library_matches(uri)? && token_matches(uri, &slot, &self.summary))
    }

    /// What the token says about itself now (its PIN flags change with every login).
    pub(super) fn info_now(&self) -> Result<TokenInfo, Error> {
        self.module
            .ctx()
            .get_token_info(self.slot)
            .map_err(|e| self.module.call_err("C_GetTokenInfo", &e))
    }
}

/// Choosing a token among the module's slots.
impl Module {
    /// Every slot, with its token if one is present.
    pub fn slots(&self) -> Result<Vec<SlotSummary>, Error> {
        let slots = self
            .ctx()
            .get_all_slots()
            .map_err(|e| self.call_err("C_GetSlotList", &e))?;
        slots
            .into_iter()
            .map(|slot| self.slot_summary(slot))
            .collect()
    }

    fn slot_summary(&self, slot: Slot) -> Result<SlotSummary, Error> {
        let info = self
            .ctx()
            .get_slot_info(slot)
            .map_err(|e| self.call_err("C_GetSlotInfo", &e))?;
        let token = if info.token_present() {
            let t = self
                .ctx()
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
            .ctx()
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

    fn library_matches(&self, uri: &Pkcs11Uri) -> Result<bool, Error> {
        if uri.library_manufacturer.is_none()
            && uri.library_description.is_none()
            && uri.library_version.is_none()
        {
            return Ok(true);
        }
        let info = self
            .ctx()
            .get_library_info()
            .map_err(|e| self.call_err("C_GetInfo", &e))?;
        let version = info.library_version().to_string();
        Ok(same(&uri.library_manufacturer, info.manufacturer_id())
            && same(&uri.library_description, info.library_description())
            && same(&uri.library_version, &version))
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pkcs11::module::softhsm2_conf_unset;

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
}
