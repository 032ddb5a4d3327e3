//! The token exchange: a signed client assertion goes to NetSuite's token endpoint as the
//! three-field form of netsuite-m2m.md, an [`AccessToken`] comes back.
//!
//! Retries only where repeating is safe and useful (connection failures, HTTP 429 and 5xx), each
//! with a freshly signed assertion, so that no `jti` is ever sent twice. Every refusal is turned
//! into an error that explains NetSuite's code: the likely causes, the checks that tell them
//! apart, and the ids the request used.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, DATE, HeaderMap, LOCATION, RETRY_AFTER};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::jose::SigningError;
use crate::kind::{HasKind, Kind};
use crate::netsuite::{
    AUDIT_TRAIL, AccountId, CertificateId, ClientAssertion, ClientId, PERMANENT_CODES, Scopes,
    TokenUrl, explain,
};

/// Responses larger than this are refused: NetSuite's answers are a few hundred bytes, and a
/// bigger one is a misdirected request (a portal page, a proxy) that must not fill memory.
pub const MAX_BODY: usize = 64 * 1024;

/// A `Date` header further than this from the local clock is reported with the error.
pub const CLOCK_SKEW_LIMIT: Duration = Duration::from_secs(30);

/// The longest `expires_in` accepted; NetSuite's tokens live 3600 s, and a cache must not keep
/// a token for days because a server said so.
const MAX_EXPIRES_IN: u64 = 86_400;

/// The longest access token accepted. NetSuite's are about 1 KiB; one much longer would not
/// fit the `Authorization` header limits of most servers, so it is refused here, clearly.
pub const MAX_ACCESS_TOKEN_LEN: usize = 16 * 1024;

/// An OAuth 2.0 access token. The secret is never formatted: there is no `Display`, and `Debug`
/// shows only the type and expiry. Its text is always in RFC 6750's bearer token syntax
/// (checked where it is received), so it is safe in a header, a shell word or a curl config.
pub struct AccessToken {
    secret: SecretString,
    token_type: String,
    expires_at: SystemTime,
    /// The `expires_in` the server granted.
    lifetime: Duration,
    /// When it expires by the monotonic clock, which a step of the wall clock does not move.
    deadline: Instant,
}

impl AccessToken {
    /// The token itself, for an `Authorization: Bearer` header; do not log it.
    pub fn expose_secret(&self) -> &str {
        self.secret.expose_secret()
    }

    /// The token type, always `Bearer` (NetSuite's spelling, whatever case the server used).
    pub fn token_type(&self) -> &str {
        &self.token_type
    }

    /// When the token stops working, by the local clock at the time it was received: for
    /// display only, since the wall clock may be stepped afterwards (see [`Self::remaining`]).
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }

    /// How long the token remains valid, by the monotonic clock (zero once expired): what
    /// decisions about the token use.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The lifetime the server granted (`expires_in` when it was received).
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// How long the token remains valid after `now` by the wall clock (zero once expired).
    pub fn expires_in(&self, now: SystemTime) -> Duration {
        self.expires_at
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token_type", &self.token_type)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

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

/// Timeouts and retry policy of a [`TokenClient`].
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Limit for establishing the TCP and TLS connection.
    pub connect_timeout: Duration,
    /// Limit for one attempt, from connecting to the last byte of the response.
    pub total_timeout: Duration,
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The wait before the second attempt; it doubles for each further one, with jitter.
    pub base_backoff: Duration,
    /// No computed wait exceeds this.
    pub max_backoff: Duration,
    /// A `Retry-After` up to this long is honoured; a longer one ends the retries.
    pub max_retry_after: Duration,
    /// Go through the `HTTPS_PROXY`/`HTTP_PROXY` of the environment (off for loopback http).
    pub use_proxy: bool,
    /// `--ca-file`: the only roots an https endpoint's certificate may chain to; without it,
    /// the operating system's roots.
    pub ca_file: Option<CaFile>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(30),
            max_attempts: 3,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
            use_proxy: true,
            max_retry_after: Duration::from_secs(60),
            ca_file: None,
        }
    }
}

impl ClientOptions {
    /// The defaults for requests to `token_url`: plain http is only ever loopback (`TokenUrl`
    /// refuses anything else), and loopback never goes through a proxy.
    pub fn for_endpoint(token_url: &TokenUrl) -> ClientOptions {
        ClientOptions {
            use_proxy: token_url.url().scheme() == "https",
            ..ClientOptions::default()
        }
    }
}

/// The HTTP client could not be set up (TLS roots, resolver).
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot set up the HTTPS client (no usable CA certificates in the system store? install the ca-certificates package, or pass --ca-file FILE)"
)]
pub struct ClientBuildError(#[source] reqwest::Error);

impl HasKind for ClientBuildError {
    /// No way to reach the token endpoint.
    fn kind(&self) -> Kind {
        Kind::Endpoint
    }
}

/// A CA file larger than this is refused: a bundle of every public CA is about 200 KiB.
const MAX_CA_FILE: u64 = 1024 * 1024;

/// `--ca-file`: PEM certificates of the CA(s) a private token endpoint's certificate chains to.
/// They replace the operating system's roots (like curl's `--cacert`), so that a public CA
/// cannot vouch for a host the user meant to pin to a private one.
#[derive(Clone)]
pub struct CaFile {
    path: PathBuf,
    /// The certificates, DER.
    certs: Vec<Vec<u8>>,
}

impl fmt::Debug for CaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaFile")
            .field("path", &self.path)
            .field("certificates", &self.certs.len())
            .finish()
    }
}

