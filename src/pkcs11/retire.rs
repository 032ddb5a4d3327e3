//! Retiring a key that was replaced: its objects — the private and public halves and the
//! certificates with its `CKA_ID` (its label, for a key without one) — relabelled so that a
//! listing shows what they were, or deleted.
//!
//! Relabelling is `C_SetAttributeValue` on `CKA_LABEL`, which some tokens refuse (a PIV card
//! derives its labels from the slot): a refusal leaves that object as it was and is reported,
//! not an error.

use cryptoki::error::RvError;
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use super::Error;
use super::objects::{self, Attrs, hex};
use super::rv::{describe, rv_of};
use super::signer::KeySigner;

/// What relabelling a key's objects did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Relabelled {
    /// Objects that now carry the new label.
    pub changed: usize,
    /// Objects that already carried it (a relabelling that was interrupted and is repeated).
    pub already: usize,
    /// Objects whose label the token would not change: what each is, and the token's answer.
    pub refused: Vec<String>,
}

/// The classes of object that make up a key and its certificates.
const CLASSES: [(ObjectClass, &str); 3] = [
    (ObjectClass::PRIVATE_KEY, "private key"),
    (ObjectClass::PUBLIC_KEY, "public key"),
    (ObjectClass::CERTIFICATE, "certificate"),
];

impl KeySigner {
    /// Gives each of the key's objects the label `label`. Objects the token refuses to
    /// relabel are listed in the answer, not an error; other failures are.
    pub fn relabel_objects(&self, label: &str) -> Result<Relabelled, Error> {
        let token = self.token();
        let module = token.module();
        let (_turn, _hold, _) = self.live()?;
        let session = token.open_rw()?;
        let mut done = Relabelled::default();
        for (handle, what) in self.own_objects(&session)? {
            let attrs = Attrs::read(&session, module, handle)?;
            if attrs.label.as_deref() == Some(label) {
                done.already += 1;
                continue;
            }
            let wanted = [Attribute::Label(label.as_bytes().to_vec())];
            match session.update_attributes(handle, &wanted) {
                Ok(()) => done.changed += 1,
                Err(e) if refusal(rv_of(&e)) => done.refused.push(format!(
                    "the {what} '{}' ({})",
                    attrs.label.unwrap_or_default(),
                    describe(&e)
                )),
                Err(e) => return Err(module.call_err("C_SetAttributeValue", &e)),
            }
        }
        Ok(done)
    }

    /// Deletes the key's objects: the private and public halves and its certificates. Returns
    /// how many were deleted. The key cannot sign afterwards.
    pub fn destroy_objects(self) -> Result<usize, Error> {
        let token = self.token();
        let (_turn, _hold, _) = self.live()?;
        let session = token.open_rw()?;
        let objects = self.own_objects(&session)?;
        for (handle, what) in &objects {
            session.destroy_object(*handle).map_err(|e| Error::Store {
                token: token.label().to_owned(),
                action: format!("delete the {what} of key id {}", hex(self.id())),
                rv: describe(&e),
                hint: "the token may refuse deleting objects; delete them with its own tools",
            })?;
        }
        Ok(objects.len())
    }

    /// The key's objects, each with what it is: by its `CKA_ID`, or its label when it has
    /// none (how `keygen` and `cert` pair a key with its certificate).
    fn own_objects(&self, session: &Session) -> Result<Vec<(ObjectHandle, &'static str)>, Error> {
        let mine = match (self.id().is_empty(), self.label()) {
            (false, _) => Attribute::Id(self.id().to_vec()),
            (true, Some(label)) => Attribute::Label(label.as_bytes().to_vec()),
            (true, None) => return Ok(Vec::new()),
        };
        let mut found = Vec::new();
        for (class, what) in CLASSES {
            let template = [Attribute::Class(class), mine.clone()];
            found.extend(
                objects::find(session, self.token().module(), &template)?
                    .into_iter()
                    .map(|h| (h, what)),
            );
        }
        Ok(found)
    }
}

/// Whether the token refused to change the label (rather than failed).
fn refusal(rv: Option<RvError>) -> bool {
    matches!(
        rv,
        Some(
            RvError::AttributeReadOnly
                | RvError::ActionProhibited
                | RvError::AttributeTypeInvalid
                | RvError::AttributeValueInvalid
                | RvError::TemplateInconsistent
                | RvError::FunctionNotSupported
                | RvError::TokenWriteProtected
        )
    )
}
