//! The agent's HTTP API (axum, on the Unix socket). Errors are JSON `{error, message}`.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /v1/profiles/{name}/token` | `{access_token, token_type, expires_at, expires_in}`; 404 unknown profile; 502/503 with the reason (and `Retry-After` when the exchange failed) |
//! | `GET /v1/profiles` | each profile: name, key URI (no secrets), alg, certificate id and days left, token expiry, status |
//! | `GET /v1/health` | `{status, profiles, failed}` |
//! | `GET /metrics` | Prometheus text ([`super::metrics`]) |
//! | another method on these paths | 405 |
//! | any other path | 400 |
//! | a request target over [`MAX_URI_LEN`] | 414 |
//! | more than [`MAX_HEADERS`] headers, or over [`MAX_HEADER_BYTES`] of them | 431 |
//! | a body over [`MAX_REQUEST_BODY`], or of unknown length (chunked) | 413 |
//!
//! The limits are checked before routing, so no handler sees an oversized request. Below them,
//! hyper's own bounds hold (a request head over about 400 KiB, more than 100 headers or a
//! target over 64 KiB is refused by hyper itself, with an empty body): a connection never
//! buffers more than that.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use axum::Router;
use axum::body::HttpBody as _;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::cache::{Failure, FailureKind};
use super::metrics;
use super::profiles::{ProfileMap, Served};
use super::socket::AllowedUids;
use crate::cert::rfc3339;

/// The longest request target (path and query) the agent reads: its paths are a few dozen
/// bytes, profile names included.
pub const MAX_URI_LEN: usize = 1024;
/// The most request headers the agent reads; HTTP clients send a handful.
pub const MAX_HEADERS: usize = 32;
/// The most bytes of request header names and values, all headers together.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// The largest request body tolerated (and ignored): the API is read-only and takes none.
pub const MAX_REQUEST_BODY: u64 = 1024;

/// The state every route shares: the profiles being served (replaced whole on reload).
pub struct Agent {
    profiles: RwLock<Arc<ProfileMap>>,
    allowed: Arc<AllowedUids>,
}

impl Agent {
    /// An agent serving `profiles`.
    pub fn new(profiles: ProfileMap, allowed: Arc<AllowedUids>) -> Agent {
        Agent {
            profiles: RwLock::new(Arc::new(profiles)),
            allowed,
        }
    }

    /// The other users allowed on the socket (shared with the listener, updated on reload).
    pub fn allowed(&self) -> &Arc<AllowedUids> {
        &self.allowed
    }

    /// The profiles now served.
    pub fn profiles(&self) -> Arc<ProfileMap> {
        Arc::clone(&self.profiles.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Serves `profiles` from now on; requests under way finish with the old ones.
    pub fn replace(&self, profiles: ProfileMap) {
        *self
            .profiles
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(profiles);
    }

    /// How many profiles are served.
    pub fn profile_count(&self) -> usize {
        self.profiles().len()
    }

    fn profile(&self, name: &str) -> Option<Arc<Served>> {
        self.profiles().get(name).cloned()
    }
}

/// The routes, over `agent`.
pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/v1/profiles/{name}/token", get(token))
        .route("/v1/profiles", get(profiles))
        .route("/v1/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(bad_path)
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::from_fn(within_limits))
        .with_state(agent)
}

/// Refuses a request over the size limits before it is routed.
async fn within_limits(request: Request, next: Next) -> Response {
    match over_limit(&request) {
        Some(refusal) => refusal,
        None => next.run(request).await,
    }
}

fn over_limit(request: &Request) -> Option<Response> {
    let uri_len = request.uri().to_string().len();
    if uri_len > MAX_URI_LEN {
        return Some(error(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            &format!(
                "the request target is {uri_len} bytes, more than the {MAX_URI_LEN} the agent reads; \
                 the API's paths are short: check the URL and the profile name"
            ),
        ));
    }
    let headers = request.headers();
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
        return Some(error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            &format!(
                "the request has {} headers of {header_bytes} bytes; the agent reads at most \
                 {MAX_HEADERS} headers of {MAX_HEADER_BYTES} bytes in all: send only the usual ones",
                headers.len()
            ),
        ));
    }
    let body = request.body().size_hint().upper();
    if body.is_none_or(|len| len > MAX_REQUEST_BODY) {
        return Some(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            &format!(
                "the request has a body of unknown length or over {MAX_REQUEST_BODY} bytes; \
                 the agent's API is GET only and takes no body: send none"
            ),
        ));
    }
    None
}

