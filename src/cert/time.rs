//! Times as certificates and their checks show them.

use std::time::SystemTime;

use x509_cert::time::Time;

/// A time as RFC 3339 UTC, seconds precision.
pub fn rfc3339(t: SystemTime) -> String {
    match Time::try_from(t) {
        Ok(Time::UtcTime(u)) => u.to_date_time().to_string(),
        Ok(Time::GeneralTime(g)) => g.to_date_time().to_string(),
        Err(_) => "(out of range)".into(),
    }
}

/// `b - a` in seconds, negative when `b` is earlier.
pub(super) fn signed_secs(a: SystemTime, b: SystemTime) -> i64 {
    match b.duration_since(a) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}
