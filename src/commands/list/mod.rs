//! `suitekey list`: what a module's tokens hold, with ready-to-paste key URIs. No secrets.
//!
//! What is found is gathered first ([`Listing`]), then written as text (`text`, the default)
//! or as one JSON document (`--format json`, the same facts; the schema is in the README).

mod text;

use std::io::Write;

use serde::Serialize;

use crate::cert::Certificate;
use crate::cli::{ListArgs, OutputFormat};
use crate::error::Error;
use crate::jose::Alg;
use crate::netsuite::{self, AlgError};
use crate::pkcs11::uri::ObjectType;
use crate::pkcs11::{self, CertSummary, KeySummary, Module, Pkcs11Uri, Token};
use crate::pkcs11::{PinTries, SlotSummary, TokenSummary, resolve_module};

pub(super) fn run(args: &ListArgs, out: &mut dyn Write) -> Result<(), Error> {
    let path = resolve_module(&Pkcs11Uri::default(), args.module.path.as_deref())?;
    let module = Module::load(&path)?;
    let header = ModuleFacts {
        path: module.shown_path(),
        default: args.module.path.is_none(),
        description: module.description()?,
    };
    let wanted = |s: &SlotSummary| {
        args.token.is_none() || s.token.as_ref().map(|t| &t.label) == args.token.as_ref()
    };
    let slots: Vec<SlotSummary> = module.slots()?.into_iter().filter(wanted).collect();
    let usable = slots
        .iter()
        .filter(|s| s.token.as_ref().is_some_and(|t| t.initialized))
        .count();
    if args.login && usable != 1 {
        return Err(Error::Usage(format!(
            "--login needs exactly one initialized token, but {usable} match; add --token LABEL (one PIN is never tried on several tokens)"
        )));
    }
    // One broken token should not hide the others: list them all, then report the first error.
    let mut first_error = None;
    let slots = slots
        .iter()
        .map(|slot| {
            let (facts, error) = slot_facts(&module, slot, args);
            if let Some(e) = error {
                first_error.get_or_insert(e);
            }
            facts
        })
        .collect();
    let listing = Listing {
        module: header,
        token_filter: args.token.clone(),
        slots,
    };
    match args.format {
        OutputFormat::Text => text::write(&listing, out)?,
        OutputFormat::Json => super::write_json(out, &listing)?,
    }
    first_error.map_or(Ok(()), Err)
}

/// Everything `list` found.
#[derive(Debug, Serialize)]
pub(super) struct Listing {
    /// The module.
    pub module: ModuleFacts,
    /// `--token`, when given (not shown in JSON: it only filters).
    #[serde(skip)]
    pub token_filter: Option<String>,
    /// Each slot, in the module's order.
    pub slots: Vec<SlotFacts>,
}

/// The module loaded.
#[derive(Debug, Serialize)]
pub(super) struct ModuleFacts {
    /// Its file (percent-encoded where a URI would encode it).
    pub path: String,
    /// Whether it is the default (p11-kit's proxy: no module was given).
    pub default: bool,
    /// `manufacturer description version (Cryptoki x.y)`.
    pub description: String,
}

/// A slot and its token.
#[derive(Debug, Serialize)]
pub(super) struct SlotFacts {
    /// The slot id.
    pub slot_id: u64,
    /// The slot's description.
    pub description: String,
    /// The token in it, if any.
    pub token: Option<TokenFacts>,
}

/// A token and what it holds.
#[derive(Debug, Serialize)]
pub(super) struct TokenFacts {
    /// Its label.
    pub label: String,
    /// Its serial number.
    pub serial: String,
    /// Its manufacturer.
    pub manufacturer: String,
    /// Its model.
    pub model: String,
    /// Its flags, as words.
    pub flags: Vec<&'static str>,
    /// What the token says of the user PIN's tries (low, final try, locked), when it says so.
    pub pin_tries: Option<String>,
    /// The final try is near: suitekey sends no PIN without `--final-pin-try`.
    #[serde(skip)]
    pub final_try: bool,
    /// Whether it is initialized (nothing below is read from one that is not).
    pub initialized: bool,
    /// The NetSuite algorithms it can sign.
    pub can_sign: Vec<&'static str>,
    /// With `--mechanisms`: per algorithm, whether it can make the key and sign.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithms: Option<Vec<AlgFacts>>,
    /// The keys seen.
    pub keys: Vec<KeyFacts>,
    /// The certificates seen.
    pub certificates: Vec<CertFacts>,
    /// Private objects are hidden until a login (`--login`).
    pub private_objects_hidden: bool,
    /// Why the token could not be listed whole (the command then fails).
    pub error: Option<String>,
}

