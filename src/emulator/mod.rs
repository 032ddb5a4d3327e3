//! A strict NetSuite token endpoint on loopback, for CI and the demo (`suitekey emulate`).
//!
//! It answers like NetSuite — the same status codes and bare `{"error": …}` bodies — and logs
//! the real reason on stderr, as NetSuite's Login Audit Trail would. The rules themselves are
//! the pure [`rules::check_request`]; this module is the HTTP around them:
//!
//! | route | answer |
//! | --- | --- |
//! | `POST /services/rest/auth/oauth2/v1/token` | the token endpoint ([`TOKEN_PATH`]); other methods 405 |
//! | `GET /services/rest/record/v1/metadata-catalog` | 200 with a `Bearer` token it issued (scope `rest_webservices`), else 401 |
//! | `GET /_emulator/stats` | [`Stats`] as JSON, for tests |
//! | anything else | 404 |
//!
//! Bodies over [`MAX_BODY`] get 413. Only loopback addresses are served: the emulator accepts
//! any client that can reach it and must never be a real endpoint.

mod registration;
pub mod rules;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::json;

pub use registration::parse_registration;
pub use rules::Registration;
use rules::{Context, Grant, ReplayLog, TokenRequest};

use crate::kind::{HasKind, Kind};
use crate::netsuite::Scope;

/// The token endpoint's path, as on NetSuite.
pub const TOKEN_PATH: &str = "/services/rest/auth/oauth2/v1/token";
/// The one protected resource, a REST web services path.
pub const CATALOG_PATH: &str = "/services/rest/record/v1/metadata-catalog";
/// Counters for tests.
pub const STATS_PATH: &str = "/_emulator/stats";
/// Largest request body accepted; a token request is about 1 KiB (1.5 KiB with an RSA-4096
/// signature), so a body this size is no token request and is refused before it is parsed.
pub const MAX_BODY: usize = 16 * 1024;

/// Why the emulator cannot start or run. Bad flags exit with 2, socket failures with 5.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `--register` spec is malformed or names something unacceptable.
    #[error("--register '{spec}': {reason}")]
    Register {
        /// The spec as given (it holds no secrets: ids and a path).
        spec: String,
        /// What is wrong.
        reason: String,
    },
    /// A `--register` certificate cannot be read.
    #[error("--register '{spec}': {source}")]
    Certificate {
        /// The spec as given.
        spec: String,
        /// The certificate layer's error.
        #[source]
        source: crate::cert::Error,
    },
    /// Two registrations share a certificate id, so a `kid` would be ambiguous.
    #[error("two --register specs use certificate id {0}; each certificate can be registered once")]
    DuplicateCertificateId(String),
    /// The listen address is not a loopback `IP:PORT`.
    #[error("--listen '{addr}': {reason}")]
    Listen {
        /// The address as given.
        addr: String,
        /// Why it is refused.
        reason: String,
    },
    /// The socket cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The async runtime cannot start, or serving failed.
    #[error("the emulator stopped: {0}")]
    Io(#[source] std::io::Error),
}

impl HasKind for Error {
    /// Bad flags are the user's input; socket and runtime failures are output failures.
    fn kind(&self) -> Kind {
        match self {
            Error::Register { .. }
            | Error::Certificate { .. }
            | Error::DuplicateCertificateId(_)
            | Error::Listen { .. } => Kind::Usage,
            Error::Bind { .. } | Error::Io(_) => Kind::Output,
        }
    }
}

/// Parses `--listen`: an IP literal and port, on loopback only (127.0.0.0/8 or `[::1]`).
///
/// Host names, `localhost` included, are refused rather than resolved: what a name resolves
/// to depends on the machine, and the emulator must never listen beyond loopback.
pub fn parse_listen(addr: &str) -> Result<SocketAddr, Error> {
    let refuse = |reason: &str| Error::Listen {
        addr: addr.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed: SocketAddr = addr.parse().map_err(|_| {
        refuse("give a loopback IP and port, such as 127.0.0.1:0 or [::1]:8080 (host names are not resolved)")
    })?;
    if !parsed.ip().is_loopback() {
        return Err(refuse(
            "the emulator accepts anyone who can reach it, so it listens only on loopback (127.0.0.0/8 or [::1])",
        ));
    }
    Ok(parsed)
}

/// Fault injection for client tests, counted over token POSTs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// The first this-many token requests get HTTP 500 `{"error":"server_error"}`.
    pub fail_first: u64,
    /// The next this-many get HTTP 429 with `Retry-After: 1`.
    pub rate_limit: u64,
    /// Sleep this long before answering every token request.
    pub delay: Duration,
}

