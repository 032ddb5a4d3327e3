//! Rotating a profile's certificate without a human: a new key pair made in the same token,
//! its certificate uploaded through NetSuite's certificate management API, proven with a real
//! access token, the profile switched to it in the config file, and only then the old
//! certificate revoked and the old key retired. `suitekey rotate` runs it; the agent can run it
//! too, through [`rotate`] and a [`Progress`] of its own.
//!
//! The steps ([`Step`]) are each verified before the next, and recorded in a journal
//! ([`Journal`], in the [`JournalStore`]) as they finish; a rotation interrupted anywhere (a
//! failure, a crash, `kill -9`) continues from the journal when it runs again, and no step does
//! twice what it did: the key made is found again by its label and id, the list is read before
//! an upload or a revoke, the switch sees whether the profile names the new certificate already.
//! Before step 5 finishes the profile names the old key and certificate, which keep working;
//! after it, the new ones. Steps 6 and 7 read the config file again just before they act, and
//! never revoke or retire what the profile names (it may have been switched back); step 1
//! refuses a key or certificate another profile of the file uses, and a key whose `CKA_ID`
//! another private key shares, since step 7 touches only the old key's own objects.
//!
//! | file | holds |
//! | --- | --- |
//! | `step` | [`Step`]: the seven steps |
//! | `plan` | [`Plan`]: step 1's decisions and their rules (the new key's kind, label and URI) |
//! | `journal` | [`Journal`] and the [`JournalStore`]: the rotation's record, kept safely |
//! | `context` | the token endpoint, the certificates API and the two keys, as the steps use them |
//! | `preflight` | step 1 |
//! | `new_key` | step 2 |
//! | `mapping` | steps 3, 4 and 6: upload, prove, revoke |
//! | `switch` | step 5 |
//! | `old_key` | step 7 |
//! | `run` | the steps in order, resumed from the journal |
//! | `error` | [`RotationError`]: the step, the cause, what to do |
//!
//! Blocking: it signs in the token and waits for NetSuite on a small runtime of its own, so it
//! is called from a thread that runs no async code (a `std::thread`, or `spawn_blocking`).

mod context;
mod error;
mod journal;
mod mapping;
mod new_key;
mod old_key;
mod plan;
mod preflight;
mod run;
mod step;
mod switch;

use std::path::Path;
use std::sync::Arc;

pub use error::{JournalError, RotationError, StepError};
pub use journal::{Done, JOURNAL_VERSION, Journal, JournalStore, LastError};
pub use mapping::PROPAGATION;
pub use plan::Plan;
pub use preflight::MAX_ACTIVE;
pub use run::{STOP_AFTER_ENV, rotate};
pub use step::Step;

use crate::config::ProfileOverrides;
use crate::jose::Alg;
use crate::netsuite::{CertificateId, ValidityDays};
use crate::pkcs11::Credential;

/// What to rotate, and how.
pub struct Request<'a> {
    /// The config file holding the profile.
    pub config: &'a Path,
    /// The profile's name.
    pub profile: &'a str,
    /// Profile fields given for this run (timeout, CA file, role, entity, certificates URL,
    /// token URL, scopes, module); the fields that name the mapping being rotated (key,
    /// client id, certificate id, account) and `alg` are refused: the file's are used.
    pub flags: ProfileOverrides,
    /// The choices about the new key.
    pub options: Options,
    /// Where journals are kept; `None` for [`JournalStore::default_dir`].
    pub state_dir: Option<&'a Path>,
    /// The credential to log in to the profile's token with, when the caller holds one (the
    /// agent: its PIN may have come from a prompt at start, and a PIN source is never read,
    /// nor a PIN tried, twice); `None` reads it from the key URI's PIN source, the
    /// environment or a prompt, once per run.
    pub credential: Option<Arc<Credential>>,
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("config", &self.config)
            .field("profile", &self.profile)
            .field("flags", &self.flags)
            .field("options", &self.options)
            .field("state_dir", &self.state_dir)
            .field("credential", &self.credential.as_ref().map(|_| "<held>"))
            .finish()
    }
}

/// The choices about the new key and the old one. Left out, each follows the current key
/// (or `keygen`'s default).
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The new key's algorithm [default: the current one's].
    pub alg: Option<Alg>,
    /// The new RSA key's size [default: the current RSA key's, else 3072].
    pub rsa_bits: Option<u32>,
    /// The new certificate's validity [default: 730 days].
    pub days: Option<ValidityDays>,
    /// The new certificate's subject [default: the current certificate's].
    pub subject: Option<String>,
    /// The new key's label [default: the current one's with `-YYYYMMDD`].
    pub new_label: Option<String>,
    /// Delete the old key in step 7 instead of relabelling it.
    pub delete_old_key: bool,
    /// Do step 1 only and return the plan; nothing changes anywhere.
    pub dry_run: bool,
}

/// How a rotation ended.
#[derive(Debug)]
pub enum Outcome {
    /// Every step is done: the profile uses the new key and certificate.
    Rotated {
        /// The new certificate id.
        certificate_id: CertificateId,
        /// The new key's URI (no secrets).
        key: String,
    },
    /// `--dry-run`: what a rotation would do (`in_progress`: the journal's plan of a rotation
    /// already under way, whose next step is given).
    Planned {
        /// The plan.
        plan: Box<Plan>,
        /// The step a rotation in progress would continue from.
        in_progress: Option<Step>,
    },
}

/// Where a rotation tells what it does.
pub trait Progress {
    /// `step` begins.
    fn step(&mut self, step: Step);
    /// `step` is done: what it found or did, in a line.
    fn done(&mut self, step: Step, what: &str);
    /// Something worth telling on the way (a wait, a step an earlier run finished).
    fn note(&mut self, text: &str);
    /// Step 6 is about to revoke the old certificate, and the profile names the new key and
    /// certificate (step 5 is done, in this run or an earlier one): whoever still signs with
    /// the old key (the agent) takes up the new one now, since the old stops working. An
    /// error stops the rotation before the revoke, as a failure of step 6 (it continues from
    /// there when run again).
    fn before_revoke(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// A [`Progress`] that tells nothing.
pub struct Silent;

impl Progress for Silent {
    fn step(&mut self, _: Step) {}
    fn done(&mut self, _: Step, _: &str) {}
    fn note(&mut self, _: &str) {}
}

/// The journal of `profile`'s latest rotation, if there is one (in progress, or complete);
/// nothing is created to find out.
pub fn status(state_dir: Option<&Path>, profile: &str) -> Result<Option<Journal>, JournalError> {
    match JournalStore::open_existing(state_dir)? {
        Some(store) => store.load(profile),
        None => Ok(None),
    }
}
