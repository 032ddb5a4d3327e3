//! The emulator's heart: NetSuite's token-request rules as one pure function.
//!
//! [`check_request`] takes what arrived over HTTP (content type, whether an `Authorization`
//! header was sent, the body), the registrations, the clock, the emulator's own token URL and
//! the log of assertions already used, and returns a [`Grant`] or a [`Refusal`] carrying both
//! what NetSuite answers (status and OAuth error code) and what it records in the Login Audit
//! Trail. No I/O happens here, so every rule is unit-tested without a server.
//!
//! | module | rules |
//! | --- | --- |
//! | `form` | the HTTP form: content type, one client authentication, the three fields |
//! | `jws` | the assertion as a JWS: structure, `alg`, `kid` (registered, not revoked, active), certificate validity, signature |
//! | `claims` | `sub`/`nbf`, `iss`, `aud`, `iat`/`exp`, scopes, `jti` |
//! | `replay` | an assertion is used once: [`ReplayLog`] |
//! | `refusal` | what a refusal answers and logs: `ErrorCode`, `AuditReason`, [`Refusal`] |

mod claims;
mod form;
mod jws;
mod refusal;
mod replay;

use std::time::{SystemTime, UNIX_EPOCH};

pub use super::certificates::mapping::{InternalId, Mapping};
use crate::jose::{Alg, PublicKey};
use crate::netsuite::{AccountId, CertificateId, ClientId, Scope, Scopes};

pub use form::check_form;
pub use jws::check_assertion;
pub use refusal::Refusal;
pub use replay::ReplayLog;

/// Longest kid/iss kept for the audit log; longer values are cut (they are attacker-chosen).
const MAX_LOGGED_LEN: usize = 80;

/// A certificate uploaded to the emulated account and what it may do.
#[derive(Clone, Debug)]
pub struct Registration {
    /// The integration record's client id: the only `iss` accepted with this certificate.
    pub client_id: ClientId,
    /// The id NetSuite shows for the certificate: the `kid` that selects this registration.
    pub certificate_id: CertificateId,
    /// The certificate's public key, which every assertion's signature must verify with.
    pub public_key: PublicKey,
    /// The scopes enabled on the integration record.
    pub scopes: Scopes,
    /// The account, when given: its real NetSuite token URL is then also a valid `aud`.
    pub account: Option<AccountId>,
    /// The certificate's `notBefore`: before it, every assertion is refused.
    pub valid_from: SystemTime,
    /// The certificate's `notAfter` (inclusive, RFC 5280 §4.1.2.5): after it, every assertion
    /// is refused. Checked at each request, so a certificate registered while valid is
    /// refused once it expires, as NetSuite refuses an expired certificate.
    pub valid_until: SystemTime,
    /// The role and entity it maps to, and what the role may do.
    pub mapping: Mapping,
    /// When it was uploaded, since when the token endpoint takes it, and when it was revoked.
    pub lifecycle: Lifecycle,
}

/// A registered certificate's life in the emulated account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifecycle {
    /// When it was registered or uploaded.
    pub uploaded: SystemTime,
    /// From when the token endpoint accepts it: the upload time, or later when the emulator
    /// imitates NetSuite taking a while to make an upload usable.
    pub active_from: SystemTime,
    /// When it was revoked; a revoked certificate is refused for good.
    pub revoked: Option<SystemTime>,
}

impl Lifecycle {
    /// Uploaded at `t` and usable at once.
    pub fn uploaded_at(t: SystemTime) -> Lifecycle {
        Lifecycle {
            uploaded: t,
            active_from: t,
            revoked: None,
        }
    }
}

impl Default for Lifecycle {
    /// Usable since the epoch and never revoked: the rules then judge by validity alone.
    fn default() -> Lifecycle {
        Lifecycle::uploaded_at(UNIX_EPOCH)
    }
}

/// An accepted assertion: who gets a token, for what.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    /// The client (the assertion's `iss`).
    pub client_id: ClientId,
    /// The certificate that signed (the `kid`).
    pub certificate_id: CertificateId,
    /// The algorithm used.
    pub alg: Alg,
    /// The scopes granted, as asked.
    pub scopes: Vec<Scope>,
    /// The `jti`, when the assertion had one.
    pub jti: Option<String>,
    /// What marks this assertion as used: `jti:<jti>`, or `sig:<hash>` of the signature when
    /// there is no `jti` (so an identical assertion cannot be replayed either).
    pub replay_key: String,
    /// The assertion's `exp`: after it, the replay key need not be remembered.
    pub expires_at: f64,
}

/// A token request as it arrived over HTTP.
#[derive(Clone, Copy, Debug)]
pub struct TokenRequest<'a> {
    /// The `Content-Type` header, if any.
    pub content_type: Option<&'a str>,
    /// Whether an `Authorization` header was sent (a second client authentication method).
    pub has_authorization: bool,
    /// The raw body.
    pub body: &'a [u8],
}

/// Everything the rules need besides the request.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The registered certificates.
    pub registrations: &'a [Registration],
    /// The time the request arrived.
    pub now: SystemTime,
    /// The emulator's own token URL, exactly as printed; a valid `aud`.
    pub own_token_url: &'a str,
    /// Other token URLs accepted as `aud`: the URLs of proxies in front of the emulator.
    pub also_accepted: &'a [String],
    /// Assertions already used.
    pub replays: &'a ReplayLog,
}

/// Applies every rule of netsuite-m2m.md to a token request, in NetSuite's order: the HTTP
/// form, the JWS structure, `alg`, `kid`, the certificate's validity at `ctx.now`, the
/// signature, then the claims.
pub fn check_request(req: &TokenRequest<'_>, ctx: &Context<'_>) -> Result<Grant, Refusal> {
    let assertion = check_form(req)?;
    check_assertion(&assertion, ctx)
}

/// Seconds since the epoch, with fractions; 0 for a clock before 1970.
pub fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Cuts an attacker-chosen value to a length fit for a log line.
pub(in crate::emulator) fn clip(s: &str) -> String {
    match s.char_indices().nth(MAX_LOGGED_LEN) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests;
