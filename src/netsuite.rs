//! NetSuite's side of the M2M flow: account ids, token URLs, scopes, and the client assertion.
//!
//! Every value here is checked when it is built (`FromStr`), so an [`AssertionRequest`] that
//! exists is one NetSuite's rules allow.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use url::Url;

use crate::jose::{self, Alg, JwsError, Signer};
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
}

impl HasKind for Error {
    /// Every NetSuite value comes from the user.
    fn kind(&self) -> Kind {
        Kind::Usage
    }
}

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
    /// points: the `aud` claim is the token URL itself ([`AssertionRequest::sign`]), and NetSuite
    /// refuses an assertion whose `aud` is not its own token URL (`invalid_grant`). Whoever
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

/// A NetSuite OAuth 2.0 scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// RESTlets.
    Restlets,
    /// REST web services (record and query APIs).
    RestWebservices,
    /// SuiteAnalytics Connect.
    SuiteAnalytics,
}

impl Scope {
    const ALL: [Scope; 3] = [
        Scope::Restlets,
        Scope::RestWebservices,
        Scope::SuiteAnalytics,
    ];

    /// The scope as NetSuite spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Restlets => "restlets",
            Scope::RestWebservices => "rest_webservices",
            Scope::SuiteAnalytics => "suite_analytics",
        }
    }
}

/// A non-empty, duplicate-free list of scopes, in the order given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Scopes(Vec<Scope>);

impl FromStr for Scopes {
    type Err = Error;

    /// Parses `restlets,rest_webservices` (commas or `+`, spaces ignored).
    fn from_str(s: &str) -> Result<Self, Error> {
        let mut scopes = Vec::new();
        for name in s.split([',', '+']).map(str::trim).filter(|n| !n.is_empty()) {
            let scope = Scope::ALL
                .into_iter()
                .find(|sc| sc.as_str() == name)
                .ok_or_else(|| Error::Scope(name.to_owned()))?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        if scopes.is_empty() {
            Err(Error::NoScope)
        } else {
            Ok(Scopes(scopes))
        }
    }
}

impl Scope {
    /// The scope NetSuite spells `name`, if any (exact, case-sensitive, as NetSuite compares).
    pub fn from_name(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl Scopes {
    /// All three scopes NetSuite knows.
    pub fn all() -> Scopes {
        Scopes(Scope::ALL.to_vec())
    }

    /// The scopes, in the order given.
    pub fn as_slice(&self) -> &[Scope] {
        &self.0
    }
}

impl Default for Scopes {
    /// `restlets,rest_webservices`, the two scopes NetSuite's M2M examples enable.
    fn default() -> Self {
        Scopes(vec![Scope::Restlets, Scope::RestWebservices])
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|s| s.as_str()).collect();
        f.write_str(&names.join(","))
    }
}

/// Defines a checked identifier newtype: its `FromStr` applies `$valid`, its error is `$err`.
macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $err:ident, $valid:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $name(String);

        impl FromStr for $name {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self, Error> {
                let valid: fn(u8) -> bool = $valid;
                if !s.is_empty() && s.len() <= 256 && s.bytes().all(valid) {
                    Ok($name(s.to_owned()))
                } else {
                    Err(Error::$err(s.to_owned()))
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

identifier!(
    /// The integration record's client id (consumer key), the assertion's `iss`.
    ClientId,
    ClientId,
    |b| b.is_ascii_alphanumeric()
);
identifier!(
    /// The id NetSuite shows for an uploaded certificate, the assertion's `kid`.
    CertificateId,
    CertificateId,
    |b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
);

impl CertificateId {
    /// The id NetSuite shows for a certificate: base64url (no padding) of SHA-256 over its DER
    /// bytes, the JOSE `x5t#S256` thumbprint (observed; see netsuite-m2m.md).
    pub fn of_certificate(der: &[u8]) -> CertificateId {
        CertificateId(jose::b64url(&jose::Hash::Sha256.digest(der)))
    }
}

/// How long a new certificate is valid, in days: 1 to 730 (NetSuite's two years), 730 by
/// default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidityDays(u32);

impl ValidityDays {
    /// NetSuite accepts certificates valid for at most two years.
    pub const MAX: u32 = 730;

    /// The validity as a duration.
    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.0) * 86_400)
    }

    /// The number of days.
    pub fn days(self) -> u32 {
        self.0
    }
}

impl Default for ValidityDays {
    fn default() -> Self {
        ValidityDays(Self::MAX)
    }
}

impl FromStr for ValidityDays {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let digits = !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit());
        match s.parse::<u32>() {
            Ok(n) if digits && (1..=Self::MAX).contains(&n) => Ok(ValidityDays(n)),
            _ => Err(Error::ValidityDays(s.to_owned())),
        }
    }
}

