//! The claims rules: no `sub` or `nbf`, `iss` the registration's client, `aud` this token
//! endpoint, `iat` and `exp` in range, the scopes enabled on the registration, and a `jti`
//! that is a non-empty string when there is one.

use serde_json::{Map, Value};

use super::refusal::{AuditReason, ErrorCode, Refusal, not_acceptable};
use super::{Context, Registration, clip, unix_secs};
use crate::netsuite::Scope;

/// How far in the future `iat` may be before NetSuite calls it clock skew and refuses.
pub const MAX_IAT_SKEW_SECS: f64 = 5.0;
/// The longest `exp - iat` NetSuite accepts.
pub const MAX_ASSERTION_LIFETIME_SECS: f64 = 3600.0;

/// What accepted claims grant.
pub(super) struct Accepted {
    /// The assertion's `exp`.
    pub(super) expires_at: f64,
    /// The scopes asked for, each once.
    pub(super) scopes: Vec<Scope>,
    /// The `jti`, when there is one.
    pub(super) jti: Option<String>,
}

/// Applies the claims rules in NetSuite's order.
pub(super) fn check(
    claims: &Map<String, Value>,
    reg: &Registration,
    ctx: &Context<'_>,
) -> Result<Accepted, Refusal> {
    check_forbidden_claims(claims)?;
    check_issuer(claims, reg)?;
    check_audience(claims, reg, ctx)?;
    let expires_at = check_times(claims, unix_secs(ctx.now))?;
    let scopes = check_scopes(claims, reg)?;
    let jti = check_jti(claims)?;
    Ok(Accepted {
        expires_at,
        scopes,
        jti,
    })
}

/// netsuite-m2m.md: "No `sub`, no `nbf`". The subject is the integration's mapped entity and
/// role, never a claim, and the validity window is `iat`..`exp`; an assertion carrying either
/// is not one NetSuite's client-credentials flow accepts.
fn check_forbidden_claims(claims: &Map<String, Value>) -> Result<(), Refusal> {
    match ["sub", "nbf"].into_iter().find(|c| claims.contains_key(*c)) {
        Some(claim) => Err(not_acceptable(format!(
            "the assertion has a {claim} claim; NetSuite's client assertions carry no sub and no nbf"
        ))),
        None => Ok(()),
    }
}

fn check_issuer(claims: &Map<String, Value>, reg: &Registration) -> Result<(), Refusal> {
    let expected = reg.client_id.to_string();
    match claims.get("iss").and_then(Value::as_str) {
        Some(iss) if iss == expected => Ok(()),
        found => Err(Refusal::new(
            ErrorCode::InvalidClient,
            AuditReason::InvalidIssuer,
            match found {
                Some(_) => "iss is not the client id this certificate is registered to",
                None => "the claims have no iss string (the client id)",
            },
        )),
    }
}

fn check_audience(
    claims: &Map<String, Value>,
    reg: &Registration,
    ctx: &Context<'_>,
) -> Result<(), Refusal> {
    let own = ctx.own_token_url;
    let account_url = reg.account.as_ref().and_then(|a| a.token_url().ok());
    let accepted = |aud: &str| {
        aud == own
            || ctx.also_accepted.iter().any(|a| a == aud)
            || account_url.as_ref().is_some_and(|u| u.as_str() == aud)
    };
    // JWT allows an array of audiences; one acceptable entry is enough (RFC 7523 §3).
    let ok = match claims.get("aud") {
        Some(Value::String(aud)) => accepted(aud),
        Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).any(accepted),
        _ => false,
    };
    if ok {
        return Ok(());
    }
    let also = account_url.map_or_else(String::new, |u| format!(" or {u}"));
    Err(not_acceptable(format!(
        "aud {} is not this token endpoint ({own}{also})",
        claims
            .get("aud")
            .map_or_else(|| "(missing)".to_owned(), |a| clip(&a.to_string()))
    )))
}

/// Checks `iat` and `exp` against `now` (seconds since the epoch); returns `exp`.
fn check_times(claims: &Map<String, Value>, now: f64) -> Result<f64, Refusal> {
    let number = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_f64)
            .filter(|n| n.is_finite())
            .ok_or_else(|| not_acceptable(format!("{name} is missing or not a number")))
    };
    let iat = number("iat")?;
    let exp = number("exp")?;
    if iat > now + MAX_IAT_SKEW_SECS {
        return Err(not_acceptable(format!(
            "iat is {:.0} s in the future (clock skew; at most {MAX_IAT_SKEW_SECS} s is tolerated)",
            iat - now
        )));
    }
    if exp <= now {
        return Err(Refusal::grant(
            AuditReason::TokenExpired,
            format!("the assertion expired {:.0} s ago", now - exp),
        ));
    }
    if exp <= iat || exp - iat > MAX_ASSERTION_LIFETIME_SECS {
        return Err(not_acceptable(format!(
            "exp - iat is {:.0} s; it must be above 0 and at most {MAX_ASSERTION_LIFETIME_SECS} s",
            exp - iat
        )));
    }
    Ok(exp)
}

/// The scopes asked for: an array of names, or one comma-separated string (both are seen to
/// work with NetSuite). Each must be known and enabled on the registration.
fn check_scopes(claims: &Map<String, Value>, reg: &Registration) -> Result<Vec<Scope>, Refusal> {
    let mismatch = |detail: String| {
        Refusal::new(
            ErrorCode::InvalidScope,
            AuditReason::ScopeMismatched,
            detail,
        )
    };
    let names: Vec<&str> = match claims.get("scope") {
        Some(Value::String(s)) => s.split(',').map(str::trim).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().unwrap_or("(not a string)"))
            .collect(),
        _ => Vec::new(),
    };
    let names: Vec<&str> = names.into_iter().filter(|n| !n.is_empty()).collect();
    if names.is_empty() {
        return Err(mismatch("scope is missing or empty".into()));
    }
    let mut scopes = Vec::new();
    for name in names {
        let scope = Scope::from_name(name)
            .ok_or_else(|| mismatch(format!("unknown scope {:?}", clip(name))))?;
        if !reg.scopes.as_slice().contains(&scope) {
            return Err(mismatch(format!(
                "scope {} is not enabled on the integration record (enabled: {})",
                scope.as_str(),
                reg.scopes
            )));
        }
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    Ok(scopes)
}

fn check_jti(claims: &Map<String, Value>) -> Result<Option<String>, Refusal> {
    match claims.get("jti") {
        None => Ok(None),
        Some(Value::String(j)) if !j.is_empty() => Ok(Some(j.clone())),
        Some(_) => Err(not_acceptable("jti is not a non-empty string")),
    }
}
