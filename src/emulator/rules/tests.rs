//! Each rule, refused and accepted, without HTTP. Keys are fixed P-256 scalars: ECDSA signing
//! is deterministic (RFC 6979), so no randomness is needed.

use std::time::{Duration, SystemTime};

use p256::ecdsa::signature::Signer as _;
use serde_json::{Value, json};

use super::jws::MAX_ASSERTION_LEN;
use super::refusal::{AuditReason, ErrorCode};
use super::*;
use crate::jose::{Curve, b64url};

const OWN: &str = "http://127.0.0.1:4000/services/rest/auth/oauth2/v1/token";
const CLIENT: &str = "abc123";

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn key(seed: u8) -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap()
}

fn registration(seed: u8) -> Registration {
    let point = key(seed).verifying_key().to_sec1_point(false);
    Registration {
        client_id: CLIENT.parse().unwrap(),
        certificate_id: format!("cert{seed}").parse().unwrap(),
        public_key: PublicKey::Ec {
            curve: Curve::P256,
            point: point.as_bytes().to_vec(),
        },
        scopes: "restlets,rest_webservices".parse().unwrap(),
        account: Some("1234567_SB1".parse().unwrap()),
        valid_from: now() - Duration::from_secs(86_400),
        valid_until: now() + Duration::from_secs(30 * 86_400),
        mapping: Mapping::default(),
        lifecycle: Lifecycle::default(),
    }
}

fn header() -> Value {
    json!({"typ": "JWT", "alg": "ES256", "kid": "cert1"})
}

fn claims() -> Value {
    let iat = 1_800_000_000u64;
    json!({"iss": CLIENT, "scope": ["restlets"], "aud": OWN, "iat": iat, "exp": iat + 300, "jti": "j1"})
}

/// A compact JWS signed by the key with this seed.
fn sign(header: &Value, claims: &Value, seed: u8) -> String {
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig: p256::ecdsa::Signature = key(seed).sign(input.as_bytes());
    format!("{input}.{}", b64url(&sig.to_bytes()))
}

fn check_with(assertion: &str, replays: &ReplayLog) -> Result<Grant, Refusal> {
    let regs = [registration(1), registration(2)];
    let ctx = Context {
        registrations: &regs,
        now: now(),
        own_token_url: OWN,
        also_accepted: &[],
        replays,
    };
    check_assertion(assertion, &ctx)
}

fn check(header: &Value, claims: &Value) -> Result<Grant, Refusal> {
    check_with(&sign(header, claims, 1), &ReplayLog::default())
}

fn refused(header: &Value, claims: &Value) -> (ErrorCode, AuditReason, String) {
    let r = check(header, claims).unwrap_err();
    (r.code, r.audit, r.detail)
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().unwrap().remove(key);
    v
}

#[test]
fn a_good_assertion_is_granted_with_its_scopes() {
    let grant = check(&header(), &claims()).unwrap();
    assert_eq!(grant.client_id.to_string(), CLIENT);
    assert_eq!(grant.certificate_id.to_string(), "cert1");
    assert_eq!(grant.scopes, vec![Scope::Restlets]);
    assert_eq!(grant.jti.as_deref(), Some("j1"));
    assert_eq!(grant.alg, Alg::ES256);
}

#[test]
fn scope_as_comma_string_float_times_and_account_audience_are_accepted() {
    let c = with(claims(), "scope", json!("restlets, rest_webservices"));
    let c = with(c, "iat", json!(1_800_000_000.5));
    let c = with(c, "exp", json!(1_800_000_100.25));
    let c = with(
        c,
        "aud",
        json!("https://1234567-sb1.suitetalk.api.netsuite.com/services/rest/auth/oauth2/v1/token"),
    );
    let grant = check(&header(), &c).unwrap();
    assert_eq!(grant.scopes, vec![Scope::Restlets, Scope::RestWebservices]);
}

#[test]
fn iat_a_little_in_the_future_is_tolerated_but_not_more() {
    let c = with(claims(), "iat", json!(1_800_000_005u64));
    assert!(check(&header(), &c).is_ok());
    let c = with(claims(), "iat", json!(1_800_000_006u64));
    let (code, audit, detail) = refused(&header(), &c);
    assert_eq!(
        (code, audit),
        (ErrorCode::InvalidGrant, AuditReason::TokenNotAcceptable)
    );
    assert!(detail.contains("future"), "{detail}");
}

