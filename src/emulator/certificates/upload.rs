//! An upload: its body read strictly (`application/json`, exactly `fileContent`, `role` and
//! `entity`; ids as numbers or numeric strings; a PEM of sane size), then admitted by
//! NetSuite's rules (the certificate's key and validity, not uploaded before, not revoked, at
//! most five active) as a new [`Registration`] of the caller's integration record.

use std::time::{Duration, SystemTime};

use axum::http::StatusCode;
use serde_json::Value;

use super::access::Caller;
use super::mapping::{InternalId, Mapping};
use super::problem::{ApiError, Reason};
use super::store::{MAX_ACTIVE, Store};
use crate::cert::{Certificate, Violation, rfc3339, violations};
use crate::emulator::rules::{Lifecycle, Registration, clip};
use crate::netsuite::{CertificateId, ClientId};

/// The longest `fileContent` read: an RSA-4096 certificate is under 2 KiB of PEM, so 8 KiB is
/// no certificate NetSuite takes.
pub const MAX_PEM: usize = 8 * 1024;

/// The fields of an upload's body.
const FIELDS: &str = "fileContent, role and entity";

/// An upload's body, read.
#[derive(Debug)]
pub struct Upload {
    /// The certificate in `fileContent`.
    pub certificate: Certificate,
    /// The role to map it to.
    pub role: InternalId,
    /// The entity to map it to.
    pub entity: InternalId,
}

/// Reads an upload's body, which must be JSON (`content_type`).
pub fn read(content_type: Option<&str>, body: &[u8]) -> Result<Upload, ApiError> {
    let json = content_type
        .and_then(|t| t.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "INVALID_CONTENT",
            Reason::InvalidContent,
            "the body must be sent as Content-Type: application/json",
        ));
    }
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return Err(ApiError::invalid_content(format!(
            "the body is not a JSON object with {FIELDS}"
        )));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !["fileContent", "role", "entity"].contains(&k.as_str()))
    {
        return Err(ApiError::invalid_content(format!(
            "unknown field {:?}; an upload has {FIELDS}",
            clip(unknown)
        )));
    }
    let id = |name: &str| {
        let value = fields
            .get(name)
            .ok_or_else(|| ApiError::invalid_content(format!("the field {name} is missing")))?;
        InternalId::from_json(value).ok_or_else(|| {
            ApiError::invalid_content(format!(
                "{name} is not an internal id: give an integer, as a number or a numeric string (3, \"-5\")"
            ))
        })
    };
    let (role, entity) = (id("role")?, id("entity")?);
    let pem = match fields.get("fileContent") {
        Some(Value::String(pem)) => pem,
        Some(_) => return Err(ApiError::invalid_content("fileContent is not a string")),
        None => {
            return Err(ApiError::invalid_content(
                "the field fileContent is missing",
            ));
        }
    };
    Ok(Upload {
        certificate: certificate(pem)?,
        role,
        entity,
    })
}

/// The certificate in a `fileContent`: PEM text of sane size.
fn certificate(pem: &str) -> Result<Certificate, ApiError> {
    if pem.len() > MAX_PEM {
        return Err(ApiError::invalid_content(format!(
            "fileContent is {} bytes; a certificate's PEM is at most {MAX_PEM}",
            pem.len()
        )));
    }
    if !pem.trim_start().starts_with("-----BEGIN") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_CONTENT",
            Reason::InvalidCertificate,
            "fileContent is not PEM text (-----BEGIN CERTIFICATE-----)",
        ));
    }
    Certificate::from_bytes(pem.as_bytes(), "fileContent").map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_CONTENT",
            Reason::InvalidCertificate,
            e.to_string(),
        )
    })
}

/// Admits an upload by `caller` at `now` under NetSuite's rules, in this order: the
/// certificate's own rules, not revoked before, not uploaded already, fewer than five active.
/// The new registration has the caller's client, scopes and account, the upload's mapping
/// (with its role's permission), and is usable at the token endpoint after `propagation`.
pub fn admit(
    store: &Store,
    caller: &Caller,
    upload: Upload,
    now: SystemTime,
    propagation: Duration,
) -> Result<Registration, ApiError> {
    let cert = &upload.certificate;
    if let Some(first) = violations(cert, now).into_iter().next() {
        return Err(refusal(&first));
    }
    let id = cert.certificate_id();
    let client = &caller.registration.client_id;
    check_new(store, &id, client)?;
    check_room(store, client, now)?;
    // The key rule above has passed, so the key is one the emulator can verify with.
    let public_key = cert.public_key().map_err(|kind| {
        ApiError::user_error(
            Reason::KeyRefused,
            format!("the certificate's {kind} key is refused"),
        )
    })?;
    Ok(Registration {
        client_id: client.clone(),
        certificate_id: id,
        public_key,
        scopes: caller.registration.scopes.clone(),
        account: caller.registration.account.clone(),
        valid_from: cert.not_before(),
        valid_until: cert.not_after(),
        mapping: Mapping {
            role: upload.role,
            entity: upload.entity,
            manage_certificates: store.role_may_manage(upload.role),
        },
        lifecycle: Lifecycle {
            uploaded: now,
            active_from: now + propagation,
            revoked: None,
        },
    })
}

