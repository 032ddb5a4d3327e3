//! NetSuite over HTTP: the token exchange (a signed client assertion goes to NetSuite's token
//! endpoint as the three-field form of netsuite-m2m.md, an [`AccessToken`] comes back), and the
//! certificate management API called with such a token.
//!
//! Retries only where repeating is safe and useful (connection failures, HTTP 429 and 5xx), each
//! with a freshly signed assertion, so that no `jti` is ever sent twice. Every refusal is turned
//! into an error that explains NetSuite's code: the likely causes, the checks that tell them
//! apart, and the ids the request used.
//!
//! - `client`: [`TokenClient`], one POST per attempt, repeated as `retry` says;
//! - `options`: [`ClientOptions`], its timeouts and retry policy;
//! - `retry`: which failures are retried, after what wait;
//! - `request`: [`ExchangeContext`] and the three-field form;
//! - `response`: the answer read (size cap) and parsed (RFC 6750, `expires_in`, error fields);
//! - `token`: [`AccessToken`], its lifetime and monotonic deadline;
//! - `error`: [`ExchangeError`], a refusal explained with `netsuite`'s table of error codes;
//! - `trust`: [`CaFile`] (`--ca-file`), the TLS cause of a failure, the crypto provider;
//! - `certificates`: [`CertificatesClient`], the certificate management API (list, upload,
//!   revoke), with the same trust, timeouts and size cap, and no retries;
//! - `api_error`: [`ApiError`], a failed API call explained.

mod api_error;
mod certificates;
mod client;
mod error;
mod options;
mod request;
mod response;
mod retry;
mod token;
mod trust;

pub use api_error::ApiError;
pub use certificates::CertificatesClient;
pub use client::{ClientBuildError, TokenClient};
pub use error::{ExchangeError, StatusError};
pub use options::ClientOptions;
pub use request::ExchangeContext;
pub use response::MAX_BODY;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use response::error_fields;
pub(crate) use response::{BodyError, parse_success};
pub use token::AccessToken;
pub use trust::CaFile;

#[cfg(test)]
mod tests;