/// What the emulator serves.
#[derive(Clone, Debug)]
pub struct Config {
    /// The certificates it knows (unique certificate ids).
    pub registrations: Vec<Registration>,
    /// Injected faults.
    pub faults: Faults,
    /// How long issued access tokens are valid (NetSuite: 3600 s).
    pub token_lifetime: Duration,
    /// Token URLs accepted as `aud` besides the emulator's own: proxies in front of it.
    pub also_accepted: Vec<String>,
}

impl Config {
    /// A configuration without faults and with NetSuite's token lifetime; refuses duplicate
    /// certificate ids.
    pub fn new(registrations: Vec<Registration>) -> Result<Config, Error> {
        for (i, reg) in registrations.iter().enumerate() {
            if registrations[..i]
                .iter()
                .any(|r| r.certificate_id == reg.certificate_id)
            {
                return Err(Error::DuplicateCertificateId(
                    reg.certificate_id.to_string(),
                ));
            }
        }
        Ok(Config {
            registrations,
            faults: Faults::default(),
            token_lifetime: Duration::from_secs(3600),
            also_accepted: Vec::new(),
        })
    }
}

/// Counters served at [`STATS_PATH`].
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    /// Token POSTs received (faulted ones included).
    pub token_requests: u64,
    /// Access tokens issued.
    pub tokens_issued: u64,
    /// The `jti` of every accepted assertion, in order (tests check retries use fresh ones).
    pub jtis: Vec<String>,
}

/// An issued access token's record; the token itself is kept only as its SHA-256.
struct Issued {
    expires: SystemTime,
    scopes: Vec<Scope>,
}

#[derive(Default)]
struct Mutable {
    stats: Stats,
    replays: ReplayLog,
    tokens: HashMap<Vec<u8>, Issued>,
}

struct Shared {
    config: Config,
    token_url: String,
    state: Mutex<Mutable>,
}

impl Shared {
    fn new(config: Config, addr: SocketAddr) -> Arc<Shared> {
        Arc::new(Shared {
            token_url: format!("{}{TOKEN_PATH}", base_url(addr)),
            config,
            state: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Mutable> {
        // A panicking handler leaves counters that are still meaningful.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Binds a loopback listener; `addr` should come from [`parse_listen`].
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, Error> {
    if !addr.ip().is_loopback() {
        return Err(Error::Listen {
            addr: addr.to_string(),
            reason: "not a loopback address".into(),
        });
    }
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

/// The base URL for a bound address, e.g. `http://127.0.0.1:41234` or `http://[::1]:8080`.
pub fn base_url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// Serves until `shutdown` completes, then finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let addr = listener.local_addr().map_err(Error::Io)?;
    serve_shared(listener, Shared::new(config, addr), shutdown).await
}

async fn serve_shared(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    axum::serve(listener, router(shared))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Io)
}

/// An emulator on `127.0.0.1:<free port>` in a thread of its own, for tests (sync or async);
/// it stops when dropped.
#[cfg(test)]
pub struct Emulator {
    base_url: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), Error>>>,
}

#[cfg(test)]
impl Emulator {
    /// Binds and starts serving; returns once the port is bound.
    pub fn start(config: Config) -> Result<Emulator, Error> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(Error::Io)?;
            runtime.block_on(async move {
                let bound = bind(SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)))
                    .await
                    .and_then(|l| Ok((l.local_addr().map_err(Error::Io)?, l)));
                let (addr, listener) = match bound {
                    Ok(bound) => bound,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return Ok(());
                    }
                };
                let shared = Shared::new(config, addr);
                let _ = ready_tx.send(Ok((addr, Arc::clone(&shared))));
                serve_shared(listener, shared, async {
                    let _ = stopped.await;
                })
                .await
            })
        });
        let gone = || {
            Error::Io(std::io::Error::other(
                "the emulator thread ended before binding",
            ))
        };
        let (addr, shared) = ready_rx.recv().map_err(|_| gone())??;
        Ok(Emulator {
            base_url: base_url(addr),
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The emulator's token URL (a valid `aud`).
    pub fn token_url(&self) -> &str {
        &self.shared.token_url
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        self.shared.lock().stats.clone()
    }
}

#[cfg(test)]
impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(TOKEN_PATH, post(token))
        .route(CATALOG_PATH, get(catalog))
        .route(STATS_PATH, get(stats))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

/// Registers for SIGINT and SIGTERM now, and returns a future that completes on either.
///
/// Call it (inside the runtime) before announcing the address: a signal that arrives between
/// the announcement and a lazy registration would kill the process with status 143.
pub fn shutdown_signal() -> Result<impl Future<Output = ()> + Send + 'static, Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).map_err(Error::Io)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(Error::Io)?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::info!("signal received, emulator shutting down");
    })
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn oauth_error(status: u16, code: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, json!({ "error": code }))
}

