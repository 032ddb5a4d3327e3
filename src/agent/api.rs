//! The agent's HTTP API (axum, on the Unix socket). Errors are JSON `{error, message}`.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /v1/profiles/{name}/token` | `{access_token, token_type, expires_at, expires_in}`; 404 unknown profile; 502/503 with the reason (and `Retry-After` when the exchange failed) |
//! | `GET /v1/profiles` | each profile: name, key URI (no secrets), alg, certificate id and days left, token expiry, status (ok, warning or failed), error, warnings, and its `rotation` ([`super::rotations`]: off, scheduled with its due date, blocked, waiting, running with its step, failed with its step, error and next retry; the last rotation) |
//! | `GET /v1/health` | `{status, profiles, failed, warnings, exchange_failing, problems}` (status: the worst profile's; `exchange_failing` counts profiles whose last exchange failed; `problems` lists the profiles that are not ok, with their reasons) |
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

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::body::HttpBody as _;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use axum::extract::ConnectInfo;

use super::cache::{Cached, Failure, TokenCache, min_remaining};
use super::connections::{Activity, Connections, Peer};
use super::metrics;
use super::profiles::{ProfileMap, Served, Status};
use super::rotations::state::Rotations;
use super::socket::AllowedUids;
use crate::cert::rfc3339;

/// The `error` name of the answer to a request for a profile the agent does not serve.
/// Like the other refusals of a request itself (`bad_request`, `method_not_allowed`,
/// `uri_too_long`, `headers_too_large`, `body_too_large`, `forbidden`), it is the HTTP
/// protocol's answer, not a [`crate::kind::Kind`] of failure: no profile failed.
pub const UNKNOWN_PROFILE: &str = "unknown_profile";
/// The `error` name of the answer to a path that is none of the API's.
pub const BAD_REQUEST: &str = "bad_request";

/// The longest request target (path and query) the agent reads: its paths are a few dozen
/// bytes, profile names included.
pub const MAX_URI_LEN: usize = 1024;
/// The most request headers the agent reads; HTTP clients send a handful.
pub const MAX_HEADERS: usize = 32;
/// The most bytes of request header names and values, all headers together.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// The largest request body tolerated (and ignored): the API is read-only and takes none.
pub const MAX_REQUEST_BODY: u64 = 1024;

/// The state every route shares: the profiles being served (replaced whole on reload), the
/// uids allowed and the connections' counts.
pub struct Agent {
    profiles: RwLock<Arc<ProfileMap>>,
    allowed: Arc<AllowedUids>,
    connections: Arc<Connections>,
    rotations: Rotations,
    /// Held while the profiles are read from the config and replaced (a reload, or a rotated
    /// profile taken up), so that neither puts back what the other has just replaced.
    changing: Mutex<()>,
}

impl Agent {
    /// An agent serving `profiles`.
    pub fn new(
        profiles: ProfileMap,
        allowed: Arc<AllowedUids>,
        connections: Arc<Connections>,
    ) -> Agent {
        Agent {
            profiles: RwLock::new(Arc::new(profiles)),
            allowed,
            connections,
            rotations: Rotations::default(),
            changing: Mutex::new(()),
        }
    }

    /// The rotations of the `rotate-before-days` profiles.
    pub fn rotations(&self) -> &Rotations {
        &self.rotations
    }

