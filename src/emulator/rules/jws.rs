//! The JWS rules: the client assertion decoded as a compact JWS, its `alg`, its `kid` naming a
//! registered certificate that is valid now, and its signature verifying with that
//! certificate; then its claims and replay are checked, and a [`Grant`] made.

use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::refusal::{AuditReason, ErrorCode, Refusal};
use super::{Context, Grant, Registration, claims, clip, replay};
use crate::jose::{Alg, SignatureForm};

/// The longest client assertion decoded: a real one is at most about 1.5 KiB (PS512 with a
/// 4096-bit key). A longer one is refused before any base64 or JSON decoding.
pub const MAX_ASSERTION_LEN: usize = 8 * 1024;

/// A compact JWS split and decoded.
struct Jws {
    header: Map<String, Value>,
    claims: Map<String, Value>,
    signing_input: String,
    signature: Vec<u8>,
}

/// Splits and decodes a compact JWS, refusing anything longer than a real assertion first.
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

/// The rules after decoding, in NetSuite's order.
fn check_jws(jws: &Jws, ctx: &Context<'_>) -> Result<Grant, Refusal> {
    let alg = check_alg(jws.header.get("alg"))?;
    let reg = registration(&jws.header, ctx.registrations)?;
    check_lifecycle(reg, ctx.now)?;
    check_certificate_validity(reg, ctx.now)?;
    check_signature(jws, alg, reg)?;
    let claims = claims::check(&jws.claims, reg, ctx)?;
    let replay_key = replay::check_unused(claims.jti.as_deref(), &jws.signature, ctx.replays)?;
    Ok(Grant {
        client_id: reg.client_id.clone(),
        certificate_id: reg.certificate_id.clone(),
        alg,
        scopes: claims.scopes,
        jti: claims.jti,
        replay_key,
        expires_at: claims.expires_at,
    })
}

/// The registration whose certificate the header's `kid` names.
fn registration<'a>(
    header: &Map<String, Value>,
    registrations: &'a [Registration],
) -> Result<&'a Registration, Refusal> {
    let Some(kid) = header.get("kid") else {
        // NetSuite answers a missing kid with a 500 (netsuite-m2m.md), so the emulator does too.
        return Err(Refusal::new(
            ErrorCode::ServerError,
            AuditReason::MissingKeyId,
            "the JWS header has no kid (the certificate id)",
        ));
    };
    registrations
        .iter()
        .find(|r| kid.as_str() == Some(&r.certificate_id.to_string()))
        .ok_or_else(|| {
            Refusal::grant(
                AuditReason::MissingKey,
                "no certificate with this kid is registered",
            )
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

/// The registered certificate must not be revoked, and must have become usable: the
/// emulator may imitate NetSuite taking a while after an upload (`--certificate-propagation-ms`),
/// during which it does not know the `kid` yet.
fn check_lifecycle(reg: &Registration, now: SystemTime) -> Result<(), Refusal> {
    let at = crate::cert::rfc3339;
    if let Some(revoked) = reg.lifecycle.revoked {
        return Err(Refusal::grant(
            AuditReason::CertificateRevoked,
            format!(
                "the certificate with this kid was revoked on {}; a revoked certificate cannot be used or uploaded again",
                at(revoked)
            ),
        ));
    }
    if let Ok(left) = reg.lifecycle.active_from.duration_since(now)
        && !left.is_zero()
    {
        return Err(Refusal::grant(
            AuditReason::MissingKey,
            format!(
                "the certificate with this kid was uploaded but is not usable for another {} ms (propagation)",
                left.as_millis()
            ),
        ));
    }
    Ok(())
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