async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let n = {
        let mut state = shared.lock();
        state.stats.token_requests += 1;
        state.stats.token_requests
    };
    let faults = shared.config.faults;
    if !faults.delay.is_zero() {
        tokio::time::sleep(faults.delay).await;
    }
    if n <= faults.fail_first {
        tracing::warn!(
            request = n,
            "injected fault: 500 server_error (--fail-first)"
        );
        return oauth_error(500, "server_error");
    }
    if n <= faults.fail_first + faults.rate_limit {
        tracing::warn!(request = n, "injected fault: 429 (--rate-limit)");
        let mut response = oauth_error(429, "too_many_requests");
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    }
    let request = TokenRequest {
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        has_authorization: headers.contains_key(header::AUTHORIZATION),
        body: &body,
    };
    decide(&shared, &request)
}

/// Checks the request and issues a token, holding the lock throughout so two concurrent
/// copies of one assertion cannot both pass the replay check.
fn decide(shared: &Shared, request: &TokenRequest<'_>) -> Response {
    let now = SystemTime::now();
    let mut state = shared.lock();
    let ctx = Context {
        registrations: &shared.config.registrations,
        now,
        own_token_url: &shared.token_url,
        also_accepted: &shared.config.also_accepted,
        replays: &state.replays,
    };
    match rules::check_request(request, &ctx) {
        Ok(grant) => issue(&mut state, &grant, now, shared.config.token_lifetime),
        Err(r) => {
            tracing::warn!(
                status = r.status(),
                error = %r.code,
                kid = r.kid.as_deref().unwrap_or("-"),
                iss = r.iss.as_deref().unwrap_or("-"),
                "token request refused: {}: {}",
                r.audit,
                r.detail
            );
            oauth_error(r.status(), r.code.as_str())
        }
    }
}

fn issue(state: &mut Mutable, grant: &Grant, now: SystemTime, lifetime: Duration) -> Response {
    let mut random = [0u8; 32];
    if getrandom::fill(&mut random).is_err() {
        tracing::error!("no randomness for an access token");
        return oauth_error(500, "server_error");
    }
    let token = crate::jose::b64url(&random);
    state.replays.record(grant, now);
    state.tokens.retain(|_, t| t.expires > now);
    state.tokens.insert(
        token_hash(&token),
        Issued {
            expires: now + lifetime,
            scopes: grant.scopes.clone(),
        },
    );
    state.stats.tokens_issued += 1;
    if let Some(jti) = &grant.jti {
        state.stats.jtis.push(jti.clone());
    }
    tracing::info!(
        client = %grant.client_id,
        kid = %grant.certificate_id,
        alg = %grant.alg,
        jti = grant.jti.as_deref().unwrap_or("-"),
        "access token issued"
    );
    let mut response = json_response(
        StatusCode::OK,
        json!({"access_token": token, "expires_in": lifetime.as_secs(), "token_type": "Bearer"}),
    );
    // RFC 6749 §5.1: token responses must not be cached.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn token_hash(token: &str) -> Vec<u8> {
    crate::jose::Hash::Sha256.digest(token.as_bytes())
}

