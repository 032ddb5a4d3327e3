//! Who may call the certificate API: a bearer token the emulator issued and that has not
//! expired (else 401), with the `rest_webservices` scope, for the integration record the path
//! names, whose certificate's role has "Manage own OAuth 2.0 Client Credentials certificates"
//! (else 403).

use std::time::SystemTime;

use axum::http::HeaderMap;

use super::problem::{ApiError, Reason};
use crate::emulator::bearer::{Unauthenticated, authenticate};
use crate::emulator::rules::Registration;
use crate::emulator::state::Mutable;
use crate::netsuite::Scope;

/// An authorized caller: the registration of the certificate its token was made with (its
/// client, scopes, account and mapping).
#[derive(Clone, Debug)]
pub struct Caller {
    /// The certificate the access token was made with, as it is now.
    pub registration: Registration,
}

/// Checks the bearer token in `headers` for a call on `path_client`'s certificates at `now`,
/// in this order: a token issued by the emulator, not expired, with `rest_webservices`, of
/// that client, whose role has the permission.
pub fn authorize(
    state: &Mutable,
    headers: &HeaderMap,
    path_client: &str,
    now: SystemTime,
) -> Result<Caller, ApiError> {
    let issued = authenticate(state, headers, now).map_err(ApiError::unauthenticated)?;
    if !issued.scopes.contains(&Scope::RestWebservices) {
        return Err(ApiError::forbidden(
            Reason::ScopeMismatched,
            "the access token was not issued for the rest_webservices scope, which the certificate API needs",
        ));
    }
    if issued.client_id.to_string() != path_client {
        return Err(ApiError::forbidden(
            Reason::OtherClient,
            "the access token was issued to another integration record; an integration can manage only its own certificates",
        ));
    }
    let registration = state
        .certificates
        .find(&issued.certificate_id)
        .map(|e| e.registration.clone())
        // The store never forgets a certificate, so this cannot happen; a 401 if it does.
        .ok_or_else(|| ApiError::unauthenticated(Unauthenticated::Unknown))?;
    if !state
        .certificates
        .role_may_manage(registration.mapping.role)
    {
        return Err(ApiError::forbidden(
            Reason::PermissionViolation,
            format!(
                "Permission Violation: the role {} needs the permission Manage own OAuth 2.0 Client Credentials certificates",
                registration.mapping.role
            ),
        ));
    }
    Ok(Caller { registration })
}
