//! The certificate stored on the token with a signing key, as a profile uses it: whether it is
//! the configured one, holds the key's public key, and is valid now (for `token`'s warnings and
//! the agent's status).

use std::time::SystemTime;

use super::certificate::Certificate;
use super::check::EXPIRY_NOTICE_DAYS;
use super::time::{rfc3339, signed_secs};
use crate::jose::PublicKey;
use crate::netsuite::CertificateId;

/// How much a [`Finding`] matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth acting on; tokens may still be had.
    Warning,
    /// NetSuite will refuse the profile's assertions.
    Failed,
}

/// What is wrong with the certificate stored with a key, as a profile uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// How much it matters.
    pub severity: Severity,
    /// What is wrong and what to do.
    pub message: String,
}

/// The certificates stored on the token with a signing key (same `CKA_ID`), which is where
/// `keygen` and `cert` put the one to upload, and the key's public key when it could be read.
#[derive(Clone, Debug, Default)]
pub struct StoredWithKey {
    certificates: Vec<Certificate>,
    key: Option<PublicKey>,
}

impl StoredWithKey {
    /// From the certificate objects' values as read from the token (those that are not X.509
    /// are left out; a token that cannot list them has none to check: that is only logged,
    /// since the check must never stop a signature) and the key's public key.
    pub fn read<E: std::fmt::Display>(
        values: Result<Vec<Vec<u8>>, E>,
        key: Option<PublicKey>,
    ) -> StoredWithKey {
        let values = values.unwrap_or_else(|e| {
            tracing::debug!("cannot read the certificates stored with the key: {e}");
            Vec::new()
        });
        let certificates = values
            .iter()
            .filter_map(|der| Certificate::from_bytes(der, "a certificate on the token").ok())
            .collect();
        StoredWithKey { certificates, key }
    }

    /// The stored certificate a profile with certificate id `configured` is judged by: the one
    /// with that id, else the one that expires last.
    fn relevant(&self, configured: &CertificateId) -> Option<&Certificate> {
        self.certificates
            .iter()
            .find(|c| c.certificate_id() == *configured)
            .or_else(|| self.certificates.iter().max_by_key(|c| c.not_after()))
    }

    /// What is wrong, at `now`, with the stored certificate for a profile whose certificate
    /// id is `configured`: another id (a warning: NetSuite may hold another certificate of the
    /// same key), or another key's public key, expired, not yet valid (failures when it is the
    /// configured certificate, else warnings), or within NetSuite's last expiry notice. Nothing
    /// when the token stores no certificate with the key.
    pub fn check(&self, configured: &CertificateId, now: SystemTime) -> Vec<Finding> {
        let Some(cert) = self.relevant(configured) else {
            return Vec::new();
        };
        let id = cert.certificate_id();
        let mut findings = Vec::new();
        let severity = if id == *configured {
            Severity::Failed
        } else {
            findings.push(Finding {
                severity: Severity::Warning,
                message: format!(
                    "the certificate stored with the key has id '{id}', which is not the configured certificate-id '{configured}': if NetSuite shows '{configured}', another certificate was uploaded for this key and its expiry is not checked here; if it shows '{id}', set certificate-id to it"
                ),
            });
            Severity::Warning
        };
        let key = self.key.as_ref();
        if key.is_some_and(|key| cert.public_key().as_ref() != Ok(key)) {
            findings.push(Finding {
                severity,
                message: format!(
                    "the certificate stored with the key (id '{id}') holds another public key, so NetSuite would refuse assertions signed with the key (invalid_grant); make one for this key with 'suitekey cert --replace --key URI --out FILE' and upload it"
                ),
            });
        }
        findings.extend(validity_finding(cert, severity, now));
        findings
    }
}

/// What is wrong with the dates of `cert` at `now`, if anything: expired or not yet valid
/// (with `severity`), or within NetSuite's last expiry notice (a warning).
fn validity_finding(cert: &Certificate, severity: Severity, now: SystemTime) -> Option<Finding> {
    let id = cert.certificate_id();
    let (from, to) = (cert.not_before(), cert.not_after());
    let notice = EXPIRY_NOTICE_DAYS.iter().min().copied().unwrap_or(14);
    let left = cert.days_left(now);
    let (severity, message) = if to <= now {
        let ago = signed_secs(to, now).div_euclid(86_400);
        (
            severity,
            format!(
                "the certificate stored with the key (id '{id}') expired on {}, {ago} days ago; NetSuite refuses assertions for an expired certificate (invalid_grant): make a new one with 'suitekey cert --replace --key URI --out FILE', upload it and set certificate-id to the id it prints",
                rfc3339(to)
            ),
        )
    } else if from > now {
        (
            severity,
            format!(
                "the certificate stored with the key (id '{id}') is not valid until {}; check this machine's clock",
                rfc3339(from)
            ),
        )
    } else if left < i64::from(notice) {
        (
            Severity::Warning,
            format!(
                "the certificate stored with the key (id '{id}') expires in {left} days (on {}), within NetSuite's {notice}-day notice: make a new one with 'suitekey cert --replace --key URI --out FILE' and upload it before then",
                rfc3339(to)
            ),
        )
    } else {
        return None;
    };
    Some(Finding { severity, message })
}