async fn catalog(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let refusal = match bearer {
        None => Some("no Authorization: Bearer header"),
        Some(token) => {
            let state = shared.lock();
            match state.tokens.get(&token_hash(token)) {
                None => Some("the bearer token was not issued by this emulator"),
                Some(t) if t.expires <= SystemTime::now() => Some("the access token has expired"),
                Some(t) if !t.scopes.contains(&Scope::RestWebservices) => {
                    Some("the access token lacks the rest_webservices scope")
                }
                Some(_) => None,
            }
        }
    };
    match refusal {
        None => json_response(StatusCode::OK, catalog_body()),
        Some(reason) => {
            tracing::warn!("metadata-catalog refused (401 INVALID_LOGIN): {reason}");
            unauthorized()
        }
    }
}

fn catalog_body() -> serde_json::Value {
    let item = |name: &str| json!({"name": name, "links": [{"rel": "canonical", "href": format!("{CATALOG_PATH}/{name}")}]});
    json!({"items": [item("customer"), item("salesorder")]})
}

/// NetSuite's REST answer to a missing or bad token: 401, `WWW-Authenticate`, and a
/// problem-details body pointing at the Login Audit Trail.
fn unauthorized() -> Response {
    let mut response = json_response(
        StatusCode::UNAUTHORIZED,
        json!({
            "type": "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.2",
            "title": "Unauthorized",
            "status": 401,
            "o:errorDetails": [{
                "detail": "Invalid login attempt. For more details, see the Login Audit Trail in the NetSuite UI at Setup > Users/Roles > User Management > View Login Audit Trail.",
                "o:errorCode": "INVALID_LOGIN"
            }]
        }),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    response
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let stats = shared.lock().stats.clone();
    json_response(StatusCode::OK, json!(stats))
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use super::*;

    fn get(base: &str, path: &str) -> String {
        let host = base.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(host).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    }

    #[test]
    fn listen_addresses_must_be_loopback_ip_literals() {
        assert!(parse_listen("127.0.0.1:0").is_ok());
        assert!(parse_listen("127.8.9.10:8080").is_ok());
        assert!(parse_listen("[::1]:0").is_ok());
        for bad in [
            "0.0.0.0:0",
            "10.0.0.1:80",
            "[::]:0",
            "localhost:0",
            "127.0.0.1",
        ] {
            let err = parse_listen(bad).unwrap_err();
            assert_eq!(err.kind().exit_code(), 2, "{bad}");
        }
        assert_eq!(base_url("[::1]:8080".parse().unwrap()), "http://[::1]:8080");
    }

    #[test]
    fn a_body_over_the_limit_gets_413_before_it_is_parsed() {
        let emu = Emulator::start(Config::new(Vec::new()).unwrap()).unwrap();
        let host = emu.base_url().trim_start_matches("http://").to_owned();
        let post = |len: usize| {
            let mut stream = std::net::TcpStream::connect(&host).unwrap();
            let head = format!(
                "POST {TOKEN_PATH} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len}\r\n\r\n"
            );
            // The server may answer before reading everything.
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&vec![b'a'; len]);
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            text
        };
        // A real token request is under 2 KiB; the documented limit is 16 KiB.
        let answer = post(16 * 1024);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        let answer = post(16 * 1024 + 1);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert_eq!(emu.stats().token_requests, 1);
    }

    #[test]
    fn an_in_process_emulator_serves_until_dropped() {
        let emu = Emulator::start(Config::new(Vec::new()).unwrap()).unwrap();
        assert!(emu.base_url().starts_with("http://127.0.0.1:"));
        assert_eq!(emu.token_url(), format!("{}{TOKEN_PATH}", emu.base_url()));
        let answer = get(emu.base_url(), STATS_PATH);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer.ends_with(r#"{"jtis":[],"token_requests":0,"tokens_issued":0}"#),
            "{answer}"
        );
        assert_eq!(emu.stats(), Stats::default());
        let base = emu.base_url().to_owned();
        drop(emu);
        let host = base.trim_start_matches("http://");
        assert!(
            std::net::TcpStream::connect(host).is_err(),
            "still listening"
        );
    }
}