    /// Held while the profiles are read from the config and replaced (blocking).
    pub fn changing_profiles(&self) -> MutexGuard<'_, ()> {
        self.changing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connections' limits and counts (shared with the listener).
    pub fn connections(&self) -> &Arc<Connections> {
        &self.connections
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
        .layer(middleware::from_fn(in_flight))
        .with_state(agent)
}

/// Marks the connection busy while its request is handled, so that its header and idle
/// timeouts wait (an exchange may take longer than either).
async fn in_flight(request: Request, next: Next) -> Response {
    let _busy = request
        .extensions()
        .get::<ConnectInfo<Activity>>()
        .map(|info| info.0.request());
    next.run(request).await
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
    error(
        f.kind.http_status(),
        f.kind.name(),
        &format!("profile '{name}': {}", f.message),
    )
}

/// Adds `Retry-After`: the whole seconds until the agent tries the exchange again.
fn retry_later(mut response: Response, retry_at: Instant) -> Response {
    let wait = retry_at.saturating_duration_since(Instant::now());
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    response
}

async fn token(
    State(agent): State<Arc<Agent>>,
    // Absent only where the router is served without connection info (the fuzz target).
    connection: Option<axum::Extension<ConnectInfo<Activity>>>,
    name: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(name)) = name else {
        return bad_path().await;
    };
    let Some(served) = agent.profile(&name) else {
        let known: Vec<String> = agent.profiles().keys().cloned().collect();
        return error(
            StatusCode::NOT_FOUND,
            UNKNOWN_PROFILE,
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
    match token_with_time_left(&active.cache).await {
        Ok((cached, left)) => {
            served.metrics.token_issued();
            let token = &cached.token;
            audit(connection.map(|c| c.0.0.peer()), &name, token);
            let body = json!({
                "access_token": token.expose_secret(),
                "token_type": token.token_type(),
                "expires_at": rfc3339(SystemTime::now() + left),
                "expires_in": left.as_secs(),
            });
            ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
        }
        Err(unavailable) => retry_later(
            failure_response(&name, &unavailable.failure),
            unavailable.retry_at,
        ),
    }
}

/// The log target of the audit lines: one per token handed out.
pub const AUDIT_TARGET: &str = "suitekey::audit";

/// Logs (at info, target [`AUDIT_TARGET`]) that `token` of `profile` went to `peer`: its uid
/// and pid as `SO_PEERCRED` gave them when it connected, and the token's fingerprint (never the
/// token), computed only when the line is logged.
fn audit(peer: Option<Peer>, profile: &str, token: &crate::exchange::AccessToken) {
    let peer = peer.unwrap_or(Peer {
        uid: None,
        pid: None,
    });
    tracing::info!(
        target: AUDIT_TARGET,
        peer_uid = peer.uid,
        peer_pid = peer.pid,
        profile,
        token_fingerprint = %fingerprint(token.expose_secret()),
        "access token handed out"
    );
}

/// The first 8 hex digits of the SHA-256 of `token`: enough to match a log line with the token
/// a client holds, far too little to guess it from.
pub fn fingerprint(token: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(token.as_bytes());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// When `token` expires by the wall clock as it reads now: its remaining life is counted on
/// the monotonic clock, so a step of the wall clock since it was received does not show.
/// A token from the cache and its time left, read once for `expires_in` and `expires_at`
/// alike. The cache hands out a token with more than the margin left, but a moment passes
/// before the answer is written: one that went under the margin meanwhile (by a fraction of a
/// second, or on a busy machine) is asked for again, once, so no answer says `expires_in: 0`.
async fn token_with_time_left(
    cache: &TokenCache,
) -> Result<(Arc<Cached>, std::time::Duration), super::cache::Unavailable> {
    let mut cached = cache.get().await?;
    let mut left = cached.token.remaining();
    if left <= min_remaining(cached.token.lifetime()) {
        cached = cache.get().await?;
        left = cached.token.remaining();
    }
    Ok((cached, left))
}

fn expires_at(token: &crate::exchange::AccessToken) -> String {
    rfc3339(SystemTime::now() + token.remaining())
}

async fn profiles(State(agent): State<Arc<Agent>>) -> Response {
    let now = SystemTime::now();
    let list: Vec<Value> = agent
        .profiles()
        .values()
        .map(|p| profile_view(p, agent.rotations(), now))
        .collect();
    axum::Json(json!({ "profiles": list })).into_response()
}

fn profile_view(p: &Served, rotations: &Rotations, now: SystemTime) -> Value {
    let status = p.status(now);
    let expires_at = match p.failure() {
        None => p
            .state
            .as_ref()
            .ok()
            .and_then(|active| active.cache.current())
            .map(|c| expires_at(&c.token)),
        Some(_) => None,
    };
    let error = status
        .error
        .map(|(code, message)| json!({ "error": code, "message": message }));
    let last_exchange_error = p
        .state
        .as_ref()
        .ok()
        .and_then(|active| active.cache.last_failure())
        .map(|f| json!({ "error": f.kind.name(), "message": f.message }));
    json!({
        "name": p.name,
        "key": p.key,
        "alg": p.alg.map(|a| a.name()),
        "certificate_id": p.certificate_id.as_ref().map(ToString::to_string),
        "certificate_days_left": p.certificate_days_left(now),
        "token_expires_at": expires_at,
        "status": status.status,
        "error": error,
        "warnings": status.warnings,
        "last_exchange_error": last_exchange_error,
        "rotation": rotations.view(p, now),
    })
}

async fn health(State(agent): State<Arc<Agent>>) -> Response {
    let profiles = agent.profiles();
    let now = SystemTime::now();
    let statuses: Vec<(&str, Status)> = profiles
        .values()
        .map(|p| (p.name.as_str(), p.status(now)))
        .collect();
    let count = |wanted: &str| statuses.iter().filter(|(_, s)| s.status == wanted).count();
    let (failed, warnings) = (count("failed"), count("warning"));
    // Profiles still serving (perhaps a cached token) while their renewal fails.
    let exchange_failing = profiles
        .values()
        .filter_map(|p| p.state.as_ref().ok())
        .filter(|active| active.cache.last_failure().is_some())
        .count();
    let problems: Vec<Value> = statuses
        .iter()
        .filter(|(_, s)| s.status != "ok")
        .map(|(name, s)| {
            let reasons = s.error.iter().map(|(_, message)| message);
            let reasons: Vec<&String> = reasons.chain(&s.warnings).collect();
            json!({ "profile": name, "status": s.status, "reasons": reasons })
        })
        .collect();
    let status = match (failed, warnings) {
        (0, 0) => "ok",
        (0, _) => "warning",
        _ => "failed",
    };
    axum::Json(json!({
        "status": status,
        "profiles": profiles.len(),
        "failed": failed,
        "warnings": warnings,
        "exchange_failing": exchange_failing,
        "problems": problems,
    }))
    .into_response()
}

async fn metrics(State(agent): State<Arc<Agent>>) -> Response {
    let profiles = agent.profiles();
    let now = SystemTime::now();
    let rows = profiles
        .values()
        .map(|p| (p.name.as_str(), &*p.metrics, p.certificate_days_left(now)));
    let mut text = metrics::render(rows);
    agent.rotations().render(&mut text, &profiles);
    let connections = agent.connections();
    metrics::render_connections(&mut text, connections.metrics(), connections.open());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn bad_path() -> Response {
    error(
        StatusCode::BAD_REQUEST,
        BAD_REQUEST,
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

#[cfg(test)]
mod tests {
    //! Hostile requests through the real HTTP stack (in memory, see [`crate::fuzzing`]).
    use proptest::prelude::*;

    use super::*;
    use crate::fuzzing::AgentHttp;

    thread_local! {
        static AGENT: AgentHttp = AgentHttp::new().unwrap();
    }

    fn exchange(request: &[u8]) -> Option<Vec<u8>> {
        AGENT.with(|agent| agent.exchange(request))
    }

    /// The status and the body of the agent's answer to `request`.
    fn answer(request: &[u8]) -> (u16, String) {
        let raw = exchange(request).expect("an answer within 5 s");
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
        let body = text
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_owned();
        (status, body)
    }

    fn get(target: &str, extra: &str) -> (u16, String) {
        answer(format!("GET {target} HTTP/1.1\r\nhost: agent\r\n{extra}\r\n").as_bytes())
    }

    /// A JSON error answer's `error` code.
    fn code(body: &str) -> String {
        let json: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        json["error"].as_str().unwrap_or_default().to_owned()
    }

    #[test]
    fn oversized_requests_are_refused_with_json_before_routing() {
        let long_name = "a".repeat(MAX_URI_LEN);
        let (status, body) = get(&format!("/v1/profiles/{long_name}/token"), "");
        assert_eq!(
            (status, code(&body).as_str()),
            (414, "uri_too_long"),
            "{body}"
        );
        assert!(body.contains(&MAX_URI_LEN.to_string()), "{body}");

        let many: String = (0..=MAX_HEADERS)
            .map(|i| format!("x-h{i}: v\r\n"))
            .collect();
        let (status, body) = get("/v1/health", &many);
        assert_eq!((status, code(&body).as_str()), (431, "headers_too_large"));
        let big = format!("x-big: {}\r\n", "v".repeat(MAX_HEADER_BYTES));
        let (status, body) = get("/v1/health", &big);
        assert_eq!((status, code(&body).as_str()), (431, "headers_too_large"));

        let over = MAX_REQUEST_BODY + 1;
        let (status, body) = get("/v1/health", &format!("content-length: {over}\r\n"));
        assert_eq!((status, code(&body).as_str()), (413, "body_too_large"));
        let (status, body) = get("/v1/health", "transfer-encoding: chunked\r\n");
        assert_eq!((status, code(&body).as_str()), (413, "body_too_large"));
        // A small body is read past and ignored.
        let small = answer(b"GET /v1/health HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello");
        assert_eq!(small.0, 200, "{}", small.1);
    }

    #[test]
    fn beyond_hypers_own_bounds_the_connection_is_refused_without_a_hang() {
        // Past hyper's limits the answer is hyper's own (no JSON body), or a plain close.
        let target = format!("/{}", "a".repeat(70_000));
        let (status, _) = get(&target, "");
        assert_eq!(status, 414);
        let huge = format!("x-big: {}\r\n", "v".repeat(500_000));
        let raw = exchange(format!("GET / HTTP/1.1\r\n{huge}\r\n").as_bytes())
            .expect("an answer within 5 s");
        assert!(raw.is_empty() || raw.starts_with(b"HTTP/1.1 431"));
        let many: String = (0..200).map(|i| format!("x-h{i}: v\r\n")).collect();
        let raw = exchange(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()).unwrap();
        assert!(raw.is_empty() || raw.starts_with(b"HTTP/1.1 431"));
        for garbage in [
            &b"\x00\xff\r\n\r\n"[..],
            b"GET\r\n\r\n",
            b"GET / HTTP/9.9\r\n\r\n",
        ] {
            let raw = exchange(garbage).unwrap();
            assert!(raw.is_empty() || raw.starts_with(b"HTTP/1.1 400"));
        }
    }

    #[test]
    fn odd_paths_and_names_get_json_errors() {
        for (target, status, error) in [
            ("/v1/profiles/%FF%FE/token", 400, "bad_request"),
            ("/v1/profiles/a%2F..%2Fb/token", 404, "unknown_profile"),
            ("/v1/profiles/../token", 404, "unknown_profile"),
            ("/v1/profiles/%00/token", 404, "unknown_profile"),
            ("/v1/profiles/broken/token?x=%ZZ", 503, "profile_config"),
            ("/v1/profiles//token", 404, "unknown_profile"),
            ("/v1/../v1/health", 400, "bad_request"),
            ("*", 400, "bad_request"),
            ("http://other/v1/profiles/x/token", 404, "unknown_profile"),
        ] {
            let (got, body) = get(target, "");
            assert_eq!(
                (got, code(&body).as_str()),
                (status, error),
                "{target}: {body}"
            );
        }
        let post = answer(b"POST /v1/health HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
        assert_eq!(
            (post.0, code(&post.1).as_str()),
            (405, "method_not_allowed")
        );
    }

    /// Found by the agent_http fuzzer (a harness that expected only HTTP/1.1): an HTTP/1.0
    /// request, followed by junk, gets a 1.0 answer with the JSON error, then a close.
    #[test]
    fn an_http_1_0_request_then_junk_gets_a_json_answer() {
        let input = b"GET /v1/profiles/broken/token HTTP/1.0\r\nhost: agent\r\n\r\nGEr mv1/profiles/broken/\n";
        let raw = exchange(input).expect("an answer within 5 s");
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("HTTP/1.0 503 "), "{text}");
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        assert_eq!(code(body), "profile_config");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn arbitrary_bytes_get_an_http_answer_or_a_close(
            data in prop::collection::vec(any::<u8>(), 0..512)
        ) {
            let raw = exchange(&data);
            prop_assert!(raw.is_some(), "no answer within 5 s");
            let raw = raw.unwrap_or_default();
            let http = raw.starts_with(b"HTTP/1.1 ") || raw.starts_with(b"HTTP/1.0 ");
            prop_assert!(raw.is_empty() || http, "{:?}", String::from_utf8_lossy(&raw));
        }

        /// Any profile name (the characters a path segment may hold, percent-escapes of any
        /// byte, or too long): a JSON error, never a panic or a 500.
        #[test]
        fn any_profile_name_gets_a_json_answer(
            name in prop_oneof![
                "[A-Za-z0-9._~!$&'()*+,;=:@%-]{0,40}",
                prop::collection::vec(any::<u8>(), 0..40).prop_map(|bytes| {
                    bytes.iter().map(|b| format!("%{b:02X}")).collect::<String>()
                }),
                (1..2 * MAX_URI_LEN).prop_map(|n| "n".repeat(n)),
            ],
        ) {
            let (status, body) = get(&format!("/v1/profiles/{name}/token"), "");
            prop_assert!([400, 404, 414].contains(&status), "{status}: {body}");
            prop_assert!(!code(&body).is_empty());
        }
    }
}
