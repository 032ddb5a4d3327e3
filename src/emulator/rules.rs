//! The emulator's heart: NetSuite's token-request rules as one pure function.
//!
//! [`check_request`] takes what arrived over HTTP (content type, whether an `Authorization`
//! header was sent, the body), the registrations, the clock, the emulator's own token URL and
//! the log of assertions already used, and returns a [`Grant`] or a [`Refusal`] carrying both
//! what NetSuite answers (status and OAuth error code) and what it records in the Login Audit
//! Trail. No I/O happens here, so every rule is unit-tested without a server.

use std::collections::HashMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::jose::{Alg, PublicKey, SignatureForm};
use crate::netsuite::{AccountId, CertificateId, ClientId, Scope, Scopes};

/// The only grant type NetSuite's M2M flow uses.
pub const GRANT_TYPE: &str = "client_credentials";
/// The only client assertion type (RFC 7523).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How far in the future `iat` may be before NetSuite calls it clock skew and refuses.
pub const MAX_IAT_SKEW_SECS: f64 = 5.0;
/// The longest `exp - iat` NetSuite accepts.
pub const MAX_ASSERTION_LIFETIME_SECS: f64 = 3600.0;
/// The longest client assertion decoded: a real one is at most about 1.5 KiB (PS512 with a
/// 4096-bit key). A longer one is refused before any base64 or JSON decoding.
pub const MAX_ASSERTION_LEN: usize = 8 * 1024;
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
}

/// The OAuth 2.0 error codes NetSuite answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// Malformed request: content type, fields, grant or assertion type.
    InvalidRequest,
    /// The issuer is not the registration's client.
    InvalidClient,
    /// The assertion is not acceptable: signature, kid, alg, aud, times, replay.
    InvalidGrant,
    /// A scope is missing, unknown or not enabled.
    InvalidScope,
    /// NetSuite's answer to an assertion without `kid` (and to injected faults).
    ServerError,
}

impl ErrorCode {
    /// The code as sent in `{"error": …}`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::ServerError => "server_error",
        }
    }

    /// The HTTP status the emulator sends with the code. Real NetSuite is less consistent
    /// (401 and 500 are seen for `invalid_grant` cases); clients must not depend on more than
    /// "4xx with a code".
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidClient => 401,
            ErrorCode::ServerError => 500,
            _ => 400,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The reason NetSuite writes to its Login Audit Trail (never sent to the client).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditReason {
    /// The HTTP request itself is malformed (not an audit-trail code: NetSuite never gets
    /// far enough to log one).
    InvalidRequest,
    /// The JWS header has no `kid`.
    MissingKeyId,
    /// No certificate with this `kid` is registered.
    MissingKey,
    /// `alg` is not one of ES256…PS512.
    UnsupportedAlgo,
    /// The signature does not verify with the certificate's key (or cannot, for this `alg`).
    SignatureValidation,
    /// `exp` has passed.
    TokenExpired,
    /// The certificate named by `kid` has expired (its `notAfter` has passed).
    CertificateExpired,
    /// The certificate named by `kid` is not valid yet (its `notBefore` is ahead).
    CertificateNotYetValid,
    /// Malformed JWS or claims, wrong `aud`, `iat` in the future, `exp` too far, a `sub` or
    /// `nbf` claim.
    TokenNotAcceptable,
    /// `iss` is not the client id the certificate is registered to.
    InvalidIssuer,
    /// A scope is missing, unknown or not enabled.
    ScopeMismatched,
    /// The assertion (its `jti`) was already used.
    Replayed,
}

impl AuditReason {
    /// The audit-trail spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditReason::InvalidRequest => "InvalidRequest",
            AuditReason::MissingKeyId => "MissingKeyId",
            AuditReason::MissingKey => "MissingKey",
            AuditReason::UnsupportedAlgo => "UnsupportedAlgo",
            AuditReason::SignatureValidation => "SignatureValidation",
            AuditReason::TokenExpired => "TokenExpired",
            AuditReason::CertificateExpired => "CertificateExpired",
            AuditReason::CertificateNotYetValid => "CertificateNotYetValid",
            AuditReason::TokenNotAcceptable => "TokenNotAcceptable",
            AuditReason::InvalidIssuer => "InvalidIssuer",
            AuditReason::ScopeMismatched => "ScopeMismatched",
            AuditReason::Replayed => "Replayed",
        }
    }
}

impl fmt::Display for AuditReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused token request: the answer for the client and the reason for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The OAuth error code (its status is [`ErrorCode::status`]).
    pub code: ErrorCode,
    /// The Login-Audit-Trail reason.
    pub audit: AuditReason,
    /// A human explanation; never contains the assertion.
    pub detail: String,
    /// The `kid` sent, if any (cut to a safe length).
    pub kid: Option<String>,
    /// The `iss` sent, if any (cut to a safe length).
    pub iss: Option<String>,
}

