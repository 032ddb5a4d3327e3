//! The request: what a token request names (for messages that let the user compare it with
//! what NetSuite shows) and the form body it posts.

use std::fmt;

use zeroize::Zeroizing;

use crate::netsuite::{AccountId, CertificateId, ClientId, Scopes, TokenUrl};

/// What a token request was made with, for error messages that let the user compare it with
/// what NetSuite shows.
#[derive(Clone, Debug)]
pub struct ExchangeContext {
    /// The `kid` sent.
    pub certificate_id: CertificateId,
    /// The `iss` sent.
    pub client_id: ClientId,
    /// The account, when the token URL was derived from one.
    pub account: Option<AccountId>,
    /// The scopes requested.
    pub scopes: Scopes,
    /// Where the request went (and the `aud` sent).
    pub token_url: TokenUrl,
}

impl fmt::Display for ExchangeContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "client id {}, certificate id {}, ",
            self.client_id, self.certificate_id
        )?;
        if let Some(account) = &self.account {
            write!(f, "account {account}, ")?;
        }
        write!(f, "scopes {}, token URL {}", self.scopes, self.token_url)
    }
}

/// The request body: exactly NetSuite's three fields.
pub(super) fn form_body(jws: &str) -> Zeroizing<String> {
    Zeroizing::new(
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair(
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            )
            .append_pair("client_assertion", jws)
            .finish(),
    )
}
