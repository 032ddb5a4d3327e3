//! Why no access token was obtained: every failure of an exchange, and a refusal explained
//! with NetSuite's code, the likely causes, the checks that tell them apart, and the ids the
//! request used.

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;

use super::request::ExchangeContext;
use super::response::skew_message;
use crate::jose::SigningError;
use crate::kind::{HasKind, Kind};
use crate::netsuite::{AUDIT_TRAIL, PERMANENT_CODES, explain};

/// A NetSuite refusal (or any non-success HTTP status), explained.
#[derive(Debug)]
pub struct StatusError {
    /// The HTTP status.
    pub status: StatusCode,
    /// NetSuite's `error` field, when the body had one.
    pub code: Option<String>,
    /// The `error_description` field, when the body had one (NetSuite usually sends none).
    pub description: Option<String>,
    /// Server clock minus local clock in seconds, when beyond
    /// [`CLOCK_SKEW_LIMIT`](super::response::CLOCK_SKEW_LIMIT).
    pub clock_skew: Option<i64>,
    /// What the server's `Retry-After` asked for.
    pub retry_after: Option<Duration>,
    /// Attempts made before giving up.
    pub attempts: u32,
    /// What the request used.
    pub context: ExchangeContext,
}

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the token endpoint answered HTTP {}", self.status)?;
        match &self.code {
            Some(code) => write!(f, " with NetSuite error '{code}'")?,
            None => f.write_str(" without a NetSuite error code")?,
        }
        if let Some(description) = &self.description {
            write!(f, " ({description})")?;
        }
        if self.attempts > 1 {
            write!(f, " after {} attempts", self.attempts)?;
        }
        let why = explain(self.code.as_deref(), self.status);
        write!(f, "\n  likely causes: {}", why.causes)?;
        write!(f, "\n  to tell them apart: {}", why.checks)?;
        write!(f, "\n  the request used: {}", self.context)?;
        write!(f, "\n  {AUDIT_TRAIL}")?;
        if let Some(skew) = self.clock_skew {
            write!(f, "\n  {}", skew_message(skew))?;
        }
        Ok(())
    }
}

impl std::error::Error for StatusError {}

/// Why no access token was obtained.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// Signing the client assertion failed.
    #[error(transparent)]
    Assertion(SigningError),
    /// No connection to the token endpoint, on any attempt.
    #[error(
        "cannot connect to {url} ({attempts} attempts); check the token URL, the network and any proxy (HTTPS_PROXY)"
    )]
    Connect {
        /// The token URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        #[source]
        source: reqwest::Error,
    },
    /// The endpoint did not answer in time.
    #[error(
        "no complete answer from {url} within {} s; check the network path to NetSuite (proxy, firewall), or allow more time with --timeout",
        .limit.as_secs()
    )]
    Timeout {
        /// The token URL.
        url: String,
        /// The limit that was reached.
        limit: Duration,
    },
    /// The TLS handshake failed: most often a certificate that is not trusted or not valid
    /// for the host. Not retried: the same certificate would come back.
    #[error(
        "TLS with the token endpoint {url} failed: {reason}; check the token URL's host, and if the endpoint uses a private CA, pass --ca-file FILE with that CA's certificate (PEM)"
    )]
    Tls {
        /// The token URL.
        url: String,
        /// What TLS reported (rustls' words, e.g. an unknown issuer or a name mismatch).
        reason: String,
    },
    /// Another transport failure (a connection cut mid-request).
    #[error("the token request to {url} failed; try again, and check any proxy (HTTPS_PROXY)")]
    Http {
        /// The token URL.
        url: String,
        /// What failed.
        #[source]
        source: reqwest::Error,
    },
    /// The endpoint answered with a redirect, which is not followed: the assertion must go only
    /// to the URL it names as its audience.
    #[error(
        "the token endpoint {url} redirected (HTTP {status}) to {location}; suitekey does not follow redirects with a client assertion: check the token URL and the account id"
    )]
    Redirect {
        /// The token URL.
        url: String,
        /// The 3xx status.
        status: StatusCode,
        /// The host the redirect pointed at (not the full location).
        location: String,
    },
    /// The endpoint refused (or failed) with an HTTP error status.
    #[error(transparent)]
    Status(Box<StatusError>),
    /// The server asked to wait longer than suitekey is willing to before retrying.
    #[error(
        "{last}\n  the server asked to wait {} s before retrying, longer than suitekey waits ({} s); try again later",
        .wait.as_secs(), .limit.as_secs()
    )]
    RetryAfterTooLong {
        /// The refusal that carried the `Retry-After`.
        last: Box<StatusError>,
        /// The wait asked for.
        wait: Duration,
        /// [`ClientOptions::max_retry_after`](super::ClientOptions::max_retry_after).
        limit: Duration,
    },
    /// A success status with a body that is not a usable token response, or a body that is
    /// too large or cut short.
    #[error(
        "unusable answer from the token endpoint {url} (HTTP {status}): {reason}; check that the token URL is NetSuite's token endpoint and that no proxy (HTTPS_PROXY) answers in its place"
    )]
    Malformed {
        /// The token URL.
        url: String,
        /// The HTTP status.
        status: StatusCode,
        /// What is wrong with it (never the body itself: it may hold a token).
        reason: String,
    },
}

impl HasKind for ExchangeError {
    /// The signer's kind when the assertion could not be signed; otherwise the endpoint's.
    fn kind(&self) -> Kind {
        match self {
            ExchangeError::Assertion(e) => e.kind(),
            _ => Kind::Endpoint,
        }
    }
}

impl ExchangeError {
    /// Whether another attempt, with a fresh assertion, may succeed: connection failures,
    /// HTTP 429 and 5xx. A 4xx is NetSuite's verdict on the request and would only repeat.
    pub fn is_retryable(&self) -> bool {
        match self {
            ExchangeError::Connect { .. } => true,
            // A 5xx that names an OAuth error (NetSuite answers some malformed assertions with
            // 500 invalid_grant) will not change on retry; only a bare or server_error one may.
            ExchangeError::Status(s) => {
                s.status == StatusCode::TOO_MANY_REQUESTS
                    || s.status.is_server_error()
                        && matches!(s.code.as_deref(), None | Some("server_error"))
            }
            _ => false,
        }
    }

    /// Whether NetSuite refused the client for a reason no retry can change: a code of
    /// [`PERMANENT_CODES`], which only a change to the integration, its certificate or the
    /// profile fixes. Each attempt is another failed login in NetSuite's Login Audit Trail.
    pub fn is_permanent(&self) -> bool {
        match self {
            ExchangeError::Status(s) => s
                .code
                .as_deref()
                .is_some_and(|code| PERMANENT_CODES.contains(&code)),
            _ => false,
        }
    }

    /// The wait the server asked for with `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ExchangeError::Status(s) => s.retry_after,
            ExchangeError::RetryAfterTooLong { wait, .. } => Some(*wait),
            _ => None,
        }
    }

    /// Records how many attempts led to this error.
    pub(super) fn after(mut self, attempts: u32) -> Self {
        match &mut self {
            ExchangeError::Connect { attempts: a, .. } => *a = attempts,
            ExchangeError::Status(s) => s.attempts = attempts,
            ExchangeError::RetryAfterTooLong { last, .. } => last.attempts = attempts,
            _ => {}
        }
        self
    }
}