#[test]
fn expired_and_too_long_assertions_are_refused() {
    let c = with(claims(), "exp", json!(1_800_000_000u64));
    assert_eq!(
        refused(&header(), &c).1,
        AuditReason::TokenExpired,
        "exp == now"
    );
    let c = with(claims(), "exp", json!(1_800_003_601u64));
    let (code, audit, detail) = refused(&header(), &c);
    assert_eq!(
        (code, audit),
        (ErrorCode::InvalidGrant, AuditReason::TokenNotAcceptable)
    );
    assert!(detail.contains("3601"), "{detail}");
    let c = with(claims(), "exp", json!(1_800_003_600u64));
    assert!(check(&header(), &c).is_ok(), "exactly 3600 s is allowed");
    let c = with(claims(), "iat", json!("1800000000"));
    assert!(
        refused(&header(), &c)
            .2
            .contains("iat is missing or not a number")
    );
}

/// `check` of an assertion made at `t` (its `iat`), by the emulator at `t`, with one
/// registration (key 1) valid from `from` to `until`.
fn check_at(t: SystemTime, from: SystemTime, until: SystemTime) -> Result<Grant, Refusal> {
    let iat = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let claims = with(with(claims(), "iat", json!(iat)), "exp", json!(iat + 300));
    let regs = [Registration {
        valid_from: from,
        valid_until: until,
        ..registration(1)
    }];
    let ctx = Context {
        registrations: &regs,
        now: t,
        own_token_url: OWN,
        also_accepted: &[],
        replays: &ReplayLog::default(),
    };
    check_assertion(&sign(&header(), &claims, 1), &ctx)
}

/// A certificate is usable from its notBefore through its notAfter, both inclusive, and the
/// clock is read at each request: the same registration is refused once it has expired.
#[test]
fn a_certificate_outside_its_validity_is_refused_at_each_request() {
    let secs = |n: u64| Duration::from_secs(n);
    let (from, until) = (now(), now() + secs(100));
    assert!(check_at(from, from, until).is_ok(), "at notBefore");
    assert!(check_at(until, from, until).is_ok(), "at notAfter");
    for (t, audit, word) in [
        (
            until + secs(1),
            AuditReason::CertificateExpired,
            "expired on",
        ),
        (
            from - secs(1),
            AuditReason::CertificateNotYetValid,
            "not valid until",
        ),
    ] {
        let r = check_at(t, from, until).unwrap_err();
        assert_eq!(
            (r.code, r.status(), r.audit),
            (ErrorCode::InvalidGrant, 400, audit)
        );
        assert!(r.detail.contains(word), "{}", r.detail);
        assert_eq!(r.kid.as_deref(), Some("cert1"));
    }
    // A sub-second past notAfter is past it.
    let r = check_at(until + Duration::from_millis(500), from, until).unwrap_err();
    assert_eq!(r.audit, AuditReason::CertificateExpired);
}

/// netsuite-m2m.md: "No `sub`, no `nbf`": present at all, whatever their value, they are refused.
#[test]
fn sub_and_nbf_claims_are_refused() {
    for (claim, value) in [
        ("sub", json!(CLIENT)),
        ("sub", json!(null)),
        ("nbf", json!(1_800_000_000u64)),
        ("nbf", json!(1_799_999_000u64)),
    ] {
        let (code, audit, detail) = refused(&header(), &with(claims(), claim, value.clone()));
        assert_eq!(
            (code, audit),
            (ErrorCode::InvalidGrant, AuditReason::TokenNotAcceptable),
            "{claim}: {value}"
        );
        assert!(
            detail.contains(&format!("the assertion has a {claim} claim")),
            "{detail}"
        );
    }
}

#[test]
fn algorithms_outside_the_six_are_refused_with_unsupported_algo() {
    for alg in ["RS256", "HS256", "none", "es256", "EdDSA"] {
        let (code, audit, detail) = refused(&with(header(), "alg", json!(alg)), &claims());
        assert_eq!(
            (code, audit),
            (ErrorCode::InvalidGrant, AuditReason::UnsupportedAlgo),
            "{alg}"
        );
        assert!(detail.contains(alg), "{detail}");
    }
    let (_, audit, _) = refused(&without(header(), "alg"), &claims());
    assert_eq!(audit, AuditReason::UnsupportedAlgo);
    // ES384 is allowed, but not with a P-256 certificate.
    let (_, audit, detail) = refused(&with(header(), "alg", json!("ES384")), &claims());
    assert_eq!(audit, AuditReason::SignatureValidation);
    assert!(detail.contains("EC P-256"), "{detail}");
}

