//! Keys in a token: finding the one a URI names, reading its type and size, choosing the
//! mechanism the module supports, and signing with it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use der::Decode as _;
use der::asn1::ObjectIdentifier;

use super::lock::{self, TokenLock, Turn};
use super::token::{Credential, Hold, Module, Token, resolve_module, token_selector};
use super::uri::{KeyRef, Pkcs11Uri};
use super::{Error, support};
use crate::jose::{self, Alg, Curve, Hash, KeyKind, PublicKey, Scheme};

/// A key as `list` shows it: no secrets, just what identifies it and what it can do.
#[derive(Clone, Debug)]
pub struct KeySummary {
    /// `CKA_LABEL`, if it is UTF-8 text.
    pub label: Option<String>,
    /// `CKA_ID` bytes.
    pub id: Vec<u8>,
    /// Type and size.
    pub kind: KeyKind,
    /// The private half is visible (else only the public half was seen, e.g. before login).
    pub private_visible: bool,
    /// `CKA_ALWAYS_AUTHENTICATE`: a PIN is needed for every signature.
    pub always_authenticate: bool,
}

/// A certificate object as `list` shows it.
#[derive(Clone, Debug)]
pub struct CertSummary {
    /// `CKA_LABEL`, if it is UTF-8 text.
    pub label: Option<String>,
    /// `CKA_ID` bytes.
    pub id: Vec<u8>,
    /// `CKA_VALUE`: the certificate's DER (public), when the module returns it.
    pub value: Option<Vec<u8>>,
}

/// Lists the keys and certificates visible in the token (all of them after a login).
pub fn inventory(
    token: &Token,
    uri: &Pkcs11Uri,
    login: bool,
) -> Result<(Vec<KeySummary>, Vec<CertSummary>), Error> {
    let session = token.open()?;
    if login {
        token.login(&session, uri)?;
    }
    let module = token.module();
    let mut keys: Vec<KeySummary> = Vec::new();
    for (class, private_visible) in [
        (ObjectClass::PRIVATE_KEY, true),
        (ObjectClass::PUBLIC_KEY, false),
    ] {
        for handle in find(&session, module, &[Attribute::Class(class)])? {
            let attrs = Attrs::read(&session, module, handle)?;
            if keys
                .iter()
                .any(|k| k.id == attrs.id && k.label == attrs.label)
            {
                continue; // the public half of a key already listed
            }
            keys.push(KeySummary {
                kind: attrs.kind(),
                label: attrs.label,
                id: attrs.id,
                private_visible,
                always_authenticate: attrs.always_authenticate,
            });
        }
    }
    let mut certs = Vec::new();
    for handle in find(
        &session,
        module,
        &[Attribute::Class(ObjectClass::CERTIFICATE)],
    )? {
        let attrs = Attrs::read(&session, module, handle)?;
        let value = session
            .get_attributes(handle, &[AttributeType::Value])
            .map_err(|e| module.call_err("C_GetAttributeValue", &e))?
            .into_iter()
            .find_map(|a| match a {
                Attribute::Value(v) => Some(v),
                _ => None,
            });
        certs.push(CertSummary {
            label: attrs.label,
            id: attrs.id,
            value,
        });
    }
    Ok((keys, certs))
}

/// The algorithms a token can sign, judging by the mechanisms its module offers and the
/// module's known limits.
pub fn token_algs(token: &Token) -> Result<Vec<Alg>, Error> {
    let offered = token.mechanisms()?;
    let mut algs = Vec::new();
    for alg in Alg::ALL {
        if support::sign_support(token, alg, &offered)?.is_ok() {
            algs.push(alg);
        }
    }
    Ok(algs)
}

fn find(
    session: &Session,
    module: &Module,
    template: &[Attribute],
) -> Result<Vec<ObjectHandle>, Error> {
    session
        .find_objects(template)
        .map_err(|e| module.call_err("C_FindObjects", &e))
}

/// The attributes of a key or certificate object that suitekey reads. Never `CKA_VALUE` or any
/// other private component: only what identifies the object and its public size.
#[derive(Default)]
struct Attrs {
    label: Option<String>,
    id: Vec<u8>,
    key_type: Option<KeyType>,
    ec_params: Option<Vec<u8>>,
    modulus: Option<Vec<u8>>,
    modulus_bits: Option<u64>,
    always_authenticate: bool,
    sign: Option<bool>,
}

impl Attrs {
    const WANTED: [AttributeType; 8] = [
        AttributeType::Label,
        AttributeType::Id,
        AttributeType::KeyType,
        AttributeType::EcParams,
        AttributeType::Modulus,
        AttributeType::ModulusBits,
        AttributeType::AlwaysAuthenticate,
        AttributeType::Sign,
    ];

    fn read(session: &Session, module: &Module, handle: ObjectHandle) -> Result<Attrs, Error> {
        let got = session
            .get_attributes(handle, &Self::WANTED)
            .map_err(|e| module.call_err("C_GetAttributeValue", &e))?;
        let mut attrs = Attrs::default();
        // Modules silently leave out attributes an object does not have: match by type.
        for attr in got {
            match attr {
                Attribute::Label(l) => attrs.label = String::from_utf8(l).ok(),
                Attribute::Id(id) => attrs.id = id,
                Attribute::KeyType(t) => attrs.key_type = Some(t),
                Attribute::EcParams(p) => attrs.ec_params = Some(p),
                Attribute::Modulus(m) => attrs.modulus = Some(m),
                Attribute::ModulusBits(b) => attrs.modulus_bits = Some(b.into()),
                Attribute::AlwaysAuthenticate(a) => attrs.always_authenticate = a,
                Attribute::Sign(s) => attrs.sign = Some(s),
                _ => {}
            }
        }
        Ok(attrs)
    }

