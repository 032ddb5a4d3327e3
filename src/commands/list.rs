//! `suitekey list`: what a module's tokens hold, with ready-to-paste key URIs. No secrets.

use std::io::Write;

use crate::cert::Certificate;
use crate::cli::ListArgs;
use crate::error::Error;
use crate::jose::{Alg, AlgError};
use crate::pkcs11::uri::ObjectType;
use crate::pkcs11::{self, CertSummary, KeySummary, Module, Pkcs11Uri, Token};
use crate::pkcs11::{PinTries, SlotSummary, TokenSummary, resolve_module};
use crate::report::printable;

pub(super) fn run(args: &ListArgs, out: &mut dyn Write) -> Result<(), Error> {
    let path = resolve_module(&Pkcs11Uri::default(), args.module.path.as_deref())?;
    let module = Module::load(&path)?;
    writeln!(
        out,
        "module {}: {}",
        module.shown_path(),
        printable(&module.description()?)
    )?;
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
    if slots.is_empty() {
        let which = args
            .token
            .as_ref()
            .map(|t| format!(" with token '{t}'"))
            .unwrap_or_default();
        writeln!(out, "no slot{which}")?;
    }
    // One broken token should not hide the others: list them all, then report the first error.
    let mut first_error = None;
    for slot in &slots {
        if let Err(e) = print_slot(&module, slot, args, out) {
            if let Error::Output(_) = e {
                return Err(e);
            }
            writeln!(out, "  (cannot list this token: see the error on stderr)")?;
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn print_slot(
    module: &Module,
    slot: &SlotSummary,
    args: &ListArgs,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let (id, description) = (slot.slot_id, printable(&slot.description));
    match &slot.token {
        None => writeln!(out, "\nslot {id} ({description}): no token")?,
        Some(t) if !t.initialized => {
            writeln!(out, "\nslot {id} ({description}): uninitialized token")?
        }
        Some(t) => print_token(&module.token_in(slot)?, slot, t, args, out)?,
    }
    Ok(())
}

fn print_token(
    token: &Token,
    slot: &SlotSummary,
    t: &TokenSummary,
    args: &ListArgs,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let login = args.login;
    writeln!(
        out,
        "\nslot {} ({}): token '{}'",
        slot.slot_id,
        printable(&slot.description),
        printable(&t.label)
    )?;
    writeln!(
        out,
        "  serial {}, {} {}",
        printable(&t.serial),
        printable(&t.manufacturer),
        printable(&t.model)
    )?;
    writeln!(out, "  flags: {}", t.flags.join(", "))?;
    if let Some(tries) = t.pin_tries {
        let note = match tries {
            PinTries::FinalTry => "; suitekey sends it no PIN without --final-pin-try",
            PinTries::Low | PinTries::Locked => "",
        };
        writeln!(out, "  user PIN: {tries}{note}")?;
    }
    let token_algs = pkcs11::token_algs(token)?;
    writeln!(out, "  can sign: {}", names(&token_algs))?;
    if args.mechanisms {
        print_support(token, out)?;
    }
    let (mut keys, mut certs) = pkcs11::inventory(token, &Pkcs11Uri::default(), login)?;
    keys.sort_by(|a, b| (&a.id, &a.label).cmp(&(&b.id, &b.label)));
    certs.sort_by(|a, b| (&a.id, &a.label).cmp(&(&b.id, &b.label)));
    writeln!(out, "  keys:{}", if keys.is_empty() { " none" } else { "" })?;
    for k in &keys {
        print_key(token, k, &token_algs, out)?;
    }
    print_certs(&certs, out)?;
    if t.login_required && !login {
        writeln!(
            out,
            "  (private objects are hidden until login: suitekey list --login --token '{}')",
            printable(&t.label)
        )?;
    }
    Ok(())
}

fn print_key(
    token: &Token,
    k: &KeySummary,
    token_algs: &[Alg],
    out: &mut dyn Write,
) -> Result<(), Error> {
    let algs: Vec<Alg> = Alg::usable_with(&k.kind)
        .into_iter()
        .filter(|a| token_algs.contains(a))
        .collect();
    let netsuite = match Alg::default_for(&k.kind) {
        Err(AlgError::Refused { rule, .. }) => format!("refused: {rule}"),
        Err(e) => format!("refused: {e}"),
        Ok(_) if algs.is_empty() => "this module cannot sign with it".to_owned(),
        Ok(_) => names(&algs),
    };
    let label = printable(k.label.as_deref().unwrap_or(""));
    writeln!(
        out,
        "    '{label}' id {}: {} → NetSuite {netsuite}",
        pkcs11::hex(&k.id),
        k.kind
    )?;
    let mut notes = Vec::new();
    let public_label = k
        .public_label
        .as_deref()
        .map(|l| format!("its public half is labelled '{}'", printable(l)));
    if !k.private_visible {
        notes.push("public half; the private key is hidden until login".to_owned());
    }
    notes.extend(public_label);
    if k.always_authenticate {
        notes.push("PIN needed for every signature".to_owned());
    }
    if !notes.is_empty() {
        writeln!(out, "      ({})", notes.join("; "))?;
    }
    writeln!(out, "      {}", private_key_uri(token, k))?;
    Ok(())
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

/// One line per algorithm: `ES256  keygen: yes  sign: yes  (how; how)`, reasons when not.
fn print_support(token: &Token, out: &mut dyn Write) -> Result<(), Error> {
    writeln!(out, "  algorithms (keygen, sign):")?;
    for row in pkcs11::support(token)? {
        let yes_no = |r: &Result<String, String>| if r.is_ok() { "yes" } else { "no " };
        let mut details: Vec<&str> = Vec::new();
        for text in [&row.keygen, &row.sign].map(|r| r.as_ref().unwrap_or_else(|e| e)) {
            if !details.contains(&text.as_str()) {
                details.push(text);
            }
        }
        writeln!(
            out,
            "    {}  keygen: {}  sign: {}  ({})",
            row.alg,
            yes_no(&row.keygen),
            yes_no(&row.sign),
            details.join("; ")
        )?;
    }
    Ok(())
}

fn print_certs(certs: &[CertSummary], out: &mut dyn Write) -> Result<(), Error> {
    if !certs.is_empty() {
        writeln!(out, "  certificates:")?;
    }
    let now = std::time::SystemTime::now();
    for c in certs {
        writeln!(
            out,
            "    '{}' id {}",
            printable(c.label.as_deref().unwrap_or("")),
            pkcs11::hex(&c.id)
        )?;
        let parsed = c
            .value
            .as_deref()
            .map(|der| Certificate::from_bytes(der, "the certificate object"));
        match parsed {
            Some(Ok(cert)) => writeln!(
                out,
                "      {}; {} to {} ({} days left)\n      certificate id {}",
                printable(&cert.subject().to_string()),
                crate::cert::rfc3339(cert.not_before()),
                crate::cert::rfc3339(cert.not_after()),
                cert.days_left(now),
                cert.certificate_id()
            )?,
            Some(Err(e)) => writeln!(out, "      (unreadable: {e})")?,
            None => writeln!(out, "      (the module does not show its value)")?,
        }
    }
    Ok(())
}

fn names(algs: &[Alg]) -> String {
    if algs.is_empty() {
        return "none".into();
    }
    algs.iter().map(|a| a.name()).collect::<Vec<_>>().join(" ")
}
