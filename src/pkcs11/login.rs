//! Logging in to a token: where the PIN comes from, and guarding the token's few PIN tries (a
//! PIN it refused is never sent again, none is sent while the next wrong one would lock it).

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};

use super::Error;
use super::pin::{self, Pin, PinOrigin};
use super::registry::{self, PinDigest, TokenId, TokenState};
use super::rv::rv_of;
use super::token::Token;
use super::uri::Pkcs11Uri;

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

impl Credential {
    /// Whether `token` refused this credential's PIN earlier in this process (then it is
    /// never sent again).
    pub fn refused_by(&self, token: &TokenId) -> bool {
        match self {
            Credential::Pin(pin, _) => registry::token(token).refused(&PinDigest::of(pin)),
            Credential::NotNeeded | Credential::PinPad => false,
        }
    }
}

/// Logging in.
impl Token {
    /// Logs the user in when the token requires it, with a PIN from the URI's source, the
    /// environment, the token's PIN pad, or a prompt. Returns what was used, for the
    /// context-specific logins of `CKA_ALWAYS_AUTHENTICATE` keys.
    ///
    /// A wrong PIN is reported, never retried: a second automatic try would spend one more of
    /// the few attempts the token allows before it locks.
    pub(crate) fn login(&self, session: &Session, uri: &Pkcs11Uri) -> Result<Credential, Error> {
        if !self.summary().login_required {
            return Ok(Credential::NotNeeded);
        }
        let credential = self.credential(uri)?;
        self.authenticate(session, UserType::User, &credential)?;
        Ok(credential)
    }

    /// The PIN to use: the URI's or the environment's, else the PIN pad, else a prompt.
    pub fn credential(&self, uri: &Pkcs11Uri) -> Result<Credential, Error> {
        if self.summary().pin_locked {
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
                None if self.summary().protected_auth_path => Credential::PinPad,
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
        let state = registry::token(&self.id());
        let _one_login = state.login_turn();
        let digest = pin.map(PinDigest::of);
        if let Some(d) = digest
            && state.refused(&d)
        {
            return Err(Error::PinAlreadyRefused {
                token: self.label().to_owned(),
                origin: origin.to_string(),
            });
        }
        if pin.is_some() {
            self.check_pin_flags()?;
        }
        match session.login(user, pin) {
            Ok(()) => {
                state.record_accepted(digest);
                Ok(())
            }
            Err(err) => self.login_failed(&state, &err, digest, origin),
        }
    }

    /// What a failed `C_Login` with the PIN of `digest` (none: a PIN pad) means, recording a
    /// refused PIN in `state`; the caller still has its login turn at the token.
    fn login_failed(
        &self,
        state: &TokenState,
        err: &CkError,
        digest: Option<PinDigest>,
        origin: &PinOrigin,
    ) -> Result<(), Error> {
        let token = self.label().to_owned();
        let origin = origin.to_string();
        Err(match rv_of(err) {
            // Login state is per token, shared by every session of this process: the PIN was
            // not checked, so it must be the one that logged in.
            Some(RvError::UserAlreadyLoggedIn) => match (state.accepted(), digest) {
                (Some(a), Some(d)) if a != d => Error::PinUnverified { token, origin },
                _ => return Ok(()),
            },
            Some(RvError::PinIncorrect) => {
                if let Some(d) = digest {
                    state.record_refused(d);
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
            _ => self.module().call_err("C_Login", err),
        })
    }

    /// Refuses to send a PIN while the token's flags, read now, say the PIN is locked or the
    /// next wrong one locks it: an automatic PIN that happens to be wrong would lock the token.
    fn check_pin_flags(&self) -> Result<(), Error> {
        let info = self.info_now()?;
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
