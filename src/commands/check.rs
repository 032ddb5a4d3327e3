//! `suitekey check`: NetSuite's certificate rules, key/certificate match, expiry warnings, and
//! the certificate id NetSuite will show (printed on stdout).

use std::io::Write;
use std::time::SystemTime;

use crate::cert::{self, Certificate, Report};
use crate::cli::{CheckArgs, OutputFormat};
use crate::error::Error;
use crate::jose::Signer as _;
use crate::pkcs11::Key;

pub(super) fn run(args: &CheckArgs, quiet: bool, out: &mut dyn Write) -> Result<(), Error> {
    let certificate = Certificate::load(&args.cert)?;
    let mut report = cert::check(&certificate, SystemTime::now());
    if let Some(expected) = &args.certificate_id {
        let actual = certificate.certificate_id();
        if *expected != actual {
            report.warnings.push(format!(
                "the configured certificate id '{expected}' is not this certificate's ('{actual}'); if NetSuite shows '{expected}', another certificate was uploaded for it"
            ));
        }
    }
    if let Some(key) = &args.key {
        match_key(&certificate, key, args, &mut report)?;
    }
    match args.format {
        OutputFormat::Text => {
            print_report(&report, quiet);
            writeln!(out, "{}", certificate.certificate_id())?;
        }
        OutputFormat::Json => super::write_json(out, &json(&certificate, &report))?,
    }
    if report.fit() {
        Ok(())
    } else {
        Err(Error::Unfit {
            count: report.problems.len(),
        })
    }
}

/// Adds a problem when the certificate does not carry the token key's public key.
fn match_key(
    certificate: &Certificate,
    key: &crate::cli::RawArg,
    args: &CheckArgs,
    report: &mut Report,
) -> Result<(), Error> {
    let uri = super::key_uri(key)?;
    let key = Key::open(&uri, args.module.path.as_deref())?;
    let shown = key.uri().to_owned();
    let signer = match super::signer_for(key, None) {
        Ok(signer) => signer,
        Err(Error::KeyRefused { key, source }) => {
            report
                .problems
                .push(format!("the key {key} cannot be used: {source}"));
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let token_key = signer.public_key()?;
    match certificate.public_key() {
        Ok(cert_key) if cert_key == token_key => report
            .facts
            .push(("key match", format!("the certificate holds the public key of {shown}"))),
        _ => report.problems.push(format!(
            "the certificate does not hold the public key of {shown}; assertions signed with that key would fail with invalid_grant"
        )),
    }
    Ok(())
}

/// `check --format json`: the certificate id, whether it is fit, the facts (by name, in
/// snake case: `subject`, `key`, `valid`, `self_signature`, `certificate_id`, `key_match`), the
/// warnings and the problems: what the text shows, in one document.
fn json(certificate: &Certificate, report: &Report) -> serde_json::Value {
    let facts: serde_json::Map<String, serde_json::Value> = report
        .facts
        .iter()
        .map(|(name, value)| (name.replace([' ', '-'], "_"), value.clone().into()))
        .collect();
    serde_json::json!({
        "certificate_id": certificate.certificate_id().to_string(),
        "fit": report.fit(),
        "facts": facts,
        "warnings": report.warnings,
        "problems": report.problems,
    })
}

fn print_report(report: &Report, quiet: bool) {
    let mut err = std::io::stderr().lock();
    if !quiet {
        for (name, value) in &report.facts {
            let _ = writeln!(err, "{name:>16}: {value}");
        }
    }
    for warning in &report.warnings {
        let _ = writeln!(err, "warning: {warning}");
    }
    for problem in &report.problems {
        let _ = writeln!(err, "problem: {problem}");
    }
    if !quiet && report.fit() {
        let _ = writeln!(err, "fit to upload to NetSuite");
    }
}
