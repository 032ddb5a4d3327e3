//! What a refused token request gets: the OAuth error code NetSuite answers with (and its
//! status), and the reason it writes to its Login Audit Trail.

use std::fmt;

/// The OAuth 2.0 error codes NetSuite answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// Malformed request: content type, fields, grant or assertion type.
    InvalidRequest,
    /// The issuer is not the registration's client.
    InvalidClient,
    /// The assertion is not acceptable: signature, kid, alg, aud, times, replay.
    InvalidGrant,
    /// A scope is missing, unknown or not enabled.
    InvalidScope,
    /// NetSuite's answer to an assertion without `kid` (and to injected faults).
    ServerError,
}

impl ErrorCode {
    /// The code as sent in `{"error": …}`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::ServerError => "server_error",
        }
    }

    /// The HTTP status the emulator sends with the code. Real NetSuite is less consistent
    /// (401 and 500 are seen for `invalid_grant` cases); clients must not depend on more than
    /// "4xx with a code".
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidClient => 401,
            ErrorCode::ServerError => 500,
            _ => 400,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The reason NetSuite writes to its Login Audit Trail (never sent to the client).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditReason {
    /// The HTTP request itself is malformed (not an audit-trail code: NetSuite never gets
    /// far enough to log one).
    InvalidRequest,
    /// The JWS header has no `kid`.
    MissingKeyId,
    /// No certificate with this `kid` is registered (or it is not active yet).
    MissingKey,
    /// The certificate with this `kid` was revoked.
    CertificateRevoked,
    /// `alg` is not one of ES256…PS512.
    UnsupportedAlgo,
    /// The signature does not verify with the certificate's key (or cannot, for this `alg`).
    SignatureValidation,
    /// `exp` has passed.
    TokenExpired,
    /// The certificate named by `kid` has expired (its `notAfter` has passed).
    CertificateExpired,
    /// The certificate named by `kid` is not valid yet (its `notBefore` is ahead).
    CertificateNotYetValid,
    /// Malformed JWS or claims, wrong `aud`, `iat` in the future, `exp` too far, a `sub` or
    /// `nbf` claim.
    TokenNotAcceptable,
    /// `iss` is not the client id the certificate is registered to.
    InvalidIssuer,
    /// A scope is missing, unknown or not enabled.
    ScopeMismatched,
    /// The assertion (its `jti`) was already used.
    Replayed,
}

impl AuditReason {
    /// The audit-trail spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditReason::InvalidRequest => "InvalidRequest",
            AuditReason::MissingKeyId => "MissingKeyId",
            AuditReason::MissingKey => "MissingKey",
            AuditReason::CertificateRevoked => "CertificateRevoked",
            AuditReason::UnsupportedAlgo => "UnsupportedAlgo",
            AuditReason::SignatureValidation => "SignatureValidation",
            AuditReason::TokenExpired => "TokenExpired",
            AuditReason::CertificateExpired => "CertificateExpired",
            AuditReason::CertificateNotYetValid => "CertificateNotYetValid",
            AuditReason::TokenNotAcceptable => "TokenNotAcceptable",
            AuditReason::InvalidIssuer => "InvalidIssuer",
            AuditReason::ScopeMismatched => "ScopeMismatched",
            AuditReason::Replayed => "Replayed",
        }
    }
}

impl fmt::Display for AuditReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused token request: the answer for the client and the reason for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The OAuth error code (its status is [`ErrorCode::status`]).
    pub code: ErrorCode,
    /// The Login-Audit-Trail reason.
    pub audit: AuditReason,
    /// A human explanation; never contains the assertion.
    pub detail: String,
    /// The `kid` sent, if any (cut to a safe length).
    pub kid: Option<String>,
    /// The `iss` sent, if any (cut to a safe length).
    pub iss: Option<String>,
}

impl Refusal {
    /// A refusal with this answer and audit reason.
    pub(super) fn new(code: ErrorCode, audit: AuditReason, detail: impl Into<String>) -> Refusal {
        Refusal {
            code,
            audit,
            detail: detail.into(),
            kid: None,
            iss: None,
        }
    }

    /// A malformed HTTP request: `invalid_request`, no audit-trail reason.
    pub(super) fn request(detail: impl Into<String>) -> Refusal {
        Refusal::new(
            ErrorCode::InvalidRequest,
            AuditReason::InvalidRequest,
            detail,
        )
    }

    /// An unacceptable assertion: `invalid_grant`, for `audit`.
    pub(super) fn grant(audit: AuditReason, detail: impl Into<String>) -> Refusal {
        Refusal::new(ErrorCode::InvalidGrant, audit, detail)
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.code.status()
    }
}

/// An assertion NetSuite calls `TokenNotAcceptable`: malformed claims, or claims it refuses.
pub(super) fn not_acceptable(detail: impl Into<String>) -> Refusal {
    Refusal::grant(AuditReason::TokenNotAcceptable, detail)
}