#[test]
fn missing_kid_is_a_server_error_and_unknown_kid_invalid_grant() {
    let r = check(&without(header(), "kid"), &claims()).unwrap_err();
    assert_eq!(
        (r.code, r.status(), r.audit),
        (ErrorCode::ServerError, 500, AuditReason::MissingKeyId)
    );
    let r = check(&with(header(), "kid", json!("nope")), &claims()).unwrap_err();
    assert_eq!(
        (r.code, r.status(), r.audit),
        (ErrorCode::InvalidGrant, 400, AuditReason::MissingKey)
    );
    assert_eq!(r.kid.as_deref(), Some("nope"));
    assert_eq!(r.iss.as_deref(), Some(CLIENT));
}

#[test]
fn a_signature_by_another_key_or_tampered_claims_fail() {
    // Signed by key 2 but naming certificate 1.
    let r = check_with(&sign(&header(), &claims(), 2), &ReplayLog::default()).unwrap_err();
    assert_eq!(r.audit, AuditReason::SignatureValidation);
    // Claims swapped after signing.
    let good = sign(&header(), &claims(), 1);
    let other = sign(
        &header(),
        &with(claims(), "scope", json!(["rest_webservices"])),
        1,
    );
    let g: Vec<&str> = good.split('.').collect();
    let o: Vec<&str> = other.split('.').collect();
    let tampered = format!("{}.{}.{}", g[0], o[1], g[2]);
    let r = check_with(&tampered, &ReplayLog::default()).unwrap_err();
    assert_eq!(
        (r.code, r.audit),
        (ErrorCode::InvalidGrant, AuditReason::SignatureValidation)
    );
    // The right key under its own kid works.
    let h2 = with(header(), "kid", json!("cert2"));
    assert!(check_with(&sign(&h2, &claims(), 2), &ReplayLog::default()).is_ok());
}

#[test]
fn wrong_issuer_is_invalid_client_401() {
    let r = check(&header(), &with(claims(), "iss", json!("someoneelse"))).unwrap_err();
    assert_eq!(
        (r.code, r.status(), r.audit),
        (ErrorCode::InvalidClient, 401, AuditReason::InvalidIssuer)
    );
    let r = check(&header(), &without(claims(), "iss")).unwrap_err();
    assert_eq!(r.audit, AuditReason::InvalidIssuer);
}

#[test]
fn wrong_or_missing_audience_is_refused() {
    for aud in [
        json!("https://1234567.suitetalk.api.netsuite.com/services/rest/auth/oauth2/v1/token"),
        json!("http://127.0.0.1:4000/services/rest/auth/oauth2/v1/token/"),
        json!(42),
        json!([]),
    ] {
        let (code, audit, detail) = refused(&header(), &with(claims(), "aud", aud.clone()));
        assert_eq!(
            (code, audit),
            (ErrorCode::InvalidGrant, AuditReason::TokenNotAcceptable),
            "{aud}"
        );
        assert!(detail.contains("aud"), "{detail}");
    }
    assert!(
        refused(&header(), &without(claims(), "aud"))
            .2
            .contains("(missing)")
    );
    assert!(check(&header(), &with(claims(), "aud", json!(["x", OWN]))).is_ok());
}

#[test]
fn scopes_must_be_known_enabled_and_present() {
    for scope in [
        json!(["suite_analytics"]),
        json!(["restlets", "bogus"]),
        json!([]),
        json!(""),
        json!(["Restlets"]),
        json!([1]),
    ] {
        let r = check(&header(), &with(claims(), "scope", scope.clone())).unwrap_err();
        assert_eq!(
            (r.code, r.audit),
            (ErrorCode::InvalidScope, AuditReason::ScopeMismatched),
            "{scope}"
        );
    }
    let r = check(&header(), &without(claims(), "scope")).unwrap_err();
    assert!(r.detail.contains("missing or empty"), "{}", r.detail);
}

#[test]
fn a_used_jti_or_identical_assertion_is_replayed() {
    let mut log = ReplayLog::default();
    let jws = sign(&header(), &claims(), 1);
    let grant = check_with(&jws, &log).unwrap();
    log.record(&grant, now());
    let r = check_with(&jws, &log).unwrap_err();
    assert_eq!(
        (r.code, r.audit),
        (ErrorCode::InvalidGrant, AuditReason::Replayed)
    );
    // Same jti, different assertion: still a replay.
    let again = sign(
        &header(),
        &with(claims(), "exp", json!(1_800_000_200u64)),
        1,
    );
    assert_eq!(
        check_with(&again, &log).unwrap_err().audit,
        AuditReason::Replayed
    );
    // No jti: the identical assertion cannot be used twice either.
    let no_jti = sign(&header(), &without(claims(), "jti"), 1);
    let grant = check_with(&no_jti, &log).unwrap();
    log.record(&grant, now());
    assert_eq!(
        check_with(&no_jti, &log).unwrap_err().audit,
        AuditReason::Replayed
    );
    // Expired entries are forgotten.
    log.record(&grant, now() + Duration::from_secs(1000));
    assert!(!log.contains("jti:j1"));
}

