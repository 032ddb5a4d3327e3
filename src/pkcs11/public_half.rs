//! What can be seen of a key without logging in: its public key object and the certificates
//! stored with it (`doctor` checks them before, or without, a PIN is sent).

use cryptoki::object::{Attribute, AttributeType, ObjectClass};

use super::Error;
use super::objects::{self, Attrs};
use super::token::Token;
use super::uri::Pkcs11Uri;
use crate::jose::{KeyKind, PublicKey};

/// A public key object the URI's `object`/`id` name, and the certificates stored with it.
#[derive(Debug)]
pub struct PublicHalf {
    /// `CKA_LABEL`, if it is text.
    pub label: Option<String>,
    /// `CKA_ID`.
    pub id: Vec<u8>,
    /// The key's type and size.
    pub kind: KeyKind,
    /// The public key, when the object holds one.
    pub public_key: Option<PublicKey>,
    /// The DER of the certificate objects with the same `CKA_ID` (or label, for a key without
    /// an id): where `keygen` and `cert` put the certificate to upload.
    pub certificates: Vec<Vec<u8>>,
}

/// The public key objects of `token` that the URI's `object` and `id` select (of any label and
/// id when it names neither), each with the certificates stored with it; public objects only,
/// no login.
pub fn public_halves(token: &Token, uri: &Pkcs11Uri) -> Result<Vec<PublicHalf>, Error> {
    let session = token.open()?;
    let module = token.module();
    let mut template = vec![Attribute::Class(ObjectClass::PUBLIC_KEY)];
    if let Some(label) = &uri.object {
        template.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    if let Some(id) = &uri.id {
        template.push(Attribute::Id(id.clone()));
    }
    let wanted = [
        AttributeType::EcPoint,
        AttributeType::Modulus,
        AttributeType::PublicExponent,
    ];
    let mut halves = Vec::new();
    for handle in objects::find(&session, module, &template)? {
        let attrs = Attrs::read(&session, module, handle)?;
        let kind = attrs.kind();
        let values = session
            .get_attributes(handle, &wanted)
            .map_err(|e| module.call_err("C_GetAttributeValue", &e))?;
        let public_key =
            objects::public_key_from(&kind, values).map_err(|problem| Error::KeyAttributes {
                key: uri.redacted(),
                token: token.label().to_owned(),
                problem,
            })?;
        let mut certificate = vec![Attribute::Class(ObjectClass::CERTIFICATE)];
        match (attrs.id.is_empty(), &attrs.label) {
            (false, _) => certificate.push(Attribute::Id(attrs.id.clone())),
            (true, Some(label)) => certificate.push(Attribute::Label(label.as_bytes().to_vec())),
            (true, None) => {}
        }
        let mut certificates = Vec::new();
        if certificate.len() > 1 {
            for cert in objects::find(&session, module, &certificate)? {
                certificates.extend(objects::value(&session, module, cert)?);
            }
        }
        halves.push(PublicHalf {
            label: attrs.label,
            id: attrs.id,
            kind,
            public_key,
            certificates,
        });
    }
    Ok(halves)
}
