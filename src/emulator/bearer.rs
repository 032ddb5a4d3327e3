//! An access token the emulator issued, presented back as `Authorization: Bearer …`: finding
//! its record, and NetSuite's 401 when there is none.

use std::time::SystemTime;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::json;

use super::json_response;
use super::state::{Issued, Mutable, token_hash};

/// Why a request carries no usable access token; each is a 401.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::emulator) enum Unauthenticated {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A bearer token this emulator never issued (or has forgotten since it expired).
    Unknown,
    /// A token it issued that has expired.
    Expired,
}

impl Unauthenticated {
    /// The reason for the log, as NetSuite's Login Audit Trail would record it.
    pub(in crate::emulator) fn reason(self) -> &'static str {
        match self {
            Unauthenticated::Missing => "no Authorization: Bearer header",
            Unauthenticated::Unknown => "the bearer token was not issued by this emulator",
            Unauthenticated::Expired => "the access token has expired",
        }
    }
}

/// The record of the bearer token in `headers`, when the emulator issued it and it has not
/// expired at `now`.
pub(in crate::emulator) fn authenticate(
    state: &Mutable,
    headers: &HeaderMap,
    now: SystemTime,
) -> Result<Issued, Unauthenticated> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or(Unauthenticated::Missing)?;
    match state.tokens.get(&token_hash(token)) {
        None => Err(Unauthenticated::Unknown),
        Some(t) if t.expires <= now => Err(Unauthenticated::Expired),
        Some(t) => Ok(t.clone()),
    }
}

/// NetSuite's REST answer to a missing or bad token: 401, `WWW-Authenticate`, and a
/// problem-details body pointing at the Login Audit Trail.
pub(in crate::emulator) fn unauthorized() -> Response {
    let mut response = json_response(
        StatusCode::UNAUTHORIZED,
        json!({
            "type": "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.2",
            "title": "Unauthorized",
            "status": 401,
            "o:errorDetails": [{
                "detail": "Invalid login attempt. For more details, see the Login Audit Trail in the NetSuite UI at Setup > Users/Roles > User Management > View Login Audit Trail.",
                "o:errorCode": "INVALID_LOGIN"
            }]
        }),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    response
}
