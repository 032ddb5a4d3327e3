//! Retiring a key that was replaced: its own objects — the private key itself, the public key
//! object that holds its public key, and the certificates the caller recognises as its own —
//! relabelled so that a listing shows what they were, or deleted.
//!
//! A `CKA_ID` is not unique: ids such as `01` are common, and other applications' public keys
//! and certificates may carry the key's id (or label, for a key without an id). Those are
//! never touched: an object sharing the id is the key's own only when its public key (or the
//! certificate, as the caller judges it) shows it. Another private key sharing the id is
//! reported ([`KeySigner::private_keys_sharing_its_id`]) so that a rotation can refuse up front.
//!
//! Relabelling is `C_SetAttributeValue` on `CKA_LABEL`, which some tokens refuse (a PIV card
//! derives its labels from the slot): a refusal leaves that object as it was and is reported,
//! not an error.

use cryptoki::error::RvError;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use super::Error;
use super::objects::{self, Attrs, hex};
use super::rv::{describe, rv_of};
use super::signer::KeySigner;
use super::uri::{ObjectType, Pkcs11Uri};
use crate::jose::PublicKey;

/// Which of the objects stored with a key (same `CKA_ID`, or same label for a key without an
/// id) are the key's own; the private key itself always is.
pub struct OwnObjects<'a> {
    /// The key's public key: a public key object is the key's own when it holds exactly this
    /// key. `None`: no public key object is taken for the key's own.
    pub public_key: Option<&'a PublicKey>,
    /// Whether a certificate object, given its DER, is the key's own.
    pub certificate: &'a dyn Fn(&[u8]) -> bool,
}

/// What relabelling a key's objects did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Relabelled {
    /// Objects that now carry the new label.
    pub changed: usize,
    /// Objects that already carried it (a relabelling that was interrupted and is repeated).
    pub already: usize,
    /// Objects whose label the token would not change: what each is, and the token's answer.
    pub refused: Vec<String>,
    /// Objects with the key's id (or label) that are not its own, left as they were.
    pub others: usize,
}

/// What deleting a key's objects did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deleted {
    /// Objects deleted.
    pub deleted: usize,
    /// Objects with the key's id (or label) that are not its own, left as they were.
    pub others: usize,
}

/// The key's own objects, each with what it is, and how many others share its id.
type Found = (Vec<(ObjectHandle, &'static str)>, usize);

impl KeySigner {
    /// Gives each of the key's own objects the label `label`. Objects the token refuses to
    /// relabel are listed in the answer, not an error; other failures are.
    pub fn relabel_objects(&self, label: &str, own: &OwnObjects<'_>) -> Result<Relabelled, Error> {
        let token = self.token();
        let module = token.module();
        let (_turn, _hold, _) = self.live()?;
        let session = token.open_rw()?;
        let (mine, others) = self.own_objects(&session, own)?;
        let mut done = Relabelled {
            others,
            ..Relabelled::default()
        };
        for (handle, what) in mine {
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

    /// Deletes the key's own objects: the private key, its public key object and its
    /// certificates. The key cannot sign afterwards.
    pub fn destroy_objects(self, own: &OwnObjects<'_>) -> Result<Deleted, Error> {
        let token = self.token();
        let (_turn, _hold, _) = self.live()?;
        let session = token.open_rw()?;
        let (mine, others) = self.own_objects(&session, own)?;
        for (handle, what) in &mine {
            session.destroy_object(*handle).map_err(|e| Error::Store {
                token: token.label().to_owned(),
                action: format!("delete the {what} of key id {}", hex(self.id())),
                rv: describe(&e),
                hint: "the token may refuse deleting objects; delete them with its own tools",
            })?;
        }
        Ok(Deleted {
            deleted: mine.len(),
            others,
        })
    }

    /// The other private keys with the key's `CKA_ID` (its label, for a key without an id),
    /// each as `'label' id HEX`: objects stored with either cannot be told apart by id.
    pub fn private_keys_sharing_its_id(&self) -> Result<Vec<String>, Error> {
        let module = self.token().module();
        let (_turn, _hold, session) = self.live()?;
        let Some(mine) = self.shared_attribute() else {
            return Ok(Vec::new());
        };
        let template = [Attribute::Class(ObjectClass::PRIVATE_KEY), mine];
        let mut others = Vec::new();
        for handle in objects::find(session, module, &template)? {
            if handle == self.handle() {
                continue;
            }
            let attrs = Attrs::read(session, module, handle)?;
            others.push(format!(
                "'{}' id {}",
                attrs.label.unwrap_or_default(),
                hex(&attrs.id)
            ));
        }
        Ok(others)
    }

    /// Whether `uri` names this very key: its token and library attributes select the key's
    /// token (whatever module it names), and its `object`, `id` and `type` fit the key.
    pub fn is_named_by(&self, uri: &Pkcs11Uri) -> Result<bool, Error> {
        let fits = uri
            .object
            .as_deref()
            .is_none_or(|l| Some(l) == self.label())
            && uri.id.as_deref().is_none_or(|id| id == self.id())
            && uri.object_type.is_none_or(|t| t == ObjectType::Private);
        if !fits {
            return Ok(false);
        }
        let (_turn, _hold, _) = self.live()?;
        self.token().is_named_by(uri)
    }

    /// The attribute the key's objects share: its `CKA_ID`, or its label when it has none.
    fn shared_attribute(&self) -> Option<Attribute> {
        match (self.id().is_empty(), self.label()) {
            (false, _) => Some(Attribute::Id(self.id().to_vec())),
            (true, Some(label)) => Some(Attribute::Label(label.as_bytes().to_vec())),
            (true, None) => None,
        }
    }

    /// The key's own objects (see [`OwnObjects`]), each with what it is, and how many other
    /// objects share its id (or label).
    fn own_objects(&self, session: &Session, own: &OwnObjects<'_>) -> Result<Found, Error> {
        let module = self.token().module();
        let mut mine = vec![(self.handle(), "private key")];
        let Some(selector) = self.shared_attribute() else {
            return Ok((mine, 0));
        };
        let mut others = 0;
        let find = |class| {
            objects::find(
                session,
                module,
                &[Attribute::Class(class), selector.clone()],
            )
        };
        for handle in find(ObjectClass::PRIVATE_KEY)? {
            others += usize::from(handle != self.handle());
        }
        for handle in find(ObjectClass::PUBLIC_KEY)? {
            let held = self.public_key_in(session, handle)?;
            match (held, own.public_key) {
                (Some(held), Some(key)) if held == *key => mine.push((handle, "public key")),
                _ => others += 1,
            }
        }
        for handle in find(ObjectClass::CERTIFICATE)? {
            match objects::value(session, module, handle)? {
                Some(der) if (own.certificate)(&der) => mine.push((handle, "certificate")),
                _ => others += 1,
            }
        }
        Ok((mine, others))
    }

    /// The public key a public key object holds, `None` when it holds none that can be read.
    fn public_key_in(
        &self,
        session: &Session,
        handle: ObjectHandle,
    ) -> Result<Option<PublicKey>, Error> {
        let module = self.token().module();
        let kind = Attrs::read(session, module, handle)?.kind();
        let wanted = [
            AttributeType::EcPoint,
            AttributeType::Modulus,
            AttributeType::PublicExponent,
        ];
        let values = session
            .get_attributes(handle, &wanted)
            .map_err(|e| module.call_err("C_GetAttributeValue", &e))?;
        Ok(objects::public_key_from(&kind, values).unwrap_or(None))
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
