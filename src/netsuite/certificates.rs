//! NetSuite's certificate management API as data: the role and entity ids a certificate is
//! mapped to, the integration's list of certificates, an upload's body and answer, and the
//! API's error bodies; the paths it is served at.
//!
//! The answers' shapes are not documented precisely (netsuite-m2m.md, "Certificate management
//! API"), so they are read leniently: only `certificate_id` is relied on; `revoked` (or
//! `invalidated`), `valid_until`, `role.id` and `entity.id` are read when present, in the forms
//! seen (booleans or `T`/`F`, numbers or numeric strings, RFC 3339 or plain dates); the list may
//! be a bare JSON array or an object holding one; unknown fields are ignored. Nothing the server
//! sent is shown unless it is short and printable.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use super::Error;
use super::assertion::ClientId;
use super::certificate::CertificateId;

/// Where the API's paths begin, on the account's restlets host.
pub const CERTIFICATES_PATH: &str = "/services/rest/auth/oauth2/v1/clients";

/// `GET` (the list) and `POST` (an upload) for the integration `client`.
pub fn certificates_path(client: &ClientId) -> String {
    format!("{CERTIFICATES_PATH}/{client}/certificates")
}

/// `POST` revokes the certificate `id` of the integration `client`.
pub fn revoke_path(client: &ClientId, id: &CertificateId) -> String {
    format!("{}/{id}/revoke", certificates_path(client))
}

/// A NetSuite internal id, as a certificate's role and entity are named: a whole number, which
/// NetSuite writes as a JSON number or a numeric string (built-in records have negative ids,
/// e.g. `-5`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct InternalId(i64);

impl FromStr for InternalId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let t = s.trim();
        let digits = t.strip_prefix('-').unwrap_or(t);
        let ok = (1..=18).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
        match t.parse::<i64>() {
            Ok(n) if ok => Ok(InternalId(n)),
            _ => Err(Error::InternalId {
                value: shown(s).unwrap_or_else(|| "(not shown)".into()),
            }),
        }
    }
}

impl fmt::Display for InternalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl InternalId {
    /// From a JSON number or numeric string; `None` for anything else.
    fn from_json(value: &Value) -> Option<InternalId> {
        match value {
            Value::Number(n) => n.as_i64().map(InternalId),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }

    /// From a field holding the id itself or an object with an `id` (`"role": {"id": "3"}`).
    fn from_field(value: Option<&Value>) -> Option<InternalId> {
        match value? {
            Value::Object(o) => o.get("id").and_then(InternalId::from_json),
            other => InternalId::from_json(other),
        }
    }
}

/// One certificate of the integration's list, as far as it could be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedCertificate {
    /// `certificate_id`: the id NetSuite shows and the assertion's `kid`.
    pub id: CertificateId,
    /// `revoked` or `invalidated`; `false` when neither is given.
    pub revoked: bool,
    /// `valid_until`, when given in a form that could be read.
    pub valid_until: Option<SystemTime>,
    /// `role.id`: the role the certificate is mapped to.
    pub role: Option<InternalId>,
    /// `entity.id`: the entity (user or employee) the certificate is mapped to.
    pub entity: Option<InternalId>,
    /// `algorithm` (`EC`, `RSA`), when short and printable, for messages.
    pub algorithm: Option<String>,
}

impl ListedCertificate {
    /// Whether NetSuite counts it among the integration's active certificates (at most five):
    /// not revoked and not expired at `now`. One whose expiry could not be read counts.
    pub fn is_active(&self, now: SystemTime) -> bool {
        !self.revoked && self.valid_until.is_none_or(|until| until > now)
    }

    /// Reads one list item; `None` when it has no usable `certificate_id`.
    fn from_json(item: &Value) -> Option<ListedCertificate> {
        let object = item.as_object()?;
        let id = object.get("certificate_id")?.as_str()?.parse().ok()?;
        let flag = |name: &str| object.get(name).and_then(boolean);
        Some(ListedCertificate {
            id,
            revoked: flag("revoked").unwrap_or(false) || flag("invalidated").unwrap_or(false),
            valid_until: object.get("valid_until").and_then(timestamp),
            role: InternalId::from_field(object.get("role")),
            entity: InternalId::from_field(object.get("entity")),
            algorithm: object
                .get("algorithm")
                .and_then(Value::as_str)
                .and_then(shown),
        })
    }
}

impl fmt::Display for ListedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.id)?;
        let mut notes = Vec::new();
        notes.extend(self.algorithm.clone());
        if let Some(until) = self.valid_until {
            notes.push(format!("valid until {}", day(until)));
        }
        if let Some(role) = self.role {
            notes.push(format!("role {role}"));
        }
        if let Some(entity) = self.entity {
            notes.push(format!("entity {entity}"));
        }
        if self.revoked {
            notes.push("revoked".into());
        }
        if !notes.is_empty() {
            write!(f, " ({})", notes.join(", "))?;
        }
        Ok(())
    }
}