    /// `object=…;id=…` as in a key URI (percent-encoded, so any byte is shown safely).
    fn uri_attributes(&self) -> String {
        let uri = Pkcs11Uri {
            object: self.label.clone(),
            id: (!self.id.is_empty()).then(|| self.id.clone()),
            ..Pkcs11Uri::default()
        };
        let text = uri.to_string();
        match text.strip_prefix("pkcs11:") {
            Some("") | None => "a key with neither label nor id".to_owned(),
            Some(attributes) => attributes.to_owned(),
        }
    }

    fn kind(&self) -> KeyKind {
        match self.key_type {
            Some(KeyType::EC) => ec_kind(self.ec_params.as_deref()),
            Some(KeyType::RSA) => match (self.modulus_bits, &self.modulus) {
                (Some(bits), _) => KeyKind::Rsa {
                    bits: bits as usize,
                },
                (None, Some(m)) => KeyKind::Rsa { bits: bit_len(m) },
                (None, None) => KeyKind::Other("RSA of unknown size".into()),
            },
            Some(other) => KeyKind::Other(format!("{other}")),
            None => KeyKind::Other("unknown key type".into()),
        }
    }
}

/// The curve named in `CKA_EC_PARAMS` (a DER OID; explicit parameters are not accepted).
fn ec_kind(params: Option<&[u8]>) -> KeyKind {
    match params.map(ObjectIdentifier::from_der) {
        Some(Ok(oid)) => Curve::from_oid(&oid)
            .map_or_else(|| KeyKind::EcOther(jose::curve_name(&oid)), KeyKind::Ec),
        Some(Err(_)) => KeyKind::EcOther("with explicit or unreadable parameters".into()),
        None => KeyKind::EcOther("of unknown curve".into()),
    }
}

fn bit_len(be: &[u8]) -> usize {
    let trimmed: &[u8] = match be.iter().position(|b| *b != 0) {
        Some(i) => &be[i..],
        None => &[],
    };
    trimmed.first().map_or(0, |first| {
        trimmed.len() * 8 - first.leading_zeros() as usize
    })
}

