//! The PKCS#11 layer: URIs, modules and tokens, PINs, keys and signing.
//!
//! Nothing here knows about NetSuite or JWTs beyond [`crate::jose::Alg`]; nothing outside sees a
//! cryptoki type. Every cryptoki call is wrapped once and its return value becomes an [`Error`]
//! that says what failed and what to do.
//!
//! One concept per file, each using only those listed before it (and this file's [`Error`]):
//!
//! | file | holds |
//! | --- | --- |
//! | `uri` | RFC 7512 PKCS#11 URIs |
//! | `rv` | PKCS#11 return values, typed: their names and what they say of a session or token |
//! | `pin`, `prompt` | where a PIN comes from; the terminal prompt |
//! | `lock` | taking turns at a token across processes (an advisory lock file per token) |
//! | `registry` | the one process-wide registry: loaded modules with their generation, and per token the login lock and the PINs it refused |
//! | `module` | loading a module once per process, reinitializing it under its users |
//! | `token` | slots and tokens, choosing the one a URI names, opening sessions |
//! | `session` | `KeptSession`: a session of an older module generation is never closed |
//! | `management_key` | a PIV card's management key, from a file or the environment |
//! | `piv` | PIV cards behind ykcs11 and OpenSC: which module, slots by key id, what each cannot do |
//! | `login` | credentials and `C_Login`, guarding the token's few PIN tries; the management key's login |
//! | `creator` | who makes objects on a token: the user, or ykcs11's security officer with the management key |
//! | `mechanism` | which mechanism and hashing plan for which algorithm; keygen mechanisms; module limits |
//! | `objects` | finding objects, reading attributes (EC params and points), the inventory for `list` |
//! | `public_half` | a key's public object and stored certificates, seen without a login (`doctor`) |
//! | `single_part` | the one `unsafe` call: single-part `C_Sign` after a context-specific login |
//! | `key` | opening the key a URI names, with retries that may pass |
//! | `signer` | [`KeySigner`]: the [`crate::jose::Signer`], and reopening a lost session |
//! | `keygen` | making key pairs, storing certificates beside them |
//! | `retire` | a replaced key's objects relabelled or deleted |

mod creator;
mod key;
mod keygen;
mod lock;
mod login;
pub mod management_key;
mod mechanism;
mod module;
mod objects;
pub mod pin;
mod piv;
mod prompt;
mod public_half;
mod registry;
mod retire;
mod rv;
mod session;
mod signer;
#[allow(unsafe_code)]
mod single_part;
mod token;
pub mod uri;

pub use key::{CredentialFor, Key};
pub use keygen::KeygenPlan;
pub use login::{Credential, allow_final_pin_try};
pub use management_key::{ManagementKey, ManagementKeySource};
pub use mechanism::{AlgSupport, KeySpec, support, token_algs};
pub use module::{Module, P11_KIT_PROXY, default_module, finalize_all, resolve_module};
pub use objects::{CertSummary, KeySummary, hex, inventory};
pub use pin::Pin;
pub use prompt::{cancelled_by_signal, leave_signals_to_caller};
pub use public_half::{PublicHalf, public_halves};
pub use registry::TokenId;
pub use retire::{Deleted, OwnObjects, Relabelled};
pub use rv::ReturnValue;
pub use signer::KeySigner;
pub use token::{PinTries, SlotSummary, Token, TokenSummary};
pub use uri::Pkcs11Uri;