/// How long an assertion is valid: 1 to 3600 seconds, 300 by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetime(u64);

impl Lifetime {
    /// NetSuite refuses `exp` more than this far after `iat`.
    pub const MAX_SECS: u64 = 3600;

    /// Seconds.
    pub fn secs(self) -> u64 {
        self.0
    }
}

impl Default for Lifetime {
    fn default() -> Self {
        Lifetime(300)
    }
}

impl FromStr for Lifetime {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        match s.parse::<u64>() {
            Ok(n) if digits && (1..=Self::MAX_SECS).contains(&n) => Ok(Lifetime(n)),
            _ => Err(Error::Lifetime(s.to_owned())),
        }
    }
}

/// Everything NetSuite needs in a client assertion, already validated.
#[derive(Clone, Debug)]
pub struct AssertionRequest {
    /// `iss`.
    pub client_id: ClientId,
    /// `kid`.
    pub certificate_id: CertificateId,
    /// `aud` and where the assertion is sent.
    pub token_url: TokenUrl,
    /// `scope`.
    pub scopes: Scopes,
    /// `exp - iat`.
    pub lifetime: Lifetime,
}

/// The JWS protected header of a client assertion.
#[derive(Serialize)]
struct Header<'a> {
    typ: &'static str,
    alg: Alg,
    kid: &'a str,
}

/// The claims of a client assertion, in the order NetSuite's examples use.
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a Scopes,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
}

/// A signed client assertion: the compact JWS posted as `client_assertion`.
pub struct ClientAssertion {
    /// The compact JWS.
    pub jws: String,
    /// Its `jti`, to tell retries apart.
    pub jti: String,
    /// Its `exp`, seconds since the epoch.
    pub expires_at: u64,
}

impl fmt::Debug for ClientAssertion {
    // A live assertion is a bearer credential for minutes: keep it out of debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAssertion")
            .field("jti", &self.jti)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Why an assertion could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AssertionError {
    /// The clock is before 1970, so `iat` cannot be written.
    #[error(
        "the system clock is before 1970; fix the clock (NetSuite refuses assertions from the future or the past)"
    )]
    Clock,
    /// No randomness for the `jti`.
    #[error("cannot get random bytes for the assertion's jti: {0}")]
    Random(String),
    /// Assembling or signing the JWS failed.
    #[error(transparent)]
    Jws(#[from] JwsError),
}

impl HasKind for AssertionError {
    /// The signer's kind when it failed; a clock or randomness failure is the machine's, told
    /// as the token's (as a failure to sign).
    fn kind(&self) -> Kind {
        match self {
            AssertionError::Jws(e) => e.kind(),
            AssertionError::Clock | AssertionError::Random(_) => Kind::Token,
        }
    }
}

