//! What tests read of the emulator's state over HTTP: its counters at
//! [`STATS_PATH`](super::STATS_PATH).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::json_response;
use super::state::Shared;

/// `GET` [`STATS_PATH`](super::STATS_PATH): the [`Stats`](super::Stats) as JSON.
pub(super) async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let stats = shared.lock().stats.clone();
    json_response(StatusCode::OK, json!(stats))
}
