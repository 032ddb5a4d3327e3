//! Opening the private key a URI names: loading its module, choosing its token, logging in and
//! finding the key, during one turn at the token, tried again when that fails in a way that may
//! pass.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};

use super::Error;
use super::lock::{self, TokenLock};
use super::login::Credential;
use super::module::{Module, resolve_module};
use super::objects::{self, Attrs, hex};
use super::session::KeptSession;
use super::token::{Token, token_selector};
use super::uri::{KeyRef, Pkcs11Uri};
use crate::jose::KeyKind;

/// A private key found in a token, with the session that found it (logged in as needed).
pub struct Key {
    pub(super) token: Token,
    pub(super) session: KeptSession,
    pub(super) handle: ObjectHandle,
    pub(super) attrs: Attrs,
    pub(super) credential: Arc<Credential>,
    pub(super) uri_text: String,
    /// The token's lock, for the signer's turns.
    pub(super) lock: TokenLock,
}

/// Where a key's opener gets the credential for its token (called only when one is needed):
/// the URI's PIN source, or one shared by every key on that token.
pub type CredentialFor<'a> = &'a dyn Fn(&Token) -> Result<Arc<Credential>, Error>;

/// The session a key is opened in: read-only, which signing needs, or read-write.
#[derive(Clone, Copy)]
enum Access {
    ReadOnly,
    ReadWrite,
}

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
    /// URI's source gives (or a prompt).
    pub fn open(uri: &Pkcs11Uri, module_fallback: Option<&Path>) -> Result<Key, Error> {
        let key = KeyRef::new(uri.clone())?;
        Key::open_in(
            &key,
            module_fallback,
            &|token| token.credential(&key).map(Arc::new),
            Access::ReadOnly,
        )
    }

    /// [`Key::open`] in a read-write session, for a key whose certificate is to be stored:
    /// a security officer's login (ykcs11's, with the management key) is refused while a
    /// read-only session of the token is open (`CKR_SESSION_READ_ONLY_EXISTS`).
    pub fn open_writable(uri: &Pkcs11Uri, module_fallback: Option<&Path>) -> Result<Key, Error> {
        let key = KeyRef::new(uri.clone())?;
        Key::open_in(
            &key,
            module_fallback,
            &|token| token.credential(&key).map(Arc::new),
            Access::ReadWrite,
        )
    }

    /// Opens the private key `key` names and logs in to its token with the credential
    /// `credential_for` gives (asked for once, outside the token's lock: it may prompt).
    ///
    /// Takes its turn at the token (see `TokenLock`) while it loads the module, opens a
    /// session, logs in and finds the key, and tries again, a few times with growing jittered
    /// pauses, when that fails in a way that may pass ([`Error::is_transient`]): a token read
    /// while another process rewrote it, or not seen at all. A PIN problem ends it at once: a
    /// PIN the token refused is never sent again.
    pub fn open_with(
        key: &KeyRef,
        module_fallback: Option<&Path>,
        credential_for: CredentialFor<'_>,
    ) -> Result<Key, Error> {
        Key::open_in(key, module_fallback, credential_for, Access::ReadOnly)
    }

    /// [`Key::open_with`] in a session of the given access.
    fn open_in(
        key: &KeyRef,
        module_fallback: Option<&Path>,
        credential_for: CredentialFor<'_>,
        access: Access,
    ) -> Result<Key, Error> {
        let uri = key.uri();
        let path = resolve_module(uri, module_fallback)?;
        let lock = TokenLock::new(&path, &token_selector(uri));
        let mut credential = None;
        let mut attempt = 1;
        loop {
            match Key::open_once(uri, (&path, access), &lock, credential.as_ref()) {
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
        (path, access): (&Path, Access),
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
        let session = match access {
            Access::ReadOnly => token.open()?,
            Access::ReadWrite => token.open_rw()?,
        };
        token.authenticate(&session, UserType::User, &credential)?;
        let (handle, attrs) = find_private_key(&token, &session, uri)?;
        Ok(Step::Opened(Box::new(Key {
            session: KeptSession::new(&module, session, &hold),
            token,
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
        credential: Arc<Credential>,
        uri_text: String,
    ) -> Result<Key, Error> {
        let module = token.module().clone();
        let hold = module.hold();
        let attrs = Attrs::read(&session, &module, handle)?;
        let session = KeptSession::new(&module, session, &hold);
        drop(hold);
        let selector = uri_text.parse().map_or_else(
            |_| format!("pkcs11:token={}", token.label()),
            |uri: Pkcs11Uri| token_selector(&uri),
        );
        let lock = TokenLock::new(module.path(), &selector);
        Ok(Key {
            token,
            session,
            handle,
            attrs,
            credential,
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
}

/// The one private key in `session` that the URI's `object` and `id` name, with its attributes.
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
    let found = objects::find(session, module, &template)?;
    let key = uri.redacted();
    let tok = token.label().to_owned();
    match found.as_slice() {
        [] => Err(objects::key_not_found(token, session, key)),
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
