//! A strict NetSuite token endpoint and certificate API on loopback, for CI and the demo
//! (`suitekey emulate`).
//!
//! It answers like NetSuite — the same status codes and bare `{"error": …}` bodies — and logs
//! the real reason on stderr, as NetSuite's Login Audit Trail would. The rules themselves are
//! the pure [`rules::check_request`]; this module is the HTTP around them:
//!
//! | route | answer |
//! | --- | --- |
//! | `POST /services/rest/auth/oauth2/v1/token` | the token endpoint ([`TOKEN_PATH`]); other methods 405 |
//! | `GET /services/rest/record/v1/metadata-catalog` | 200 with a `Bearer` token it issued (scope `rest_webservices`), else 401 |
//! | `GET`, `POST /services/rest/auth/oauth2/v1/clients/<client-id>/certificates` | list, upload ([`certificates`]) |
//! | `POST /services/rest/auth/oauth2/v1/clients/<client-id>/certificates/<id>/revoke` | revoke |
//! | `GET /_emulator/stats` | [`state::Stats`] as JSON, for tests |
//! | `GET /_emulator/certificates` | every certificate and the certificate API's calls, for tests |
//! | `GET /_emulator/token` | the `Bearer` token sent: its client, certificate, scopes and expiry (401 if not issued or expired), for tests |
//! | anything else | 404 |
//!
//! | module | owns |
//! | --- | --- |
//! | `registration` | `--register` specs |
//! | `rules` | the token request's rules, without I/O |
//! | `state` | what changes while it runs: counters, used assertions, issued tokens, certificates |
//! | `token` | the token endpoint around the rules |
//! | `bearer` | an issued token presented back, and the 401 |
//! | `catalog` | the REST resource |
//! | `certificates` | the certificate API: its store of certificates, access, uploads, faults |
//! | `inspect` | the state read by tests |
//! | `harness` | an in-process emulator for unit tests |
//!
//! Bodies over [`MAX_BODY`] get 413. Only loopback addresses are served: the emulator accepts
//! any client that can reach it and must never be a real endpoint.

mod bearer;
mod catalog;
mod certificates;
#[cfg(test)]
mod harness;
mod inspect;
mod registration;
pub mod rules;
mod state;
mod token;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

#[cfg(any(test, feature = "fuzzing"))]
pub use certificates::read_upload;
pub use certificates::{ApiOptions, CallFault, ListShape};
#[cfg(test)]
pub use harness::Emulator;
pub use registration::parse_registration;
pub use rules::Registration;
use state::Shared;

use crate::kind::{HasKind, Kind};

/// The token endpoint's path, as on NetSuite.
pub const TOKEN_PATH: &str = "/services/rest/auth/oauth2/v1/token";
/// The one protected resource, a REST web services path.
pub const CATALOG_PATH: &str = "/services/rest/record/v1/metadata-catalog";
/// Counters for tests.
pub const STATS_PATH: &str = "/_emulator/stats";
/// The account's certificates and the certificate API's calls, for tests.
pub const CERTIFICATES_STATE_PATH: &str = "/_emulator/certificates";
/// What the emulator knows of the bearer token sent (whom and with which certificate it issued
/// it), for tests.
pub const TOKEN_STATE_PATH: &str = "/_emulator/token";
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
    /// A flag's value is malformed.
    #[error("{flag} '{value}': {reason}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// Its value as given.
        value: String,
        /// What is wrong.
        reason: String,
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
            | Error::Flag { .. }
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
    /// The certificate API's faults, propagation delay and list shape.
    pub certificate_api: ApiOptions,
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
            certificate_api: ApiOptions::default(),
        })
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
    let stopping = Arc::clone(&shared);
    let shutdown = async move {
        shutdown.await;
        // Calls hanging on purpose end now, so the requests in flight can finish.
        stopping.stopping.send_replace(true);
    };
    axum::serve(listener, router(shared))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Io)
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(TOKEN_PATH, post(token::token))
        .route(CATALOG_PATH, get(catalog::catalog))
        .route(STATS_PATH, get(inspect::stats))
        .route(CERTIFICATES_STATE_PATH, get(inspect::certificates))
        .route(TOKEN_STATE_PATH, get(inspect::token))
        .merge(certificates::routes())
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

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use super::state::Stats;
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
