//! The one REST web services resource: `GET` [`CATALOG_PATH`](super::CATALOG_PATH) answers a
//! short metadata catalog to a token the emulator issued with the `rest_webservices` scope.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;

use super::bearer::{authenticate, unauthorized};
use super::state::Shared;
use super::{CATALOG_PATH, json_response};
use crate::netsuite::Scope;

/// `GET` [`CATALOG_PATH`]: 200 with the catalog, or 401 naming the reason on stderr.
pub(super) async fn catalog(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let refusal = match authenticate(&shared.lock(), &headers, SystemTime::now()) {
        Err(e) => Some(e.reason()),
        Ok(t) if !t.scopes.contains(&Scope::RestWebservices) => {
            Some("the access token lacks the rest_webservices scope")
        }
        Ok(_) => None,
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
