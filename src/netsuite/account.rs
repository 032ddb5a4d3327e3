//! The account id and the token URL: which NetSuite host an account's requests go to, and
//! which token URLs a profile may name.

use std::fmt;
use std::str::FromStr;

use url::Url;

use super::Error;

/// A NetSuite account id such as `1234567` or `1234567_SB1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountId(String);

impl FromStr for AccountId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        // It becomes a DNS label: alphanumeric at both ends, at most 63 bytes, and no `--` in
        // third and fourth place, which IDNA reserves (`xn--`).
        let b = s.as_bytes();
        let inner = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-';
        let dash = |c: Option<&u8>| matches!(c, Some(b'_' | b'-'));
        let ok = (1..=63).contains(&b.len())
            && b.iter().all(inner)
            && b.first().is_some_and(u8::is_ascii_alphanumeric)
            && b.last().is_some_and(u8::is_ascii_alphanumeric)
            && !(dash(b.get(2)) && dash(b.get(3)));
        if ok {
            Ok(AccountId(s.to_owned()))
        } else {
            Err(Error::Account(s.to_owned()))
        }
    }
}

impl AccountId {
    /// The host label NetSuite uses: lowercase, `_` becomes `-` (`1234567_SB1` → `1234567-sb1`).
    pub fn host_label(&self) -> String {
        self.0.to_ascii_lowercase().replace('_', "-")
    }

    /// Accepts `url` when its host is one of this account's NetSuite hosts
    /// (`<label>.suitetalk|restlets|connect.api.netsuite.com`, the hosts Oracle's examples use)
    /// or loopback (the emulator, the demo and the tests); anything else is refused.
    ///
    /// Loopback needs no account check because an assertion is only good where its `aud`
    /// points: the `aud` claim is the token URL itself
    /// ([`AssertionRequest::sign`](super::AssertionRequest::sign)), and NetSuite refuses an
    /// assertion whose `aud` is not its own token URL (`invalid_grant`). Whoever
    /// listens on a loopback port therefore gets an assertion it cannot exchange at NetSuite
    /// (shown by the test `an_assertion_for_a_loopback_url_names_that_url_as_aud`), and it
    /// never leaves the machine. Any other host is refused even so: it is reached across the
    /// network, and this check does not lean on NetSuite's `aud` check alone.
    pub fn check_token_url(&self, url: &TokenUrl) -> Result<(), Error> {
        if is_loopback(url.url()) {
            return Ok(());
        }
        let label = self.host_label();
        let host = url.url().host_str().unwrap_or_default();
        let owned = ["suitetalk", "restlets", "connect"]
            .iter()
            .any(|service| host == format!("{label}.{service}.api.netsuite.com"));
        if owned {
            return Ok(());
        }
        Err(Error::ForeignTokenUrl {
            host: host.to_owned(),
            account: self.0.clone(),
            label,
        })
    }

    /// The account's OAuth 2.0 token endpoint.
    pub fn token_url(&self) -> Result<TokenUrl, Error> {
        format!(
            "https://{}.suitetalk.api.netsuite.com/services/rest/auth/oauth2/v1/token",
            self.host_label()
        )
        .parse()
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A token endpoint URL: `https://`, or `http://` on loopback only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenUrl {
    /// Exactly as given: it is also the `aud` claim, which must not be normalized.
    text: String,
    url: Url,
}

impl FromStr for TokenUrl {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let shown = without_userinfo(s);
        let bad = |reason: &str| Error::TokenUrl {
            url: shown.clone(),
            reason: reason.to_owned(),
        };
        // The parser would silently drop these, and `aud` would then differ from the URL used.
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("it contains spaces or control characters"));
        }
        let url = Url::parse(s).map_err(|e| bad(&e.to_string()))?;
        if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
            return Err(bad("it must not carry credentials or a fragment"));
        }
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            "http" => return Err(Error::InsecureTokenUrl(shown)),
            _ => return Err(bad("the scheme must be https")),
        }
        if url.host().is_none() {
            return Err(bad("it has no host"));
        }
        Ok(TokenUrl {
            text: s.to_owned(),
            url,
        })
    }
}

/// The URL text with any `user:password@` replaced, for messages.
fn without_userinfo(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://(credentials removed)@{}", &rest[at + 1..]),
        None => s.to_owned(),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl TokenUrl {
    /// The URL as a string, for the `aud` claim and the POST.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed URL, for the HTTP client.
    pub fn url(&self) -> &Url {
        &self.url
    }
}

impl fmt::Display for TokenUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}
