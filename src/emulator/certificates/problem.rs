//! What a refused certificate API call answers and logs: NetSuite's REST error body
//! (`{"type","title","status","o:errorDetails":[{"detail","o:errorCode"}]}`) and, on stderr,
//! the precise reason, as the token endpoint's refusals are logged.

use std::fmt;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::calls::Call;
use crate::emulator::bearer::{Unauthenticated, unauthorized};
use crate::emulator::json_response;

/// Why a call was refused, as the log names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// No bearer token, or one the emulator did not issue.
    InvalidLogin,
    /// The access token has expired.
    TokenExpired,
    /// The access token lacks the `rest_webservices` scope.
    ScopeMismatched,
    /// The path names another integration record than the token's.
    OtherClient,
    /// The token's role lacks "Manage own OAuth 2.0 Client Credentials certificates".
    PermissionViolation,
    /// The request is not what the call takes: content type, JSON, fields, ids, size.
    InvalidContent,
    /// `fileContent` is not a PEM certificate.
    InvalidCertificate,
    /// The certificate's key is one NetSuite refuses.
    KeyRefused,
    /// The certificate is valid for longer than two years.
    ValidityTooLong,
    /// The certificate has expired.
    CertificateExpired,
    /// The certificate is not valid yet.
    CertificateNotYetValid,
    /// The certificate is uploaded already.
    Duplicate,
    /// The certificate was revoked: it cannot be uploaded again.
    PreviouslyRevoked,
    /// The integration record has its five active certificates.
    TooManyActive,
    /// No certificate of the integration record has this id.
    UnknownCertificate,
    /// The certificate is revoked already.
    AlreadyRevoked,
    /// `--fail-certificates` made the call fail.
    InjectedFault,
}

impl Reason {
    /// The spelling in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidLogin => "InvalidLogin",
            Reason::TokenExpired => "TokenExpired",
            Reason::ScopeMismatched => "ScopeMismatched",
            Reason::OtherClient => "OtherClient",
            Reason::PermissionViolation => "PermissionViolation",
            Reason::InvalidContent => "InvalidContent",
            Reason::InvalidCertificate => "InvalidCertificate",
            Reason::KeyRefused => "KeyRefused",
            Reason::ValidityTooLong => "ValidityTooLong",
            Reason::CertificateExpired => "CertificateExpired",
            Reason::CertificateNotYetValid => "CertificateNotYetValid",
            Reason::Duplicate => "Duplicate",
            Reason::PreviouslyRevoked => "PreviouslyRevoked",
            Reason::TooManyActive => "TooManyActive",
            Reason::UnknownCertificate => "UnknownCertificate",
            Reason::AlreadyRevoked => "AlreadyRevoked",
            Reason::InjectedFault => "InjectedFault",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused call: the status and NetSuite error code it answers, the detail it tells the
/// client, and the reason it logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The `o:errorCode`.
    pub code: &'static str,
    /// The log's reason.
    pub reason: Reason,
    /// The `detail`, also logged; it never holds the request's content.
    pub detail: String,
}

impl ApiError {
    /// A refusal with this status, error code and reason.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        reason: Reason,
        detail: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            reason,
            detail: detail.into(),
        }
    }

    /// 401 `INVALID_LOGIN`: no usable access token.
    pub(in crate::emulator) fn unauthenticated(why: Unauthenticated) -> ApiError {
        let reason = match why {
            Unauthenticated::Expired => Reason::TokenExpired,
            Unauthenticated::Missing | Unauthenticated::Unknown => Reason::InvalidLogin,
        };
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_LOGIN",
            reason,
            why.reason(),
        )
    }

    /// 403 `INSUFFICIENT_PERMISSION`.
    pub fn forbidden(reason: Reason, detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "INSUFFICIENT_PERMISSION",
            reason,
            detail,
        )
    }

    /// 400 `INVALID_CONTENT`: the request is not what the call takes.
    pub fn invalid_content(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_CONTENT",
            Reason::InvalidContent,
            detail,
        )
    }

    /// 400 `USER_ERROR`: the request is well formed, but NetSuite's rules refuse it.
    pub fn user_error(reason: Reason, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "USER_ERROR", reason, detail)
    }

    /// 500 `UNEXPECTED_ERROR`, for an injected fault.
    pub fn injected(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNEXPECTED_ERROR",
            Reason::InjectedFault,
            detail,
        )
    }

    /// Logs the refusal of `call` and makes its answer. A 401 is the same answer as every
    /// REST resource's (with `WWW-Authenticate`), telling no more than "invalid login".
    pub fn respond(&self, call: Call) -> Response {
        tracing::warn!(
            status = self.status.as_u16(),
            error = self.code,
            "certificate {call} refused: {}: {}",
            self.reason,
            self.detail
        );
        if self.status == StatusCode::UNAUTHORIZED {
            return unauthorized();
        }
        json_response(self.status, self.body())
    }

    /// NetSuite's REST error body.
    fn body(&self) -> serde_json::Value {
        json!({
            "type": type_uri(self.status),
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "o:errorDetails": [{"detail": self.detail, "o:errorCode": self.code}]
        })
    }
}

/// The RFC 9110 section NetSuite's `type` points at for a status.
fn type_uri(status: StatusCode) -> String {
    let section = match status.as_u16() {
        400 => "15.5.1",
        401 => "15.5.2",
        403 => "15.5.4",
        404 => "15.5.5",
        413 => "15.5.14",
        415 => "15.5.16",
        _ => "15.6.1",
    };
    format!("https://www.rfc-editor.org/rfc/rfc9110.html#section-{section}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_answers_netsuites_error_shape() {
        let e = ApiError::user_error(Reason::Duplicate, "already uploaded");
        assert_eq!(
            e.body(),
            json!({
                "type": "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.1",
                "title": "Bad Request",
                "status": 400,
                "o:errorDetails": [{"detail": "already uploaded", "o:errorCode": "USER_ERROR"}]
            })
        );
        let e = ApiError::forbidden(Reason::OtherClient, "x");
        assert_eq!(
            (e.body()["status"].clone(), e.body()["title"].clone()),
            (json!(403), json!("Forbidden"))
        );
        let e = ApiError::unauthenticated(Unauthenticated::Expired);
        assert_eq!(
            (e.status, e.reason),
            (StatusCode::UNAUTHORIZED, Reason::TokenExpired)
        );
    }
}