#[test]
fn malformed_jws_is_invalid_grant() {
    for bad in [
        "",
        "a.b",
        "a.b.c.d",
        "!!.e30.AA",
        "e30.e30.!!",
        "WzFd.e30.AA",
    ] {
        let r = check_with(bad, &ReplayLog::default()).unwrap_err();
        assert_eq!(
            (r.code, r.audit),
            (ErrorCode::InvalidGrant, AuditReason::TokenNotAcceptable),
            "{bad}"
        );
        assert!(r.detail.contains("not a compact JWS"), "{}", r.detail);
    }
}

fn form(content_type: Option<&str>, auth: bool, body: &str) -> Result<String, Refusal> {
    check_form(&TokenRequest {
        content_type,
        has_authorization: auth,
        body: body.as_bytes(),
    })
}

const CT: Option<&str> = Some("application/x-www-form-urlencoded");
const GOOD: &str = "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=a.b.c";

#[test]
fn the_form_needs_exactly_three_fields_right_type_and_one_auth_method() {
    assert_eq!(form(CT, false, GOOD).unwrap(), "a.b.c");
    assert!(
        form(
            Some("application/x-www-form-urlencoded; charset=UTF-8"),
            false,
            GOOD
        )
        .is_ok()
    );
    let cases = [
        (
            Some("application/json"),
            false,
            GOOD.to_owned(),
            "content type",
        ),
        (None, false, GOOD.to_owned(), "content type"),
        (CT, true, GOOD.to_owned(), "Authorization"),
        (
            CT,
            false,
            format!("{GOOD}&scope=restlets"),
            "unexpected field \"scope\"",
        ),
        (
            CT,
            false,
            format!("{GOOD}&client_assertion=x"),
            "duplicated",
        ),
        (
            CT,
            false,
            GOOD.replace("&client_assertion=a.b.c", ""),
            "client_assertion is missing",
        ),
        (
            CT,
            false,
            GOOD.replace("client_credentials", "password"),
            "grant_type",
        ),
        (
            CT,
            false,
            GOOD.replace("jwt-bearer", "saml2-bearer"),
            "client_assertion_type",
        ),
    ];
    for (ct, auth, body, word) in cases {
        let r = form(ct, auth, &body).unwrap_err();
        assert_eq!(
            (r.code, r.status()),
            (ErrorCode::InvalidRequest, 400),
            "{body}"
        );
        assert!(r.detail.contains(word), "{word}: {}", r.detail);
    }
}

// Hostile input: sizes, garbage, and valid assertions with one part replaced. These use the
// fuzzing entry point's emulator (one registered P-256 key, a fixed clock).

use crate::fuzzing::{EMULATOR_AUD, EMULATOR_CLIENT, EMULATOR_KID, EMULATOR_NOW, emulator_sign};
use proptest::prelude::*;

fn fuzz_header() -> String {
    json!({"typ": "JWT", "alg": "ES256", "kid": EMULATOR_KID}).to_string()
}

fn fuzz_claims() -> String {
    json!({"iss": EMULATOR_CLIENT, "scope": ["restlets"], "aud": EMULATOR_AUD,
           "iat": EMULATOR_NOW, "exp": EMULATOR_NOW + 300, "jti": "fuzz-1"})
    .to_string()
}

fn fuzz_form(assertion: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(assertion.as_bytes()).collect();
    format!(
        "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={encoded}"
    )
}

#[test]
fn the_fuzzing_emulator_grants_a_valid_assertion() {
    let assertion = emulator_sign(&fuzz_header(), &fuzz_claims());
    let grant = crate::fuzzing::emulator_assertion(fuzz_form(&assertion).as_bytes()).unwrap();
    assert_eq!(grant.jti.as_deref(), Some("fuzz-1"));
}

#[test]
fn an_oversized_assertion_is_refused_before_decoding() {
    // Valid base64url JSON padding: without the limit this decodes and reaches the key lookup.
    let claims = json!({"pad": "p".repeat(MAX_ASSERTION_LEN)}).to_string();
    let assertion = emulator_sign(&fuzz_header(), &claims);
    let r = crate::fuzzing::emulator_assertion(fuzz_form(&assertion).as_bytes()).unwrap_err();
    assert_eq!(
        (r.code, r.audit),
        (ErrorCode::InvalidGrant, AuditReason::TokenNotAcceptable)
    );
    assert!(
        r.detail
            .contains(&format!("more than the {MAX_ASSERTION_LEN}")),
        "{}",
        r.detail
    );
}