/// Why a `--ca-file` is not usable.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    /// The file cannot be read.
    #[error("cannot read CA file '{}': {source}; --ca-file names a PEM file with the certificate of the CA that signed the token endpoint's certificate", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is too large to be a CA bundle.
    #[error("CA file '{}' is larger than {} KiB; it should hold only the CA certificate(s) of the token endpoint", .path.display(), MAX_CA_FILE / 1024)]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// Not PEM certificates, or one that cannot serve as a root.
    #[error("CA file '{}' {reason}; it must hold PEM certificates (-----BEGIN CERTIFICATE-----), e.g. the private CA's ca.pem", .path.display())]
    Unusable {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl CaFile {
    /// Reads the PEM certificates of `path`, refusing a file with none, with other PEM
    /// blocks (a private key put there by mistake), or with a certificate that cannot be a
    /// trust anchor.
    pub fn load(path: &Path) -> Result<CaFile, CaFileError> {
        let read = |source| CaFileError::Read {
            path: path.to_owned(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read)?.len();
        if size > MAX_CA_FILE {
            return Err(CaFileError::TooLarge {
                path: path.to_owned(),
            });
        }
        let text = std::fs::read(path).map_err(read)?;
        let unusable = |reason: String| CaFileError::Unusable {
            path: path.to_owned(),
            reason,
        };
        if !text.windows(11).any(|w| w == b"-----BEGIN ") {
            return Err(unusable("holds no PEM block".into()));
        }
        let chain = x509_cert::Certificate::load_pem_chain(&text)
            .map_err(|e| unusable(format!("is not a list of PEM certificates ({e})")))?;
        let mut certs = Vec::with_capacity(chain.len());
        let mut roots = rustls::RootCertStore::empty();
        for (i, cert) in chain.iter().enumerate() {
            let der = der::Encode::to_der(cert)
                .map_err(|e| unusable(format!("has a certificate that cannot be encoded ({e})")))?;
            roots
                .add(rustls::pki_types::CertificateDer::from(der.as_slice()))
                .map_err(|e| {
                    unusable(format!(
                        "has certificate {} that cannot be a root ({e})",
                        i + 1
                    ))
                })?;
            certs.push(der);
        }
        if certs.is_empty() {
            return Err(unusable("holds no certificate".into()));
        }
        Ok(CaFile {
            path: path.to_owned(),
            certs,
        })
    }

    /// The file the certificates came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn certificates(&self) -> Result<Vec<reqwest::Certificate>, reqwest::Error> {
        self.certs
            .iter()
            .map(|der| reqwest::Certificate::from_der(der))
            .collect()
    }
}

/// A NetSuite refusal (or any non-success HTTP status), explained.
#[derive(Debug)]
pub struct StatusError {
    /// The HTTP status.
    pub status: StatusCode,
    /// NetSuite's `error` field, when the body had one.
    pub code: Option<String>,
    /// The `error_description` field, when the body had one (NetSuite usually sends none).
    pub description: Option<String>,
    /// Server clock minus local clock in seconds, when beyond [`CLOCK_SKEW_LIMIT`].
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

fn skew_message(skew: i64) -> String {
    let side = if skew > 0 { "behind" } else { "ahead of" };
    format!(
        "the server's clock differs from this machine's by {} s (this machine is {side} it); NetSuite refuses assertions from the future — fix the local clock (NTP)",
        skew.unsigned_abs()
    )
}

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
        /// [`ClientOptions::max_retry_after`].
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
    fn after(mut self, attempts: u32) -> Self {
        match &mut self {
            ExchangeError::Connect { attempts: a, .. } => *a = attempts,
            ExchangeError::Status(s) => s.attempts = attempts,
            ExchangeError::RetryAfterTooLong { last, .. } => last.attempts = attempts,
            _ => {}
        }
        self
    }
}

/// What to do after a failed attempt.
enum Next {
    Retry(Duration),
    Stop(ExchangeError),
}

/// Exchanges client assertions for access tokens.
#[derive(Clone, Debug)]
pub struct TokenClient {
    http: reqwest::Client,
    options: ClientOptions,
}

impl TokenClient {
    /// A client with these timeouts and retry policy. Redirects are never followed.
    /// Certificates are verified against the operating system's roots (rustls-platform-verifier:
    /// the system store, `SSL_CERT_FILE`/`SSL_CERT_DIR`), or only against `ca_file`'s.
    pub fn new(options: ClientOptions) -> Result<TokenClient, ClientBuildError> {
        install_crypto_provider();
        let mut builder = reqwest::Client::builder();
        if !options.use_proxy {
            builder = builder.no_proxy();
        }
        if let Some(ca_file) = &options.ca_file {
            let certs = ca_file.certificates().map_err(ClientBuildError)?;
            builder = builder.tls_certs_only(certs);
        }
        let http = builder
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(options.connect_timeout)
            .timeout(options.total_timeout)
            .user_agent(concat!("suitekey/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ClientBuildError)?;
        Ok(TokenClient { http, options })
    }

    /// Obtains an access token, calling `assertion` once per attempt so that each attempt sends
    /// a fresh `jti` and `iat`. Signing returns a future so that it can wait for a token
    /// session owned by another thread (the agent) without blocking the runtime.
    pub async fn fetch<F>(
        &self,
        ctx: &ExchangeContext,
        mut assertion: impl FnMut() -> F,
    ) -> Result<AccessToken, ExchangeError>
    where
        F: std::future::Future<Output = Result<ClientAssertion, SigningError>>,
    {
        let max = self.options.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            let signed = assertion().await.map_err(ExchangeError::Assertion)?;
            tracing::debug!(attempt, jti = %signed.jti, url = %ctx.token_url, "requesting an access token");
            let err = match self.attempt(ctx, &signed).await {
                Ok(token) => return Ok(token),
                Err(err) => err,
            };
            match self.next(err, attempt, max) {
                Next::Stop(err) => return Err(err.after(attempt)),
                Next::Retry(wait) => {
                    tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, "retrying");
                    tokio::time::sleep(wait).await;
                }
            }
            attempt += 1;
        }
    }

    /// Whether and when to try again after `err` on attempt `attempt` of `max`.
    fn next(&self, err: ExchangeError, attempt: u32, max: u32) -> Next {
        if !err.is_retryable() || attempt >= max {
            return Next::Stop(err);
        }
        let asked = match &err {
            ExchangeError::Status(s) => s.retry_after,
            _ => None,
        };
        let wait = match asked {
            Some(wait) if wait > self.options.max_retry_after => {
                let ExchangeError::Status(last) = err else {
                    return Next::Stop(err);
                };
                return Next::Stop(ExchangeError::RetryAfterTooLong {
                    last,
                    wait,
                    limit: self.options.max_retry_after,
                });
            }
            Some(wait) => wait,
            None => backoff(&self.options, attempt),
        };
        // Logged only once a retry is certain: a Retry-After past the limit ends the tries.
        tracing::info!(
            attempt,
            "token request failed, will retry: {}",
            first_line(&err)
        );
        Next::Retry(wait)
    }

    /// One POST and its answer.
    async fn attempt(
        &self,
        ctx: &ExchangeContext,
        signed: &ClientAssertion,
    ) -> Result<AccessToken, ExchangeError> {
        let url = ctx.token_url.as_str();
        let mut response = self
            .http
            .post(ctx.token_url.url().clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(form_body(&signed.jws).to_string())
            .send()
            .await
            .map_err(|e| self.transport_error(url, e))?;
        let now = SystemTime::now();
        let status = response.status();
        let clock_skew = clock_skew(response.headers(), now);
        if let Some(skew) = clock_skew {
            tracing::warn!("{}", skew_message(skew));
        }
        if status.is_redirection() {
            return Err(redirect_error(ctx, status, response.headers()));
        }
        let body = read_capped(&mut response).await;
        if status.is_success() {
            let malformed = |reason: String| ExchangeError::Malformed {
                url: url.to_owned(),
                status,
                reason,
            };
            let body = body.map_err(|e| match e {
                BodyError::Read(e) if e.is_timeout() => self.transport_error(url, e),
                other => malformed(other.to_string()),
            })?;
            return parse_success(&body, now).map_err(malformed);
        }
        let (code, description) = body.map(|b| error_fields(&b)).unwrap_or_default();
        Err(ExchangeError::Status(Box::new(StatusError {
            status,
            code,
            description,
            clock_skew,
            retry_after: retry_after(response.headers(), now),
            attempts: 1,
            context: ctx.clone(),
        })))
    }

    fn transport_error(&self, url: &str, source: reqwest::Error) -> ExchangeError {
        let url = url.to_owned();
        if let Some(tls) = tls_cause(&source) {
            return ExchangeError::Tls {
                url,
                reason: tls.to_string(),
            };
        }
        if source.is_connect() {
            ExchangeError::Connect {
                url,
                attempts: 1,
                source,
            }
        } else if source.is_timeout() {
            ExchangeError::Timeout {
                url,
                limit: self.options.total_timeout,
            }
        } else {
            ExchangeError::Http { url, source }
        }
    }
}

/// The TLS error behind a transport failure, if it was one. rustls reports through
/// `io::Error`s (hyper-rustls wraps tokio-rustls' in another), whose `source()` skips the
/// error they wrap, so those are opened by hand.
fn tls_cause(err: &reqwest::Error) -> Option<&rustls::Error> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(mut e) = next {
        while let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            e = inner;
        }
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = e.source();
    }
    None
}