/// Why a PKCS#11 operation failed, phrased for the person who has to fix it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No module was named anywhere.
    #[error(
        "no PKCS#11 module given, and p11-kit's proxy (p11-kit-proxy.so, the default) is not installed: add module-path=… to the key URI, pass --module PATH or set SUITEKEY_MODULE, after installing the module's package: {}",
        module::MODULE_PACKAGES
    )]
    NoModule,
    /// `module-name` did not resolve to a library.
    #[error(
        "PKCS#11 module named '{name}' not found (looked in {looked}); use module-path=/path/to/module.so instead"
    )]
    ModuleName {
        /// The module-name given.
        name: String,
        /// Where it was looked for.
        looked: String,
    },
    /// The module file could not be loaded as a PKCS#11 library.
    #[error(
        "cannot load PKCS#11 module '{path}': {reason}; check that the file exists and is a PKCS#11 library (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so)"
    )]
    Load {
        /// The module path.
        path: String,
        /// What the loader said.
        reason: String,
    },
    /// A PKCS#11 call failed in a way no more specific variant covers.
    #[error("{call} failed in module '{module}': {rv}")]
    Call {
        /// The function, e.g. `C_Sign`.
        call: String,
        /// The module path.
        module: String,
        /// The PKCS#11 return value, e.g. `CKR_DEVICE_ERROR`.
        rv: ReturnValue,
    },
    /// The module was reinitialized (to find a lost token again) after this session was
    /// opened, so it is void; a new one is opened.
    #[error(
        "the session ended when module '{module}' was reinitialized to find a lost token; a new session is opened"
    )]
    SessionVoid {
        /// The module path.
        module: String,
    },
    /// No token matched the URI's token attributes.
    #[error("no token matching '{selector}' in module '{module}'; {available}")]
    TokenNotFound {
        /// The token attributes asked for.
        selector: String,
        /// The module path.
        module: String,
        /// The tokens that are there, or a hint when none are.
        available: String,
        /// The token may be there but could not be read at that moment: a slot did not answer,
        /// or no initialized token was seen at all (as when SoftHSM2's token file is read while
        /// another process rewrites it).
        unsure: bool,
    },
    /// Several tokens matched; selecting one silently could use the wrong key.
    #[error(
        "{count} tokens match '{selector}': {candidates}; add token=, serial= or slot-id= to the URI to pick one"
    )]
    TokenAmbiguous {
        /// The token attributes asked for.
        selector: String,
        /// How many matched.
        count: usize,
        /// The matching tokens.
        candidates: String,
    },
    /// No private key matched.
    #[error(
        "key '{key}' not found in token '{token}', which holds {present}; run 'suitekey list --module {module}' to see its keys with their URIs"
    )]
    KeyNotFound {
        /// The key URI (without secrets).
        key: String,
        /// The token label.
        token: String,
        /// The private keys the token shows, as URI attributes with their type (no secrets).
        present: String,
        /// The module path, for the `list` command.
        module: String,
    },
    /// Several private keys matched.
    #[error(
        "{count} keys match '{key}' in token '{token}': {candidates}; add id= (or a unique object=) to the URI"
    )]
    KeyAmbiguous {
        /// The key URI (without secrets).
        key: String,
        /// The token label.
        token: String,
        /// How many matched.
        count: usize,
        /// The matching keys.
        candidates: String,
    },
    /// The URI names something other than a private key.
    #[error(
        "'{key}' names a {kind} object, but signing needs a private key: use type=private or leave type out"
    )]
    NotAPrivateKey {
        /// The key URI.
        key: String,
        /// The object type named.
        kind: String,
    },
    /// The URI carries a vendor attribute this program does not understand.
    #[error(
        "'{key}' has the vendor attribute '{name}', which suitekey does not understand; remove it (RFC 7512: such a URI matches nothing)"
    )]
    VendorAttribute {
        /// The key URI.
        key: String,
        /// The attribute's name.
        name: String,
    },
    /// The URI names no object at all.
    #[error("'{0}' names no key: add object=LABEL and/or id=… (run 'suitekey list' to see keys)")]
    NoObject(String),
    /// The key exists but may not sign.
    #[error(
        "key '{key}' in token '{token}' has CKA_SIGN=false and cannot sign; make a key with signing allowed"
    )]
    SignNotPermitted {
        /// The key URI.
        key: String,
        /// The token label.
        token: String,
    },
    /// The module offers no mechanism for the algorithm.
    #[error("token '{token}' cannot sign {alg}: its module offers none of {wanted}; {hint}")]
    NoMechanism {
        /// The token label.
        token: String,
        /// The algorithm.
        alg: String,
        /// Mechanisms that would have worked.
        wanted: String,
        /// What to do.
        hint: String,
    },
    /// The token ended the user's login before a signature (OpenSC does, after the card
    /// refused one): a new session and one login as the user, with the PIN held, recover.
    #[error(
        "token '{token}' ended the login before a signature (the context-specific C_Login answered {rv}; OpenSC does so after the card refused a signature)"
    )]
    LoginDropped {
        /// The token label.
        token: String,
        /// What the context-specific login answered.
        rv: ReturnValue,
    },
    /// The token refused the PIN. Never retried: tokens lock after a few wrong PINs.
    #[error(
        "PIN rejected by token '{token}' (PIN from {origin}){tries}; not retried, since tokens lock after a few wrong PINs: check the PIN and try once more"
    )]
    PinIncorrect {
        /// The token label.
        token: String,
        /// Where the PIN came from (never the PIN).
        origin: String,
        /// What the token says of the tries left now, as `; the token now reports …` (empty
        /// when it says nothing).
        tries: String,
    },
    /// The token has locked the user PIN.
    #[error(
        "token '{token}' has locked its user PIN after too many wrong tries (CKF_USER_PIN_LOCKED); {remedy}"
    )]
    PinLocked {
        /// The token label.
        token: String,
        /// How to unlock it.
        remedy: &'static str,
    },
    /// The token refused this PIN earlier in this process; it is not sent again.
    #[error(
        "token '{token}' already refused the PIN from {origin}, so it is not sent again (tokens lock after a few wrong PINs); put the right PIN there and try again (an agent: then reload it with SIGHUP)"
    )]
    PinAlreadyRefused {
        /// The token label.
        token: String,
        /// Where the PIN came from (never the PIN).
        origin: String,
    },
    /// The token says the next wrong PIN locks it; no PIN is risked without the user's word.
    #[error(
        "token '{token}' reports that the next wrong PIN locks it (CKF_USER_PIN_FINAL_TRY), so no PIN was sent to it: if you are sure of the PIN, run again with --final-pin-try (a right PIN restores the tries); otherwise {remedy}"
    )]
    PinFinalTry {
        /// The token label.
        token: String,
        /// What else restores the tries.
        remedy: &'static str,
    },
    /// The token is already logged in (login state is per process) with a different PIN, so
    /// this one cannot be checked.
    #[error(
        "token '{token}' is already logged in by this process with another PIN, so the PIN from {origin} cannot be checked; every key on one token must use the same PIN"
    )]
    PinUnverified {
        /// The token label.
        token: String,
        /// Where the PIN came from (never the PIN).
        origin: String,
    },
    /// Two users of one token (agent profiles) name different PIN sources; a token is logged
    /// in to once, with one PIN.
    #[error(
        "profiles '{profile}' and '{other}' use the same token '{token}' with different PIN sources ({source_text} and {other_source}); the agent logs in to a token once, with one PIN: give every profile on this token the same pin-source"
    )]
    PinSourceConflict {
        /// The token label.
        token: String,
        /// The profile refused.
        profile: String,
        /// The profile that logged in to the token first.
        other: String,
        /// The refused profile's PIN source (never the PIN).
        source_text: String,
        /// The first profile's PIN source.
        other_source: String,
    },
    /// The token wants a PIN change or refuses the PIN's form.
    #[error("token '{token}' refused the PIN from {origin}: {reason}")]
    PinRefused {
        /// The token label.
        token: String,
        /// Where the PIN came from.
        origin: String,
        /// Why.
        reason: &'static str,
    },
    /// The PIN could not be obtained.
    #[error(transparent)]
    Pin(#[from] pin::PinError),
    /// The management key could not be obtained.
    #[error(transparent)]
    ManagementKey(#[from] management_key::ManagementKeyError),
    /// The card refused the management key (as the security officer's PIN). Never retried.
    #[error("token '{token}' refused the management key from {origin}: {reason}")]
    ManagementKeyRefused {
        /// The token label.
        token: String,
        /// Where the key came from (never the key).
        origin: String,
        /// Why, and what to do.
        reason: &'static str,
    },
    /// A management key was given for a token that does not use one.
    #[error(
        "--management-key-source is for PIV cards reached through Yubico's ykcs11 (libykcs11.so); token '{token}' does not use one: leave it out"
    )]
    ManagementKeyUnused {
        /// The token label.
        token: String,
    },
    /// ykcs11 makes objects only with the management key, and none was given.
    #[error("token '{token}': {}", piv::NEEDS_MANAGEMENT_KEY)]
    ManagementKeyNeeded {
        /// The token label.
        token: String,
    },
    /// The key URI names no PIV slot of a PIV card.
    #[error("'{key}' names no PIV slot: {}", piv::SLOT_CHOICE)]
    NoPivSlot {
        /// The key URI (without secrets).
        key: String,
    },
    /// The module cannot store a certificate on this token.
    #[error("token '{token}' cannot store a certificate: {reason}")]
    CertificateUnsupported {
        /// The token label.
        token: String,
        /// The module's limit, with what to use instead.
        reason: String,
    },
    /// The key's attributes could not be understood.
    #[error("key '{key}' in token '{token}': {problem}")]
    KeyAttributes {
        /// The key URI.
        key: String,
        /// The token label.
        token: String,
        /// What is wrong.
        problem: String,
    },
    /// The token refuses writes.
    #[error(
        "token '{token}' is write-protected, so no key or certificate can be created in it; use a writable token (or the token's own tools to lift the protection)"
    )]
    TokenReadOnly {
        /// The token label.
        token: String,
    },
    /// An object with the new key's label (or id) is already there; never overwritten.
    #[error(
        "token '{token}' already holds {what}; suitekey never overwrites a key: {instead} (run 'suitekey list' to see what is there)"
    )]
    LabelTaken {
        /// The token label.
        token: String,
        /// What is there, e.g. "a private key labelled 'ns-prod'".
        what: String,
        /// What to choose instead: another label, or on a PIV card another slot.
        instead: &'static str,
    },
    /// The module cannot make this kind of key.
    #[error("token '{token}' cannot generate {kind} keys: {reason}")]
    KeygenUnsupported {
        /// The token label.
        token: String,
        /// The key kind asked for.
        kind: String,
        /// The module's limit.
        reason: String,
    },
    /// The module offers the mechanisms for a key kind but is known not to handle it.
    #[error("token '{token}' cannot use the {kind} key '{key}': {limit}")]
    ModuleLimit {
        /// The token label.
        token: String,
        /// The key URI (without secrets).
        key: String,
        /// The key kind.
        kind: String,
        /// The module's limit, naming the module.
        limit: String,
    },
    /// Generating or storing an object failed.
    #[error("token '{token}' could not {action}: {rv}; {hint}")]
    Store {
        /// The token label.
        token: String,
        /// What was attempted.
        action: String,
        /// The PKCS#11 return value.
        rv: String,
        /// What to check.
        hint: &'static str,
    },
    /// The module made a key that does not have the protection asked for; it was destroyed.
    #[error(
        "token '{token}' made the key pair '{label}' without {missing}, so it was deleted again; this module cannot keep keys non-extractable"
    )]
    KeyNotProtected {
        /// The token label.
        token: String,
        /// The key's label.
        label: String,
        /// The protection missing.
        missing: String,
    },
    /// The token already holds a certificate for the key.
    #[error(
        "token '{token}' already holds a certificate for key '{label}' ({existing}); pass {flag} to replace it (the one uploaded to NetSuite keeps working until it expires)"
    )]
    CertificateExists {
        /// The token label.
        token: String,
        /// The key's label.
        label: String,
        /// The certificate objects found.
        existing: String,
        /// The flag that replaces them.
        flag: &'static str,
    },
    /// The module returned a signature that is not the expected form.
    #[error("token '{token}' returned an unusable signature: {source}")]
    Signature {
        /// The token label.
        token: String,
        /// Why it is unusable.
        #[source]
        source: crate::jose::EcdsaFormatError,
    },
}