impl Refusal {
    fn new(code: ErrorCode, audit: AuditReason, detail: impl Into<String>) -> Refusal {
        Refusal {
            code,
            audit,
            detail: detail.into(),
            kid: None,
            iss: None,
        }
    }

    fn request(detail: impl Into<String>) -> Refusal {
        Refusal::new(
            ErrorCode::InvalidRequest,
            AuditReason::InvalidRequest,
            detail,
        )
    }

    fn grant(audit: AuditReason, detail: impl Into<String>) -> Refusal {
        Refusal::new(ErrorCode::InvalidGrant, audit, detail)
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.code.status()
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

/// Assertions already used, until they expire.
#[derive(Debug, Default)]
pub struct ReplayLog {
    used: HashMap<String, f64>,
}

impl ReplayLog {
    /// Whether an assertion with this replay key was accepted before.
    pub fn contains(&self, key: &str) -> bool {
        self.used.contains_key(key)
    }

    /// Marks a granted assertion as used, and forgets those that expired before `now`
    /// (they would be refused as expired anyway, so the log stays small).
    pub fn record(&mut self, grant: &Grant, now: SystemTime) {
        let now = unix_secs(now);
        self.used.retain(|_, exp| *exp > now);
        self.used.insert(grant.replay_key.clone(), grant.expires_at);
    }
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

/// The form rules: content type, one client authentication method, exactly the three fields
/// with the right grant and assertion types. Returns the `client_assertion`.
pub fn check_form(req: &TokenRequest<'_>) -> Result<String, Refusal> {
    let mime = req
        .content_type
        .and_then(|ct| ct.split(';').next())
        .map(str::trim);
    if !mime.is_some_and(|m| m.eq_ignore_ascii_case("application/x-www-form-urlencoded")) {
        return Err(Refusal::request(format!(
            "content type {:?} is not application/x-www-form-urlencoded",
            req.content_type.map(clip)
        )));
    }
    if req.has_authorization {
        return Err(Refusal::request(
            "an Authorization header was sent besides the client assertion (several client authentication methods)",
        ));
    }
    let mut fields: HashMap<String, String> = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(req.body) {
        if !matches!(
            name.as_ref(),
            "grant_type" | "client_assertion_type" | "client_assertion"
        ) {
            return Err(Refusal::request(format!(
                "unexpected field {:?}; only grant_type, client_assertion_type and client_assertion are allowed",
                clip(&name)
            )));
        }
        if fields
            .insert(name.to_string(), value.into_owned())
            .is_some()
        {
            return Err(Refusal::request(format!("field {name} is duplicated")));
        }
    }
    let field = |name: &str| {
        fields
            .get(name)
            .ok_or_else(|| Refusal::request(format!("field {name} is missing")))
    };
    if field("grant_type")? != GRANT_TYPE {
        return Err(Refusal::request(format!("grant_type is not {GRANT_TYPE}")));
    }
    if field("client_assertion_type")? != ASSERTION_TYPE {
        return Err(Refusal::request(format!(
            "client_assertion_type is not {ASSERTION_TYPE}"
        )));
    }
    field("client_assertion").cloned()
}

/// A compact JWS split and decoded.
struct Jws {
    header: Map<String, Value>,
    claims: Map<String, Value>,
    signing_input: String,
    signature: Vec<u8>,
}

fn decode_jws(assertion: &str) -> Result<Jws, Refusal> {
    let malformed = |what: &str| {
        Refusal::grant(
            AuditReason::TokenNotAcceptable,
            format!("the client assertion is not a compact JWS: {what}"),
        )
    };
    if assertion.len() > MAX_ASSERTION_LEN {
        return Err(malformed(&format!(
            "it is {} bytes, more than the {MAX_ASSERTION_LEN} accepted",
            assertion.len()
        )));
    }
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err(malformed(&format!(
            "{} dot-separated parts instead of 3",
            parts.len()
        )));
    };
    let b64 = |part: &str, what: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| malformed(&format!("the {what} is not base64url")))
    };
    let object = |part: &str, what: &str| match serde_json::from_slice(&b64(part, what)?) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(malformed(&format!("the {what} is not a JSON object"))),
    };
    Ok(Jws {
        header: object(header, "header")?,
        claims: object(claims, "claims")?,
        signing_input: format!("{header}.{claims}"),
        signature: b64(signature, "signature")?,
    })
}

/// The assertion rules: JWS structure, `alg`, `kid`, signature, `iss`, `aud`, times, scopes
/// and replay.
pub fn check_assertion(assertion: &str, ctx: &Context<'_>) -> Result<Grant, Refusal> {
    let jws = decode_jws(assertion)?;
    let kid = jws.header.get("kid").and_then(Value::as_str);
    let iss = jws.claims.get("iss").and_then(Value::as_str);
    check_jws(&jws, ctx).map_err(|mut refusal| {
        refusal.kid = kid.map(clip);
        refusal.iss = iss.map(clip);
        refusal
    })
}

