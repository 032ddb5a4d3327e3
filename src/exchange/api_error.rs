//! Why a call to the certificate management API failed, explained: which call, what NetSuite
//! said (when it is short and printable), and what usually causes that answer.

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;

use crate::kind::{HasKind, Kind};
use crate::netsuite::ApiErrorBody;

/// The calls of the certificate management API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiCall {
    /// `GET …/certificates`.
    List,
    /// `POST …/certificates`.
    Upload,
    /// `POST …/certificates/<id>/revoke`.
    Revoke,
}

impl fmt::Display for ApiCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApiCall::List => "listing the integration's certificates",
            ApiCall::Upload => "uploading the certificate",
            ApiCall::Revoke => "revoking the certificate",
        })
    }
}

/// Why a call to the certificate management API gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No connection.
    #[error(
        "{call}: cannot connect to {url}; check the certificates URL (--certificates-url, by default the account's restlets host), the network and any proxy (HTTPS_PROXY)"
    )]
    Connect {
        /// The call.
        call: ApiCall,
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// No complete answer in time.
    #[error(
        "{call}: no complete answer from {url} within {} s; check the network path to NetSuite, or allow more time with --timeout",
        .limit.as_secs()
    )]
    Timeout {
        /// The call.
        call: ApiCall,
        /// The URL.
        url: String,
        /// The limit that was reached.
        limit: Duration,
    },
    /// The TLS handshake failed.
    #[error(
        "{call}: TLS with {url} failed: {reason}; check the certificates URL's host, and if it uses a private CA, pass --ca-file FILE with that CA's certificate (PEM)"
    )]
    Tls {
        /// The call.
        call: ApiCall,
        /// The URL.
        url: String,
        /// What TLS reported.
        reason: String,
    },
    /// Another transport failure.
    #[error("{call}: the request to {url} failed; try again, and check any proxy (HTTPS_PROXY)")]
    Http {
        /// The call.
        call: ApiCall,
        /// The URL.
        url: String,
        /// What failed.
        #[source]
        source: reqwest::Error,
    },
    /// A redirect, which is not followed: the access token goes only where it was meant to.
    #[error(
        "{call}: {url} redirected (HTTP {status}) to {location}; suitekey does not follow redirects with an access token: check the certificates URL and the account id"
    )]
    Redirect {
        /// The call.
        call: ApiCall,
        /// The URL.
        url: String,
        /// The 3xx status.
        status: StatusCode,
        /// The host the redirect pointed at.
        location: String,
    },
    /// NetSuite answered with an error status.
    #[error("{}", refusal(*.call, .url, *.status, .body))]
    Refused {
        /// The call.
        call: ApiCall,
        /// The URL.
        url: String,
        /// The HTTP status.
        status: StatusCode,
        /// What NetSuite said, as far as it can be shown.
        body: ApiErrorBody,
    },
    /// A success whose body is not what the call answers.
    #[error(
        "{call}: unusable answer from {url} (HTTP {status}): {reason}; check that the certificates URL is NetSuite's and that no proxy answers in its place"
    )]
    Malformed {
        /// The call.
        call: ApiCall,
        /// The URL.
        url: String,
        /// The HTTP status.
        status: StatusCode,
        /// What is wrong with it (never the body itself).
        reason: String,
    },
}

impl HasKind for ApiError {
    /// NetSuite (or the way to it) failed or refused.
    fn kind(&self) -> Kind {
        Kind::Endpoint
    }
}

impl ApiError {
    /// The HTTP status NetSuite answered with, if it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ApiError::Refused { status, .. } | ApiError::Malformed { status, .. } => Some(*status),
            ApiError::Redirect { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the call may have reached NetSuite and been done there although no answer
    /// said so (a timeout, a connection cut, a server error): what it did must be looked up.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            ApiError::Timeout { .. } | ApiError::Http { .. } => true,
            ApiError::Refused { status, .. } => status.is_server_error(),
            _ => false,
        }
    }
}

/// An error answer explained: the call, NetSuite's words, and what usually causes the status.
fn refusal(call: ApiCall, url: &str, status: StatusCode, body: &ApiErrorBody) -> String {
    let said = if body.is_empty() {
        String::new()
    } else {
        format!(" ({body})")
    };
    let why = match (status.as_u16(), call) {
        (401, _) => "NetSuite did not accept the access token: the token needs the rest_webservices scope (enable it on the integration record; rotate asks for it), and the certificates URL must be the account's (by default its restlets host)".to_owned(),
        (403, _) => "the role of the certificate's mapping needs the permission \"Manage own OAuth 2.0 Client Credentials certificates\" (Setup > Users/Roles > Manage Roles > the role > Permissions > Setup), and the access token the rest_webservices scope".to_owned(),
        (404, _) => "check the certificates URL (--certificates-url; by default the account's restlets host) and the client id: the integration record must exist in this account".to_owned(),
        (429, _) => "NetSuite limits the rate of requests; wait a minute and run the command again".to_owned(),
        (400 | 409 | 422, ApiCall::Upload) => "NetSuite refuses a certificate uploaded or revoked before, a second certificate for the same role and entity, a sixth active one, and keys or validity outside its rules (RSA 3072/4096 or EC P-256/384/521, at most two years)".to_owned(),
        (400 | 409 | 422, ApiCall::Revoke) => "NetSuite refuses to revoke a certificate it does not know or has revoked already; list the certificates to see its state".to_owned(),
        (code, _) if code >= 500 => "NetSuite failed; try again in a few minutes".to_owned(),
        _ => "see NetSuite's words above".to_owned(),
    };
    format!("{call}: {url} answered HTTP {status}{said}; {why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(call: ApiCall, status: u16, body: &[u8]) -> ApiError {
        ApiError::Refused {
            call,
            url: "https://1234567.restlets.api.netsuite.com/services/rest/auth/oauth2/v1/clients/c/certificates".into(),
            status: StatusCode::from_u16(status).unwrap(),
            body: ApiErrorBody::parse(body),
        }
    }

    #[test]
    fn refusals_name_the_call_netsuites_words_and_the_likely_cause() {
        let scope = refused(ApiCall::List, 401, br#"{"title":"Unauthorized"}"#).to_string();
        for want in [
            "listing the integration's certificates",
            "HTTP 401",
            "(Unauthorized)",
            "rest_webservices",
        ] {
            assert!(scope.contains(want), "{want}: {scope}");
        }
        let permission = refused(ApiCall::Upload, 403, b"").to_string();
        assert!(
            permission.contains("Manage own OAuth 2.0 Client Credentials certificates"),
            "{permission}"
        );
        let duplicate = refused(ApiCall::Upload, 400, br#"{"title":"Bad Request","o:errorDetails":[{"detail":"The certificate has already been uploaded.","o:errorCode":"INVALID_REQUEST"}]}"#).to_string();
        for want in [
            "uploading the certificate",
            "already been uploaded",
            "INVALID_REQUEST",
            "sixth active",
        ] {
            assert!(duplicate.contains(want), "{want}: {duplicate}");
        }
        let failed = refused(ApiCall::Revoke, 500, b"oops");
        assert!(failed.to_string().contains("try again"), "{failed}");
        assert!(failed.outcome_unknown());
        assert!(!refused(ApiCall::Revoke, 400, b"").outcome_unknown());
        assert_eq!(failed.kind(), Kind::Endpoint);
        assert_eq!(failed.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
    }
}
