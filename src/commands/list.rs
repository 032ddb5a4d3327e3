//! `suitekey list`: what a module's tokens hold, with ready-to-paste key URIs. No secrets.

use std::io::Write;
use std::path::Path;

use crate::cli::ListArgs;
use crate::error::Error;
use crate::jose::{Alg, AlgError};
use crate::pkcs11::key::{self, KeySummary};
use crate::pkcs11::token::{self, SlotSummary};
use crate::pkcs11::uri::ObjectType;
use crate::pkcs11::{Module, Pkcs11Uri};

pub(super) fn run(args: &ListArgs, out: &mut dyn Write) -> Result<(), Error> {
    let path = token::resolve_module(&Pkcs11Uri::default(), args.module.as_deref())?;
    let module = Module::load(&path)?;
    writeln!(out, "module {}: {}", path.display(), module.description()?)?;
    let slots: Vec<SlotSummary> = module
        .slots()?
        .into_iter()
        .filter(|s| {
            args.token.is_none() || s.token.as_ref().map(|t| &t.label) == args.token.as_ref()
        })
        .collect();
    let with_token = slots.iter().filter(|s| s.token.is_some()).count();
    if args.login && with_token != 1 {
        return Err(Error::Usage(format!(
            "--login needs exactly one token, but {with_token} match; add --token LABEL (one PIN is never tried on several tokens)"
        )));
    }
    if slots.is_empty() {
        writeln!(
            out,
            "no slot{}",
            args.token
                .as_ref()
                .map(|t| format!(" with token '{t}'"))
                .unwrap_or_default()
        )?;
    }
    for slot in &slots {
        print_slot(&module, slot, args.login, out)?;
    }
    Ok(())
}

fn print_slot(
    module: &Module,
    slot: &SlotSummary,
    login: bool,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let Some(t) = &slot.token else {
        writeln!(
            out,
            "\nslot {} ({}): no token",
            slot.slot_id, slot.description
        )?;
        return Ok(());
    };
    if !t.initialized {
        writeln!(
            out,
            "\nslot {} ({}): uninitialized token",
            slot.slot_id, slot.description
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "\nslot {} ({}): token '{}'",
        slot.slot_id, slot.description, t.label
    )?;
    writeln!(out, "  serial {}, {} {}", t.serial, t.manufacturer, t.model)?;
    writeln!(out, "  flags: {}", t.flags.join(", "))?;
    let selector = Pkcs11Uri {
        token: Some(t.label.clone()),
        serial: Some(t.serial.clone()),
        ..Pkcs11Uri::default()
    };
    let token = module.select(&selector)?;
    let token_algs = key::token_algs(&token)?;
    writeln!(out, "  can sign: {}", names(&token_algs))?;
    let (mut keys, mut certs) = key::inventory(&token, &selector, login)?;
    keys.sort_by(|a, b| (&a.id, &a.label).cmp(&(&b.id, &b.label)));
    certs.sort_by(|a, b| (&a.id, &a.label).cmp(&(&b.id, &b.label)));
    writeln!(out, "  keys:{}", if keys.is_empty() { " none" } else { "" })?;
    for k in &keys {
        print_key(module.path(), &t.label, k, &token_algs, out)?;
    }
    if !certs.is_empty() {
        writeln!(out, "  certificates:")?;
        for c in &certs {
            writeln!(
                out,
                "    '{}' id {}",
                c.label.as_deref().unwrap_or(""),
                key::hex(&c.id)
            )?;
        }
    }
    if t.login_required && !login {
        writeln!(
            out,
            "  (private objects are hidden until login: suitekey list --login --token '{}')",
            t.label
        )?;
    }
    Ok(())
}

fn print_key(
    module: &Path,
    token: &str,
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
    let mut notes = Vec::new();
    if !k.private_visible {
        notes.push("public half; the private key is hidden until login");
    }
    if k.always_authenticate {
        notes.push("PIN needed for every signature");
    }
    let label = k.label.as_deref().unwrap_or("");
    writeln!(
        out,
        "    '{label}' id {}: {} → NetSuite {netsuite}",
        key::hex(&k.id),
        k.kind
    )?;
    if !notes.is_empty() {
        writeln!(out, "      ({})", notes.join("; "))?;
    }
    let uri = Pkcs11Uri {
        token: Some(token.to_owned()),
        object: k.label.clone(),
        id: Some(k.id.clone()).filter(|id| !id.is_empty()),
        object_type: Some(ObjectType::Private),
        module_path: Some(module.to_owned()),
        ..Pkcs11Uri::default()
    };
    writeln!(out, "      {uri}")?;
    Ok(())
}

fn names(algs: &[Alg]) -> String {
    if algs.is_empty() {
        return "none".into();
    }
    algs.iter().map(|a| a.name()).collect::<Vec<_>>().join(" ")
}