/// How a signature is made: the module hashes (preferred), or we hash and it signs the digest.
#[derive(Debug)]
pub(super) enum Plan {
    HashAndSign(Mechanism<'static>),
    SignDigest(Mechanism<'static>),
}

impl Plan {
    /// The mechanism the plan signs with.
    pub(super) fn mechanism_type(&self) -> MechanismType {
        match self {
            Plan::HashAndSign(m) | Plan::SignDigest(m) => m.mechanism_type(),
        }
    }
}

/// The two ways to make an `alg` signature in PKCS#11: the hash-and-sign mechanism, and the
/// raw mechanism over a digest we compute. PSS always uses MGF1 with the same hash and a salt
/// as long as the hash, as JWS requires.
pub(super) fn mechanisms(alg: Alg) -> (Mechanism<'static>, Mechanism<'static>) {
    let (digest, mgf) = match alg.hash() {
        Hash::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
        Hash::Sha384 => (MechanismType::SHA384, PkcsMgfType::MGF1_SHA384),
        Hash::Sha512 => (MechanismType::SHA512, PkcsMgfType::MGF1_SHA512),
    };
    let pss = PkcsPssParams {
        hash_alg: digest,
        mgf,
        s_len: (alg.hash().output_len() as u64).into(),
    };
    match alg {
        Alg::ES256 => (Mechanism::EcdsaSha256, Mechanism::Ecdsa),
        Alg::ES384 => (Mechanism::EcdsaSha384, Mechanism::Ecdsa),
        Alg::ES512 => (Mechanism::EcdsaSha512, Mechanism::Ecdsa),
        Alg::PS256 => (Mechanism::Sha256RsaPkcsPss(pss), Mechanism::RsaPkcsPss(pss)),
        Alg::PS384 => (Mechanism::Sha384RsaPkcsPss(pss), Mechanism::RsaPkcsPss(pss)),
        Alg::PS512 => (Mechanism::Sha512RsaPkcsPss(pss), Mechanism::RsaPkcsPss(pss)),
    }
}

/// Picks the mechanism for `alg` among those offered: hash-and-sign where the module has it,
/// else the raw mechanism over a software digest.
pub(super) fn plan_for(alg: Alg, offered: &[MechanismType]) -> Option<Plan> {
    let (combined, raw) = mechanisms(alg);
    if offered.contains(&combined.mechanism_type()) {
        Some(Plan::HashAndSign(combined))
    } else if offered.contains(&raw.mechanism_type()) {
        Some(Plan::SignDigest(raw))
    } else {
        None
    }
}

/// A private key found in a token, with the session that found it (logged in as needed).
pub struct Key {
    token: Token,
    /// `None` only once [`Key::signer`] has handed it on.
    session: Option<Session>,
    /// The module generation the session was opened in, read under the same hold.
    generation: u64,
    handle: ObjectHandle,
    attrs: Attrs,
    credential: Arc<Credential>,
    uri_text: String,
    /// The token's lock, for the signer's turns.
    lock: TokenLock,
}

/// Where a key's opener gets the credential for its token (called only when one is needed):
/// the URI's PIN source, or one shared by every key on that token.
pub type CredentialFor<'a> = &'a dyn Fn(&Token) -> Result<Arc<Credential>, Error>;

/// How many times opening a key is tried when it fails in a way that may pass.
const OPEN_ATTEMPTS: u32 = 4;
/// The pause before the second try; it doubles before each next one (and is jittered).
const RETRY_PAUSE: Duration = Duration::from_millis(25);

/// Where one try at opening a key got to.
enum Step {
    /// The key, found and logged in to.
    Opened(Box<Key>),
    /// The token wants a login, and no credential was asked for yet: ask, then try again.
    NeedsCredential(Token),
}

/// Before another try at opening a key after `err`: a jittered pause, doubling with each
/// `attempt`, and when the token was not seen or not readable a fresh look at the module's
/// tokens (SoftHSM2 reads its token files only in `C_Initialize`: a token file read there
/// mid-rewrite stays unreadable until the next one).
fn before_retry(path: &Path, lock: &TokenLock, err: &Error, attempt: u32) {
    tracing::debug!(
        attempt,
        "opening the key failed in a way that may pass ({err}); trying again"
    );
    std::thread::sleep(lock::jittered(RETRY_PAUSE * 2u32.pow(attempt - 1)));
    if !err.is_token_lost() {
        return;
    }
    let _turn = lock.hold();
    let refreshed = Module::load(path).and_then(|module| {
        let seen = module.hold().generation;
        module.refresh_tokens(seen)
    });
    if let Err(e) = refreshed {
        tracing::debug!("looking at the module's tokens afresh failed: {e}");
    }
}

impl Key {
    /// Opens the one private key the URI names and logs in to its token with the PIN the
    /// URI's source gives (or a prompt). The URI is checked first (see [`KeyRef::new`]).
    pub fn open(uri: &Pkcs11Uri, module_fallback: Option<&Path>) -> Result<Key, Error> {
        let key = KeyRef::new(uri.clone())?;
        Key::open_with(&key, module_fallback, &|token| {
            token.credential(&key).map(Arc::new)
        })
    }

    /// Opens the private key `key` names and logs in to its token with the credential
    /// `credential_for` gives (asked for once, outside the token's lock: it may prompt).
    ///
    /// Takes its turn at the token (see [`TokenLock`]) while it loads the module, opens a
    /// session, logs in and finds the key, and tries again, a few times with growing jittered
    /// pauses, when that fails in a way that may pass ([`Error::is_transient`]): a token read
    /// while another process rewrote it, or not seen at all. A PIN problem ends it at once: a
    /// PIN the token refused is never sent again.
    pub fn open_with(
        key: &KeyRef,
        module_fallback: Option<&Path>,
        credential_for: CredentialFor<'_>,
    ) -> Result<Key, Error> {
        let uri = key.uri();
        let path = resolve_module(uri, module_fallback)?;
        let lock = TokenLock::new(&path, &token_selector(uri));
        let mut credential = None;
        let mut attempt = 1;
        loop {
            match Key::open_once(uri, &path, &lock, credential.as_ref()) {
                Ok(Step::Opened(key)) => {
                    let mut key = *key;
                    // The token needed no login, but the key wants one before every signature.
                    if key.attrs.always_authenticate
                        && matches!(*key.credential, Credential::NotNeeded)
                    {
                        key.credential = credential_for(&key.token)?;
                    }
                    return Ok(key);
                }
                Ok(Step::NeedsCredential(token)) => credential = Some(credential_for(&token)?),
                Err(e) if e.is_transient() && attempt < OPEN_ATTEMPTS => {
                    before_retry(&path, &lock, &e, attempt);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One try at opening the key, during one turn at the token and one hold on the module
    /// (another profile's recovery may reinitialize the module, and a C_Finalize under a call
    /// in flight crashes it). Stops before opening a session when a login needs a credential
    /// not asked for yet.
    fn open_once(
        uri: &Pkcs11Uri,
        path: &Path,
        lock: &TokenLock,
        credential: Option<&Arc<Credential>>,
    ) -> Result<Step, Error> {
        let _turn = lock.hold();
        let module = Module::load(path)?;
        let hold = module.hold();
        let token = module.select(uri)?;
        let credential = match (token.summary().login_required, credential) {
            (true, None) => return Ok(Step::NeedsCredential(token)),
            (true, Some(credential)) => Arc::clone(credential),
            (false, _) => Arc::new(Credential::NotNeeded),
        };
        let session = token.open()?;
        token.authenticate(&session, UserType::User, &credential)?;
        let (handle, attrs) = find_private_key(&token, &session, uri)?;
        Ok(Step::Opened(Box::new(Key {
            token,
            session: Some(session),
            generation: hold.generation,
            handle,
            attrs,
            credential,
            uri_text: uri.redacted(),
            lock: lock.clone(),
        })))
    }

    /// A key just found or made in `session`, logged in with `credential`.
    pub(super) fn adopt(
        token: Token,
        session: Session,
        handle: ObjectHandle,
        credential: Credential,
        uri_text: String,
    ) -> Result<Key, Error> {
        let hold = token.module().hold();
        let attrs = Attrs::read(&session, token.module(), handle)?;
        let generation = hold.generation;
        drop(hold);
        let selector = uri_text.parse().map_or_else(
            |_| format!("pkcs11:token={}", token.label()),
            |uri: Pkcs11Uri| token_selector(&uri),
        );
        let lock = TokenLock::new(token.module().path(), &selector);
        Ok(Key {
            token,
            session: Some(session),
            generation,
            handle,
            attrs,
            credential: Arc::new(credential),
            uri_text,
            lock,
        })
    }

    /// The key's type and size.
    pub fn kind(&self) -> KeyKind {
        self.attrs.kind()
    }

    /// The key's `CKA_ID`.
    pub fn id(&self) -> &[u8] {
        &self.attrs.id
    }

    /// The key's `CKA_LABEL`, if it is text.
    pub fn label(&self) -> Option<&str> {
        self.attrs.label.as_deref()
    }

    /// The key URI, without secrets, for messages.
    pub fn uri(&self) -> &str {
        &self.uri_text
    }

    /// A signer for `alg`, if the key's type suits it, it may sign, and the module can.
    ///
    /// Which algorithms NetSuite allows is the caller's business; this checks only what the
    /// token can do.
    pub fn signer(mut self, alg: Alg) -> Result<KeySigner, Error> {
        let module = self.token.module().clone();
        let turn = self.lock.hold();
        let hold = module.hold();
        let (kind, plan) = self.plan(alg)?;
        drop(hold);
        drop(turn);
        let always_authenticate = self.attrs.always_authenticate;
        tracing::debug!(token = self.token.label(), %alg, %kind, ?plan, always_authenticate, "key ready to sign");
        let attrs = std::mem::take(&mut self.attrs);
        Ok(KeySigner {
            token: self.token.clone(),
            session: self.session.take(),
            generation: self.generation,
            key: self.handle,
            alg,
            kind,
            plan,
            credential: Arc::clone(&self.credential),
            always_authenticate,
            uri_text: std::mem::take(&mut self.uri_text),
            id: attrs.id,
            label: attrs.label,
            lock: self.lock.clone(),
        })
    }

    /// How the key signs `alg`, checked against its attributes and what the module offers.
    /// The caller holds the module.
    fn plan(&self, alg: Alg) -> Result<(KeyKind, Plan), Error> {
        let kind = self.kind();
        let key_err = |problem: String| Error::KeyAttributes {
            key: self.uri_text.clone(),
            token: self.token.label().to_owned(),
            problem,
        };
        if !alg.fits(&kind) {
            return Err(key_err(format!(
                "it is an {kind} key, which cannot sign {alg}"
            )));
        }
        if self.attrs.sign == Some(false) {
            return Err(Error::SignNotPermitted {
                key: self.uri_text.clone(),
                token: self.token.label().to_owned(),
            });
        }
        let plan = plan_for(alg, &self.token.mechanisms()?)
            .ok_or_else(|| no_mechanism(&self.token, alg))?;
        if let KeyKind::Ec(curve) = kind
            && let Some(limit) = support::curve_limit(&self.token, curve, plan.mechanism_type())?
        {
            return Err(Error::ModuleLimit {
                token: self.token.label().to_owned(),
                key: self.uri_text.clone(),
                kind: kind.to_string(),
                limit,
            });
        }
        Ok((kind, plan))
    }
}

impl Drop for Key {
    /// Closes the session only if it is of the module's current generation, under a hold: after
    /// a reinitialization its handle may name another signer's session.
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        let module = self.token.module().clone();
        let hold = module.hold();
        if hold.generation == self.generation {
            drop(session);
        } else {
            std::mem::forget(session);
        }
    }
}

/// A private key in a token, logged in and ready to sign with one algorithm.
///
/// Holds its session for its whole life; the key never leaves the token. The PIN is kept
/// (zeroized on drop, never printed) for the context-specific logins of keys that demand one
/// before every signature, and for [`KeySigner::reopen`] after the token lost the session.
pub struct KeySigner {
    token: Token,
    /// `None` once a reopen dropped it; void when `generation` is not the module's.
    session: Option<Session>,
    /// The module generation the session was opened in (see [`Module::reinitialize`]).
    generation: u64,
    key: ObjectHandle,
    alg: Alg,
    kind: KeyKind,
    plan: Plan,
    credential: Arc<Credential>,
    always_authenticate: bool,
    uri_text: String,
    id: Vec<u8>,
    label: Option<String>,
    /// The token's lock: each signature and reopen is one turn at the token.
    lock: TokenLock,
}

impl KeySigner {
    /// The key's type and size.
    pub fn kind(&self) -> &KeyKind {
        &self.kind
    }

    /// The key's token.
    pub(super) fn token(&self) -> &Token {
        &self.token
    }

    /// The key's `CKA_ID`.
    pub fn id(&self) -> &[u8] {
        &self.id
    }

    /// The key's `CKA_LABEL`, if it is text.
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// The key URI, without secrets, for messages.
    pub fn uri(&self) -> &str {
        &self.uri_text
    }

    /// Replaces a session the token lost (see [`Error::is_session_lost`]) and finds the key
    /// again, logging in once with the PIN read when the key was opened (never read again; a
    /// refused PIN is returned, not retried). Tries the same slot; then the token the URI
    /// names, wherever it is now (slot ids change); then, when that token is missing or
    /// broken, reinitializes the module first, since SoftHSM2 sees a token directory that was
    /// removed, put back or replaced only in `C_Initialize` (this ends the sessions of every
    /// signer on the module, which then open new ones the same way).
    pub fn reopen(&mut self) -> Result<(), Error> {
        let _turn = self.lock.hold();
        let same = self.token.clone();
        let first = match self.reopen_in(|_| Ok(same.clone())) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if first.is_pin() || !first.is_key_lost() {
            return Err(first);
        }
        let wanted = self.selector();
        let seen = self.token.module().hold().generation;
        let module = self.token.module().clone();
        match self.reopen_in(|module| module.select(&wanted)) {
            Err(e) if e.is_token_lost() => {
                tracing::info!(key = self.uri(), module = %module.shown_path(), "{e}");
                if !module.reinitialize(seen)? {
                    // Rationed: only the next due reinitialization looks again.
                    return Err(e);
                }
                self.reopen_in(|module| module.select(&wanted))?;
                module.token_found();
                Ok(())
            }
            other => other,
        }
    }

    /// The URI's token attributes, to find the token again.
    fn selector(&self) -> Pkcs11Uri {
        self.uri_text.parse().unwrap_or_else(|_| Pkcs11Uri {
            token: Some(self.token.label().to_owned()),
            ..Pkcs11Uri::default()
        })
    }

    /// A new session on the token `pick` chooses, logged in, with the key found again by its
    /// id and label; all under one hold on the module.
    fn reopen_in(&mut self, pick: impl Fn(&Module) -> Result<Token, Error>) -> Result<(), Error> {
        let module = self.token.module().clone();
        let hold = module.hold();
        let token = pick(&module)?;
        let session = token.open()?;
        if token.summary().login_required {
            token.authenticate(&session, UserType::User, &self.credential)?;
        }
        let mut template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
        if !self.id.is_empty() {
            template.push(Attribute::Id(self.id.clone()));
        }
        template.extend(
            self.label
                .as_ref()
                .map(|l| Attribute::Label(l.as_bytes().to_vec())),
        );
        let found = find(&session, &module, &template)?;
        let [handle] = found.as_slice() else {
            return Err(key_not_found(&token, &session, self.uri_text.clone()));
        };
        let kind = Attrs::read(&session, &module, *handle)?.kind();
        if kind != self.kind {
            return Err(self.malformed(format!(
                "the key found again is a {kind} key, not the {} key it was; put the original key back",
                self.kind
            )));
        }
        self.key = *handle;
        self.token = token;
        self.replace_session(Some(session), &hold);
        self.generation = hold.generation;
        Ok(())
    }

    /// Swaps in `session`. The old one is closed only if it is of the current generation:
    /// after a reinitialization its handle may name another signer's new session.
    fn replace_session(&mut self, session: Option<Session>, hold: &Hold<'_>) {
        let old = std::mem::replace(&mut self.session, session);
        if self.generation != hold.generation {
            std::mem::forget(old);
        }
    }

    /// The session, while it is of the module's current generation, with this process's turn
    /// at the token and a hold that keeps the module from being reinitialized during the calls
    /// made with it.
    fn live(&self) -> Result<(Turn, Hold<'_>, &Session), Error> {
        let turn = self.lock.hold();
        let hold = self.token.module().hold();
        match &self.session {
            Some(session) if hold.generation == self.generation => Ok((turn, hold, session)),
            _ => Err(Error::SessionVoid {
                module: self.token.module().shown_path(),
            }),
        }
    }

    /// The DER of every certificate object the token holds (public data), e.g. to find the
    /// one uploaded to NetSuite and watch its expiry.
    pub fn certificates(&self) -> Result<Vec<Vec<u8>>, Error> {
        self.certificate_values(&[Attribute::Class(ObjectClass::CERTIFICATE)])
    }

    /// The DER of the certificate objects stored with the key: same `CKA_ID`, or same label for
    /// a key without an id (where `keygen` and `cert` put its certificate).
    pub fn stored_certificates(&self) -> Result<Vec<Vec<u8>>, Error> {
        self.certificate_values(&self.certificate_template()?)
    }

    /// The `CKA_VALUE` of every certificate object that matches `template`.
    fn certificate_values(&self, template: &[Attribute]) -> Result<Vec<Vec<u8>>, Error> {
        let module = self.token.module();
        let (_turn, _hold, session) = self.live()?;
        let mut out = Vec::new();
        for handle in find(session, module, template)? {
            let attrs = session
                .get_attributes(handle, &[AttributeType::Value])
                .map_err(|e| module.call_err("C_GetAttributeValue", &e))?;
            out.extend(attrs.into_iter().find_map(|a| match a {
                Attribute::Value(v) => Some(v),
                _ => None,
            }));
        }
        Ok(out)
    }

    /// An RSASSA-PKCS1-v1_5 signature with SHA-256 over `data`, for certificates that must be
    /// `sha256WithRSAEncryption` (NetSuite refuses PKCS#1 v1.5 for assertions, not for
    /// certificates).
    pub fn sign_pkcs1_sha256(&self, data: &[u8]) -> Result<Vec<u8>, Error> {
        let (_turn, _hold, session) = self.live()?;
        let offered = self.token.mechanisms()?;
        let plan = if offered.contains(&MechanismType::SHA256_RSA_PKCS) {
            Plan::HashAndSign(Mechanism::Sha256RsaPkcs)
        } else if offered.contains(&MechanismType::RSA_PKCS) {
            Plan::SignDigest(Mechanism::RsaPkcs)
        } else {
            return Err(Error::NoMechanism {
                token: self.token.label().to_owned(),
                alg: "sha256WithRSAEncryption".into(),
                wanted: "CKM_SHA256_RSA_PKCS, CKM_RSA_PKCS".into(),
                hint: "make the certificate with an RSASSA-PSS signature instead (leave out --cert-sig pkcs1)".into(),
            });
        };
        let input = match plan {
            Plan::HashAndSign(_) => data.to_vec(),
            Plan::SignDigest(_) => digest_info_sha256(data)
                .map_err(|e| self.malformed(format!("cannot encode a DigestInfo: {e}")))?,
        };
        self.sign_with(session, &plan, &input)
    }

    /// Signs `data` per the plan; a context-specific login goes between init and sign for
    /// `CKA_ALWAYS_AUTHENTICATE` keys.
    fn sign_raw(&self, data: &[u8]) -> Result<Vec<u8>, Error> {
        let input = match &self.plan {
            Plan::HashAndSign(_) => data.to_vec(),
            Plan::SignDigest(_) => self.alg.hash().digest(data),
        };
        let (_turn, _hold, session) = self.live()?;
        self.sign_with(session, &self.plan, &input)
    }

    /// Signs `input` (already digested for a [`Plan::SignDigest`]) with `plan`'s mechanism in
    /// `session`, which the caller got from [`KeySigner::live`] and still holds.
    fn sign_with(&self, session: &Session, plan: &Plan, input: &[u8]) -> Result<Vec<u8>, Error> {
        let module = self.token.module();
        let mechanism = match plan {
            Plan::HashAndSign(m) | Plan::SignDigest(m) => m,
        };
        let credential = &self.credential;
        if !self.always_authenticate {
            return session
                .sign(mechanism, self.key, input)
                .map_err(|e| module.call_err("C_Sign", &e));
        }
        session
            .sign_init(mechanism, self.key)
            .map_err(|e| module.call_err("C_SignInit", &e))?;
        self.token
            .authenticate(session, UserType::ContextSpecific, credential)?;
        match plan {
            Plan::HashAndSign(_) => {
                session
                    .sign_update(input)
                    .map_err(|e| module.call_err("C_SignUpdate", &e))?;
                session
                    .sign_final()
                    .map_err(|e| module.call_err("C_SignFinal", &e))
            }
            Plan::SignDigest(_) => single_part::sign(module.path(), session, input)
                .map_err(|e| module.call_err("C_Sign", &e)),
        }
    }

    fn attrs_key_type(&self) -> Option<Attribute> {
        match self.kind {
            KeyKind::Ec(_) => Some(Attribute::KeyType(KeyType::EC)),
            KeyKind::Rsa { .. } => Some(Attribute::KeyType(KeyType::RSA)),
            _ => None,
        }
    }

    /// The public key held in `handle`'s attributes, if it holds one.
    fn read_public(
        &self,
        session: &Session,
        handle: ObjectHandle,
    ) -> Result<Option<PublicKey>, Error> {
        let wanted = [
            AttributeType::EcPoint,
            AttributeType::Modulus,
            AttributeType::PublicExponent,
        ];
        let module = self.token.module();
        let attrs = session
            .get_attributes(handle, &wanted)
            .map_err(|e| module.call_err("C_GetAttributeValue", &e))?;
        public_key_from(&self.kind, attrs).map_err(|problem| self.malformed(problem))
    }

    fn malformed(&self, problem: String) -> Error {
        Error::KeyAttributes {
            key: self.uri_text.clone(),
            token: self.token.label().to_owned(),
            problem,
        }
    }
}

impl Drop for KeySigner {
    fn drop(&mut self) {
        let module = self.token.module().clone();
        let hold = module.hold();
        self.replace_session(None, &hold);
    }
}

impl jose::Signer for KeySigner {
    type Error = Error;

    fn alg(&self) -> Alg {
        self.alg
    }

    /// For RSA, from the private key's own public attributes; otherwise (and for EC, whose
    /// private key has no point) from the one public key object of the same type with the
    /// key's `CKA_ID`, or its label when it has no id.
    fn public_key(&self) -> Result<PublicKey, Error> {
        let (_turn, _hold, session) = self.live()?;
        if let KeyKind::Rsa { .. } = self.kind
            && let Some(key) = self.read_public(session, self.key)?
        {
            return Ok(key);
        }
        let mut template = vec![Attribute::Class(ObjectClass::PUBLIC_KEY)];
        template.extend(self.attrs_key_type());
        match (&self.label, self.id.is_empty()) {
            (_, false) => template.push(Attribute::Id(self.id.clone())),
            (Some(label), true) => template.push(Attribute::Label(label.as_bytes().to_vec())),
            (None, true) => {
                return Err(self.malformed(
                    "it has neither id nor label, so its public key object cannot be found".into(),
                ));
            }
        }
        match find(session, self.token.module(), &template)?.as_slice() {
            [one] => self.read_public(session, *one)?.ok_or_else(|| self.malformed("its public key object holds no public key".into())),
            [] => Err(self.malformed("no public key object has its id, so its public key cannot be read; store the public key on the token".into())),
            many => Err(self.malformed(format!("{} public key objects share its id; remove the stale ones", many.len()))),
        }
    }

    fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, Error> {
        let signature = self.sign_raw(signing_input)?;
        match (self.alg.scheme(), &self.kind) {
            (Scheme::Ecdsa(curve), _) => {
                jose::ecdsa_to_raw(&signature, curve).map_err(|source| Error::Signature {
                    token: self.token.label().to_owned(),
                    source,
                })
            }
            (Scheme::Pss, KeyKind::Rsa { bits }) if signature.len() != bits.div_ceil(8) => {
                Err(self.malformed(format!(
                    "the module returned a {}-byte RSA-PSS signature for a {bits}-bit key",
                    signature.len()
                )))
            }
            (Scheme::Pss, _) => Ok(signature),
        }
    }
}

fn find_private_key(
    token: &Token,
    session: &Session,
    uri: &Pkcs11Uri,
) -> Result<(ObjectHandle, Attrs), Error> {
    let mut template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
    template.extend(
        uri.object
            .as_ref()
            .map(|l| Attribute::Label(l.as_bytes().to_vec())),
    );
    template.extend(uri.id.as_ref().map(|id| Attribute::Id(id.clone())));
    let module = token.module();
    let found = find(session, module, &template)?;
    let key = uri.redacted();
    let tok = token.label().to_owned();
    match found.as_slice() {
        [] => Err(key_not_found(token, session, key)),
        [one] => Ok((*one, Attrs::read(session, module, *one)?)),
        many => {
            let mut candidates = Vec::new();
            for h in many {
                let a = Attrs::read(session, module, *h)?;
                candidates.push(format!(
                    "'{}' id {}",
                    a.label.unwrap_or_default(),
                    hex(&a.id)
                ));
            }
            Err(Error::KeyAmbiguous {
                key,
                token: tok,
                count: many.len(),
                candidates: candidates.join(", "),
            })
        }
    }
}

/// How many keys a "key not found" error lists.
const KEYS_LISTED: usize = 20;

/// The key `key` is not in `token`: the error lists the private keys `session` sees there
/// (label and id as URI attributes, and type; never a secret).
fn key_not_found(token: &Token, session: &Session, key: String) -> Error {
    let module = token.module();
    let template = [Attribute::Class(ObjectClass::PRIVATE_KEY)];
    let present = match find(session, module, &template) {
        Ok(handles) if handles.is_empty() => "no private key that this login can see".to_owned(),
        Ok(handles) => {
            let mut shown: Vec<String> = handles
                .iter()
                .take(KEYS_LISTED)
                .map(|h| match Attrs::read(session, module, *h) {
                    Ok(attrs) => format!("{} ({})", attrs.uri_attributes(), attrs.kind()),
                    Err(e) => format!("a key whose attributes cannot be read ({e})"),
                })
                .collect();
            if handles.len() > KEYS_LISTED {
                shown.push(format!("{} more", handles.len() - KEYS_LISTED));
            }
            shown.join(", ")
        }
        Err(e) => format!("keys that cannot be listed ({e})"),
    };
    Error::KeyNotFound {
        key,
        token: token.label().to_owned(),
        present,
        module: module.shown_path(),
    }
}

pub(super) fn no_mechanism(token: &Token, alg: Alg) -> Error {
    let (combined, raw) = mechanisms(alg);
    let usable = token_algs(token).unwrap_or_default();
    let hint = if usable.is_empty() {
        "this token cannot sign any of ES256, ES384, ES512, PS256, PS384, PS512".to_owned()
    } else {
        let names: Vec<&str> = usable.iter().map(|a| a.name()).collect();
        format!(
            "it can sign {}; use a key for one of those",
            names.join(", ")
        )
    };
    Error::NoMechanism {
        token: token.label().to_owned(),
        alg: alg.to_string(),
        wanted: format!("{}, {}", combined.mechanism_type(), raw.mechanism_type()),
        hint,
    }
}

/// The public key in `attrs` (from `C_GetAttributeValue`), `None` if they do not hold it.
fn public_key_from(kind: &KeyKind, attrs: Vec<Attribute>) -> Result<Option<PublicKey>, String> {
    let (mut point, mut modulus, mut exponent) = (None, None, None);
    for attr in attrs {
        match attr {
            Attribute::EcPoint(p) => point = Some(p),
            Attribute::Modulus(m) => modulus = Some(m),
            Attribute::PublicExponent(e) => exponent = Some(e),
            _ => {}
        }
    }
    match (kind, point, modulus, exponent) {
        (KeyKind::Ec(curve), Some(p), _, _) => ec_point(*curve, &p).map(|point| {
            Some(PublicKey::Ec {
                curve: *curve,
                point,
            })
        }),
        (KeyKind::Rsa { .. }, _, Some(modulus), Some(exponent)) => {
            Ok(Some(PublicKey::Rsa { modulus, exponent }))
        }
        _ => Ok(None),
    }
}

/// `CKA_EC_POINT` as an uncompressed point. Modules store it raw or wrapped in a DER OCTET
/// STRING; both start with 0x04, so the length decides, not the first byte.
fn ec_point(curve: Curve, raw: &[u8]) -> Result<Vec<u8>, String> {
    let len = 1 + 2 * curve.field_len();
    if raw.len() == len && raw.first() == Some(&0x04) {
        return Ok(raw.to_vec());
    }
    match der::asn1::OctetString::from_der(raw) {
        Ok(o) if o.as_bytes().len() == len && o.as_bytes().first() == Some(&0x04) => {
            Ok(o.as_bytes().to_vec())
        }
        _ => Err(format!(
            "its CKA_EC_POINT ({} bytes) is not an uncompressed {} point, raw or DER-wrapped",
            raw.len(),
            curve.name()
        )),
    }
}

/// The PKCS#1 `DigestInfo` for SHA-256 over `data`: what `CKM_RSA_PKCS` signs.
fn digest_info_sha256(data: &[u8]) -> Result<Vec<u8>, der::Error> {
    #[derive(der::Sequence)]
    struct DigestInfo {
        algorithm: x509_cert::spki::AlgorithmIdentifierOwned,
        digest: der::asn1::OctetString,
    }
    der::Encode::to_der(&DigestInfo {
        algorithm: x509_cert::spki::AlgorithmIdentifierOwned {
            oid: ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1"),
            parameters: Some(der::asn1::Null.into()),
        },
        digest: der::asn1::OctetString::new(Hash::Sha256.digest(data))?,
    })
}

/// Lowercase hex, for key ids in messages and listings.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Single-part `C_Sign` after a `C_SignInit` the caller already made.
///
/// cryptoki 0.12's `Session::sign` always calls `C_SignInit` itself, which leaves no room for
/// the context-specific login that `CKA_ALWAYS_AUTHENTICATE` keys need between init and sign.
/// Raw mechanisms (`CKM_ECDSA`, `CKM_RSA_PKCS_PSS`) are single-part only, so for them this one
/// call goes through cryptoki-sys directly.
#[allow(unsafe_code)]
mod single_part {
    use std::path::Path;

    use cryptoki::context::Function;
    use cryptoki::error::{Error, Rv, RvError};
    use cryptoki::session::Session;
    use cryptoki_sys::{CK_FUNCTION_LIST, CK_ULONG};
    use libloading::os::unix::{Library, RTLD_NOW};

    /// dlopen's "only if already loaded" flag, which libloading does not name.
    #[cfg(target_os = "linux")]
    const RTLD_NOLOAD: std::os::raw::c_int = 0x4;
    #[cfg(target_os = "macos")]
    const RTLD_NOLOAD: std::os::raw::c_int = 0x10;

    /// `C_Sign` from the module's own function list (the symbol itself need not be exported).
    pub(super) fn sign(module: &Path, session: &Session, data: &[u8]) -> Result<Vec<u8>, Error> {
        // SAFETY: RTLD_NOLOAD only hands back the copy this process already loaded and
        // initialized (never a second, uninitialized copy, even if the file changed since);
        // the module's initializers have run, so opening it runs no foreign code.
        let lib = unsafe { Library::open(Some(module), RTLD_NOW | RTLD_NOLOAD) }
            .map_err(Error::LibraryLoading)?;
        // SAFETY: the symbols are looked up, not called, here.
        let lib =
            unsafe { cryptoki_sys::Pkcs11::from_library(lib) }.map_err(Error::LibraryLoading)?;
        let get_list = lib
            .C_GetFunctionList
            .as_ref()
            .map_err(|_| Error::MissingSymbol("C_GetFunctionList"))?;
        let mut list: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
        // SAFETY: the out-pointer is valid; the module fills it with its static function list.
        Rv::from(unsafe { get_list(&mut list) }).into_result(Function::GetFunctionList)?;
        // SAFETY: a successful C_GetFunctionList leaves a pointer to a list that lives as long
        // as the library, which `lib` keeps loaded for this whole function.
        let c_sign = unsafe { list.as_ref() }
            .and_then(|l| l.C_Sign)
            .ok_or(Error::Pkcs11(RvError::FunctionNotSupported, Function::Sign))?;
        let data_len = CK_ULONG::try_from(data.len())?;
        let mut len: CK_ULONG = 0;
        // SAFETY: `data` is valid for `data_len` bytes; a null output asks for the length; the
        // session handle is live for the borrow of `session`.
        let rv = unsafe {
            c_sign(
                session.handle(),
                data.as_ptr().cast_mut(),
                data_len,
                std::ptr::null_mut(),
                &mut len,
            )
        };
        Rv::from(rv).into_result(Function::Sign)?;
        let mut out = vec![0u8; usize::try_from(len)?];
        // SAFETY: `out` is valid for `len` bytes, the length the module asked for.
        let rv = unsafe {
            c_sign(
                session.handle(),
                data.as_ptr().cast_mut(),
                data_len,
                out.as_mut_ptr(),
                &mut len,
            )
        };
        Rv::from(rv).into_result(Function::Sign)?;
        out.truncate(usize::try_from(len)?);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_sign_is_preferred_and_raw_mechanisms_are_the_fallback() {
        let softhsm = [
            MechanismType::ECDSA,
            MechanismType::RSA_PKCS_PSS,
            MechanismType::SHA384_RSA_PKCS_PSS,
        ];
        assert!(matches!(
            plan_for(Alg::ES256, &softhsm),
            Some(Plan::SignDigest(Mechanism::Ecdsa))
        ));
        assert!(matches!(
            plan_for(Alg::PS384, &softhsm),
            Some(Plan::HashAndSign(Mechanism::Sha384RsaPkcsPss(_)))
        ));
        match plan_for(Alg::PS512, &softhsm) {
            Some(Plan::SignDigest(Mechanism::RsaPkcsPss(p))) => {
                assert_eq!(p.hash_alg, MechanismType::SHA512);
                assert_eq!(u64::from(p.s_len), 64);
            }
            other => panic!("unexpected {other:?}"),
        }
        let tpm = [MechanismType::ECDSA_SHA384, MechanismType::ECDSA];
        assert!(matches!(
            plan_for(Alg::ES384, &tpm),
            Some(Plan::HashAndSign(Mechanism::EcdsaSha384))
        ));
        assert!(plan_for(Alg::PS256, &tpm).is_none());
    }

    #[test]
    fn curves_are_read_from_ec_params_and_unknown_ones_named() {
        let p256 = der::Encode::to_der(&Curve::P256.oid()).unwrap();
        assert_eq!(ec_kind(Some(&p256)), KeyKind::Ec(Curve::P256));
        let p224 = der::Encode::to_der(&ObjectIdentifier::new_unwrap("1.3.132.0.33")).unwrap();
        assert_eq!(ec_kind(Some(&p224)), KeyKind::EcOther("P-224".into()));
        assert!(matches!(ec_kind(Some(&[0x30, 0x00])), KeyKind::EcOther(_)));
    }

    #[test]
    fn ec_points_are_decoded_by_length_raw_or_der_wrapped() {
        let raw: Vec<u8> = std::iter::once(0x04).chain(1..=64).collect();
        assert_eq!(ec_point(Curve::P256, &raw).unwrap(), raw);
        let wrapped =
            der::Encode::to_der(&der::asn1::OctetString::new(raw.clone()).unwrap()).unwrap();
        assert_eq!(wrapped[0], 0x04, "DER OCTET STRING tag is 0x04 too");
        assert_eq!(ec_point(Curve::P256, &wrapped).unwrap(), raw);
        assert!(ec_point(Curve::P384, &raw).is_err());
        // tpm2-pkcs11's broken P-521 point (04 85 …) is refused, not misread.
        assert!(ec_point(Curve::P521, &[0x04, 0x85, 0x01]).is_err());
    }

    #[test]
    fn the_pkcs1_digest_info_is_the_standard_sha256_prefix_and_digest() {
        let info = digest_info_sha256(b"abc").unwrap();
        // RFC 8017 §9.2 note 1: the DER prefix for SHA-256.
        let prefix = [
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ];
        assert_eq!(&info[..19], &prefix);
        assert_eq!(&info[19..], Hash::Sha256.digest(b"abc").as_slice());
    }

    #[test]
    fn modulus_bits_ignore_leading_zero_bytes() {
        assert_eq!(bit_len(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(bit_len(&[0x01, 0x00]), 9);
        assert_eq!(bit_len(&[0x00]), 0);
    }
}
