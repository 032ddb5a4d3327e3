//! `list`'s text: what a person reads, every device-supplied string made printable.

use std::io::{self, Write};

use super::{AlgFacts, CertFacts, KeyFacts, Listing, SlotFacts, TokenFacts};
use crate::report::printable;

/// Writes `listing` as `list` always has.
pub(super) fn write(listing: &Listing, out: &mut dyn Write) -> io::Result<()> {
    let default = if listing.module.default {
        " (p11-kit's proxy, the default: it serves the modules registered with p11-kit; choose one with --module PATH or SUITEKEY_MODULE)"
    } else {
        ""
    };
    writeln!(
        out,
        "module {}{default}: {}",
        listing.module.path,
        printable(&listing.module.description)
    )?;
    if listing.slots.is_empty() {
        let which = listing
            .token_filter
            .as_ref()
            .map(|t| format!(" with token '{t}'"))
            .unwrap_or_default();
        writeln!(out, "no slot{which}")?;
    }
    for slot in &listing.slots {
        write_slot(slot, out)?;
    }
    Ok(())
}

fn write_slot(slot: &SlotFacts, out: &mut dyn Write) -> io::Result<()> {
    let (id, description) = (slot.slot_id, printable(&slot.description));
    match &slot.token {
        None => writeln!(out, "\nslot {id} ({description}): no token"),
        Some(t) if !t.initialized => {
            writeln!(out, "\nslot {id} ({description}): uninitialized token")
        }
        Some(t) => {
            let label = printable(&t.label);
            writeln!(out, "\nslot {id} ({description}): token '{label}'")?;
            write_token(t, out)
        }
    }
}

fn write_token(t: &TokenFacts, out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "  serial {}, {} {}",
        printable(&t.serial),
        printable(&t.manufacturer),
        printable(&t.model)
    )?;
    writeln!(out, "  flags: {}", t.flags.join(", "))?;
    if let Some(tries) = &t.pin_tries {
        let note = if t.final_try {
            "; suitekey sends it no PIN without --final-pin-try"
        } else {
            ""
        };
        writeln!(out, "  user PIN: {tries}{note}")?;
    }
    if t.error.is_some() {
        return writeln!(out, "  (cannot list this token: see the error on stderr)");
    }
    writeln!(out, "  can sign: {}", names(&t.can_sign))?;
    if let Some(rows) = &t.algorithms {
        write_support(rows, out)?;
    }
    writeln!(
        out,
        "  keys:{}",
        if t.keys.is_empty() { " none" } else { "" }
    )?;
    for k in &t.keys {
        write_key(k, out)?;
    }
    write_certs(&t.certificates, out)?;
    if t.private_objects_hidden {
        writeln!(
            out,
            "  (private objects are hidden until login: suitekey list --login --token '{}')",
            printable(&t.label)
        )?;
    }
    Ok(())
}

fn write_key(k: &KeyFacts, out: &mut dyn Write) -> io::Result<()> {
    let netsuite = k
        .netsuite_problem
        .clone()
        .unwrap_or_else(|| names(&k.netsuite_algs));
    let label = printable(k.label.as_deref().unwrap_or(""));
    writeln!(
        out,
        "    '{label}' id {}: {} → NetSuite {netsuite}",
        k.id, k.kind
    )?;
    let mut notes = Vec::new();
    if k.public_only {
        notes.push("public half; the private key is hidden until login".to_owned());
    }
    notes.extend(
        k.public_label
            .as_deref()
            .map(|l| format!("its public half is labelled '{}'", printable(l))),
    );
    if k.always_authenticate {
        notes.push("PIN needed for every signature".to_owned());
    }
    if !notes.is_empty() {
        writeln!(out, "      ({})", notes.join("; "))?;
    }
    writeln!(out, "      {}", k.uri)
}

/// One line per algorithm: `ES256  keygen: yes  sign: yes  (how; how)`, reasons when not.
fn write_support(rows: &[AlgFacts], out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "  algorithms (keygen, sign):")?;
    for row in rows {
        let yes_no = |ok: bool| if ok { "yes" } else { "no " };
        let mut details: Vec<&str> = vec![&row.keygen.detail];
        if row.sign.detail != row.keygen.detail {
            details.push(&row.sign.detail);
        }
        writeln!(
            out,
            "    {}  keygen: {}  sign: {}  ({})",
            row.alg,
            yes_no(row.keygen.ok),
            yes_no(row.sign.ok),
            details.join("; ")
        )?;
    }
    Ok(())
}

fn write_certs(certs: &[CertFacts], out: &mut dyn Write) -> io::Result<()> {
    if !certs.is_empty() {
        writeln!(out, "  certificates:")?;
    }
    for c in certs {
        writeln!(
            out,
            "    '{}' id {}",
            printable(c.label.as_deref().unwrap_or("")),
            c.id
        )?;
        match (&c.certificate, &c.problem) {
            (Some(cert), _) => writeln!(
                out,
                "      {}; {} to {} ({} days left)\n      certificate id {}",
                printable(&cert.subject),
                cert.not_before,
                cert.not_after,
                cert.days_left,
                cert.certificate_id
            )?,
            (None, Some(problem)) => writeln!(out, "      ({problem})")?,
            (None, None) => {}
        }
    }
    Ok(())
}

fn names(algs: &[&str]) -> String {
    if algs.is_empty() {
        return "none".into();
    }
    algs.join(" ")
}