/// The integration's certificates from the list call's body: a JSON array of items, or an
/// object holding one (under `items`, `certificates`, `data` or `results`, else its first
/// array). Items without a usable `certificate_id` are left out.
pub fn parse_list(body: &[u8]) -> Result<Vec<ListedCertificate>, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| not_json(&e))?;
    let items = match &value {
        Value::Array(items) => items,
        Value::Object(object) => ["items", "certificates", "data", "results"]
            .iter()
            .find_map(|k| object.get(*k).and_then(Value::as_array))
            .or_else(|| object.values().find_map(Value::as_array))
            .ok_or("the body is a JSON object without a list of certificates in it")?,
        _ => return Err("the body is neither a JSON list nor an object holding one".into()),
    };
    let listed: Vec<ListedCertificate> = items
        .iter()
        .filter_map(ListedCertificate::from_json)
        .collect();
    if listed.len() < items.len() {
        tracing::debug!(
            skipped = items.len() - listed.len(),
            "certificate list items without a usable certificate_id were left out"
        );
    }
    Ok(listed)
}

/// The `certificate_id` of an upload's answer, when it names one (an object, or a list of
/// one); `None` for any other body, which is not an error: the list tells what was uploaded.
pub fn parse_upload_answer(body: &[u8]) -> Option<CertificateId> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let object = match &value {
        Value::Array(items) if items.len() == 1 => items.first()?,
        other => other,
    };
    object.get("certificate_id")?.as_str()?.parse().ok()
}

/// An upload's JSON body: the certificate (PEM) and the role and entity it maps.
#[derive(Debug, Serialize)]
pub struct Upload<'a> {
    /// The certificate, PEM.
    #[serde(rename = "fileContent")]
    pub file_content: &'a str,
    /// The role's internal id.
    pub role: InternalId,
    /// The entity's internal id.
    pub entity: InternalId,
}

/// What an error answer of the API says, as far as it is short and printable: NetSuite's REST
/// errors are `{"type", "title", "status", "o:errorDetails": [{"detail", "o:errorCode"}]}`;
/// OAuth-style `{"error", "error_description"}` and short plain text are read too.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiErrorBody {
    /// `title` (or `error`).
    pub title: Option<String>,
    /// Each `detail` (or `error_description`, or the plain text).
    pub details: Vec<String>,
    /// Each `o:errorCode`.
    pub codes: Vec<String>,
}

impl ApiErrorBody {
    /// At most this many details are kept.
    const MAX_DETAILS: usize = 3;

    /// Reads an error body; empty when nothing in it can be shown.
    pub fn parse(body: &[u8]) -> ApiErrorBody {
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            let text = String::from_utf8_lossy(body);
            return ApiErrorBody {
                details: shown(text.trim()).into_iter().collect(),
                ..ApiErrorBody::default()
            };
        };
        let text = |v: Option<&Value>| v.and_then(Value::as_str).and_then(shown);
        let mut parsed = ApiErrorBody {
            title: text(value.get("title")).or_else(|| text(value.get("error"))),
            ..ApiErrorBody::default()
        };
        let details = value.get("o:errorDetails").and_then(Value::as_array);
        for detail in details.into_iter().flatten().take(Self::MAX_DETAILS) {
            parsed.details.extend(text(detail.get("detail")));
            parsed.codes.extend(text(detail.get("o:errorCode")));
        }
        parsed.details.extend(text(value.get("error_description")));
        parsed
    }

    /// Whether any text of it contains `needle` (ASCII case-insensitive).
    pub fn mentions(&self, needle: &str) -> bool {
        let needle = needle.to_ascii_lowercase();
        self.title
            .iter()
            .chain(&self.details)
            .chain(&self.codes)
            .any(|t| t.to_ascii_lowercase().contains(&needle))
    }

    /// Whether nothing could be read.
    pub fn is_empty(&self) -> bool {
        self.title.is_none() && self.details.is_empty() && self.codes.is_empty()
    }
}

impl fmt::Display for ApiErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self.title.iter().cloned().collect();
        parts.extend(self.details.iter().cloned());
        f.write_str(&parts.join(": "))?;
        if !self.codes.is_empty() {
            write!(f, " ({})", self.codes.join(", "))?;
        }
        Ok(())
    }
}

/// The UTC date of `t`, `YYYY-MM-DD`, for messages.
fn day(t: SystemTime) -> String {
    match der::DateTime::from_system_time(t) {
        Ok(d) => format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day()),
        Err(_) => "(out of range)".to_owned(),
    }
}

