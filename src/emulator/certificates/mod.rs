//! NetSuite's certificate management API for an integration record, on the emulator's
//! listener, as strict as its token endpoint (netsuite-m2m.md, "Certificate management API"):
//!
//! | call | answer |
//! | --- | --- |
//! | `GET` [`CERTIFICATES_PATH`] | every certificate of the client, revoked and expired included |
//! | `POST` [`CERTIFICATES_PATH`] | upload `{"fileContent": PEM, "role": ID, "entity": ID}`: a new mapping |
//! | `POST` [`REVOKE_PATH`] | revoke one: `Successfully revoked` as plain text |
//!
//! Each call needs a bearer token the emulator issued to the path's client, with the
//! `rest_webservices` scope, made with a certificate whose role has "Manage own OAuth 2.0
//! Client Credentials certificates" (`permissions=manage-certificates` in `--register`); else
//! 401 or 403. A refusal answers NetSuite's REST error body and logs its reason on stderr.
//!
//! | module | owns |
//! | --- | --- |
//! | `mapping` | internal ids (read as numbers or numeric strings) and a certificate's mapping |
//! | `store` | the account's certificates: find, list, add, revoke, the active ones |
//! | `access` | who may call: token, scope, client, permission |
//! | `upload` | an upload's body, and NetSuite's rules for admitting it |
//! | `answer` | the JSON answered, and the list shapes `--certificate-list-shape` offers |
//! | `problem` | what a refusal answers and logs |
//! | `calls` | the three calls and their counters |
//! | `faults` | `--fail-certificates` |

mod access;
mod answer;
pub(in crate::emulator) mod calls;
mod faults;
pub(in crate::emulator) mod mapping;
mod problem;
pub(in crate::emulator) mod store;
mod upload;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use answer::{ListShape, algorithm};
pub use calls::Call;
pub use faults::{CallFault, Fault};

#[cfg(any(test, feature = "fuzzing"))]
pub use upload::read as read_upload;

use access::Caller;
use problem::{ApiError, Reason};
use store::NotRevoked;

use super::json_response;
use super::state::{Mutable, Shared};
use crate::netsuite::CertificateId;

/// The list and upload path, with axum's placeholder for the client id.
pub const CERTIFICATES_PATH: &str = "/services/rest/auth/oauth2/v1/clients/{client}/certificates";
/// The revoke path, with axum's placeholders for the client and certificate ids.
pub const REVOKE_PATH: &str =
    "/services/rest/auth/oauth2/v1/clients/{client}/certificates/{certificate}/revoke";

/// How the certificate API behaves besides NetSuite's rules: for tests of its clients.
#[derive(Clone, Debug, Default)]
pub struct ApiOptions {
    /// Calls made to fail (`--fail-certificates`).
    pub faults: Vec<CallFault>,
    /// How long after an upload the token endpoint starts accepting the new certificate
    /// (`--certificate-propagation-ms`); NetSuite does not say whether it is at once.
    pub propagation: Duration,
    /// The list's shape (`--certificate-list-shape`).
    pub list_shape: ListShape,
}

/// The API's routes, for the emulator's router.
pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(CERTIFICATES_PATH, get(list).post(upload))
        .route(REVOKE_PATH, post(revoke))
}

async fn list(
    State(shared): State<Arc<Shared>>,
    Path(client): Path<String>,
    headers: HeaderMap,
) -> Response {
    let shape = shared.config.certificate_api.list_shape;
    serve(
        &shared,
        Call::List,
        &headers,
        &client,
        |state, caller, _| {
            let entries: Vec<_> = state
                .certificates
                .of_client(&caller.registration.client_id)
                .collect();
            Ok(json_response(StatusCode::OK, shape.list(&entries)))
        },
    )
    .await
}

async fn upload(
    State(shared): State<Arc<Shared>>,
    Path(client): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let options = &shared.config.certificate_api;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    serve(
        &shared,
        Call::Upload,
        &headers,
        &client,
        |state, caller, now| store_upload(state, caller, now, options, content_type, body),
    )
    .await
}