impl AssertionRequest {
    /// Builds and signs a client assertion valid from `now` for the request's lifetime.
    pub fn sign<S: Signer>(
        &self,
        signer: &S,
        now: SystemTime,
    ) -> Result<ClientAssertion, AssertionError> {
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| AssertionError::Clock)?
            .as_secs();
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).map_err(|e| AssertionError::Random(e.to_string()))?;
        let jti = jose::b64url(&random);
        let claims = Claims {
            iss: &self.client_id.0,
            scope: &self.scopes,
            aud: self.token_url.as_str(),
            iat,
            exp: iat + self.lifetime.secs(),
            jti: jti.clone(),
        };
        let header = Header {
            typ: "JWT",
            alg: signer.alg(),
            kid: &self.certificate_id.0,
        };
        let jws = jose::compact_jws(&header, &claims, signer)?;
        Ok(ClientAssertion {
            jws,
            jti,
            expires_at: claims.exp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_maps_to_host_and_token_url() {
        let acct: AccountId = "1234567_SB1".parse().unwrap();
        assert_eq!(acct.host_label(), "1234567-sb1");
        assert_eq!(
            acct.token_url().unwrap().as_str(),
            "https://1234567-sb1.suitetalk.api.netsuite.com/services/rest/auth/oauth2/v1/token"
        );
    }

    #[test]
    fn bad_account_ids_are_refused_before_they_reach_a_host_name() {
        for bad in [
            "",
            "xn--zz",
            "XN--ZZ",
            "ab__cd",
            "_",
            "-",
            "1234567_",
            "_SB1",
            "1234567.evil.com",
            "123 4567",
            "acct/../x",
            "ünï",
            &"9".repeat(65),
        ] {
            let err = bad.parse::<AccountId>().unwrap_err();
            assert!(err.to_string().contains("letters, digits"), "{bad}: {err}");
        }
    }

    #[test]
    fn scopes_parse_dedupe_and_serialize_as_an_array() {
        let s: Scopes = "restlets, rest_webservices,restlets".parse().unwrap();
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"["restlets","rest_webservices"]"#
        );
        assert_eq!(
            "suite_analytics+restlets"
                .parse::<Scopes>()
                .unwrap()
                .to_string(),
            "suite_analytics,restlets"
        );
        assert_eq!(
            "restlet".parse::<Scopes>(),
            Err(Error::Scope("restlet".into()))
        );
        assert_eq!(" , ".parse::<Scopes>(), Err(Error::NoScope));
    }

    #[test]
    fn lifetime_is_bounded_by_netsuites_hour() {
        assert_eq!("3600".parse::<Lifetime>().unwrap().secs(), 3600);
        for bad in ["0", "3601", "-1", "5m", "", "+300", " 300"] {
            assert!(
                bad.parse::<Lifetime>()
                    .unwrap_err()
                    .to_string()
                    .contains("3600"),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_token_url_must_be_on_one_of_the_accounts_hosts_or_loopback() {
        let account: AccountId = "1234567_SB1".parse().unwrap();
        for ok in [
            "https://1234567-sb1.suitetalk.api.netsuite.com/services/rest/auth/oauth2/v1/token",
            "https://1234567-SB1.restlets.api.netsuite.com/services/rest/auth/oauth2/v1/token",
            "https://1234567-sb1.connect.api.netsuite.com:443/x",
            "http://127.0.0.1:8080/t",
            "https://[::1]/t",
            "http://localhost/t",
        ] {
            let url: TokenUrl = ok.parse().unwrap();
            assert_eq!(account.check_token_url(&url), Ok(()), "{ok}");
        }
        for bad in [
            "https://evil.example/token",
            "https://1234567.suitetalk.api.netsuite.com/t",
            "https://1234567-sb1.suitetalk.api.netsuite.com.evil.example/t",
            "https://evil.example/1234567-sb1.suitetalk.api.netsuite.com",
            "https://x.1234567-sb1.suitetalk.api.netsuite.com/t",
            "https://1234567-sb1.rest.api.netsuite.com/t",
            "https://1234567-sb1.suitetalk.api.netsuite.com./t",
            "https://10.0.0.1/t",
        ] {
            let url: TokenUrl = bad.parse().unwrap();
            let err = account.check_token_url(&url).unwrap_err().to_string();
            for want in [
                "1234567_SB1",
                "1234567-sb1.suitetalk.api.netsuite.com",
                "pass --token-url to override",
                url.url().host_str().unwrap(),
            ] {
                assert!(err.contains(want), "{bad}: {want} missing from {err}");
            }
        }
    }

    #[test]
    fn token_urls_need_https_except_on_loopback() {
        assert!("https://example.com/token".parse::<TokenUrl>().is_ok());
        // aud must be exactly what the user gave, not the parser's normal form.
        assert_eq!(
            "https://Example.com".parse::<TokenUrl>().unwrap().as_str(),
            "https://Example.com"
        );
        for ok in [
            "http://127.0.0.1:8080/t",
            "http://localhost/t",
            "http://[::1]:9/t",
        ] {
            assert!(ok.parse::<TokenUrl>().is_ok(), "{ok}");
        }
        let err = "http://10.0.0.1/token".parse::<TokenUrl>().unwrap_err();
        assert!(matches!(err, Error::InsecureTokenUrl(_)), "{err}");
        assert!("ftp://x/y".parse::<TokenUrl>().is_err());
        let err = "https://user:S3CRET@x/y"
            .parse::<TokenUrl>()
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("S3CRET") && err.contains("credentials"),
            "{err}"
        );
        let err = "http://u:S3CRET@10.0.0.1/y"
            .parse::<TokenUrl>()
            .unwrap_err()
            .to_string();
        assert!(!err.contains("S3CRET"), "{err}");
        for spaced in [
            " https://x.example/t",
            "https://x.exa\nmple/t",
            "https://x.example/t\t",
        ] {
            assert!(
                spaced
                    .parse::<TokenUrl>()
                    .unwrap_err()
                    .to_string()
                    .contains("spaces"),
                "{spaced:?}"
            );
        }
        assert!("not a url".parse::<TokenUrl>().is_err());
    }

    #[test]
    fn identifiers_refuse_empty_and_odd_characters() {
        assert!("1c34ab".parse::<ClientId>().is_ok());
        assert!("".parse::<ClientId>().is_err());
        assert!("ab cd".parse::<ClientId>().is_err());
        assert!("NPMnRyPg-x_Y".parse::<CertificateId>().is_ok());
        assert!("a\"b".parse::<CertificateId>().is_err());
    }

    #[derive(Debug, thiserror::Error)]
    #[error("no key")]
    struct NoKey;

    impl HasKind for NoKey {
        fn kind(&self) -> Kind {
            Kind::Token
        }
    }

    struct Zeros;
    impl Signer for Zeros {
        type Error = NoKey;
        fn alg(&self) -> Alg {
            Alg::ES256
        }
        fn public_key(&self) -> Result<crate::jose::PublicKey, Self::Error> {
            Err(NoKey)
        }
        fn sign(&self, _: &[u8]) -> Result<Vec<u8>, Self::Error> {
            Ok(vec![0; 64])
        }
    }

    fn request_to(token_url: TokenUrl) -> AssertionRequest {
        AssertionRequest {
            client_id: "c1".parse().unwrap(),
            certificate_id: "kid-1".parse().unwrap(),
            token_url,
            scopes: Scopes::default(),
            lifetime: "600".parse().unwrap(),
        }
    }

    /// The decoded header and claims of a compact JWS.
    fn decoded(jws: &str) -> (Vec<u8>, serde_json::Value) {
        use base64::Engine as _;
        let parts: Vec<&str> = jws.split('.').collect();
        let dec = |p: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .unwrap()
        };
        (
            dec(parts[0]),
            serde_json::from_slice(&dec(parts[1])).unwrap(),
        )
    }

    #[test]
    fn assertion_carries_exactly_the_claims_netsuite_expects() {
        let account: AccountId = "1234567".parse().unwrap();
        let req = request_to(account.token_url().unwrap());
        let now = UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let a = req.sign(&Zeros, now).unwrap();
        let (header, claims) = decoded(&a.jws);
        assert_eq!(header, br#"{"typ":"JWT","alg":"ES256","kid":"kid-1"}"#);
        let expected = serde_json::json!({
            "iss": "c1", "scope": ["restlets", "rest_webservices"],
            "aud": "https://1234567.suitetalk.api.netsuite.com/services/rest/auth/oauth2/v1/token",
            "iat": 1_700_000_000u64, "exp": 1_700_000_600u64, "jti": a.jti,
        });
        assert_eq!(claims, expected);
        assert_eq!(a.jti.len(), 22);
        assert_ne!(
            req.sign(&Zeros, now).unwrap().jti,
            a.jti,
            "jti must be fresh per assertion"
        );
        assert!(!format!("{a:?}").contains(&a.jws));
    }

    /// Why a loopback token URL may skip the account check: the assertion sent there names it
    /// as `aud`, exactly as given, so NetSuite would refuse it (see `check_token_url`).
    #[test]
    fn an_assertion_for_a_loopback_url_names_that_url_as_aud() {
        let account: AccountId = "1234567".parse().unwrap();
        for loopback in [
            "http://127.0.0.1:8080/services/rest/auth/oauth2/v1/token",
            "http://localhost:9/t",
            "https://[::1]/t",
        ] {
            let url: TokenUrl = loopback.parse().unwrap();
            assert_eq!(account.check_token_url(&url), Ok(()), "{loopback}");
            let a = request_to(url).sign(&Zeros, SystemTime::now()).unwrap();
            let (_, claims) = decoded(&a.jws);
            assert_eq!(claims["aud"], loopback);
            assert_ne!(
                claims["aud"].as_str(),
                Some(account.token_url().unwrap().as_str()),
                "never NetSuite's token URL"
            );
        }
    }

    #[test]
    fn certificate_validity_is_one_to_730_days() {
        assert_eq!("730".parse::<ValidityDays>().unwrap().days(), 730);
        assert_eq!("1".parse::<ValidityDays>().unwrap().days(), 1);
        for bad in ["0", "731", "-1", "+5", "", "1e3", "99999999999"] {
            let err = bad.parse::<ValidityDays>().unwrap_err().to_string();
            assert!(err.contains("two years"), "{bad}: {err}");
        }
        assert_eq!(ValidityDays::default().days(), 730);
    }

    #[test]
    fn certificate_ids_are_base64url_sha256_of_the_der() {
        // SHA-256("") in base64url without padding.
        assert_eq!(
            CertificateId::of_certificate(b"").to_string(),
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
        );
    }
}