/// Installs ring as the process's TLS crypto provider unless one is installed. reqwest is built
/// without one so that ring (small and portable) is used instead of aws-lc, and every reqwest
/// client needs it, even for plain http. Losing a race to another installer is fine.
pub(crate) fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// The first line of an error's message, for a one-line log.
fn first_line(err: &dyn std::error::Error) -> String {
    let text = err.to_string();
    text.lines().next().unwrap_or_default().to_owned()
}

/// The request body: exactly NetSuite's three fields.
fn form_body(jws: &str) -> Zeroizing<String> {
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

/// Exponential backoff with "equal jitter": half the doubled wait, plus a random part of the
/// other half, so that clients that failed together do not retry together.
fn backoff(options: &ClientOptions, attempt: u32) -> Duration {
    let doubled = options
        .base_backoff
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let wait = doubled.min(options.max_backoff);
    let half = wait / 2;
    let mut random = [0u8; 8];
    // Without randomness the wait is merely less spread out; not worth failing for.
    let fraction = match getrandom::fill(&mut random) {
        Ok(()) => u64::from_le_bytes(random) as f64 / u64::MAX as f64,
        Err(_) => 0.5,
    };
    half + half.mul_f64(fraction)
}

/// Server clock minus local clock, in seconds, when the `Date` header shows more than
/// [`CLOCK_SKEW_LIMIT`] between them.
fn clock_skew(headers: &HeaderMap, now: SystemTime) -> Option<i64> {
    let date = headers.get(DATE)?.to_str().ok()?;
    let server = httpdate::parse_http_date(date).ok()?;
    let skew = match server.duration_since(now) {
        Ok(ahead) => i64::try_from(ahead.as_secs()).ok()?,
        Err(behind) => -i64::try_from(behind.duration().as_secs()).ok()?,
    };
    (skew.unsigned_abs() > CLOCK_SKEW_LIMIT.as_secs()).then_some(skew)
}

/// The wait a `Retry-After` header asks for: seconds, or an HTTP date.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn redirect_error(ctx: &ExchangeContext, status: StatusCode, headers: &HeaderMap) -> ExchangeError {
    // Only the host: the rest of a location may carry anything.
    let location = headers
        .get(LOCATION)
        .and_then(|l| l.to_str().ok())
        .and_then(|l| ctx.token_url.url().join(l).ok())
        .and_then(|u| u.host_str().map(str::to_owned))
        .map_or_else(
            || "an unreadable location".to_owned(),
            |h| format!("host '{h}'"),
        );
    ExchangeError::Redirect {
        url: ctx.token_url.as_str().to_owned(),
        status,
        location,
    }
}

