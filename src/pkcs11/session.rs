//! Sessions kept across calls (a key's, a signer's), and the one rule they must keep: a session
//! opened before the module was reinitialized is never closed.

use cryptoki::session::Session;

use super::Error;
use super::module::Module;
use super::registry::{Generation, Hold};

/// A session on a token, with the module generation it was opened in.
///
/// A reinitialization of the module ([`Module::reinitialize`]) ends every session of the old
/// generation, and the module may hand the same handle to another signer's new session. So a
/// session of an older generation is void: it is never used ([`KeptSession::current`]) and
/// never closed, only forgotten; closing it could close that other signer's session. A session
/// of the current generation is closed when dropped, under a hold on the module.
pub(crate) struct KeptSession {
    /// `None` only once [`KeptSession::end`] has closed or forgotten it.
    session: Option<Session>,
    generation: Generation,
    module: Module,
}

impl KeptSession {
    /// Keeps `session` of `module`, opened (or adopted) during `hold`.
    pub(super) fn new(module: &Module, session: Session, hold: &Hold<'_>) -> KeptSession {
        KeptSession {
            session: Some(session),
            generation: hold.generation,
            module: module.clone(),
        }
    }

    /// The session, if it is of the generation of `hold`: the caller's calls with it then run
    /// while no reinitialization can. Else [`Error::SessionVoid`]: open a new one.
    pub(super) fn current(&self, hold: &Hold<'_>) -> Result<&Session, Error> {
        match &self.session {
            Some(session) if hold.generation == self.generation => Ok(session),
            _ => Err(Error::SessionVoid {
                module: self.module.shown_path(),
            }),
        }
    }

    /// Ends the session under `hold`, which the caller already has: closed if it is of the
    /// current generation, forgotten if it is void.
    pub(super) fn end(mut self, hold: &Hold<'_>) {
        self.end_under(hold);
    }

    fn end_under(&mut self, hold: &Hold<'_>) {
        let Some(session) = self.session.take() else {
            return;
        };
        if hold.generation == self.generation {
            drop(session);
        } else {
            std::mem::forget(session);
        }
    }
}

impl Drop for KeptSession {
    /// Closes the session only if it is of the module's current generation, under a hold.
    fn drop(&mut self) {
        if self.session.is_none() {
            return;
        }
        let module = self.module.clone();
        let hold = module.hold();
        self.end_under(&hold);
    }
}
