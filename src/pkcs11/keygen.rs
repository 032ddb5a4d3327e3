//! Making keys inside a token: non-extractable key pairs, and the certificate objects stored
//! beside them.

use std::path::Path;
use std::sync::Arc;

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeType, CertificateType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use der::Encode as _;

use super::Error;
use super::creator::{CreateRefused, Creator};
use super::key::{CredentialFor, Key};
use super::login::Credential;
use super::management_key::ManagementKey;
use super::mechanism::{self, KeySpec, no_mechanism, plan_for};
use super::module::{Module, resolve_module};
use super::objects::{find, hex};
use super::piv::{self, PivModule};
use super::rv::{describe, rv_of};
use super::signer::KeySigner;
use super::token::Token;
use super::uri::{ObjectType, Pkcs11Uri};
use crate::jose::Alg;

/// The public half's template: what makes it an EC or RSA key of this size.
fn public_template(spec: KeySpec, label: Option<&str>, id: &[u8]) -> Result<Vec<Attribute>, Error> {
    let mut template = common(label, id);
    // No CKA_VERIFY: nothing verifies on the token, and tpm2-pkcs11 fails the generation
    // (CKR_GENERAL_ERROR) when the template's CKA_VERIFY differs from the one it derives from
    // the TPM key, which it does for a key that may sign but not decrypt.
    template.push(Attribute::Private(false));
    match spec {
        KeySpec::Ec(curve) => {
            let params = curve.oid().to_der().map_err(|e| Error::KeygenUnsupported {
                token: String::new(),
                kind: spec.to_string(),
                reason: e.to_string(),
            })?;
            template.push(Attribute::EcParams(params));
        }
        KeySpec::Rsa { bits } => template.extend([
            Attribute::ModulusBits(u64::from(bits).into()),
            Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
        ]),
    }
    Ok(template)
}

/// Attributes both halves share: stored on the token, same label (where the module takes one),
/// same id.
fn common(label: Option<&str>, id: &[u8]) -> Vec<Attribute> {
    let mut template = vec![Attribute::Token(true), Attribute::Id(id.to_vec())];
    template.extend(label.map(|l| Attribute::Label(l.as_bytes().to_vec())));
    template
}

/// The private half: it signs, and it never leaves the token in any form.
fn private_template(label: Option<&str>, id: &[u8]) -> Vec<Attribute> {
    let mut template = common(label, id);
    template.extend([
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Derive(false),
        Attribute::Unwrap(false),
    ]);
    template
}

/// A key pair about to be made: the token is chosen, logged in, and every check that can
/// refuse has passed. Split from [`KeygenPlan::generate`] so a caller can show progress during
/// the slow part without drawing over a PIN prompt.
pub struct KeygenPlan {
    token: Token,
    session: Session,
    credential: Arc<Credential>,
    /// `None` on a PIV card, whose module names its keys itself.
    label: Option<String>,
    id: Vec<u8>,
    spec: KeySpec,
    shown: String,
    creator: Creator,
}

impl KeygenPlan {
    /// Chooses the token the URI names, checks that the module makes `spec` keys and can sign
    /// `alg` with them, and who makes objects on it (on a PIV card through Yubico's ykcs11,
    /// the security officer with `management_key`), logs in, and checks that no object has
    /// the URI's `object=` label (or `id=`); a fresh random id is chosen when the URI has
    /// none. On a PIV card the URI's `id` picks the slot instead. An object already there is
    /// never touched.
    pub fn prepare(
        uri: &Pkcs11Uri,
        module_fallback: Option<&Path>,
        (spec, alg): (KeySpec, Alg),
        management_key: Option<Arc<ManagementKey>>,
    ) -> Result<KeygenPlan, Error> {
        KeygenPlan::prepare_with(
            uri,
            module_fallback,
            (spec, alg),
            management_key,
            &|token| token.credential(uri).map(Arc::new),
        )
    }

