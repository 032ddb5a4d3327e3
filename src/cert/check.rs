//! Checking a certificate against NetSuite's rules (`suitekey check`): a usable key, a
//! validity of at most two years that has begun and not ended, a valid self-signature, and
//! NetSuite's expiry notices.

use std::time::SystemTime;

use super::certificate::Certificate;
use super::signature::CertSignature;
use super::time::{rfc3339, signed_secs};
use crate::netsuite::ValidityDays;

/// NetSuite mails administrators this many days before a certificate expires.
pub const EXPIRY_NOTICE_DAYS: [u32; 3] = [60, 30, 14];

/// What `check` found: facts to show, problems that make the certificate unfit to upload, and
/// warnings that do not.
#[derive(Debug, Default)]
pub struct Report {
    /// `(name, value)` lines describing the certificate.
    pub facts: Vec<(&'static str, String)>,
    /// Reasons NetSuite would refuse the certificate, or it would not work.
    pub problems: Vec<String>,
    /// Things to act on soon, or to double-check.
    pub warnings: Vec<String>,
}

impl Report {
    /// The certificate is fit to upload.
    pub fn fit(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks a certificate against NetSuite's rules as of `now`.
pub fn check(cert: &Certificate, now: SystemTime) -> Report {
    let mut report = Report::default();
    let kind = cert.key_kind();
    report.facts.push(("subject", cert.subject()));
    match crate::netsuite::default_alg(&kind) {
        Ok(_) => {
            let algs: Vec<&str> = crate::netsuite::usable_algs(&kind)
                .iter()
                .map(|a| a.name())
                .collect();
            report
                .facts
                .push(("key", format!("{kind} (assertions: {})", algs.join(", "))));
        }
        Err(e) => {
            report.facts.push(("key", kind.to_string()));
            report.problems.push(e.to_string());
        }
    }
    check_validity(cert, now, &mut report);
    check_self_signature(cert, &mut report);
    report
        .facts
        .push(("certificate-id", cert.certificate_id().to_string()));
    report
}

fn check_validity(cert: &Certificate, now: SystemTime, report: &mut Report) {
    let (from, to) = (cert.not_before(), cert.not_after());
    let span_days = signed_secs(from, to) as f64 / 86_400.0;
    let left = cert.days_left(now);
    report.facts.push((
        "valid",
        format!(
            "{} to {} ({span_days:.0} days, {left} left)",
            rfc3339(from),
            rfc3339(to)
        ),
    ));
    if signed_secs(from, to) > i64::from(ValidityDays::MAX + 1) * 86_400 {
        report.problems.push(format!(
            "it is valid for {span_days:.0} days; NetSuite allows at most two years ({} days) and silently cuts longer certificates; make one with --days {} or less",
            ValidityDays::MAX,
            ValidityDays::MAX
        ));
    }
    if to <= now {
        report.problems.push(format!(
            "it expired on {}; make a new certificate ('suitekey cert --key URI --out FILE') and upload it",
            rfc3339(to)
        ));
    } else if let Some(notice) = EXPIRY_NOTICE_DAYS
        .iter()
        .rev()
        .find(|d| left < i64::from(**d))
    {
        report.warnings.push(format!(
            "it expires in {left} days (on {}), within NetSuite's {notice}-day notice; make a new certificate with 'suitekey cert' and upload it before then",
            rfc3339(to)
        ));
    }
    if from > now {
        report.problems.push(format!(
            "it is not valid until {}; check this machine's clock, or wait",
            rfc3339(from)
        ));
    }
}

fn check_self_signature(cert: &Certificate, report: &mut Report) {
    let x509 = cert.x509();
    let tbs = x509.tbs_certificate();
    if tbs.issuer() != tbs.subject() {
        report.warnings.push(format!(
            "it is issued by '{}', not self-signed; its signature was not checked (NetSuite only uses the public key)",
            tbs.issuer()
        ));
        return;
    }
    let outcome = match (
        cert.public_key(),
        CertSignature::of(x509.signature_algorithm()),
    ) {
        (Err(_), _) => return, // the key problem is already reported
        (_, Err(unsupported)) => Err(format!("its {unsupported} cannot be checked by suitekey")),
        (Ok(key), Ok(form)) => match (cert.tbs_bytes(), x509.signature().as_bytes()) {
            (Ok(tbs_der), Some(sig)) => key
                .verify(form, tbs_der, sig)
                .map_err(|e| format!("its self-signature is invalid: {e}")),
            _ => Err("its signature cannot be read".into()),
        },
    };
    match outcome {
        Ok(()) => report.facts.push(("self-signature", "valid".into())),
        Err(problem) => report.problems.push(problem),
    }
}