fn check_jws(jws: &Jws, ctx: &Context<'_>) -> Result<Grant, Refusal> {
    let alg = check_alg(jws.header.get("alg"))?;
    let Some(kid) = jws.header.get("kid") else {
        // NetSuite answers a missing kid with a 500 (netsuite-m2m.md), so the emulator does too.
        return Err(Refusal::new(
            ErrorCode::ServerError,
            AuditReason::MissingKeyId,
            "the JWS header has no kid (the certificate id)",
        ));
    };
    let reg = ctx
        .registrations
        .iter()
        .find(|r| kid.as_str() == Some(&r.certificate_id.to_string()))
        .ok_or_else(|| {
            Refusal::grant(
                AuditReason::MissingKey,
                "no certificate with this kid is registered (or it was revoked)",
            )
        })?;
    check_certificate_validity(reg, ctx.now)?;
    check_signature(jws, alg, reg)?;
    let claims = &jws.claims;
    check_forbidden_claims(claims)?;
    check_issuer(claims, reg)?;
    check_audience(claims, reg, ctx)?;
    let expires_at = check_times(claims, unix_secs(ctx.now))?;
    let scopes = check_scopes(claims, reg)?;
    let jti = match claims.get("jti") {
        None => None,
        Some(Value::String(j)) if !j.is_empty() => Some(j.clone()),
        Some(_) => return Err(not_acceptable("jti is not a non-empty string")),
    };
    let replay_key = match &jti {
        Some(j) => format!("jti:{j}"),
        None => format!(
            "sig:{}",
            crate::jose::b64url(&crate::jose::Hash::Sha256.digest(&jws.signature))
        ),
    };
    if ctx.replays.contains(&replay_key) {
        return Err(Refusal::grant(
            AuditReason::Replayed,
            match &jti {
                Some(j) => format!("jti {:?} was already used", clip(j)),
                None => "this assertion (it has no jti) was already used".to_owned(),
            },
        ));
    }
    Ok(Grant {
        client_id: reg.client_id.clone(),
        certificate_id: reg.certificate_id.clone(),
        alg,
        scopes,
        jti,
        replay_key,
        expires_at,
    })
}

fn check_alg(alg: Option<&Value>) -> Result<Alg, Refusal> {
    let unsupported = |detail: String| Refusal::grant(AuditReason::UnsupportedAlgo, detail);
    let Some(name) = alg.and_then(Value::as_str) else {
        return Err(unsupported("the JWS header has no alg string".into()));
    };
    // Exact, case-sensitive names: JOSE's, and the emulator's strictness (`Alg::from_str`
    // is lenient for users typing flags).
    match Alg::ALL.into_iter().find(|a| a.name() == name) {
        Some(alg) => Ok(alg),
        None if name.starts_with("RS") => Err(unsupported(format!(
            "alg {:?} (RSASSA-PKCS1-v1_5) is refused since 1 March 2025; PS256/PS384/PS512 are accepted",
            clip(name)
        ))),
        None => Err(unsupported(format!(
            "alg {:?} is not one of ES256, ES384, ES512, PS256, PS384, PS512",
            clip(name)
        ))),
    }
}

fn check_signature(jws: &Jws, alg: Alg, reg: &Registration) -> Result<(), Refusal> {
    let kind = reg.public_key.kind();
    if !alg.fits(&kind) {
        return Err(Refusal::grant(
            AuditReason::SignatureValidation,
            format!("alg {alg} cannot be made with the certificate's {kind} key"),
        ));
    }
    reg.public_key
        .verify(
            SignatureForm::jws(alg),
            jws.signing_input.as_bytes(),
            &jws.signature,
        )
        .map_err(|e| {
            Refusal::grant(
                AuditReason::SignatureValidation,
                format!("the {alg} signature does not verify with the certificate: {e}"),
            )
        })
}

/// The registered certificate must be valid at `now`: NetSuite stops accepting a certificate
/// when it expires (a new one has to be uploaded), and one that is not valid yet is refused
/// too.
fn check_certificate_validity(reg: &Registration, now: SystemTime) -> Result<(), Refusal> {
    let at = crate::cert::rfc3339;
    if now > reg.valid_until {
        return Err(Refusal::grant(
            AuditReason::CertificateExpired,
            format!(
                "the certificate with this kid expired on {}; upload a new one",
                at(reg.valid_until)
            ),
        ));
    }
    if now < reg.valid_from {
        return Err(Refusal::grant(
            AuditReason::CertificateNotYetValid,
            format!(
                "the certificate with this kid is not valid until {}",
                at(reg.valid_from)
            ),
        ));
    }
    Ok(())
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

fn not_acceptable(detail: impl Into<String>) -> Refusal {
    Refusal::grant(AuditReason::TokenNotAcceptable, detail)
}

/// Seconds since the epoch, with fractions; 0 for a clock before 1970.
pub fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Cuts an attacker-chosen value to a length fit for a log line.
fn clip(s: &str) -> String {
    match s.char_indices().nth(MAX_LOGGED_LEN) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests;