    /// [`KeygenPlan::prepare`], logging in with the credential `credential_for` gives for the
    /// token (asked for only when the token wants a login): e.g. the one another key of the
    /// same token was opened with, so that no PIN is asked for twice.
    pub fn prepare_with(
        uri: &Pkcs11Uri,
        module_fallback: Option<&Path>,
        (spec, alg): (KeySpec, Alg),
        management_key: Option<Arc<ManagementKey>>,
        credential_for: CredentialFor<'_>,
    ) -> Result<KeygenPlan, Error> {
        let shown = uri.redacted();
        if let Some(kind) = uri.object_type.filter(|t| *t != ObjectType::Private) {
            return Err(Error::NotAPrivateKey {
                key: shown,
                kind: kind.to_string(),
            });
        }
        let module = Module::load(&resolve_module(uri, module_fallback)?)?;
        let token = module.select(uri)?;
        check_supported(&token, spec)?;
        let creator =
            Creator::for_token(&token, management_key).map_err(|refused| match refused {
                CreateRefused::Module(reason) => Error::KeygenUnsupported {
                    token: token.label().to_owned(),
                    kind: spec.to_string(),
                    reason,
                },
                CreateRefused::Other(e) => e,
            })?;
        let (label, id) = names(uri, PivModule::of(&token)?.is_some(), &shown)?;
        if plan_for(alg, &token.mechanisms()?).is_none() {
            return Err(no_mechanism(&token, alg));
        }
        let session = token.open_rw()?;
        let credential = if token.summary().login_required {
            let credential = credential_for(&token)?;
            token.authenticate(&session, UserType::User, &credential)?;
            credential
        } else {
            Arc::new(Credential::NotNeeded)
        };
        let id = claim_names(&token, &session, label.as_deref(), id)?;
        Ok(KeygenPlan {
            token,
            session,
            credential,
            label,
            id,
            spec,
            shown,
            creator,
        })
    }

    /// Makes the key pair and returns the new private key, ready to sign. A module that did
    /// not make the private key sensitive and non-extractable has the pair deleted again.
    pub fn generate(self) -> Result<Key, Error> {
        let (token, session, spec) = (&self.token, &self.session, self.spec);
        let (label, id) = (self.label.as_deref(), &self.id);
        let name = label.map_or_else(|| format!("with id {}", hex(id)), |l| format!("'{l}'"));
        tracing::info!(token = token.label(), %name, id = %hex(id), %spec, "generating key pair");
        let private = self.creator.create(token, session, &self.credential, || {
            let pair = generate_pair(token, session, spec, label, id)?;
            ensure_protected(token, session, pair, &name)?;
            Ok(pair[1])
        })?;
        Key::adopt(
            self.token,
            self.session,
            private,
            self.credential,
            self.shown,
        )
    }
}

/// The new key's label and wanted id as the URI gives them: on a PIV card (`piv`) the id
/// picks the slot and the module names the key itself, so a label given is not used;
/// elsewhere `object=` names it, and an id is chosen when the URI has none.
fn names(
    uri: &Pkcs11Uri,
    piv: bool,
    shown: &str,
) -> Result<(Option<String>, Option<Vec<u8>>), Error> {
    if piv {
        let id = uri
            .id
            .clone()
            .filter(|id| piv::slot_of(id).is_some())
            .ok_or_else(|| Error::NoPivSlot {
                key: shown.to_owned(),
            })?;
        if uri.object.is_some() {
            tracing::info!(
                key = shown,
                "the module names PIV keys itself: object= is not used as the key's label"
            );
        }
        return Ok((None, Some(id)));
    }
    let label = uri
        .object
        .clone()
        .ok_or_else(|| Error::NoObject(shown.to_owned()))?;
    Ok((Some(label), uri.id.clone()))
}

/// `C_GenerateKeyPair` for `spec` with our templates: `[public, private]`.
fn generate_pair(
    token: &Token,
    session: &Session,
    spec: KeySpec,
    label: Option<&str>,
    id: &[u8],
) -> Result<[ObjectHandle; 2], Error> {
    let action = format!("generate the {spec} key pair");
    let public = public_template(spec, label, id)?;
    let mut private = private_template(label, id);
    match session.generate_key_pair(&spec.mechanism(), &public, &private) {
        Ok((public, private)) => Ok([public, private]),
        // Yubico's ykcs11 refuses CKA_EXTRACTABLE in the template, whatever its value (a PIV
        // key never leaves the card): without it, what the key got is still read back.
        Err(e) if rv_of(&e) == Some(RvError::AttributeTypeInvalid) => {
            tracing::debug!(
                "the module refused the key template ({}); trying again without CKA_EXTRACTABLE",
                describe(&e)
            );
            private.retain(|a| !matches!(a, Attribute::Extractable(_)));
            session
                .generate_key_pair(&spec.mechanism(), &public, &private)
                .map(|(public, private)| [public, private])
                .map_err(|e| store_err(token, &action, &e))
        }
        Err(e) => Err(store_err(token, &action, &e)),
    }
}