/// Why a response body could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("the response is larger than {} KiB", MAX_BODY / 1024)]
    TooLarge,
    #[error("the response was cut short: {0}")]
    Read(reqwest::Error),
}

/// The body, read chunk by chunk and abandoned as soon as it exceeds [`MAX_BODY`].
pub(crate) async fn read_capped(
    response: &mut reqwest::Response,
) -> Result<Zeroizing<Vec<u8>>, BodyError> {
    let announced = response.content_length().unwrap_or(0);
    if announced > MAX_BODY as u64 {
        return Err(BodyError::TooLarge);
    }
    // Zeroizing: a success body holds the access token.
    let mut body = Zeroizing::new(Vec::with_capacity(announced as usize));
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// NetSuite's `{"error": …}` fields, if the body is such JSON.
pub(crate) fn error_fields(body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: Option<String>,
        error_description: Option<String>,
    }
    // Codes and descriptions are shown to the user: keep only printable, short text.
    let clean = |s: String| {
        let printable = s.len() <= 200 && s.chars().all(|c| !c.is_control());
        printable.then_some(s)
    };
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => (e.error.and_then(clean), e.error_description.and_then(clean)),
        Err(_) => (None, None),
    }
}

/// A success body: `access_token`, `expires_in` (number or numeric string), `token_type`
/// (Bearer, any case). The agent's answers have this form too. Values the server chose are
/// echoed in errors only when short and printable, and never the token.
pub(crate) fn parse_success(body: &[u8], now: SystemTime) -> Result<AccessToken, String> {
    #[derive(Deserialize)]
    struct SuccessBody {
        access_token: Option<String>,
        expires_in: Option<serde_json::Value>,
        token_type: Option<String>,
    }
    let parsed: SuccessBody = serde_json::from_slice(body).map_err(|e| not_json(&e))?;
    let secret = SecretString::from(parsed.access_token.ok_or("no access_token in the body")?);
    let token = secret.expose_secret();
    if token.len() > MAX_ACCESS_TOKEN_LEN {
        return Err(format!(
            "the access_token is {} bytes, more than the {MAX_ACCESS_TOKEN_LEN} accepted \
             (NetSuite's are about 1 KiB); check that the token URL is NetSuite's",
            token.len()
        ));
    }
    if !is_bearer_token_syntax(token) {
        return Err(format!(
            "the access_token is empty or holds characters outside RFC 6750's token syntax \
             (printable ASCII letters, digits, -._~+/ then trailing =), which a bearer token \
             never needs ({} bytes, not shown)",
            token.len()
        ));
    }
    let secs = expires_in(parsed.expires_in.as_ref())?;
    match parsed.token_type.as_deref() {
        Some(t) if t.eq_ignore_ascii_case("bearer") => {}
        Some(t) => return Err(format!("token_type {} is not Bearer", shown(t))),
        None => return Err("no token_type in the body".into()),
    }
    let lifetime = Duration::from_secs(secs);
    let beyond = "the token's expiry is beyond what the system clock can represent";
    let expires_at = now.checked_add(lifetime).ok_or(beyond)?;
    let deadline = Instant::now().checked_add(lifetime).ok_or(beyond)?;
    Ok(AccessToken {
        secret,
        token_type: "Bearer".into(),
        expires_at,
        lifetime,
        deadline,
    })
}

/// RFC 6750's `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
/// Every bearer token has this form; holding a token to it means a server's (or a socket
/// peer's) choice of token can carry no header, shell or curl-config syntax into what
/// suitekey prints or sets.
fn is_bearer_token_syntax(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// Why a body is not token-response JSON. Only syntax errors are quoted: serde's messages for
/// values of the wrong type repeat the value, which came from the server.
fn not_json(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Data => "JSON of the wrong shape (an object with access_token, expires_in \
                           and token_type is expected)"
            .to_owned(),
        Category::Eof => "truncated JSON".to_owned(),
        Category::Syntax | Category::Io => format!("invalid JSON ({e})"),
    };
    format!("the body is not the JSON a token response carries: {what}")
}

/// A server-chosen value for an error message: quoted when short and printable, else only its
/// length (it could be anything, even a token sent in the wrong field).
fn shown(value: &str) -> String {
    if value.len() <= 40 && value.chars().all(|c| !c.is_control()) {
        format!("'{value}'")
    } else {
        format!("({} bytes, not shown)", value.len())
    }
}