/// Whether a token can make a key for an algorithm and sign with it.
#[derive(Debug, Serialize)]
pub(super) struct AlgFacts {
    /// The algorithm.
    pub alg: &'static str,
    /// The key it would make and how, or why not.
    pub keygen: Capability,
    /// The mechanism it would sign with, or why not.
    pub sign: Capability,
}

/// Whether something can be done, with how or why not.
#[derive(Debug, Serialize)]
pub(super) struct Capability {
    /// It can.
    pub ok: bool,
    /// How, or why not.
    pub detail: String,
}

/// A key.
#[derive(Debug, Serialize)]
pub(super) struct KeyFacts {
    /// Its label.
    pub label: Option<String>,
    /// Its public half's label, when it differs from the private half's (PIV modules).
    pub public_label: Option<String>,
    /// Its `CKA_ID`, in hex.
    pub id: String,
    /// Its type and size, e.g. `EC P-256`.
    pub kind: String,
    /// The NetSuite algorithms this token can sign with it (none when refused).
    pub netsuite_algs: Vec<&'static str>,
    /// Why NetSuite or this module cannot use it, if so.
    pub netsuite_problem: Option<String>,
    /// Only its public half is visible (the private one is hidden until login).
    pub public_only: bool,
    /// `CKA_ALWAYS_AUTHENTICATE`: a PIN for every signature.
    pub always_authenticate: bool,
    /// Its key URI, ready to paste (with the module's path).
    pub uri: String,
}

/// A certificate object.
#[derive(Debug, Serialize)]
pub(super) struct CertFacts {
    /// Its label.
    pub label: Option<String>,
    /// Its `CKA_ID`, in hex.
    pub id: String,
    /// What it says, when the module shows its value and it parses.
    pub certificate: Option<CertInfo>,
    /// Why it could not be read, if so.
    pub problem: Option<String>,
}

/// A certificate's subject, validity and NetSuite certificate id.
#[derive(Debug, Serialize)]
pub(super) struct CertInfo {
    /// The subject (RFC 4514).
    pub subject: String,
    /// Valid from (RFC 3339).
    pub not_before: String,
    /// Valid until (RFC 3339).
    pub not_after: String,
    /// Whole days left (negative once expired).
    pub days_left: i64,
    /// The id NetSuite shows for it.
    pub certificate_id: String,
}

/// What `list` shows of `slot`, and the error that kept part of it from being read.
fn slot_facts(module: &Module, slot: &SlotSummary, args: &ListArgs) -> (SlotFacts, Option<Error>) {
    let mut facts = SlotFacts {
        slot_id: slot.slot_id,
        description: slot.description.clone(),
        token: slot.token.as_ref().map(token_summary),
    };
    let (Some(summary), Some(token_facts)) = (&slot.token, facts.token.as_mut()) else {
        return (facts, None);
    };
    if !summary.initialized {
        return (facts, None);
    }
    let error = module
        .token_in(slot)
        .map_err(Error::from)
        .and_then(|token| fill_token(&token, summary, args, token_facts))
        .err();
    if let Some(e) = &error {
        token_facts.error = Some(crate::report::chain(e));
    }
    (facts, error)
}

/// A token as its summary describes it, before anything is read from it.
fn token_summary(t: &TokenSummary) -> TokenFacts {
    TokenFacts {
        label: t.label.clone(),
        serial: t.serial.clone(),
        manufacturer: t.manufacturer.clone(),
        model: t.model.clone(),
        flags: t.flags.clone(),
        pin_tries: t.pin_tries.map(|tries| tries.to_string()),
        final_try: matches!(t.pin_tries, Some(PinTries::FinalTry)),
        initialized: t.initialized,
        can_sign: Vec::new(),
        algorithms: None,
        keys: Vec::new(),
        certificates: Vec::new(),
        private_objects_hidden: false,
        error: None,
    }
}