impl crate::kind::HasKind for Error {
    /// A PIN problem; a module, key or object the user named wrongly; else the token's.
    fn kind(&self) -> crate::kind::Kind {
        use crate::kind::Kind;
        match self {
            e if e.is_pin() => Kind::Pin,
            Error::NoModule
            | Error::PinSourceConflict { .. }
            | Error::ModuleName { .. }
            | Error::NotAPrivateKey { .. }
            | Error::NoObject(_)
            | Error::ManagementKeyUnused { .. }
            | Error::ManagementKeyNeeded { .. }
            | Error::NoPivSlot { .. }
            | Error::VendorAttribute { .. } => Kind::Usage,
            _ => Kind::Token,
        }
    }
}

impl Error {
    /// Whether the PIN is the problem: missing, refused, locked or not to be risked. Never
    /// worth an automatic retry.
    pub fn is_pin(&self) -> bool {
        matches!(
            self,
            Error::Pin(_)
                | Error::PinIncorrect { .. }
                | Error::PinLocked { .. }
                | Error::PinRefused { .. }
                | Error::PinAlreadyRefused { .. }
                | Error::PinFinalTry { .. }
                | Error::PinUnverified { .. }
                | Error::ManagementKey(_)
                | Error::ManagementKeyRefused { .. }
        )
    }

