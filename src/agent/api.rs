//! The agent's HTTP API (axum, on the Unix socket). Errors are JSON `{error, message}`.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /v1/profiles/{name}/token` | `{access_token, token_type, expires_at, expires_in}`; 404 unknown profile; 502/503 with the reason (and `Retry-After` when the exchange failed) |
//! | `GET /v1/profiles` | each profile: name, key URI (no secrets), alg, certificate id and days left, token expiry, status |
//! | `GET /v1/health` | `{status, profiles, failed, exchange_failing}` (the last counts profiles whose last exchange failed) |
//! | `GET /metrics` | Prometheus text ([`super::metrics`]) |
//! | another method on these paths | 405 |
//! | any other path | 400 |

use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::cache::{Failure, FailureKind};
use super::metrics;
use super::profiles::{ProfileMap, Served};
use super::socket::AllowedUids;
use crate::cert::rfc3339;

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
        .with_state(agent)
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
    let last_exchange_error = p
        .state
        .as_ref()
        .ok()
        .and_then(|active| active.cache.last_failure())
        .map(|f| json!({ "error": f.kind.code(), "message": f.message }));
    json!({
        "name": p.name,
        "key": p.key,
        "alg": p.alg.map(|a| a.name()),
        "certificate_id": p.certificate_id.as_ref().map(ToString::to_string),
        "certificate_days_left": p.certificate_days_left(now),
        "token_expires_at": expires_at,
        "status": status,
        "error": error,
        "last_exchange_error": last_exchange_error,
    })
}

async fn health(State(agent): State<Arc<Agent>>) -> Response {
    let profiles = agent.profiles();
    let failed = profiles.values().filter(|p| p.failure().is_some()).count();
    // Profiles still serving (perhaps a cached token) while their renewal fails.
    let exchange_failing = profiles
        .values()
        .filter_map(|p| p.state.as_ref().ok())
        .filter(|active| active.cache.last_failure().is_some())
        .count();
    axum::Json(json!({
        "status": "ok",
        "profiles": profiles.len(),
        "failed": failed,
        "exchange_failing": exchange_failing,
    }))
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