/// Refuses a key kind the module does not generate (or is known to mishandle), naming the
/// module and its limit.
fn check_supported(token: &Token, spec: KeySpec) -> Result<(), Error> {
    mechanism::keygen_support(token, spec, &token.mechanisms()?)?
        .map(drop)
        .map_err(|reason| Error::KeygenUnsupported {
            token: token.label().to_owned(),
            kind: spec.to_string(),
            reason,
        })
}

/// Errors when any object matches `template`, describing what is there.
fn refuse_taken(
    token: &Token,
    session: &Session,
    template: &[Attribute],
    what: impl Fn() -> String,
) -> Result<(), Error> {
    let found = find(session, token.module(), template)?;
    if found.is_empty() {
        return Ok(());
    }
    let mut classes = Vec::new();
    for handle in found {
        let class = session
            .get_attributes(handle, &[AttributeType::Class])
            .map_err(|e| token.module().call_err("C_GetAttributeValue", &e))?;
        classes.extend(class.into_iter().filter_map(|a| match a {
            Attribute::Class(c) => Some(class_name(c)),
            _ => None,
        }));
    }
    // In a fixed order, not the token's (which differs between modules and token files).
    classes.sort_unstable();
    classes.dedup();
    let piv = PivModule::of(token)?.is_some();
    Err(Error::LabelTaken {
        token: token.label().to_owned(),
        what: format!("{} {}", classes.join(" and "), what()),
        instead: if piv {
            "choose another slot with id= (%01 = 9a, %02 = 9c, %03 = 9d, %04 = 9e), or empty this one with the card's own tools (ykman piv keys delete; ykman piv certificates delete)"
        } else {
            "choose another object= label"
        },
    })
}

fn class_name(class: ObjectClass) -> &'static str {
    match class {
        ObjectClass::PRIVATE_KEY => "a private key",
        ObjectClass::PUBLIC_KEY => "a public key",
        ObjectClass::CERTIFICATE => "a certificate",
        ObjectClass::SECRET_KEY => "a secret key",
        ObjectClass::DATA => "a data object",
        _ => "an object",
    }
}

/// A random 8-byte `CKA_ID` that no object in the token has yet.
fn fresh_id(token: &Token, session: &Session) -> Result<Vec<u8>, Error> {
    for _ in 0..8 {
        let mut id = vec![0u8; 8];
        session
            .generate_random_slice(&mut id)
            .or_else(|_| getrandom::fill(&mut id).map_err(|e| token_random_err(token, &e)))?;
        if find(session, token.module(), &[Attribute::Id(id.clone())])?.is_empty() {
            return Ok(id);
        }
    }
    Err(Error::Store {
        token: token.label().to_owned(),
        action: "find an unused key id".into(),
        rv: "eight random ids were all taken".into(),
        hint: "the token's random number generator may be broken",
    })
}

fn token_random_err(token: &Token, err: &getrandom::Error) -> Error {
    Error::Store {
        token: token.label().to_owned(),
        action: "get random bytes for a key id".into(),
        rv: err.to_string(),
        hint: "neither the token nor the operating system could supply randomness",
    }
}