/// Reads what `token` can sign and holds into `facts`.
fn fill_token(
    token: &Token,
    summary: &TokenSummary,
    args: &ListArgs,
    facts: &mut TokenFacts,
) -> Result<(), Error> {
    let token_algs = pkcs11::token_algs(token)?;
    facts.can_sign = token_algs.iter().map(|a| a.name()).collect();
    if args.mechanisms {
        facts.algorithms = Some(support(token)?);
    }
    let (mut keys, mut certs) = pkcs11::inventory(token, &Pkcs11Uri::default(), args.login)?;
    keys.sort_by(|a, b| (&a.id, &a.label).cmp(&(&b.id, &b.label)));
    certs.sort_by(|a, b| (&a.id, &a.label).cmp(&(&b.id, &b.label)));
    facts.keys = keys.iter().map(|k| key(token, k, &token_algs)).collect();
    let now = std::time::SystemTime::now();
    facts.certificates = certs.iter().map(|c| certificate(c, now)).collect();
    facts.private_objects_hidden = summary.login_required && !args.login;
    Ok(())
}

fn key(token: &Token, k: &KeySummary, token_algs: &[Alg]) -> KeyFacts {
    let algs: Vec<&'static str> = netsuite::usable_algs(&k.kind)
        .into_iter()
        .filter(|a| token_algs.contains(a))
        .map(|a| a.name())
        .collect();
    let problem = match netsuite::default_alg(&k.kind) {
        Err(AlgError::Refused { rule, .. }) => Some(format!("refused: {rule}")),
        Err(e) => Some(format!("refused: {e}")),
        Ok(_) if algs.is_empty() => Some("this module cannot sign with it".to_owned()),
        Ok(_) => None,
    };
    KeyFacts {
        label: k.label.clone(),
        public_label: k.public_label.clone(),
        id: pkcs11::hex(&k.id),
        kind: k.kind.to_string(),
        netsuite_algs: if problem.is_some() { Vec::new() } else { algs },
        netsuite_problem: problem,
        public_only: !k.private_visible,
        always_authenticate: k.always_authenticate,
        uri: private_key_uri(token, k).to_string(),
    }
}

/// The URI of `k`'s private key: its own label and id. When only the public half is visible,
/// its id alone: the private half's label is unknown, and may differ (PIV modules).
fn private_key_uri(token: &Token, k: &KeySummary) -> Pkcs11Uri {
    let id = Some(k.id.clone()).filter(|id| !id.is_empty());
    let object = match (&id, k.private_visible) {
        (Some(_), false) => None,
        _ => k.label.clone(),
    };
    let (label, serial) = token.stable_name();
    Pkcs11Uri {
        token: label,
        serial,
        object,
        id,
        object_type: Some(ObjectType::Private),
        module_path: Some(token.module().path().to_owned()),
        ..Pkcs11Uri::default()
    }
}

fn support(token: &Token) -> Result<Vec<AlgFacts>, Error> {
    let capability = |r: &Result<String, String>| Capability {
        ok: r.is_ok(),
        detail: r.as_ref().unwrap_or_else(|e| e).clone(),
    };
    Ok(pkcs11::support(token)?
        .iter()
        .map(|row| AlgFacts {
            alg: row.alg.name(),
            keygen: capability(&row.keygen),
            sign: capability(&row.sign),
        })
        .collect())
}

fn certificate(c: &CertSummary, now: std::time::SystemTime) -> CertFacts {
    let parsed = c
        .value
        .as_deref()
        .map(|der| Certificate::from_bytes(der, "the certificate object"));
    let (certificate, problem) = match parsed {
        Some(Ok(cert)) => (
            Some(CertInfo {
                subject: cert.subject().to_string(),
                not_before: crate::cert::rfc3339(cert.not_before()),
                not_after: crate::cert::rfc3339(cert.not_after()),
                days_left: cert.days_left(now),
                certificate_id: cert.certificate_id().to_string(),
            }),
            None,
        ),
        Some(Err(e)) => (None, Some(format!("unreadable: {e}"))),
        None => (None, Some("the module does not show its value".to_owned())),
    };
    CertFacts {
        label: c.label.clone(),
        id: pkcs11::hex(&c.id),
        certificate,
        problem,
    }
}
