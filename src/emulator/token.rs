//! The token endpoint: injected faults first, then [`rules::check_request`] under the lock,
//! then a fresh access token, or NetSuite's bare `{"error": …}` with the real reason logged.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::json;

use super::json_response;
use super::rules::{self, Context, Grant, TokenRequest};
use super::state::{Issued, Mutable, Shared, token_hash};

/// `POST` [`TOKEN_PATH`](super::TOKEN_PATH).
pub(super) async fn token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
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

fn oauth_error(status: u16, code: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, json!({ "error": code }))
}

/// Checks the request and issues a token, holding the lock throughout so two concurrent
/// copies of one assertion cannot both pass the replay check.
fn decide(shared: &Shared, request: &TokenRequest<'_>) -> Response {
    let now = SystemTime::now();
    let mut state = shared.lock();
    let ctx = Context {
        registrations: state.certificates.registrations(),
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
            client_id: grant.client_id.clone(),
            certificate_id: grant.certificate_id.clone(),
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
