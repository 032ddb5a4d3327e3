//! Who makes objects (key pairs, certificates) on a token: the logged-in user on most modules;
//! on a PIV card through Yubico's ykcs11, the security officer logged in with the card's
//! management key; through OpenSC, nobody (see `piv`).

use std::sync::Arc;

use cryptoki::session::{Session, UserType};

use super::Error;
use super::login::Credential;
use super::management_key::ManagementKey;
use super::piv::PivModule;
use super::token::Token;

/// Who makes objects on a token: the user (most modules), or the security officer with the
/// management key (ykcs11). Chosen up front, so that a token that cannot make them, or a
/// management key missing or not wanted, is refused before any PIN is asked for.
pub(crate) enum Creator {
    /// The logged-in user.
    User,
    /// ykcs11's security officer, logged in with the card's management key.
    SecurityOfficer(Arc<ManagementKey>),
}

impl Creator {
    /// Who makes objects on `token`, given the management key the user gave (if any); the
    /// refusal says what to do.
    pub(crate) fn for_token(
        token: &Token,
        key: Option<Arc<ManagementKey>>,
    ) -> Result<Creator, CreateRefused> {
        let module = PivModule::of(token).map_err(CreateRefused::Other)?;
        if let Some(reason) = module.and_then(PivModule::cannot_create) {
            return Err(CreateRefused::Module(reason.to_owned()));
        }
        let label = || token.label().to_owned();
        match (module, key) {
            (Some(PivModule::Ykcs11), Some(key)) => Ok(Creator::SecurityOfficer(key)),
            (Some(PivModule::Ykcs11), None) => {
                Err(CreateRefused::Other(Error::ManagementKeyNeeded {
                    token: label(),
                }))
            }
            (_, Some(_)) => Err(CreateRefused::Other(Error::ManagementKeyUnused {
                token: label(),
            })),
            (_, None) => Ok(Creator::User),
        }
    }

    /// Runs `work` in `session` as the creator: for the security officer, the user's login is
    /// ended, the security officer logs in with the management key for `work` only, and the
    /// user logs in again with `user` afterwards (ykcs11 allows one of the two at a time, and
    /// login state is per token, shared by every session).
    pub(crate) fn create<T>(
        &self,
        token: &Token,
        session: &Session,
        user: &Credential,
        work: impl FnOnce() -> Result<T, Error>,
    ) -> Result<T, Error> {
        let Creator::SecurityOfficer(key) = self else {
            return work();
        };
        token.logout(session)?;
        token.login_management_key(session, key)?;
        let done = work();
        let logged_out = token.logout(session);
        token.authenticate(session, UserType::User, user)?;
        let value = done?;
        logged_out?;
        Ok(value)
    }
}

/// Why objects cannot be made on a token.
pub(crate) enum CreateRefused {
    /// The module cannot make them at all: its limit, with the tools that can.
    Module(String),
    /// Anything else (a management key missing or not wanted, a failed call).
    Other(Error),
}
