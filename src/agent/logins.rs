//! One login per token: the profiles on one token share one PIN, read from their common PIN
//! source (or prompted for) once, and a profile that names another source is refused with an
//! error naming both. Login state is per token, so a second PIN could never be checked: the
//! token would answer `CKR_USER_ALREADY_LOGGED_IN` to it, right or wrong.
//!
//! PINs a token refused are remembered by the PKCS#11 layer and never sent to it again
//! (see `pkcs11::token`); here a token whose shared PIN was refused releases its claim, so
//! that a reload reads the PIN source again.

use std::sync::{Arc, Mutex, PoisonError};

use secrecy::ExposeSecret as _;

use crate::pkcs11::uri::PinSource;
use crate::pkcs11::{self, Credential, Pin, Pkcs11Uri, Token, TokenId};

/// Where a profile's PIN comes from, as its key URI says.
struct PinSpec {
    source: Option<PinSource>,
    value: Option<Pin>,
}

impl PinSpec {
    fn of(uri: &Pkcs11Uri) -> PinSpec {
        PinSpec {
            source: uri.pin_source.clone(),
            value: uri.pin_value.as_ref().map(|v| v.pin().clone()),
        }
    }

    fn same(&self, other: &PinSpec) -> bool {
        let values = match (&self.value, &other.value) {
            (Some(a), Some(b)) => a.expose_secret() == b.expose_secret(),
            (a, b) => a.is_none() && b.is_none(),
        };
        values && self.source == other.source
    }

    /// The source for messages (never the PIN).
    fn describe(&self) -> String {
        match (&self.value, &self.source) {
            (Some(_), _) => "a pin-value in the key URI".into(),
            (None, Some(PinSource::File(path))) => {
                format!("pin-source=file:{}", pkcs11::uri::escaped_path(path))
            }
            (None, Some(PinSource::Env(name))) => format!("pin-source=env:{name}"),
            (None, Some(PinSource::Credential(name))) => format!("pin-source=credential:{name}"),
            (None, None) => format!("{} or a prompt", pkcs11::pin::PIN_ENV),
        }
    }
}

/// A token's login: the PIN source of the profiles that use it and the credential they share.
struct Claim {
    token: TokenId,
    spec: PinSpec,
    /// The profiles on the token, the first one (which read the PIN) first.
    profiles: Vec<String>,
    credential: Arc<Credential>,
}

impl Claim {
    fn refused(&self) -> bool {
        self.credential.refused_by(&self.token)
    }
}

/// The logins of the profiles being served, by token.
#[derive(Default)]
pub struct Logins {
    claims: Mutex<Vec<Claim>>,
}

impl Logins {
    /// The credential for `profile`'s key (`uri`) on `token`: the one the token's profiles
    /// share, or, for the token's first profile, one read from the URI's PIN source (or a
    /// prompt). A profile naming another PIN source than the token's first is refused.
    pub fn credential(
        &self,
        profile: &str,
        uri: &Pkcs11Uri,
        token: &Token,
    ) -> Result<Arc<Credential>, pkcs11::Error> {
        let id = token.id();
        let spec = PinSpec::of(uri);
        let mut claims = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(claim) = claims.iter_mut().find(|c| c.token == id) {
            if !claim.spec.same(&spec) {
                return Err(pkcs11::Error::PinSourceConflict {
                    token: token.label().to_owned(),
                    profile: profile.to_owned(),
                    other: claim.profiles.first().cloned().unwrap_or_default(),
                    source_text: spec.describe(),
                    other_source: claim.spec.describe(),
                });
            }
            if !claim.profiles.iter().any(|p| p == profile) {
                claim.profiles.push(profile.to_owned());
            }
            return Ok(Arc::clone(&claim.credential));
        }
        // The lock is held across a prompt on purpose: prompts come one at a time.
        let credential = Arc::new(token.credential(uri)?);
        claims.push(Claim {
            token: id,
            spec,
            profiles: vec![profile.to_owned()],
            credential: Arc::clone(&credential),
        });
        Ok(credential)
    }

    /// The token `profile` is logged in to and the credential it logged in with, unless the
    /// token refused it: what a rotation of the profile logs in with, so that no PIN source is
    /// read (nor prompt shown) again, and a refused PIN is never sent again.
    pub fn held(&self, profile: &str) -> Option<(TokenId, Arc<Credential>)> {
        let claims = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
        claims
            .iter()
            .find(|c| c.profiles.iter().any(|p| p == profile) && !c.refused())
            .map(|c| (c.token.clone(), Arc::clone(&c.credential)))
    }

    /// Whether `profile`'s token refused the PIN it shares (the profile cannot sign again
    /// until the PIN source is fixed and the agent reloaded).
    pub fn refused(&self, profile: &str) -> bool {
        let claims = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
        claims
            .iter()
            .any(|c| c.profiles.iter().any(|p| p == profile) && c.refused())
    }

    /// Before a reload opens profiles: forgets the profiles not `kept`, and the tokens whose
    /// PIN was refused (their profiles are reopened and read their PIN source again).
    pub fn keep_only(&self, kept: impl Fn(&str) -> bool) {
        let mut claims = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
        claims.retain_mut(|c| {
            c.profiles.retain(|p| kept(p));
            !c.profiles.is_empty() && !c.refused()
        });
    }
}
