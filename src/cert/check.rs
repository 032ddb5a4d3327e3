//! Checking a certificate against NetSuite's rules (`suitekey check`): a usable key, a
//! validity of at most two years that has begun and not ended, a valid self-signature, and
//! NetSuite's expiry notices. [`violations`] are the rules an upload must meet, which the
//! emulator's certificate API enforces too.

use std::fmt;
use std::time::SystemTime;

use super::certificate::Certificate;
use super::signature::CertSignature;
use super::time::{rfc3339, signed_secs};
use crate::netsuite::{AlgError, ValidityDays};

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

/// A NetSuite rule a certificate breaks: NetSuite refuses its upload, or it would not work.
#[derive(Debug, PartialEq, Eq)]
pub enum Violation {
    /// Its key is of a type or size NetSuite refuses.
    Key(AlgError),
    /// It is valid for longer than NetSuite's two years ([`ValidityDays::MAX`] days).
    TooLong {
        /// From `notBefore` to `notAfter`, in seconds.
        span_secs: i64,
    },
    /// Its `notAfter` has passed.
    Expired {
        /// Its `notAfter`.
        on: SystemTime,
    },
    /// Its `notBefore` is still ahead.
    NotYetValid {
        /// Its `notBefore`.
        from: SystemTime,
    },
}

impl fmt::Display for Violation {
    /// The problem as `suitekey check` tells it, with what to do.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Key(e) => write!(f, "{e}"),
            Violation::TooLong { span_secs } => write!(
                f,
                "it is valid for {:.0} days; NetSuite allows at most two years ({max} days) and silently cuts longer certificates; make one with --days {max} or less",
                *span_secs as f64 / 86_400.0,
                max = ValidityDays::MAX
            ),
            Violation::Expired { on } => write!(
                f,
                "it expired on {}; make a new certificate ('suitekey cert --key URI --out FILE') and upload it",
                rfc3339(*on)
            ),
            Violation::NotYetValid { from } => write!(
                f,
                "it is not valid until {}; check this machine's clock, or wait",
                rfc3339(*from)
            ),
        }
    }
}

/// The NetSuite rules `cert` breaks as of `now`, in the order `check` reports them: its key,
/// then its validity (longer than two years — a day's grace for the minute certificates are
/// backdated —, expired, not valid yet). Its signature is not a NetSuite rule: NetSuite only
/// uses the public key.
pub fn violations(cert: &Certificate, now: SystemTime) -> Vec<Violation> {
    let mut found = Vec::new();
    if let Err(e) = crate::netsuite::default_alg(&cert.key_kind()) {
        found.push(Violation::Key(e));
    }
    let (from, to) = (cert.not_before(), cert.not_after());
    let span_secs = signed_secs(from, to);
    if span_secs > i64::from(ValidityDays::MAX + 1) * 86_400 {
        found.push(Violation::TooLong { span_secs });
    }
    if to <= now {
        found.push(Violation::Expired { on: to });
    }
    if from > now {
        found.push(Violation::NotYetValid { from });
    }
    found
}

/// Checks a certificate against NetSuite's rules as of `now`.
pub fn check(cert: &Certificate, now: SystemTime) -> Report {
    let mut report = Report::default();
    let kind = cert.key_kind();
    report.facts.push(("subject", cert.subject()));
    let key = match crate::netsuite::default_alg(&kind) {
        Ok(_) => {
            let algs: Vec<&str> = crate::netsuite::usable_algs(&kind)
                .iter()
                .map(|a| a.name())
                .collect();
            format!("{kind} (assertions: {})", algs.join(", "))
        }
        Err(_) => kind.to_string(),
    };
    report.facts.push(("key", key));
    report.facts.push(("valid", validity(cert, now)));
    report
        .problems
        .extend(violations(cert, now).iter().map(Violation::to_string));
    if let Some(warning) = expiry_notice(cert, now) {
        report.warnings.push(warning);
    }
    check_self_signature(cert, &mut report);
    report
        .facts
        .push(("certificate-id", cert.certificate_id().to_string()));
    report
}

/// The validity period as `check` shows it: its ends, its length and the days left.
fn validity(cert: &Certificate, now: SystemTime) -> String {
    let (from, to) = (cert.not_before(), cert.not_after());
    let span_days = signed_secs(from, to) as f64 / 86_400.0;
    format!(
        "{} to {} ({span_days:.0} days, {} left)",
        rfc3339(from),
        rfc3339(to),
        cert.days_left(now)
    )
}

/// A warning when a valid certificate is within one of NetSuite's expiry notices.
fn expiry_notice(cert: &Certificate, now: SystemTime) -> Option<String> {
    let to = cert.not_after();
    let left = cert.days_left(now);
    let notice = EXPIRY_NOTICE_DAYS
        .iter()
        .rev()
        .find(|d| left < i64::from(**d))?;
    (to > now).then(|| {
        format!(
            "it expires in {left} days (on {}), within NetSuite's {notice}-day notice; make a new certificate with 'suitekey cert' and upload it before then",
            rfc3339(to)
        )
    })
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cert::testing::p256_certificate;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn a_certificate_breaks_the_validity_rules_only_outside_its_period() {
        let made = at(1_800_000_000);
        let cert = p256_certificate(1, "rules", made, 30);
        assert_eq!(violations(&cert, made), vec![]);
        assert_eq!(
            violations(&cert, made + Duration::from_secs(31 * 86_400)),
            vec![Violation::Expired {
                on: cert.not_after()
            }]
        );
        assert_eq!(
            violations(&cert, made - Duration::from_secs(3600)),
            vec![Violation::NotYetValid {
                from: cert.not_before()
            }]
        );
        let longest = p256_certificate(1, "rules", made, ValidityDays::MAX);
        assert_eq!(violations(&longest, made), vec![]);
    }

    #[test]
    fn violations_are_told_as_check_reports_them() {
        let made = at(1_800_000_000);
        let cert = p256_certificate(1, "rules", made, 30);
        let later = made + Duration::from_secs(31 * 86_400);
        let report = check(&cert, later);
        assert_eq!(
            report.problems,
            vec![
                Violation::Expired {
                    on: cert.not_after()
                }
                .to_string()
            ]
        );
        assert!(
            report.problems[0].starts_with("it expired on 2027-"),
            "{:?}",
            report.problems
        );
        let too_long = Violation::TooLong {
            span_secs: 3 * 365 * 86_400,
        };
        assert!(too_long.to_string().starts_with(
            "it is valid for 1095 days; NetSuite allows at most two years (730 days)"
        ));
    }
}