/// An error answer: `{error, message}`.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": code, "message": message })),
    )
        .into_response()
}

fn failure_response(name: &str, f: &Failure) -> Response {
    let status = match f.kind {
        FailureKind::Upstream => StatusCode::BAD_GATEWAY,
        FailureKind::Config | FailureKind::Pin | FailureKind::Token => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    error(
        status,
        f.kind.code(),
        &format!("profile '{name}': {}", f.message),
    )
}

/// Adds `Retry-After`: the whole seconds until the agent tries the exchange again.
fn retry_later(mut response: Response, retry_at: SystemTime) -> Response {
    let wait = retry_at
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    response
}

async fn token(
    State(agent): State<Arc<Agent>>,
    name: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(name)) = name else {
        return bad_path().await;
    };
    let Some(served) = agent.profile(&name) else {
        let known: Vec<String> = agent.profiles().keys().cloned().collect();
        return error(
            StatusCode::NOT_FOUND,
            "unknown_profile",
            &format!(
                "no profile '{name}' in the agent's config (known: {}); add it and reload the agent (SIGHUP)",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ),
        );
    };
    let active = match &served.state {
        Ok(active) => active,
        Err(f) => return failure_response(&name, f),
    };
    match active.cache.get().await {
        Ok(cached) => {
            served.metrics.token_issued();
            let token = &cached.token;
            let body = json!({
                "access_token": token.expose_secret(),
                "token_type": token.token_type(),
                "expires_at": rfc3339(token.expires_at()),
                "expires_in": token.expires_in(SystemTime::now()).as_secs(),
            });
            ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
        }
        Err(unavailable) => retry_later(
            failure_response(&name, &unavailable.failure),
            unavailable.retry_at,
        ),
    }
}

async fn profiles(State(agent): State<Arc<Agent>>) -> Response {
    let now = SystemTime::now();
    let list: Vec<Value> = agent
        .profiles()
        .values()
        .map(|p| profile_view(p, now))
        .collect();
    axum::Json(json!({ "profiles": list })).into_response()
}

fn profile_view(p: &Served, now: SystemTime) -> Value {
    let (status, error, expires_at) = match p.failure() {
        None => {
            let expiry = p
                .state
                .as_ref()
                .ok()
                .and_then(|active| active.cache.current())
                .map(|c| rfc3339(c.token.expires_at()));
            ("ok", None, expiry)
        }
        Some(f) => (
            "failed",
            Some(json!({ "error": f.kind.code(), "message": f.message })),
            None,
        ),
    };
    json!({
        "name": p.name,
        "key": p.key,
        "alg": p.alg.map(|a| a.name()),
        "certificate_id": p.certificate_id.as_ref().map(ToString::to_string),
        "certificate_days_left": p.certificate_days_left(now),
        "token_expires_at": expires_at,
        "status": status,
        "error": error,
    })
}

async fn health(State(agent): State<Arc<Agent>>) -> Response {
    let profiles = agent.profiles();
    let failed = profiles.values().filter(|p| p.failure().is_some()).count();
    axum::Json(json!({ "status": "ok", "profiles": profiles.len(), "failed": failed }))
        .into_response()
}

async fn metrics(State(agent): State<Arc<Agent>>) -> Response {
    let profiles = agent.profiles();
    let now = SystemTime::now();
    let rows = profiles
        .values()
        .map(|p| (p.name.as_str(), &*p.metrics, p.certificate_days_left(now)));
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::render(rows),
    )
        .into_response()
}

async fn bad_path() -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        "unknown path; the API is GET /v1/profiles, /v1/profiles/NAME/token, /v1/health and /metrics",
    )
}

async fn wrong_method() -> Response {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "the agent's API is read-only: use GET",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}
