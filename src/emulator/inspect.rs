//! What tests read of the emulator's state over HTTP: its counters at
//! [`STATS_PATH`](super::STATS_PATH), its certificates and the certificate API's calls at
//! [`CERTIFICATES_STATE_PATH`](super::CERTIFICATES_STATE_PATH), and an access token it issued
//! at [`TOKEN_STATE_PATH`](super::TOKEN_STATE_PATH).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;

use super::bearer::{authenticate, unauthorized};
use super::certificates::algorithm;
use super::json_response;
use super::state::Shared;

/// `GET` [`STATS_PATH`](super::STATS_PATH): the [`Stats`](super::Stats) as JSON.
pub(super) async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let stats = shared.lock().stats.clone();
    json_response(StatusCode::OK, json!(stats))
}

/// `GET` [`CERTIFICATES_STATE_PATH`](super::CERTIFICATES_STATE_PATH): every certificate of the
/// account with its mapping and life, and the certificate API's calls so far, so a test can
/// compare the state before and after a client ran.
pub(super) async fn certificates(State(shared): State<Arc<Shared>>) -> Response {
    let state = shared.lock();
    let at = |t| crate::cert::rfc3339(t);
    let certificates: Vec<_> = state
        .certificates
        .entries()
        .map(|e| {
            let reg = e.registration;
            json!({
                "client_id": reg.client_id.to_string(),
                "certificate_id": reg.certificate_id.to_string(),
                "algorithm": algorithm(&reg.public_key),
                "role": reg.mapping.role.get(),
                "entity": reg.mapping.entity.get(),
                "manage_certificates": reg.mapping.manage_certificates,
                "mapping_id": e.mapping_id.get(),
                "application_id": e.application_id.get(),
                "valid_from": at(reg.valid_from),
                "valid_until": at(reg.valid_until),
                "uploaded": at(reg.lifecycle.uploaded),
                "active_from": at(reg.lifecycle.active_from),
                "revoked": reg.lifecycle.revoked.map(at),
            })
        })
        .collect();
    json_response(
        StatusCode::OK,
        json!({"calls": state.calls, "certificates": certificates}),
    )
}

/// `GET` [`TOKEN_STATE_PATH`](super::TOKEN_STATE_PATH): the access token in the
/// `Authorization: Bearer` header, as the emulator issued it (its client, the certificate whose
/// key signed its assertion, its scopes and expiry), so a test can tell which mapping a token
/// a client got comes from; 401 when the emulator did not issue it or it has expired.
pub(super) async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let state = shared.lock();
    match authenticate(&state, &headers, std::time::SystemTime::now()) {
        Ok(issued) => json_response(
            StatusCode::OK,
            json!({
                "client_id": issued.client_id.to_string(),
                "certificate_id": issued.certificate_id.to_string(),
                "scopes": issued.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                "expires": crate::cert::rfc3339(issued.expires),
            }),
        ),
        Err(_) => unauthorized(),
    }
}
