//! Logging in to a token: where the PIN comes from, and guarding the token's few PIN tries (a
//! PIN it refused is never sent again, none is sent while the next wrong one would lock it).

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};

use super::Error;
use super::management_key::ManagementKey;
use super::pin::{self, Pin, PinOrigin};
use super::registry::{self, PinDigest, TokenId, TokenState};
use super::rv::{ReturnValue, rv_of};
use super::token::{PinTries, Token};
use super::uri::Pkcs11Uri;

/// Lets this process send a PIN while a token says the next wrong one locks it
/// (`CKF_USER_PIN_FINAL_TRY`): the user's explicit choice (`--final-pin-try`), never a default.
pub fn allow_final_pin_try() {
    registry::allow_final_pin_try();
}

/// How to unlock a locked PIN, or restore its tries, on a token that is not a PIV card.
const SO_RESETS_PIN: &str =
    "the security officer must reset it (e.g. pkcs11-tool --init-pin --login --login-type so)";
/// The same on a PIV card (a YubiKey), whose PUK unblocks the PIN.
const PUK_UNBLOCKS_PIN: &str = "unblock it with the PUK, which also sets a new PIN: yubico-piv-tool -a unblock-pin (or ykman piv access unblock-pin)";
/// How to restore the tries on the final one, on a token that is not a PIV card.
const TOKEN_TOOLS_RESET: &str = "log in once with the token's own tools (e.g. pkcs11-tool --login --test) to reset its counter, or have the security officer reset the PIN";
/// The same on a PIV card.
const PIV_TOOLS_RESET: &str = "verify the PIN once with the card's own tools (yubico-piv-tool -a verify-pin), or unblock it with the PUK (yubico-piv-tool -a unblock-pin)";

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
            return Err(self.pin_locked());
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
            // OpenSC ends the user's login when the card refused a signature (another
            // program's command came between the PIN and it, say), and then answers the next
            // context-specific login like this: the PIN was not judged, and the session wants
            // a new login as the user (see `Error::is_session_lost`).
            Err(err)
                if matches!(user, UserType::ContextSpecific)
                    && matches!(
                        rv_of(&err),
                        Some(RvError::OperationNotInitialized | RvError::UserNotLoggedIn)
                    ) =>
            {
                Err(Error::LoginDropped {
                    token: self.label().to_owned(),
                    rv: ReturnValue::of(&err),
                })
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
                Error::PinIncorrect {
                    token,
                    origin,
                    tries: self.tries_now(),
                }
            }
            Some(RvError::PinLocked) => self.pin_locked(),
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
    /// next wrong one locks it (unless the user allowed the final try): an automatic PIN that
    /// happens to be wrong would lock the token.
    fn check_pin_flags(&self) -> Result<(), Error> {
        let info = self.info_now()?;
        if info.user_pin_locked() {
            return Err(self.pin_locked());
        }
        if info.user_pin_final_try() && !registry::final_pin_try_allowed() {
            return Err(Error::PinFinalTry {
                token: self.label().to_owned(),
                remedy: if self.is_piv() {
                    PIV_TOOLS_RESET
                } else {
                    TOKEN_TOOLS_RESET
                },
            });
        }
        Ok(())
    }

    /// What the token says of the tries left after a refused PIN, for the message.
    fn tries_now(&self) -> String {
        match self.info_now().map(|info| PinTries::of(&info)) {
            Ok(Some(tries)) => format!("; the token now reports that {tries}"),
            _ => String::new(),
        }
    }

    /// The token locked its user PIN: how to unlock it depends on the token.
    fn pin_locked(&self) -> Error {
        Error::PinLocked {
            token: self.label().to_owned(),
            remedy: if self.is_piv() {
                PUK_UNBLOCKS_PIN
            } else {
                SO_RESETS_PIN
            },
        }
    }

    /// Whether this is a PIV card (a YubiKey) behind ykcs11 or OpenSC, for its remedies.
    fn is_piv(&self) -> bool {
        matches!(super::piv::PivModule::of(self), Ok(Some(_)))
    }

    /// `C_Login` as the security officer with a PIV card's management key, which Yubico's
    /// ykcs11 takes as the SO PIN. Never retried; the key is never shown.
    pub(crate) fn login_management_key(
        &self,
        session: &Session,
        key: &ManagementKey,
    ) -> Result<(), Error> {
        let pin = Pin::from(key.hex());
        let refused = |reason| Error::ManagementKeyRefused {
            token: self.label().to_owned(),
            origin: key.origin().to_string(),
            reason,
        };
        match session.login(UserType::So, Some(&pin)) {
            Ok(()) => Ok(()),
            Err(err) => Err(match rv_of(&err) {
                Some(RvError::UserAlreadyLoggedIn) => return Ok(()),
                Some(RvError::PinIncorrect) => refused(
                    "it is not the card's management key; check the file or variable (the card's owner set it, e.g. with ykman piv access change-management-key)",
                ),
                Some(RvError::PinLenRange | RvError::PinInvalid) => refused(
                    "the module does not take a management key of this length (Yubico's ykcs11 2.2 takes 3DES keys, 48 hex digits, only)",
                ),
                _ => self.module().call_err("C_Login", &err),
            }),
        }
    }

    /// Ends the login of `session`'s token (every session of it), if there is one.
    pub(crate) fn logout(&self, session: &Session) -> Result<(), Error> {
        match session.logout() {
            Err(e) if rv_of(&e) != Some(RvError::UserNotLoggedIn) => {
                Err(self.module().call_err("C_Logout", &e))
            }
            _ => Ok(()),
        }
    }
}
