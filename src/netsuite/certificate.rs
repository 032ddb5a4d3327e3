//! What NetSuite requires of an uploaded certificate beyond its key: the id it shows for it,
//! and how long it may be valid.

use std::str::FromStr;

use super::Error;
use crate::jose;

identifier!(
    /// The id NetSuite shows for an uploaded certificate, the assertion's `kid`.
    CertificateId,
    CertificateId,
    |b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
);

impl CertificateId {
    /// The id NetSuite shows for a certificate: base64url (no padding) of SHA-256 over its DER
    /// bytes, the JOSE `x5t#S256` thumbprint (observed; see netsuite-m2m.md).
    pub fn of_certificate(der: &[u8]) -> CertificateId {
        CertificateId(jose::b64url(&jose::Hash::Sha256.digest(der)))
    }
}

/// How long a new certificate is valid, in days: 1 to 730 (NetSuite's two years), 730 by
/// default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidityDays(u32);

impl ValidityDays {
    /// NetSuite accepts certificates valid for at most two years.
    pub const MAX: u32 = 730;

    /// The validity as a duration.
    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.0) * 86_400)
    }

    /// The number of days.
    pub fn days(self) -> u32 {
        self.0
    }
}

impl Default for ValidityDays {
    fn default() -> Self {
        ValidityDays(Self::MAX)
    }
}

impl FromStr for ValidityDays {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let digits = !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit());
        match s.parse::<u32>() {
            Ok(n) if digits && (1..=Self::MAX).contains(&n) => Ok(ValidityDays(n)),
            _ => Err(Error::ValidityDays(s.to_owned())),
        }
    }
}