/// A value the server chose, for a message: when short and printable.
fn shown(value: &str) -> Option<String> {
    let ok = !value.is_empty() && value.len() <= 300 && value.chars().all(|c| !c.is_control());
    ok.then(|| value.to_owned())
}

/// Why a body is not JSON. Only syntax errors are quoted (serde's messages for values of the
/// wrong type repeat the value).
fn not_json(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Eof => "the body is truncated JSON".into(),
        Category::Data => "the body is JSON of an unexpected shape".into(),
        Category::Syntax | Category::Io => format!("the body is not JSON ({e})"),
    }
}

/// A flag as NetSuite may write it: `true`/`false`, `"true"`/`"false"`, `"T"`/`"F"`,
/// `"Y"`/`"N"`, `1`/`0`.
fn boolean(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_i64().map(|n| n != 0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "y" | "yes" | "1" => Some(true),
            "false" | "f" | "n" | "no" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A time as NetSuite may write it: RFC 3339 (`2027-01-31T12:00:00Z`, an offset, a fraction,
/// or a space for the `T`), a date alone (`2027-01-31`, taken as its midnight UTC, or US
/// `1/31/2027`), or seconds or milliseconds since 1970 (a number or a numeric string).
fn timestamp(value: &Value) -> Option<SystemTime> {
    let epoch = |n: u64| {
        // Milliseconds from the year 5138 on; seconds before: both readings are plausible
        // nowhere in between.
        let d = if n >= 100_000_000_000 {
            Duration::from_millis(n)
        } else {
            Duration::from_secs(n)
        };
        UNIX_EPOCH.checked_add(d)
    };
    match value {
        Value::Number(n) => epoch(n.as_u64()?),
        Value::String(s) => {
            let s = s.trim();
            match s.parse::<u64>() {
                Ok(n) => epoch(n),
                Err(_) => date_time(s),
            }
        }
        _ => None,
    }
}

/// An RFC 3339 date-time or a date alone (see [`timestamp`]).
fn date_time(s: &str) -> Option<SystemTime> {
    if let Some(us) = us_date(s) {
        return Some(us);
    }
    let (date, rest) = s.split_at_checked(10)?;
    let mut ymd = date.split('-').map(str::parse::<u16>);
    let (year, month, day) = (ymd.next()?.ok()?, ymd.next()?.ok()?, ymd.next()?.ok()?);
    let rest = rest.trim_start_matches(['T', 't', ' ']);
    let (clock, offset) = split_offset(rest)?;
    let mut hms = clock.split('.').next()?.split(':');
    let mut part = || -> Option<u8> {
        match hms.next() {
            Some("") | None => Some(0),
            Some(v) => v.parse().ok(),
        }
    };
    let (hour, minute, second) = (part()?, part()?, part()?);
    let utc = der::DateTime::new(
        year,
        u8::try_from(month).ok()?,
        u8::try_from(day).ok()?,
        hour,
        minute,
        second,
    )
    .ok()?;
    let t = utc.to_system_time();
    if offset >= 0 {
        t.checked_sub(Duration::from_secs(offset.unsigned_abs()))
    } else {
        t.checked_add(Duration::from_secs(offset.unsigned_abs()))
    }
}

/// The clock part of a date-time and its offset from UTC in seconds (`Z`, `+02:00`, none).
fn split_offset(rest: &str) -> Option<(&str, i64)> {
    if rest.is_empty() {
        return Some(("", 0));
    }
    if let Some(clock) = rest.strip_suffix(['Z', 'z']) {
        return Some((clock, 0));
    }
    match rest.rfind(['+', '-']) {
        Some(at) if at > 0 => {
            let (clock, zone) = rest.split_at(at);
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            // Two-digit hours (under 24) and minutes (under 60), so that a hostile offset
            // cannot overflow the arithmetic below.
            let two_digits = |s: &str, below: i64| {
                let n = s.parse::<i64>().ok()?;
                (s.len() == 2 && (0..below).contains(&n)).then_some(n)
            };
            let mut hm = zone[1..].split(':');
            let hours = two_digits(hm.next()?, 24)?;
            let minutes = match hm.next() {
                Some(m) => two_digits(m, 60)?,
                None => 0,
            };
            if hm.next().is_some() {
                return None;
            }
            Some((clock, sign * (hours * 3600 + minutes * 60)))
        }
        _ => Some((rest, 0)),
    }
}

/// `M/D/YYYY`, NetSuite's default date format in the US, as midnight UTC.
fn us_date(s: &str) -> Option<SystemTime> {
    let mut parts = s.split('/');
    let (m, d, y) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 {
        return None;
    }
    let utc =
        der::DateTime::new(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?, 0, 0, 0).ok()?;
    Some(utc.to_system_time())
}

#[cfg(test)]
mod tests;
