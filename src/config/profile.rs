//! What a resolved profile gives the token request: its endpoint, its assertion, its HTTP
//! client's settings; and where its certificates API is.

use super::{Profile, Timeout};
use crate::exchange::{ClientOptions, ExchangeContext};
use crate::netsuite::{self, AssertionRequest, CertificatesUrl, Lifetime, TokenUrl};

impl Profile {
    /// The token endpoint: the explicit one, else the account's.
    pub fn endpoint(&self) -> Result<TokenUrl, netsuite::Error> {
        match &self.token_url {
            Some(url) => Ok(url.clone()),
            None => self.account.token_url(),
        }
    }

    /// NetSuite's certificate management API for this profile: `certificates-url` when given;
    /// else, when the token URL is loopback (the emulator), that URL's origin; else the
    /// account's restlets host.
    pub fn certificates_endpoint(&self) -> Result<CertificatesUrl, netsuite::Error> {
        match (&self.certificates_url, &self.token_url) {
            (Some(url), _) => Ok(url.clone()),
            (None, Some(token_url)) if token_url.is_loopback() => {
                Ok(CertificatesUrl::origin_of(token_url))
            }
            (None, _) => self.account.certificates_url(),
        }
    }

    /// The client assertion this profile signs, sent to `token_url` and valid for `lifetime`.
    pub fn assertion_request(&self, token_url: TokenUrl, lifetime: Lifetime) -> AssertionRequest {
        AssertionRequest {
            client_id: self.client_id.clone(),
            certificate_id: self.certificate_id.clone(),
            token_url,
            scopes: self.scopes.clone(),
            lifetime,
        }
    }

    /// The HTTP client settings for this profile's endpoint: its CA file and timeout.
    pub fn client_options(&self, token_url: &TokenUrl) -> ClientOptions {
        let mut options = ClientOptions::for_endpoint(token_url);
        options.ca_file = self.ca_file.clone();
        if let Some(Timeout(limit)) = self.timeout {
            options.total_timeout = limit;
            options.connect_timeout = options.connect_timeout.min(limit);
        }
        options
    }

    /// What a token request made with this profile uses, for `exchange`'s messages.
    pub fn exchange_context(&self) -> Result<ExchangeContext, netsuite::Error> {
        Ok(ExchangeContext {
            certificate_id: self.certificate_id.clone(),
            client_id: self.client_id.clone(),
            account: Some(self.account.clone()),
            scopes: self.scopes.clone(),
            token_url: self.endpoint()?,
        })
    }
}