/// Reads an upload, admits it by NetSuite's rules and stores it; the answer is the new
/// certificate.
fn store_upload(
    state: &mut Mutable,
    caller: &Caller,
    now: SystemTime,
    options: &ApiOptions,
    content_type: Option<&str>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| {
        ApiError::new(
            rejection.status(),
            "INVALID_CONTENT",
            Reason::InvalidContent,
            format!("the body cannot be read: {}", rejection.body_text()),
        )
    })?;
    let upload = upload::read(content_type, &body)?;
    let new = upload::admit(
        &state.certificates,
        caller,
        upload,
        now,
        options.propagation,
    )?;
    tracing::info!(
        client = %new.client_id,
        kid = %new.certificate_id,
        role = %new.mapping.role,
        entity = %new.mapping.entity,
        usable_in_ms = options.propagation.as_millis(),
        "certificate uploaded"
    );
    let entry = state.certificates.add(new);
    Ok(json_response(
        StatusCode::OK,
        options.list_shape.uploaded(&entry),
    ))
}

async fn revoke(
    State(shared): State<Arc<Shared>>,
    Path((client, certificate)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    serve(
        &shared,
        Call::Revoke,
        &headers,
        &client,
        |state, caller, now| revoke_one(state, caller, now, &certificate),
    )
    .await
}

/// Revokes the caller's certificate `certificate`; the answer is NetSuite's plain text.
fn revoke_one(
    state: &mut Mutable,
    caller: &Caller,
    now: SystemTime,
    certificate: &str,
) -> Result<Response, ApiError> {
    let unknown = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NONEXISTENT_ID",
            Reason::UnknownCertificate,
            "the integration record has no certificate with this id",
        )
    };
    let id: CertificateId = certificate.parse().map_err(|_| unknown())?;
    let client = &caller.registration.client_id;
    state
        .certificates
        .revoke(client, &id, now)
        .map_err(|e| match e {
            NotRevoked::Unknown => unknown(),
            NotRevoked::Already(at) => ApiError::user_error(
                Reason::AlreadyRevoked,
                format!(
                    "the certificate {id} was revoked already, on {}",
                    crate::cert::rfc3339(at)
                ),
            ),
        })?;
    tracing::info!(client = %client, kid = %id, "certificate revoked");
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Successfully revoked",
    )
        .into_response())
}

/// One call: counted, faulted when `--fail-certificates` says so, authorized, then `act`ed
/// under the lock at one instant.
async fn serve(
    shared: &Shared,
    call: Call,
    headers: &HeaderMap,
    client: &str,
    act: impl FnOnce(&mut Mutable, &Caller, SystemTime) -> Result<Response, ApiError>,
) -> Response {
    let n = shared.lock().calls.count(call);
    let fault = CallFault::for_request(&shared.config.certificate_api.faults, call, n);
    match fault {
        Some(Fault::ServerError) => {
            return ApiError::injected(format!("--fail-certificates {call}:500 (request {n})"))
                .respond(call);
        }
        Some(Fault::Hang) => {
            tracing::warn!(
                "injected fault: certificate {call} request {n} hangs (--fail-certificates)"
            );
            hang(shared).await;
            return ApiError::injected(format!(
                "--fail-certificates {call}:hang (request {n}) ended"
            ))
            .respond(call);
        }
        Some(Fault::ServerErrorAfter) | None => {}
    }
    let now = SystemTime::now();
    let done = {
        let mut state = shared.lock();
        access::authorize(&state, headers, client, now)
            .and_then(|caller| act(&mut state, &caller, now))
    };
    match (done, fault) {
        (Ok(_), Some(Fault::ServerErrorAfter)) => ApiError::injected(format!(
            "--fail-certificates {call}:500-after (request {n}): the call took effect, its answer is this 500"
        ))
        .respond(call),
        (Ok(response), _) => response,
        (Err(refusal), _) => refusal.respond(call),
    }
}

/// Waits until the emulator stops, or [`faults::HANG_SECS`].
async fn hang(shared: &Shared) {
    let mut stopping = shared.stopping.subscribe();
    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(faults::HANG_SECS)) => {}
        _ = stopping.wait_for(|stopping| *stopping) => {}
    }
}

#[cfg(test)]
mod tests;
