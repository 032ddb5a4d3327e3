//! The account id and the URLs of its endpoints: which NetSuite hosts an account's requests
//! go to (the token endpoint; the certificates API), and which URLs a profile may name.

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
        self.foreign_host(url.url()).map_or(Ok(()), |host| {
            Err(Error::ForeignTokenUrl {
                host,
                account: self.0.clone(),
                label: self.host_label(),
            })
        })
    }

    /// Accepts a certificates API URL on one of this account's NetSuite hosts or loopback, as
    /// [`AccountId::check_token_url`] does: the API is called with an access token, which must
    /// not go to a host the account does not own because a config file named it.
    pub fn check_certificates_url(&self, url: &CertificatesUrl) -> Result<(), Error> {
        self.foreign_host(&url.url).map_or(Ok(()), |host| {
            Err(Error::ForeignCertificatesUrl {
                host,
                account: self.0.clone(),
                label: self.host_label(),
            })
        })
    }

    /// The host of `url` when it is neither loopback nor one of this account's NetSuite hosts.
    fn foreign_host(&self, url: &Url) -> Option<String> {
        if is_loopback(url) {
            return None;
        }
        let label = self.host_label();
        let host = url.host_str().unwrap_or_default();
        let owned = ["suitetalk", "restlets", "connect"]
            .iter()
            .any(|service| host == format!("{label}.{service}.api.netsuite.com"));
        (!owned).then(|| host.to_owned())
    }

    /// The account's certificates API: its restlets host, where NetSuite serves
    /// `/services/rest/auth/oauth2/v1/clients/…/certificates`.
    pub fn certificates_url(&self) -> Result<CertificatesUrl, Error> {
        format!("https://{}.restlets.api.netsuite.com", self.host_label()).parse()
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
        let url = endpoint_url(s).map_err(|problem| match problem {
            UrlProblem::Insecure(shown) => Error::InsecureTokenUrl(shown),
            UrlProblem::Malformed { url, reason } => Error::TokenUrl { url, reason },
        })?;
        Ok(TokenUrl {
            text: s.to_owned(),
            url,
        })
    }
}

/// Why a URL cannot be an endpoint suitekey sends credentials to.
enum UrlProblem {
    /// Plain http to a host that is not loopback (the URL as shown).
    Insecure(String),
    /// Not a usable URL: the URL as shown, and why.
    Malformed { url: String, reason: String },
}

/// The rules every endpoint URL follows (the token URL, the certificates API): no spaces or
/// control characters (the parser would silently drop them), no credentials or fragment,
/// `https://`, or `http://` on loopback only, and a host.
fn endpoint_url(s: &str) -> Result<Url, UrlProblem> {
    let shown = without_userinfo(s);
    let bad = |reason: &str| UrlProblem::Malformed {
        url: shown.clone(),
        reason: reason.to_owned(),
    };
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
        "http" => return Err(UrlProblem::Insecure(shown)),
        _ => return Err(bad("the scheme must be https")),
    }
    if url.host().is_none() {
        return Err(bad("it has no host"));
    }
    Ok(url)
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

/// Whether `url`'s host is loopback (`localhost`, 127.0.0.0/8, `::1`).
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

    /// Whether it is a loopback URL (the emulator, the demo, the tests).
    pub fn is_loopback(&self) -> bool {
        is_loopback(&self.url)
    }
}

impl fmt::Display for TokenUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Where NetSuite's certificate management API is: a base URL (scheme, host, port and maybe a
/// path prefix) that the API's paths are appended to. `https://`, or `http://` on loopback
/// only, as for the token URL; no query, credentials or fragment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificatesUrl {
    url: Url,
}

impl FromStr for CertificatesUrl {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let url = endpoint_url(s).map_err(|problem| match problem {
            UrlProblem::Insecure(shown) => Error::InsecureCertificatesUrl(shown),
            UrlProblem::Malformed { url, reason } => Error::CertificatesUrl { url, reason },
        })?;
        if url.query().is_some() {
            return Err(Error::CertificatesUrl {
                url: without_userinfo(s),
                reason: "it must not carry a query; give the base URL the API's paths are appended to, e.g. https://1234567.restlets.api.netsuite.com".into(),
            });
        }
        Ok(CertificatesUrl { url })
    }
}

impl CertificatesUrl {
    /// The origin (scheme, host and port) of `token_url`: where the emulator, or any token
    /// endpoint on loopback, serves the certificates API too.
    pub fn origin_of(token_url: &TokenUrl) -> CertificatesUrl {
        let mut url = token_url.url().clone();
        url.set_path("");
        url.set_query(None);
        CertificatesUrl { url }
    }

    /// The full URL of `path` (which starts with `/`) under this base.
    pub fn join(&self, path: &str) -> Url {
        let mut url = self.url.clone();
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}{path}"));
        url
    }

    /// Whether it is a loopback URL (the emulator).
    pub fn is_loopback(&self) -> bool {
        is_loopback(&self.url)
    }
}

impl fmt::Display for CertificatesUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.url.as_str().trim_end_matches('/'))
    }
}