    /// Whether the token lost the session (or its login) rather than refused the operation:
    /// then [`KeySigner::reopen`] and one more try are worth it. PIN errors never are.
    pub fn is_session_lost(&self) -> bool {
        match self {
            Error::Call { rv, .. } => rv.loses_session(),
            Error::SessionVoid { .. } | Error::LoginDropped { .. } => true,
            _ => false,
        }
    }

    /// Whether the token the key was in is missing or broken (not found by its URI, or
    /// failing the way a removed token fails): worth a reinitialized module.
    pub fn is_token_lost(&self) -> bool {
        match self {
            Error::Call { rv, .. } => rv.loses_token(),
            Error::TokenNotFound { .. } => true,
            _ => false,
        }
    }

    /// Whether the failure may be gone on another try a moment later: the token did not
    /// answer, was not seen, or lost the session. Never a PIN problem: a PIN is never sent
    /// twice because of a retry.
    pub fn is_transient(&self) -> bool {
        !self.is_pin()
            && (self.is_token_lost()
                || self.is_session_lost()
                || matches!(self, Error::Call { rv, .. } if rv.may_pass()))
    }

    /// Whether the token answered in a way that is often passing (unreadable at that moment,
    /// rather than shown to be gone): what to say about it must not be "put it back".
    pub fn may_pass(&self) -> bool {
        match self {
            Error::Call { rv, .. } => rv.may_pass(),
            Error::TokenNotFound { unsure, .. } => *unsure,
            _ => false,
        }
    }

    /// Whether a reopened session did not lead back to the key (gone from its slot, or its
    /// token gone): worth looking for the token again by the URI.
    pub fn is_key_lost(&self) -> bool {
        matches!(self, Error::KeyNotFound { .. }) || self.is_token_lost() || self.is_session_lost()
    }
}

#[cfg(test)]
mod tests;
