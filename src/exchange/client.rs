//! The token client: one POST per attempt, its answer read and turned into an access token or
//! an error, and the attempts repeated as the retry policy says.

use std::time::SystemTime;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, LOCATION};

use super::error::{ExchangeError, StatusError};
use super::options::ClientOptions;
use super::request::{ExchangeContext, form_body};
use super::response::{
    BodyError, clock_skew, error_fields, parse_success, read_capped, skew_message,
};
use super::retry::{self, Next, retry_after};
use super::token::AccessToken;
use super::trust::{install_crypto_provider, tls_cause};
use crate::jose::SigningError;
use crate::kind::{HasKind, Kind};
use crate::netsuite::{ClientAssertion, TokenUrl};

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

/// Exchanges client assertions for access tokens.
#[derive(Clone, Debug)]
pub struct TokenClient {
    http: reqwest::Client,
    options: ClientOptions,
}

impl TokenClient {
    /// A client with these timeouts and retry policy (see [`http_client`]).
    pub fn new(options: ClientOptions) -> Result<TokenClient, ClientBuildError> {
        let http = http_client(&options)?;
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
            match retry::next(&self.options, err, attempt, max) {
                Next::Stop(err) => return Err(err.after(attempt)),
                Next::Retry(wait) => {
                    tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, "retrying");
                    tokio::time::sleep(wait).await;
                }
            }
            attempt += 1;
        }
    }

    /// A `HEAD` of `url` (no assertion, no body): the status and the server's `Date`, for
    /// `doctor`. Answered at all, an https endpoint's certificate was verified as a token
    /// request's would be (with `--ca-file`, only against it).
    pub async fn probe(
        &self,
        url: &TokenUrl,
    ) -> Result<(StatusCode, Option<SystemTime>), ExchangeError> {
        let response = self
            .http
            .head(url.url().clone())
            .send()
            .await
            .map_err(|e| self.transport_error(url.as_str(), e))?;
        let date = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok());
        Ok((response.status(), date))
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
        match Transport::of(&source) {
            Transport::Tls(reason) => ExchangeError::Tls { url, reason },
            Transport::Connect => ExchangeError::Connect {
                url,
                attempts: 1,
                source,
            },
            Transport::Timeout => ExchangeError::Timeout {
                url,
                limit: self.options.total_timeout,
            },
            Transport::Other => ExchangeError::Http { url, source },
        }
    }
}

/// The HTTP client every call to NetSuite is made with: redirects never followed, the
/// timeouts of `options`, its proxy setting, and certificates verified against the operating
/// system's roots (rustls-platform-verifier: the system store, `SSL_CERT_FILE`/`SSL_CERT_DIR`),
/// or only against the `ca_file`'s.
pub(super) fn http_client(options: &ClientOptions) -> Result<reqwest::Client, ClientBuildError> {
    install_crypto_provider();
    let mut builder = reqwest::Client::builder();
    if !options.use_proxy {
        builder = builder.no_proxy();
    }
    if let Some(ca_file) = &options.ca_file {
        let certs = ca_file.certificates().map_err(ClientBuildError)?;
        builder = builder.tls_certs_only(certs);
    }
    builder
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(options.connect_timeout)
        .timeout(options.total_timeout)
        .user_agent(concat!("suitekey/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(ClientBuildError)
}

/// What kind of transport failure a request met.
pub(super) enum Transport {
    /// The TLS handshake failed, as rustls put it.
    Tls(String),
    /// No connection.
    Connect,
    /// The time limit passed.
    Timeout,
    /// Anything else (a connection cut mid-request).
    Other,
}

impl Transport {
    /// The kind of `err`.
    pub(super) fn of(err: &reqwest::Error) -> Transport {
        if let Some(tls) = tls_cause(err) {
            Transport::Tls(tls.to_string())
        } else if err.is_connect() {
            Transport::Connect
        } else if err.is_timeout() {
            Transport::Timeout
        } else {
            Transport::Other
        }
    }
}

/// Where a redirect pointed, for a message: only the host (the rest of a location may carry
/// anything), resolved against the URL that was asked.
pub(super) fn redirect_host(asked: &url::Url, headers: &HeaderMap) -> String {
    headers
        .get(LOCATION)
        .and_then(|l| l.to_str().ok())
        .and_then(|l| asked.join(l).ok())
        .and_then(|u| u.host_str().map(str::to_owned))
        .map_or_else(
            || "an unreadable location".to_owned(),
            |h| format!("host '{h}'"),
        )
}

fn redirect_error(ctx: &ExchangeContext, status: StatusCode, headers: &HeaderMap) -> ExchangeError {
    ExchangeError::Redirect {
        url: ctx.token_url.as_str().to_owned(),
        status,
        location: redirect_host(ctx.token_url.url(), headers),
    }
}
