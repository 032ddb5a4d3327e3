//! Making keys inside a token: non-extractable key pairs, and the certificate objects stored
//! beside them.

use std::path::Path;
use std::sync::Arc;

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeType, CertificateType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use der::Encode as _;

use super::Error;
use super::key::{CredentialFor, Key};
use super::login::Credential;
use super::mechanism::{self, KeySpec, no_mechanism, plan_for};
use super::module::{Module, resolve_module};
use super::objects::{find, hex};
use super::rv::{describe, rv_of};
use super::signer::KeySigner;
use super::token::Token;
use super::uri::{ObjectType, Pkcs11Uri};
use crate::jose::Alg;

/// The public half's template: what makes it an EC or RSA key of this size.
fn public_template(spec: KeySpec, label: &str, id: &[u8]) -> Result<Vec<Attribute>, Error> {
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

/// Attributes both halves share: stored on the token, same label, same id.
fn common(label: &str, id: &[u8]) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
    ]
}

/// The private half: it signs, and it never leaves the token in any form.
fn private_template(label: &str, id: &[u8]) -> Vec<Attribute> {
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
    label: String,
    id: Vec<u8>,
    spec: KeySpec,
    shown: String,
}

impl KeygenPlan {
    /// Chooses the token the URI names, logs in, and checks that the module makes `spec` keys
    /// and can sign `alg` with them, and that no object has the URI's `object=` label (or
    /// `id=`); a fresh random id is chosen when the URI has none. An object already there is
    /// never touched.
    pub fn prepare(
        uri: &Pkcs11Uri,
        module_fallback: Option<&Path>,
        spec: KeySpec,
        alg: Alg,
    ) -> Result<KeygenPlan, Error> {
        KeygenPlan::prepare_with(uri, module_fallback, spec, alg, &|token| {
            token.credential(uri).map(Arc::new)
        })
    }

    /// [`KeygenPlan::prepare`], logging in with the credential `credential_for` gives for the
    /// token (asked for only when the token wants a login): e.g. the one another key of the
    /// same token was opened with, so that no PIN is asked for twice.
    pub fn prepare_with(
        uri: &Pkcs11Uri,
        module_fallback: Option<&Path>,
        spec: KeySpec,
        alg: Alg,
        credential_for: CredentialFor<'_>,
    ) -> Result<KeygenPlan, Error> {
        let shown = uri.redacted();
        if let Some(kind) = uri.object_type.filter(|t| *t != ObjectType::Private) {
            return Err(Error::NotAPrivateKey {
                key: shown,
                kind: kind.to_string(),
            });
        }
        let label = uri
            .object
            .clone()
            .ok_or_else(|| Error::NoObject(shown.clone()))?;
        let module = Module::load(&resolve_module(uri, module_fallback)?)?;
        let token = module.select(uri)?;
        check_supported(&token, spec)?;
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
        refuse_taken(
            &token,
            &session,
            &[Attribute::Label(label.as_bytes().to_vec())],
            || format!("labelled '{label}'"),
        )?;
        let id = match &uri.id {
            Some(id) => {
                refuse_taken(&token, &session, &[Attribute::Id(id.clone())], || {
                    format!("with id {}", hex(id))
                })?;
                id.clone()
            }
            None => fresh_id(&token, &session)?,
        };
        Ok(KeygenPlan {
            token,
            session,
            credential,
            label,
            id,
            spec,
            shown,
        })
    }

    /// Makes the key pair and returns the new private key, ready to sign. A module that did
    /// not make the private key sensitive and non-extractable has the pair deleted again.
    pub fn generate(self) -> Result<Key, Error> {
        let (token, session, spec) = (&self.token, &self.session, self.spec);
        let (label, id) = (&self.label, &self.id);
        tracing::info!(token = token.label(), %label, id = %hex(id), %spec, "generating key pair");
        let (public, private) = session
            .generate_key_pair(
                &spec.mechanism(),
                &public_template(spec, label, id)?,
                &private_template(label, id),
            )
            .map_err(|e| store_err(token, &format!("generate the {spec} key pair"), &e))?;
        ensure_protected(token, session, [public, private], label)?;
        Key::adopt(
            self.token,
            self.session,
            private,
            self.credential,
            self.shown,
        )
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
    Err(Error::LabelTaken {
        token: token.label().to_owned(),
        what: format!("{} {}", classes.join(" and "), what()),
    })
}

fn class_name(class: ObjectClass) -> &'static str {
    match class {
        ObjectClass::PRIVATE_KEY => "a private key",
        ObjectClass::PUBLIC_KEY => "a public key",
        ObjectClass::CERTIFICATE => "a certificate",
        ObjectClass::SECRET_KEY => "a secret key",
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
/// pair deleted rather than left behind extractable.
fn ensure_protected(
    token: &Token,
    session: &Session,
    [public, private]: [ObjectHandle; 2],
    label: &str,
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
            tracing::error!(token = token.label(), %label, rv = %describe(&e), "could not delete the unprotected key pair; delete it with the token's tools");
        }
    }
    Err(Error::KeyNotProtected {
        token: token.label().to_owned(),
        label: label.to_owned(),
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
    /// Refuses early when the token already holds a certificate for this key, unless it is to
    /// be replaced.
    pub fn check_certificate_slot(&self, replace: bool) -> Result<(), Error> {
        let session = self.token().open()?;
        let existing = find(
            &session,
            self.token().module(),
            &self.certificate_template()?,
        )?;
        if existing.is_empty() || replace {
            return Ok(());
        }
        Err(Error::CertificateExists {
            token: self.token().label().to_owned(),
            label: self.label().unwrap_or_default().to_owned(),
            existing: format!("{} certificate object(s) with its id", existing.len()),
            flag: "--replace",
        })
    }

    /// Stores a certificate (DER) on the token beside the key, with the key's label and id;
    /// with `replace`, certificate objects already there for the key are deleted afterwards.
    pub fn store_certificate(
        &self,
        der: &[u8],
        subject_der: &[u8],
        replace: bool,
    ) -> Result<(), Error> {
        self.check_certificate_slot(replace)?;
        let token = self.token();
        let session = token.open_rw()?;
        let mut template = self.certificate_template()?;
        let old = find(&session, token.module(), &template)?;
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
        session
            .create_object(&template)
            .map_err(|e| store_err(token, "store the certificate", &e))?;
        for handle in old {
            session
                .destroy_object(handle)
                .map_err(|e| store_err(token, "delete the replaced certificate", &e))?;
        }
        Ok(())
    }
}