/// A compact JWS part: base64url text, JSON-ish text encoded, or raw junk.
fn any_part() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_-]{0,120}",
        ".{0,60}".prop_map(|text| b64url(text.as_bytes())),
        r#"\{("[a-z]{1,5}":("[ -~]{0,10}"|-?[0-9]{1,20}(\.[0-9]+)?|true|null|\[\]|\{\}),?){0,4}\}"#
            .prop_map(|json| b64url(json.as_bytes())),
        "[ -~]{0,40}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_are_refused_netsuite_style(
        data in prop::collection::vec(any::<u8>(), 0..400)
    ) {
        let r = crate::fuzzing::emulator_assertion(&data);
        prop_assert!(r.is_err());
        let r = r.unwrap_err();
        prop_assert!([400, 401, 500].contains(&r.status()));
        prop_assert!(!r.detail.is_empty());
    }

    /// A valid assertion with its header, claims or signature replaced: refused with the
    /// reason that part's checks give, never granted, never a panic.
    #[test]
    fn a_valid_assertion_with_one_part_replaced_is_refused(
        which in 0..3usize,
        part in any_part(),
    ) {
        let valid = emulator_sign(&fuzz_header(), &fuzz_claims());
        let mut parts: Vec<String> = valid.split('.').map(str::to_owned).collect();
        prop_assume!(parts[which] != part);
        parts[which] = part;
        let mutated = parts.join(".");
        let r = crate::fuzzing::emulator_assertion(fuzz_form(&mutated).as_bytes());
        prop_assert!(r.is_err(), "{mutated} was granted");
        let audit = r.unwrap_err().audit;
        use AuditReason::*;
        let expected: &[AuditReason] = match which {
            // A new header may name another alg or kid, or none.
            0 => &[TokenNotAcceptable, UnsupportedAlgo, MissingKeyId, MissingKey, SignatureValidation],
            _ => &[TokenNotAcceptable, SignatureValidation],
        };
        prop_assert!(expected.contains(&audit), "part {which}: {audit}");
    }

    /// Random fields and values in the form: refused as an invalid request unless the three
    /// fields are exactly right.
    #[test]
    fn a_form_with_random_fields_is_an_invalid_request(
        fields in prop::collection::vec(
            ("(grant_type|client_assertion_type|client_assertion|scope|[a-z_%]{1,10})", "[ -~]{0,20}"),
            0..5,
        ),
    ) {
        let body = fields
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("&");
        let r = crate::fuzzing::emulator_assertion(body.as_bytes());
        prop_assert!(r.is_err());
        let r = r.unwrap_err();
        prop_assert!(
            r.code == ErrorCode::InvalidRequest || r.audit == AuditReason::TokenNotAcceptable,
            "{body}: {r:?}"
        );
    }
}

/// A revoked certificate is refused for good; an uploaded one not yet usable (propagation) is
/// unknown until it is.
#[test]
fn a_revoked_or_not_yet_active_certificate_is_refused() {
    let check_with_lifecycle = |lifecycle: Lifecycle| {
        let regs = [Registration {
            lifecycle,
            ..registration(1)
        }];
        let ctx = Context {
            registrations: &regs,
            now: now(),
            own_token_url: OWN,
            also_accepted: &[],
            replays: &ReplayLog::default(),
        };
        check_assertion(&sign(&header(), &claims(), 1), &ctx)
    };
    let revoked = Lifecycle {
        revoked: Some(now() - Duration::from_secs(1)),
        ..Lifecycle::default()
    };
    let r = check_with_lifecycle(revoked).unwrap_err();
    assert_eq!(
        (r.code, r.audit),
        (ErrorCode::InvalidGrant, AuditReason::CertificateRevoked)
    );
    assert!(r.detail.contains("revoked on"), "{}", r.detail);
    let propagating = Lifecycle {
        uploaded: now(),
        active_from: now() + Duration::from_millis(1500),
        revoked: None,
    };
    let r = check_with_lifecycle(propagating).unwrap_err();
    assert_eq!(
        (r.code, r.audit),
        (ErrorCode::InvalidGrant, AuditReason::MissingKey)
    );
    assert!(r.detail.contains("1500 ms"), "{}", r.detail);
    assert!(
        check_with_lifecycle(Lifecycle::uploaded_at(now())).is_ok(),
        "usable from active_from"
    );
}