/// Reads back the private half's protection; a module that ignored the template gets its key
/// pair (named `name` in messages) deleted rather than left behind extractable.
fn ensure_protected(
    token: &Token,
    session: &Session,
    [public, private]: [ObjectHandle; 2],
    name: &str,
) -> Result<(), Error> {
    let attrs = session
        .get_attributes(
            private,
            &[AttributeType::Sensitive, AttributeType::Extractable],
        )
        .map_err(|e| token.module().call_err("C_GetAttributeValue", &e))?;
    let mut missing = vec!["CKA_SENSITIVE=true", "CKA_EXTRACTABLE=false"];
    for attr in attrs {
        match attr {
            Attribute::Sensitive(true) => missing.retain(|m| *m != "CKA_SENSITIVE=true"),
            Attribute::Extractable(false) => missing.retain(|m| *m != "CKA_EXTRACTABLE=false"),
            _ => {}
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    for handle in [private, public] {
        if let Err(e) = session.destroy_object(handle) {
            tracing::error!(token = token.label(), key = %name, rv = %describe(&e), "could not delete the unprotected key pair; delete it with the token's tools");
        }
    }
    Err(Error::KeyNotProtected {
        token: token.label().to_owned(),
        label: name.to_owned(),
        missing: missing.join(" and "),
    })
}

/// Turns a failed write into an error that says what to check.
fn store_err(token: &Token, action: &str, err: &CkError) -> Error {
    let label = token.label().to_owned();
    match rv_of(err) {
        Some(RvError::TokenWriteProtected | RvError::SessionReadOnly) => {
            Error::TokenReadOnly { token: label }
        }
        Some(
            RvError::MechanismInvalid
            | RvError::KeySizeRange
            | RvError::CurveNotSupported
            | RvError::DomainParamsInvalid
            | RvError::AttributeValueInvalid
            | RvError::TemplateInconsistent,
        ) => Error::KeygenUnsupported {
            token: label,
            kind: action.to_owned(),
            reason: format!("the module answered {}", describe(err)),
        },
        _ => Error::Store {
            token: label,
            action: action.to_owned(),
            rv: describe(err),
            hint: "the token may be read-only or full (SoftHSM2: the token directory, directories.tokendir in SOFTHSM2_CONF, must be writable by this user)",
        },
    }
}

impl KeySigner {
    /// Refuses early, before anything is signed or written: the module cannot store a
    /// certificate on the token (OpenSC on a PIV card), it needs a management key that was not
    /// given (ykcs11) or was given but is not used, or the token already holds a certificate
    /// for this key and it is not to be replaced.
    pub fn check_certificate_slot(
        &self,
        replace: bool,
        management_key: Option<Arc<ManagementKey>>,
    ) -> Result<(), Error> {
        self.certificate_creator(replace, management_key).map(drop)
    }

    /// Who stores the certificate, once [`KeySigner::check_certificate_slot`]'s checks pass.
    fn certificate_creator(
        &self,
        replace: bool,
        management_key: Option<Arc<ManagementKey>>,
    ) -> Result<Creator, Error> {
        let token = self.token();
        let creator =
            Creator::for_token(token, management_key).map_err(|refused| match refused {
                CreateRefused::Module(reason) => Error::CertificateUnsupported {
                    token: token.label().to_owned(),
                    reason,
                },
                CreateRefused::Other(e) => e,
            })?;
        let session = token.open()?;
        let existing = find(&session, token.module(), &self.certificate_template()?)?;
        if existing.is_empty() || replace {
            return Ok(creator);
        }
        Err(Error::CertificateExists {
            token: token.label().to_owned(),
            label: self.label().unwrap_or_default().to_owned(),
            existing: format!("{} certificate object(s) with its id", existing.len()),
            flag: "--replace",
        })
    }

    /// Stores a certificate (DER) on the token beside the key, with the key's label and id;
    /// with `replace`, certificate objects already there for the key are deleted afterwards
    /// (on a PIV card the new one takes the old one's place in the key's slot).
    pub fn store_certificate(
        &self,
        der: &[u8],
        subject_der: &[u8],
        (replace, management_key): (bool, Option<Arc<ManagementKey>>),
    ) -> Result<(), Error> {
        let creator = self.certificate_creator(replace, management_key)?;
        let token = self.token();
        let session = token.open_rw()?;
        let mut template = self.certificate_template()?;
        template.extend([
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Subject(subject_der.to_vec()),
            Attribute::Value(der.to_vec()),
        ]);
        if !self.id().is_empty() {
            template.extend(
                self.label()
                    .map(|l| Attribute::Label(l.as_bytes().to_vec())),
            );
        }
        creator.create(token, &session, self.credential(), || {
            let old = find(&session, token.module(), &self.certificate_template()?)?;
            let created = session
                .create_object(&template)
                .map_err(|e| store_err(token, "store the certificate", &e))?;
            // ykcs11 writes the key's slot: the new certificate has the old one's handle.
            for handle in old.into_iter().filter(|h| *h != created) {
                session
                    .destroy_object(handle)
                    .map_err(|e| store_err(token, "delete the replaced certificate", &e))?;
            }
            Ok(())
        })
    }
}

/// Refuses a label or id another object of the token already has (a new key never overwrites
/// one), and picks a fresh id when none was asked for; returns the id the new pair gets.
fn claim_names(
    token: &Token,
    session: &Session,
    label: Option<&str>,
    id: Option<Vec<u8>>,
) -> Result<Vec<u8>, Error> {
    if let Some(label) = label {
        refuse_taken(
            token,
            session,
            &[Attribute::Label(label.as_bytes().to_vec())],
            || format!("labelled '{label}'"),
        )?;
    }
    match id {
        Some(id) => {
            refuse_taken(token, session, &[Attribute::Id(id.clone())], || {
                format!("with id {}", hex(&id))
            })?;
            Ok(id)
        }
        None => fresh_id(token, session),
    }
}