/// The certificate must be new: neither revoked before (which is for good) nor uploaded.
fn check_new(store: &Store, id: &CertificateId, client: &ClientId) -> Result<(), ApiError> {
    let Some(present) = store.find(id) else {
        return Ok(());
    };
    let detail = match present.registration.lifecycle.revoked {
        Some(at) => {
            return Err(ApiError::user_error(
                Reason::PreviouslyRevoked,
                format!(
                    "the certificate {id} was revoked on {}; a revoked certificate cannot be uploaded again: make a new one",
                    rfc3339(at)
                ),
            ));
        }
        None if present.registration.client_id != *client => {
            format!("the certificate {id} is already uploaded (to another integration record)")
        }
        None => format!("the certificate {id} is already uploaded"),
    };
    Err(ApiError::user_error(Reason::Duplicate, detail))
}

/// The client must have fewer than [`MAX_ACTIVE`] active certificates; the refusal names them.
fn check_room(store: &Store, client: &ClientId, now: SystemTime) -> Result<(), ApiError> {
    let active: Vec<String> = store
        .active(client, now)
        .map(|r| r.certificate_id.to_string())
        .collect();
    if active.len() < MAX_ACTIVE {
        return Ok(());
    }
    Err(ApiError::user_error(
        Reason::TooManyActive,
        format!(
            "the integration record has {} active certificates ({}), the most allowed; revoke one first",
            active.len(),
            active.join(", ")
        ),
    ))
}

/// NetSuite's refusal of a certificate that breaks one of its rules.
fn refusal(violation: &Violation) -> ApiError {
    let (reason, detail) = match violation {
        Violation::Key(e) => (
            Reason::KeyRefused,
            format!("the certificate's key is refused: {e}"),
        ),
        Violation::TooLong { span_secs } => (
            Reason::ValidityTooLong,
            format!(
                "the certificate is valid for {} days; NetSuite accepts at most two years ({} days)",
                span_secs / 86_400,
                crate::netsuite::ValidityDays::MAX
            ),
        ),
        Violation::Expired { on } => (
            Reason::CertificateExpired,
            format!("the certificate expired on {}", rfc3339(*on)),
        ),
        Violation::NotYetValid { from } => (
            Reason::CertificateNotYetValid,
            format!("the certificate is not valid until {}", rfc3339(*from)),
        ),
    };
    ApiError::user_error(reason, detail)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn read_json(body: &[u8]) -> Result<Upload, ApiError> {
        read(Some("application/json; charset=utf-8"), body)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Arbitrary bytes are a 400 `INVALID_CONTENT`, never an upload or a panic.
        #[test]
        fn arbitrary_bytes_are_invalid_content(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let refused = read_json(&data).unwrap_err();
            prop_assert_eq!((refused.status, refused.code), (StatusCode::BAD_REQUEST, "INVALID_CONTENT"));
        }

        /// Arbitrary field values, a PEM armour around arbitrary text included, are refused
        /// as content, never read as a certificate.
        #[test]
        fn arbitrary_fields_are_invalid_content(
            text in ".{0,300}",
            role in prop_oneof![any::<i64>().prop_map(|n| json!(n)), ".{0,20}".prop_map(|s| json!(s))],
            entity in any::<f64>(),
        ) {
            let pem = format!("-----BEGIN CERTIFICATE-----\n{text}\n-----END CERTIFICATE-----\n");
            for body in [
                json!({"fileContent": pem, "role": role, "entity": entity}),
                json!({"fileContent": text, "role": role, "entity": -5}),
            ] {
                let refused = read_json(body.to_string().as_bytes()).unwrap_err();
                prop_assert_eq!(refused.code, "INVALID_CONTENT");
            }
        }
    }

    #[test]
    fn an_upload_is_read_with_ids_as_numbers_or_strings() {
        let pem = crate::cert::testing::p256_certificate(1, "read", SystemTime::now(), 30)
            .to_pem()
            .unwrap();
        for (role, entity) in [(json!(3), json!(-5)), (json!("3"), json!("-5"))] {
            let body = json!({"fileContent": pem, "role": role, "entity": entity});
            let upload = read_json(body.to_string().as_bytes()).unwrap();
            assert_eq!((upload.role.get(), upload.entity.get()), (3, -5));
        }
        let refused = read(None, b"{}").unwrap_err();
        assert_eq!(refused.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