/// `expires_in` as seconds, from a JSON number or a numeric string.
fn expires_in(value: Option<&serde_json::Value>) -> Result<u64, String> {
    use serde_json::Value;
    let value = value.ok_or("no expires_in in the body")?;
    let secs = match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    let text = value.to_string();
    match secs {
        Some(s) if (1..=MAX_EXPIRES_IN).contains(&s) => Ok(s),
        Some(_) => Err(format!(
            "expires_in {} is outside 1..={MAX_EXPIRES_IN} seconds",
            shown(&text)
        )),
        None => Err(format!(
            "expires_in {} is not a number of seconds",
            shown(&text)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    /// A request as the test server saw it.
    #[derive(Clone, Debug)]
    struct Seen {
        head: String,
        body: String,
    }

    /// A minimal HTTP/1.1 responder: one connection per request, answers from `script` in order
    /// (the last one repeated).
    async fn serve(script: Vec<String>) -> (TokenUrl, Arc<Mutex<Vec<Seen>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            for i in 0.. {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let request = read_request(&mut sock).await;
                log.lock().unwrap().push(request);
                let answer = &script[i.min(script.len() - 1)];
                let _ = sock.write_all(answer.as_bytes()).await;
                let _ = sock.shutdown().await;
            }
        });
        (url.parse().unwrap(), seen)
    }

    async fn read_request(sock: &mut tokio::net::TcpStream) -> Seen {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let n = sock.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            assert!(n > 0, "connection closed before the request head");
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let n = sock.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8(buf[head_end..].to_vec()).unwrap();
        Seen { head, body }
    }

    fn response(status: &str, headers: &[(&str, &str)], body: &str) -> String {
        let mut r = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (name, value) in headers {
            r.push_str(&format!("{name}: {value}\r\n"));
        }
        r.push_str("\r\n");
        r.push_str(body);
        r
    }

    fn ok(body: &str) -> String {
        response("200 OK", &[("Content-Type", "application/json")], body)
    }

    fn refused(status: &str, code: &str) -> String {
        response(status, &[], &format!(r#"{{"error":"{code}"}}"#))
    }

    const TOKEN: &str = "eyJTOKEN.SECRET.PART";

    fn good() -> String {
        ok(&format!(
            r#"{{"access_token":"{TOKEN}","expires_in":3600,"token_type":"Bearer"}}"#
        ))
    }

    fn ctx(token_url: TokenUrl) -> ExchangeContext {
        ExchangeContext {
            certificate_id: "kid-CERT-1".parse().unwrap(),
            client_id: "CLIENT1234".parse().unwrap(),
            account: Some("1234567_SB1".parse().unwrap()),
            scopes: Scopes::default(),
            token_url,
        }
    }

    fn client() -> TokenClient {
        TokenClient::new(ClientOptions {
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(10),
            max_attempts: 3,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            max_retry_after: Duration::from_secs(60),
            use_proxy: false,
            ca_file: None,
        })
        .unwrap()
    }

    /// Runs a fetch against `script`; returns the result, the assertions signed, and the
    /// requests the server saw.
    async fn run(script: Vec<String>) -> (Result<AccessToken, ExchangeError>, u32, Vec<Seen>) {
        let (url, seen) = serve(script).await;
        let mut signed = 0;
        let result = client()
            .fetch(&ctx(url), || {
                signed += 1;
                std::future::ready(Ok(ClientAssertion {
                    jws: format!("hdr.claims{signed}.sig"),
                    jti: format!("jti-{signed}"),
                    expires_at: 0,
                }))
            })
            .await;
        let seen = seen.lock().unwrap().clone();
        (result, signed, seen)
    }

    #[tokio::test]
    async fn success_posts_exactly_the_three_fields() {
        let (result, signed, seen) = run(vec![good()]).await;
        let token = result.unwrap();
        assert_eq!(token.expose_secret(), TOKEN);
        assert_eq!(token.token_type(), "Bearer");
        let left = token.expires_in(SystemTime::now());
        assert!(left > Duration::from_secs(3500) && left <= Duration::from_secs(3600));
        assert_eq!(signed, 1);
        assert_eq!(seen.len(), 1);
        assert!(seen[0].head.starts_with("POST /token HTTP/1.1\r\n"));
        let head = seen[0].head.to_ascii_lowercase();
        assert!(head.contains("content-type: application/x-www-form-urlencoded"));
        assert!(!head.contains("authorization"));
        assert_eq!(
            seen[0].body,
            "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=hdr.claims1.sig"
        );
    }

    #[tokio::test]
    async fn expires_in_as_string_and_lowercase_bearer_are_accepted() {
        let body =
            format!(r#"{{"access_token":"{TOKEN}","expires_in":"1800","token_type":"bearer"}}"#);
        let token = run(vec![ok(&body)]).await.0.unwrap();
        assert!(token.expires_in(SystemTime::now()) <= Duration::from_secs(1800));
        assert_eq!(token.token_type(), "Bearer");
    }

    #[test]
    fn debug_never_shows_the_token() {
        let token = parse_success(
            format!(r#"{{"access_token":"{TOKEN}","expires_in":60,"token_type":"Bearer"}}"#)
                .as_bytes(),
            SystemTime::now(),
        )
        .unwrap();
        let shown = format!("{token:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("Bearer"));
    }

    #[test]
    fn bad_success_bodies_are_refused_with_a_reason() {
        let now = SystemTime::now();
        for (body, reason) in [
            (
                r#"{"expires_in":60,"token_type":"Bearer"}"#,
                "no access_token",
            ),
            (
                r#"{"access_token":"a b","expires_in":60,"token_type":"Bearer"}"#,
                "printable",
            ),
            (
                r#"{"access_token":"t","expires_in":"soon","token_type":"Bearer"}"#,
                "not a number",
            ),
            (
                r#"{"access_token":"t","expires_in":-5,"token_type":"Bearer"}"#,
                "not a number",
            ),
            (
                r#"{"access_token":"t","expires_in":0,"token_type":"Bearer"}"#,
                "outside",
            ),
            (
                r#"{"access_token":"t","token_type":"Bearer"}"#,
                "no expires_in",
            ),
            (
                r#"{"access_token":"t","expires_in":60,"token_type":"MAC"}"#,
                "not Bearer",
            ),
            (r#"{"access_token":"t","expires_in":60}"#, "no token_type"),
            ("<html>", "not the JSON"),
            (r#"{"access_token":"t","exp"#, "not the JSON"),
        ] {
            let err = parse_success(body.as_bytes(), now).unwrap_err();
            assert!(err.contains(reason), "{body}: {err}");
        }
    }

    #[tokio::test]
    async fn each_netsuite_code_is_explained_with_the_ids_used() {
        for (code, hint) in [
            ("invalid_request", "three-field form"),
            ("invalid_client", "Manage Integrations"),
            ("invalid_grant", "certificate id"),
            (
                "unauthorized_client",
                "Client Credentials (Machine to Machine) Grant",
            ),
            ("invalid_scope", "ScopeMismatched"),
            ("server_error", "MissingKeyId"),
            ("something_new", "does not know"),
        ] {
            let (result, signed, _) = run(vec![refused("400 Bad Request", code)]).await;
            assert_eq!(signed, 1, "{code}: a 4xx is not retried");
            let err = result.unwrap_err();
            assert!(!err.is_retryable());
            let text = err.to_string();
            for needle in [
                code,
                hint,
                "CLIENT1234",
                "kid-CERT-1",
                "1234567_SB1",
                "restlets,rest_webservices",
                "Login Audit Trail",
            ] {
                assert!(
                    text.contains(needle),
                    "{code}: '{needle}' missing from:\n{text}"
                );
            }
            assert!(!text.contains("hdr.claims"), "{text}");
        }
    }

    #[test]
    fn refusals_of_the_client_are_permanent_and_other_failures_are_not() {
        let url: TokenUrl = "http://127.0.0.1:9/token".parse().unwrap();
        let status = |status: StatusCode, code: Option<&str>, retry_after| {
            ExchangeError::Status(Box::new(StatusError {
                status,
                code: code.map(str::to_owned),
                description: None,
                clock_skew: None,
                retry_after,
                attempts: 1,
                context: ctx(url.clone()),
            }))
        };
        for code in PERMANENT_CODES {
            assert!(status(StatusCode::BAD_REQUEST, Some(code), None).is_permanent());
        }
        // NetSuite answers some malformed assertions with 500 invalid_grant: still a verdict.
        assert!(
            status(
                StatusCode::INTERNAL_SERVER_ERROR,
                Some("invalid_grant"),
                None
            )
            .is_permanent()
        );
        for code in [
            None,
            Some("server_error"),
            Some("invalid_request"),
            Some("new_code"),
        ] {
            assert!(!status(StatusCode::BAD_REQUEST, code, None).is_permanent());
        }
        let wait = Duration::from_secs(3600);
        let limited = status(StatusCode::TOO_MANY_REQUESTS, None, Some(wait));
        assert!(!limited.is_permanent());
        assert_eq!(limited.retry_after(), Some(wait));
        let ExchangeError::Status(last) = limited else {
            unreachable!()
        };
        let too_long = ExchangeError::RetryAfterTooLong {
            last,
            wait,
            limit: Duration::from_secs(60),
        };
        assert_eq!(too_long.retry_after(), Some(wait));
    }

    #[tokio::test]
    async fn server_errors_are_retried_with_fresh_assertions() {
        let fail = refused("500 Internal Server Error", "server_error");
        let (result, signed, seen) = run(vec![fail.clone(), fail, good()]).await;
        assert_eq!(result.unwrap().expose_secret(), TOKEN);
        assert_eq!(signed, 3);
        let bodies: Vec<&str> = seen.iter().map(|s| s.body.as_str()).collect();
        assert_eq!(bodies.len(), 3);
        for (i, body) in bodies.iter().enumerate() {
            assert!(body.ends_with(&format!("client_assertion=hdr.claims{}.sig", i + 1)));
        }
    }

    #[tokio::test]
    async fn a_server_error_that_names_an_oauth_error_is_not_retried() {
        // NetSuite answers some malformed assertions with 500 invalid_grant: signing again
        // would not change the answer.
        let fail = refused("500 Internal Server Error", "invalid_grant");
        let (result, signed, seen) = run(vec![fail, good()]).await;
        let text = result.unwrap_err().to_string();
        assert_eq!((signed, seen.len()), (1, 1));
        assert!(text.contains("invalid_grant"), "{text}");
    }

    #[tokio::test]
    async fn retries_stop_after_three_attempts() {
        let fail = response("503 Service Unavailable", &[], "");
        let (result, signed, seen) = run(vec![fail; 5]).await;
        let err = result.unwrap_err();
        assert_eq!((signed, seen.len()), (3, 3));
        let text = err.to_string();
        assert!(
            text.contains("503") && text.contains("after 3 attempts"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn retry_after_is_honoured() {
        let busy = response("429 Too Many Requests", &[("Retry-After", "1")], "");
        let (result, signed, _) = run(vec![busy, good()]).await;
        assert!(result.is_ok());
        assert_eq!(signed, 2);
    }

    #[tokio::test]
    async fn a_retry_after_beyond_the_limit_ends_the_retries() {
        let busy = response("429 Too Many Requests", &[("Retry-After", "3600")], "");
        let (result, signed, _) = run(vec![busy, good()]).await;
        let text = result.unwrap_err().to_string();
        assert_eq!(signed, 1);
        assert!(text.contains("wait 3600 s"), "{text}");
    }

    #[tokio::test]
    async fn oversized_bodies_are_refused() {
        let big = "x".repeat(MAX_BODY + 1);
        let announced = ok(&big);
        // No Content-Length: the body ends when the connection closes, read incrementally.
        let unannounced = format!(
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{}",
            "y".repeat(MAX_BODY * 4)
        );
        for answer in [announced, unannounced] {
            let err = run(vec![answer]).await.0.unwrap_err();
            assert!(matches!(err, ExchangeError::Malformed { .. }), "{err}");
            assert!(err.to_string().contains("64 KiB"), "{err}");
        }
    }

    #[tokio::test]
    async fn a_truncated_body_is_malformed() {
        let cut = "HTTP/1.1 200 OK\r\nContent-Length: 500\r\nConnection: close\r\n\r\n{\"access_token\":\"eyJ";
        let err = run(vec![cut.to_owned()]).await.0.unwrap_err();
        assert!(matches!(err, ExchangeError::Malformed { .. }), "{err}");
        assert!(err.to_string().contains("cut short"), "{err}");
    }

    #[tokio::test]
    async fn non_json_success_is_malformed() {
        let err = run(vec![ok("<html>portal</html>")]).await.0.unwrap_err();
        assert!(matches!(err, ExchangeError::Malformed { .. }), "{err}");
        assert!(!err.is_retryable());
    }

    #[tokio::test]
    async fn connection_refused_is_retried_then_reported() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url: TokenUrl = format!("http://{}/token", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        drop(listener);
        let mut signed = 0;
        let err = client()
            .fetch(&ctx(url), || {
                signed += 1;
                std::future::ready(Ok(ClientAssertion {
                    jws: "a.b.c".into(),
                    jti: "j".into(),
                    expires_at: 0,
                }))
            })
            .await
            .unwrap_err();
        assert_eq!(signed, 3);
        assert!(
            matches!(err, ExchangeError::Connect { attempts: 3, .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn clock_skew_is_reported() {
        let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(300));
        let answer = response(
            "400 Bad Request",
            &[("Date", &past)],
            r#"{"error":"invalid_grant"}"#,
        );
        let text = run(vec![answer]).await.0.unwrap_err().to_string();
        assert!(
            text.contains("clock differs from this machine's by 30"),
            "{text}"
        );
        assert!(text.contains("NTP"), "{text}");
        let now = httpdate::fmt_http_date(SystemTime::now());
        let answer = response(
            "400 Bad Request",
            &[("Date", &now)],
            r#"{"error":"invalid_grant"}"#,
        );
        let text = run(vec![answer]).await.0.unwrap_err().to_string();
        assert!(!text.contains("clock differs"), "{text}");
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let answer = response(
            "302 Found",
            &[("Location", "https://evil.example/steal?x=1")],
            "",
        );
        let (result, signed, seen) = run(vec![answer, good()]).await;
        let err = result.unwrap_err();
        assert_eq!((signed, seen.len()), (1, 1));
        let text = err.to_string();
        assert!(
            text.contains("evil.example") && !text.contains("steal"),
            "{text}"
        );
    }

    #[derive(Debug, thiserror::Error)]
    #[error("token unplugged")]
    struct Unplugged;

    impl HasKind for Unplugged {
        fn kind(&self) -> Kind {
            Kind::Token
        }
    }

    #[tokio::test]
    async fn assertion_failure_stops_before_any_request() {
        let (url, seen) = serve(vec![good()]).await;
        let err = client()
            .fetch(&ctx(url), || {
                std::future::ready(Err(SigningError::new(Unplugged)))
            })
            .await
            .unwrap_err();
        assert!(matches!(err, ExchangeError::Assertion(_)));
        assert!(seen.lock().unwrap().is_empty());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let options = ClientOptions::default();
        let first = backoff(&options, 1);
        assert!(first >= Duration::from_millis(250) && first <= Duration::from_millis(500));
        let late = backoff(&options, 30);
        assert!(late >= Duration::from_secs(5) && late <= Duration::from_secs(10));
    }

    // Hostile success bodies: sizes, nesting, overflow, types, encodings.

    fn success(access_token: &str, expires_in: &str, token_type: &str) -> String {
        format!(
            r#"{{"access_token":{access_token},"expires_in":{expires_in},"token_type":{token_type}}}"#
        )
    }

    #[test]
    fn an_expiry_beyond_the_clock_is_an_error_not_a_panic() {
        // The latest instant the platform's clock can hold, give or take a minute.
        let mut late = SystemTime::UNIX_EPOCH;
        for step in (0..63).rev().map(|bit| Duration::from_secs(1 << bit)) {
            if let Some(later) = late.checked_add(step) {
                late = later;
            }
        }
        let body = success(r#""t""#, "3600", r#""Bearer""#);
        let err = parse_success(body.as_bytes(), late).unwrap_err();
        assert!(err.contains("beyond what the system clock"), "{err}");
    }

    #[test]
    fn tokens_outside_rfc_6750_syntax_are_refused_without_echo() {
        let now = SystemTime::now();
        for good in [
            "t",
            "aZ09-._~+/",
            "abc=",
            "abc==",
            "~root",
            "eyJh.eyJz.c2ln",
        ] {
            let body = success(&format!("\"{good}\""), "60", r#""Bearer""#);
            let token = parse_success(body.as_bytes(), now).expect(good);
            assert_eq!(token.expose_secret(), good);
        }
        for bad in [
            "x;touch${IFS}/tmp/pwned;",
            "$(id)",
            "`id`",
            "a'b",
            r#"a\"b"#,
            r"a\\b",
            "a=b",
            "=",
            "=abc",
            "a,b",
            "a%0Ab",
            "caf\u{e9}",
            "ab\\u0000",
        ] {
            let body = success(&format!("\"{bad}\""), "60", r#""Bearer""#);
            let err = parse_success(body.as_bytes(), now).unwrap_err();
            assert!(err.contains("RFC 6750"), "{bad}: {err}");
            assert!(bad.len() < 3 || !err.contains(bad), "{bad} echoed: {err}");
        }
    }

    #[test]
    fn an_absurdly_long_access_token_is_refused_with_the_limit() {
        let now = SystemTime::now();
        let fits = "t".repeat(MAX_ACCESS_TOKEN_LEN);
        let body = success(&format!("\"{fits}\""), "60", r#""Bearer""#);
        assert!(parse_success(body.as_bytes(), now).is_ok());
        let long = "t".repeat(MAX_ACCESS_TOKEN_LEN + 1);
        let body = success(&format!("\"{long}\""), "60", r#""Bearer""#);
        let err = parse_success(body.as_bytes(), now).unwrap_err();
        assert!(err.contains(&MAX_ACCESS_TOKEN_LEN.to_string()), "{err}");
        assert!(!err.contains("ttt"), "{err}");
    }

    #[test]
    fn deep_nesting_and_bad_encodings_are_refused_without_a_crash() {
        let now = SystemTime::now();
        let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        for (body, reason) in [
            (
                success(r#""t""#, &deep, r#""Bearer""#).into_bytes(),
                "recursion limit",
            ),
            // Unknown fields are skipped without recursion, however deep.
            (
                format!("{}1{}", "{\"a\":".repeat(50_000), "}".repeat(50_000)).into_bytes(),
                "no access_token",
            ),
            (
                b"{\"access_token\":\"\xff\xfe\",\"expires_in\":60}".to_vec(),
                "invalid JSON",
            ),
            (b"\xef\xbb\xbf{}".to_vec(), "invalid JSON"),
            (b"{\"access_token\":\"t\\ud800\"}".to_vec(), "invalid JSON"),
            (Vec::new(), "truncated"),
        ] {
            let err = parse_success(&body, now).unwrap_err();
            assert!(err.contains(reason), "{err}");
            assert!(err.len() < 300, "{err}");
            let _ = error_fields(&body);
        }
    }

    #[test]
    fn server_chosen_values_are_echoed_only_when_short_and_printable() {
        let now = SystemTime::now();
        let long_type = format!("\"{}\"", "X".repeat(1000));
        for (body, shown, hidden) in [
            (success(r#""t""#, "60", r#""MAC""#), "'MAC'", ""),
            (success(r#""t""#, "60", &long_type), "1000 bytes", "XXXX"),
            (
                success(r#""t""#, "60", r#""Bear\u001b[2Jer""#),
                "bytes, not shown",
                "\u{1b}",
            ),
            (
                success(
                    r#""t""#,
                    r#""SECRETSECRETSECRETSECRETSECRETSECRETSECRET""#,
                    r#""Bearer""#,
                ),
                "not shown",
                "SECRET",
            ),
            (r#""SECRET-TOKEN""#.to_owned(), "wrong shape", "SECRET"),
            (success("7", "60", r#""Bearer""#), "wrong shape", ""),
        ] {
            let err = parse_success(body.as_bytes(), now).unwrap_err();
            assert!(err.contains(shown), "{body}: {err}");
            assert!(hidden.is_empty() || !err.contains(hidden), "{body}: {err}");
        }
    }

    /// JSON values of every kind, nested a little.
    fn any_json() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,20}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_give_an_error_or_a_sane_token(
            data in prop::collection::vec(any::<u8>(), 0..256)
        ) {
            crate::fuzzing::token_response(&data);
        }

        #[test]
        fn json_like_garbage_never_panics(
            body in r#"[{}\[\]":,0-9a-z_.eE+\- \\]{0,80}"#
        ) {
            crate::fuzzing::token_response(body.as_bytes());
        }

        /// A valid response with one field replaced by any JSON value is refused, naming the
        /// problem, unless the value happens to be valid; the token is never echoed.
        #[test]
        fn one_field_of_another_type_is_refused_or_valid(
            field in 0..3usize,
            value in any_json(),
        ) {
            let mut body = serde_json::json!({
                "access_token": "SECRETTOKEN",
                "expires_in": 3600,
                "token_type": "Bearer",
            });
            let name = ["access_token", "expires_in", "token_type"][field];
            body[name] = value.clone();
            let now = SystemTime::now();
            match parse_success(body.to_string().as_bytes(), now) {
                Ok(token) => {
                    let secs = token.expires_at().duration_since(now).unwrap().as_secs();
                    prop_assert!((1..=MAX_EXPIRES_IN).contains(&secs));
                    prop_assert!(name != "token_type" || value.as_str().is_some_and(|t| t.eq_ignore_ascii_case("bearer")));
                }
                Err(err) => {
                    prop_assert!(!err.contains("SECRETTOKEN"), "{err}");
                    let named = err.contains(name) || err.contains("wrong shape");
                    prop_assert!(named, "{name} = {value}: {err}");
                }
            }
        }

        /// Every number or numeric string for `expires_in` gives an error or exactly that many
        /// seconds, within a day: no overflow, no rounding, no negative or zero lifetime.
        #[test]
        fn expires_in_is_exact_or_refused(
            text in prop_oneof![
                any::<i128>().prop_map(|n| n.to_string()),
                any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()).prop_map(|f| format!("{f:e}")),
                (0..=100_000u64).prop_map(|n| n.to_string()),
                (0..=100_000u64).prop_map(|n| format!("\"{n}\"")),
                "-?[0-9]{1,30}(\\.[0-9]{1,5})?([eE][+-]?[0-9]{1,4})?",
            ],
        ) {
            let now = SystemTime::now();
            let body = success(r#""t""#, &text, r#""Bearer""#);
            match parse_success(body.as_bytes(), now) {
                Ok(token) => {
                    let secs = token.expires_at().duration_since(now).unwrap();
                    prop_assert!(secs >= Duration::from_secs(1) && secs <= Duration::from_secs(MAX_EXPIRES_IN));
                    prop_assert_eq!(secs.subsec_nanos(), 0);
                    let value: f64 = text.trim_matches('"').parse().unwrap();
                    prop_assert_eq!(secs.as_secs() as f64, value);
                }
                Err(err) => prop_assert!(err.contains("expires_in") || err.contains("not the JSON"), "{text}: {err}"),
            }
        }
    }
}
