//! A key ready to sign: the [`jose::Signer`] the rest of the program signs with, and how it
//! finds its key again when the token lost the session.

use std::sync::Arc;

use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};

use super::Error;
use super::key::Key;
use super::lock::{TokenLock, Turn};
use super::login::Credential;
use super::mechanism::{self, Plan, curve_limit, no_mechanism, plan_for};
use super::module::Module;
use super::objects::{self, Attrs};
use super::registry::{Generation, Hold};
use super::session::KeptSession;
use super::single_part;
use super::token::Token;
use super::uri::Pkcs11Uri;
use crate::jose::{self, Alg, KeyKind, PublicKey, Scheme};

/// Turning a key into a signer.
impl Key {
    /// A signer for `alg`, if the key's type suits it, it may sign, and the module can.
    ///
    /// Which algorithms NetSuite allows is the caller's business; this checks only what the
    /// token can do.
    pub fn signer(self, alg: Alg) -> Result<KeySigner, Error> {
        let module = self.token.module().clone();
        let turn = self.lock.hold();
        let hold = module.hold();
        let (kind, plan) = self.plan(alg)?;
        drop(hold);
        drop(turn);
        let Key {
            token,
            session,
            handle,
            attrs,
            credential,
            uri_text,
            lock,
        } = self;
        let always_authenticate = attrs.always_authenticate;
        tracing::debug!(token = token.label(), %alg, %kind, ?plan, always_authenticate, "key ready to sign");
        Ok(KeySigner {
            token,
            session,
            key: handle,
            alg,
            kind,
            plan,
            credential,
            always_authenticate,
            uri_text,
            id: attrs.id,
            label: attrs.label,
            lock,
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
            && let Some(limit) = curve_limit(&self.token, curve, plan.mechanism_type())?
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

/// A private key in a token, logged in and ready to sign with one algorithm.
///
/// Holds its session for its whole life; the key never leaves the token. The PIN is kept
/// (zeroized on drop, never printed) for the context-specific logins of keys that demand one
/// before every signature, and for [`KeySigner::reopen`] after the token lost the session.
pub struct KeySigner {
    token: Token,
    /// Void once the module was reinitialized: then [`KeySigner::reopen`] replaces it.
    session: KeptSession,
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

    /// The private key object itself.
    pub(super) fn handle(&self) -> ObjectHandle {
        self.key
    }

    /// What the user logged in to the key's token with.
    pub(super) fn credential(&self) -> &Credential {
        &self.credential
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

    /// The credential the key's token was logged in with, to open or make another key of the
    /// same token without asking for the PIN again (see [`Key::open_with`]).
    pub fn shared_credential(&self) -> Arc<Credential> {
        Arc::clone(&self.credential)
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
        match self.reopen_in(|module| module.select(&wanted)) {
            Err(e) if e.is_token_lost() => {
                tracing::info!(key = self.uri(), module = %self.token.module().shown_path(), "{e}");
                // Rationed: only the next due reinitialization looks again.
                match self.reinitialize_and_reopen(seen)? {
                    true => Ok(()),
                    false => Err(e),
                }
            }
            other => other,
        }
    }

    /// Looks for the key afresh when a session just reopened on the same slot fails like the
    /// one before it: the module's view of its tokens is stale (a smart-card module whose
    /// pcscd was restarted, as when a virtual card is removed and put back, answers
    /// `CKR_DEVICE_ERROR` until it is initialized again). Reinitializes the module, rationed
    /// as in [`KeySigner::reopen`], and finds the token by the URI; `Ok(false)` when no
    /// reinitialization is due yet.
    pub fn reopen_afresh(&mut self) -> Result<bool, Error> {
        let _turn = self.lock.hold();
        let seen = self.token.module().hold().generation;
        self.reinitialize_and_reopen(seen)
    }

    /// Reinitializes the module unless that happened since generation `seen` or is not due,
    /// then reopens the key in the token the URI names, wherever it is now.
    fn reinitialize_and_reopen(&mut self, seen: Generation) -> Result<bool, Error> {
        let module = self.token.module().clone();
        if !module.reinitialize(seen)? {
            return Ok(false);
        }
        let wanted = self.selector();
        self.reopen_in(|module| module.select(&wanted))?;
        module.token_found();
        Ok(true)
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
        let found = objects::find(&session, &module, &template)?;
        let [handle] = found.as_slice() else {
            return Err(objects::key_not_found(
                &token,
                &session,
                self.uri_text.clone(),
            ));
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
        let void = std::mem::replace(&mut self.session, KeptSession::new(&module, session, &hold));
        void.end(&hold);
        Ok(())
    }

    /// The session, while it is of the module's current generation, with this process's turn
    /// at the token and a hold that keeps the module from being reinitialized during the calls
    /// made with it.
    pub(super) fn live(&self) -> Result<(Turn, Hold<'_>, &Session), Error> {
        let turn = self.lock.hold();
        let hold = self.token.module().hold();
        let session = self.session.current(&hold)?;
        Ok((turn, hold, session))
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
        for handle in objects::find(session, module, template)? {
            out.extend(objects::value(session, module, handle)?);
        }
        Ok(out)
    }

    /// The certificate objects that belong to this key: same id, or same label for a key
    /// without an id. A key with neither has none that can be told apart from others'.
    pub(super) fn certificate_template(&self) -> Result<Vec<Attribute>, Error> {
        let mut template = vec![Attribute::Class(ObjectClass::CERTIFICATE)];
        match (self.id.is_empty(), self.label.as_deref()) {
            (false, _) => template.push(Attribute::Id(self.id.to_vec())),
            (true, Some(label)) => template.push(Attribute::Label(label.as_bytes().to_vec())),
            (true, None) => {
                return Err(Error::KeyAttributes {
                    key: self.uri_text.clone(),
                    token: self.token.label().to_owned(),
                    problem: "it has neither id nor label, so a certificate cannot be stored beside it; give it a CKA_ID with the token's tools".into(),
                });
            }
        }
        Ok(template)
    }

    /// An RSASSA-PKCS1-v1_5 signature with SHA-256 over `data`, for certificates that must be
    /// `sha256WithRSAEncryption` (NetSuite refuses PKCS#1 v1.5 for assertions, not for
    /// certificates).
    pub fn sign_pkcs1_sha256(&self, data: &[u8]) -> Result<Vec<u8>, Error> {
        let (_turn, _hold, session) = self.live()?;
        let plan = mechanism::pkcs1_sha256_plan(&self.token)?;
        let input = mechanism::pkcs1_sha256_input(&plan, data)
            .map_err(|e| self.malformed(format!("cannot encode a DigestInfo: {e}")))?;
        self.sign_with(session, &plan, &input)
    }

    /// Signs `data` per the plan; a context-specific login goes between init and sign for
    /// `CKA_ALWAYS_AUTHENTICATE` keys.
    fn sign_raw(&self, data: &[u8]) -> Result<Vec<u8>, Error> {
        let input = self.plan.input(self.alg, data);
        let (_turn, _hold, session) = self.live()?;
        self.sign_with(session, &self.plan, &input)
    }

    /// Signs `input` (already digested for a [`Plan::SignDigest`]) with `plan`'s mechanism in
    /// `session`, which the caller got from [`KeySigner::live`] and still holds.
    fn sign_with(&self, session: &Session, plan: &Plan, input: &[u8]) -> Result<Vec<u8>, Error> {
        let module = self.token.module();
        let mechanism = plan.mechanism();
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
        objects::public_key_from(&self.kind, attrs).map_err(|problem| self.malformed(problem))
    }

    fn malformed(&self, problem: String) -> Error {
        Error::KeyAttributes {
            key: self.uri_text.clone(),
            token: self.token.label().to_owned(),
            problem,
        }
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
        match objects::find(session, self.token.module(), &template)?.as_slice() {
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
