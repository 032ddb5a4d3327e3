//! NetSuite's side of the M2M flow: account ids and the URLs of their endpoints (`account`),
//! scopes (`scope`), the client assertion and its lifetime (`assertion`), the certificate id and
//! validity NetSuite uses (`certificate`), the certificate management API's data: role and
//! entity ids, the list, an upload and the API's errors (`certificates`), the keys and
//! algorithms it accepts (`keys`), and what its token endpoint's error codes mean
//! (`error_codes`).
//!
//! Every value here is checked when it is built (`FromStr`), so an [`AssertionRequest`] that
//! exists is one NetSuite's rules allow.

use crate::kind::{HasKind, Kind};

/// Why a NetSuite value given by the user is not acceptable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The account id has characters NetSuite never uses.
    #[error(
        "account id '{0}' is not valid: it must be letters, digits, '_' or '-' (e.g. 1234567 or 1234567_SB1), as shown in Setup > Company > Company Information"
    )]
    Account(String),
    /// A scope name NetSuite does not know.
    #[error(
        "unknown scope '{0}'; NetSuite's scopes are restlets, rest_webservices and suite_analytics"
    )]
    Scope(String),
    /// No scope at all.
    #[error("no scope given; name at least one of restlets, rest_webservices, suite_analytics")]
    NoScope,
    /// The client id is empty or has characters that cannot be a consumer key.
    #[error(
        "client id '{0}' is not valid: it is the consumer key shown once when the integration record was saved (64 hexadecimal characters)"
    )]
    ClientId(String),
    /// The certificate id is empty or has characters NetSuite does not use.
    #[error(
        "certificate id '{0}' is not valid: use the id shown under Setup > Integration > Manage Authentication > OAuth 2.0 Client Credentials (M2M) Setup (letters, digits, '-' and '_')"
    )]
    CertificateId(String),
    /// The assertion lifetime is outside 1..=3600 seconds.
    #[error(
        "assertion lifetime {0} s is not allowed: NetSuite refuses assertions whose exp is more than 3600 s after iat; use 1 to 3600"
    )]
    Lifetime(String),
    /// A certificate validity NetSuite would not honour.
    #[error(
        "certificate validity '{0}' days is not allowed: NetSuite accepts certificates valid for at most two years, so use 1 to 730 days"
    )]
    ValidityDays(String),
    /// The token URL cannot be parsed.
    #[error("token URL '{url}' is not a valid URL: {reason}")]
    TokenUrl {
        /// What was given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// A token URL from a config file whose host is not one of the account's.
    #[error(
        "token URL host '{host}' does not belong to account {account}: expected {label}.suitetalk.api.netsuite.com (or the account's restlets or connect host), or a loopback address; pass --token-url to override"
    )]
    ForeignTokenUrl {
        /// The host of the URL.
        host: String,
        /// The configured account.
        account: String,
        /// The account's host label.
        label: String,
    },
    /// A plain-http token URL on a non-loopback host.
    #[error(
        "token URL '{0}' uses http:// on a non-loopback host; assertions and access tokens must travel over https:// (http:// is allowed only for 127.0.0.1, ::1 or localhost)"
    )]
    InsecureTokenUrl(String),
    /// The certificates API URL cannot be parsed, or carries what a base URL must not.
    #[error("certificates API URL '{url}' is not a valid URL: {reason}")]
    CertificatesUrl {
        /// What was given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// A plain-http certificates API URL on a non-loopback host.
    #[error(
        "certificates API URL '{0}' uses http:// on a non-loopback host; access tokens must travel over https:// (http:// is allowed only for 127.0.0.1, ::1 or localhost)"
    )]
    InsecureCertificatesUrl(String),
    /// A certificates API URL from a config file whose host is not one of the account's.
    #[error(
        "certificates API URL host '{host}' does not belong to account {account}: expected {label}.restlets.api.netsuite.com (or the account's suitetalk or connect host), or a loopback address; pass --certificates-url to override"
    )]
    ForeignCertificatesUrl {
        /// The host of the URL.
        host: String,
        /// The configured account.
        account: String,
        /// The account's host label.
        label: String,
    },
    /// A role or entity internal id that is not a whole number.
    #[error(
        "'{value}' is not a NetSuite internal id: give the whole number NetSuite shows for the role or entity (e.g. 3, or -5 for a built-in one)"
    )]
    InternalId {
        /// What was given (when printable).
        value: String,
    },
}

impl HasKind for Error {
    /// Every NetSuite value comes from the user.
    fn kind(&self) -> Kind {
        Kind::Usage
    }
}

/// Defines a checked identifier newtype: its `FromStr` applies `$valid`, its error is `$err`.
macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $err:ident, $valid:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $name(String);

        impl ::std::str::FromStr for $name {
            type Err = $crate::netsuite::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let valid: fn(u8) -> bool = $valid;
                if !s.is_empty() && s.len() <= 256 && s.bytes().all(valid) {
                    Ok($name(s.to_owned()))
                } else {
                    Err($crate::netsuite::Error::$err(s.to_owned()))
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl $name {
            /// The identifier as given.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

mod account;
mod assertion;
mod certificate;
mod certificates;
mod error_codes;
mod keys;
mod scope;

pub use account::{AccountId, CertificatesUrl, TokenUrl};
pub use assertion::{AssertionError, AssertionRequest, ClientAssertion, ClientId, Lifetime};
pub use certificate::{CertificateId, ValidityDays};
pub use certificates::{
    ApiErrorBody, CERTIFICATES_PATH, InternalId, ListedCertificate, Upload, certificates_path,
    parse_list, parse_upload_answer, revoke_path,
};
pub(crate) use error_codes::{AUDIT_TRAIL, PERMANENT_CODES, explain};
pub use keys::{AlgError, MIN_RSA_BITS, check_alg, check_key, default_alg, usable_algs};
pub use scope::{Scope, Scopes};

#[cfg(test)]
mod tests;
