//! `suitekey emulate` driven as a real process: one test per NetSuite rule, each asserting the
//! status, the exact body and the audit reason on stderr.
//!
//! Keys and certificates are made with the `openssl` CLI and assertions are signed with it too,
//! so the emulator (RustCrypto) is checked against an independent implementation.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::emulator::{Emulator, TOKEN_PATH};
use common::http::Response;
use common::openssl::Keys;
use serde_json::{Value, json};

const CLIENT: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const CATALOG_PATH: &str = "/services/rest/record/v1/metadata-catalog";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Emulator {
    /// Registers `keys` for CLIENT with all scopes.
    fn with(keys: &Keys, extra: &[&str]) -> Emulator {
        let spec = format!("client-id={CLIENT},cert={}", keys.cert());
        let mut args = vec!["--register", &spec];
        args.extend_from_slice(extra);
        Emulator::start(&args)
    }

    /// POSTs a form with the right content type.
    fn post_form(&self, body: &str) -> Response {
        self.request(
            "POST",
            TOKEN_PATH,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body,
        )
    }

    fn post_assertion(&self, assertion: &str) -> Response {
        self.post_form(&form(assertion))
    }

    /// A valid assertion for this emulator, with `change` applied to header and claims.
    fn assertion(&self, keys: &Keys, change: impl FnOnce(&mut Value, &mut Value)) -> String {
        let alg = if keys.rsa { "PS256" } else { "ES256" };
        let mut header = json!({"typ": "JWT", "alg": alg, "kid": keys.kid()});
        let iat = now();
        let mut claims = json!({
            "iss": CLIENT, "scope": ["restlets", "rest_webservices"], "aud": self.token_url(),
            "iat": iat, "exp": iat + 300, "jti": format!("jti-{iat}-{}", rand_suffix()),
        });
        change(&mut header, &mut claims);
        keys.sign(&header, &claims)
    }

    /// Asserts a refusal: status, exact body, and the audit reason logged on stderr.
    fn assert_refused(&self, resp: &Response, status: u16, code: &str, audit: &str) {
        assert_eq!(resp.status, status, "{resp:?}");
        assert_eq!(resp.body, format!(r#"{{"error":"{code}"}}"#));
        assert_eq!(resp.header("content-type"), Some("application/json"));
        let log = self.stderr();
        assert!(
            log.contains(&format!("token request refused: {audit}")),
            "{audit} not in: {log}"
        );
    }
}

fn rand_suffix() -> u128 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    u128::from(n) << 64
        | u128::from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .subsec_nanos(),
        )
}

fn form(assertion: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "grant_type=client_credentials&client_assertion_type={}&client_assertion={}",
        enc(ASSERTION_TYPE),
        enc(assertion)
    )
}

#[test]
fn a_valid_assertion_gets_a_token_that_opens_the_protected_resource() {
    let keys = Keys::p256();
    let emu = Emulator::with(&keys, &[]);
    let assertion = emu.assertion(&keys, |_, _| {});
    let resp = emu.post_assertion(&assertion);
    assert_eq!(resp.status, 200, "{resp:?}");
    let body = resp.json();
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["token_type"], "Bearer");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(token.len(), 43, "32 random bytes, base64url");
    assert_eq!(resp.header("cache-control"), Some("no-store"));

    let bearer = format!("Bearer {token}");
    let ok = emu.request("GET", CATALOG_PATH, &[("Authorization", &bearer)], "");
    assert_eq!(ok.status, 200, "{ok:?}");
    assert!(ok.json()["items"].is_array());
    for auth in [None, Some("Bearer not-a-token"), Some("Basic dXNlcjpwYXNz")] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        let denied = emu.request("GET", CATALOG_PATH, &headers, "");
        assert_eq!(denied.status, 401, "{auth:?}");
        assert!(
            denied
                .header("www-authenticate")
                .unwrap()
                .starts_with("Bearer")
        );
        assert_eq!(
            denied.json()["o:errorDetails"][0]["o:errorCode"],
            "INVALID_LOGIN"
        );
    }

    let stats = emu.stats();
    assert_eq!(stats["token_requests"], 1);
    assert_eq!(stats["tokens_issued"], 1);
    let jti = common::decode_jws(&assertion).claims["jti"].clone();
    assert_eq!(stats["jtis"], json!([jti]));
    // Neither the assertion's signature nor the token is ever logged.
    let log = emu.stderr();
    let signature = assertion.rsplit('.').next().unwrap();
    assert!(!log.contains(signature) && !log.contains(token), "{log}");
    assert!(log.contains("metadata-catalog refused"), "{log}");
}

#[test]
fn rsa_pss_is_accepted_and_rs256_refused_with_the_same_key() {
    let keys = Keys::rsa(3072);
    let emu = Emulator::with(&keys, &[]);
    let resp = emu.post_assertion(&emu.assertion(&keys, |_, _| {}));
    assert_eq!(resp.status, 200, "{resp:?}");
    let rs256 = emu.assertion(&keys, |h, _| h["alg"] = json!("RS256"));
    emu.assert_refused(
        &emu.post_assertion(&rs256),
        400,
        "invalid_grant",
        "UnsupportedAlgo",
    );
    assert!(emu.stderr().contains("1 March 2025"));
}

#[test]
fn a_bad_signature_is_invalid_grant() {
    let keys = Keys::p256();
    let other = Keys::p256();
    let emu = Emulator::with(&keys, &[]);
    // Signed by another key, under the registered certificate's kid.
    let kid = keys.kid();
    let forged = emu.assertion(&other, |h, _| h["kid"] = json!(kid));
    emu.assert_refused(
        &emu.post_assertion(&forged),
        400,
        "invalid_grant",
        "SignatureValidation",
    );
}

#[test]
fn an_unknown_kid_is_invalid_grant_and_a_missing_kid_a_server_error() {
    let keys = Keys::p256();
    let emu = Emulator::with(&keys, &[]);
    let unknown = emu.assertion(&keys, |h, _| h["kid"] = json!("not-registered"));
    emu.assert_refused(
        &emu.post_assertion(&unknown),
        400,
        "invalid_grant",
        "MissingKey",
    );
    assert!(
        emu.stderr().contains("kid=\"not-registered\""),
        "{}",
        emu.stderr()
    );
    let missing = emu.assertion(&keys, |h, _| {
        h.as_object_mut().unwrap().remove("kid");
    });
    emu.assert_refused(
        &emu.post_assertion(&missing),
        500,
        "server_error",
        "MissingKeyId",
    );
}

#[test]
fn a_wrong_issuer_is_invalid_client() {
    let keys = Keys::p256();
    let emu = Emulator::with(&keys, &[]);
    let wrong = emu.assertion(&keys, |_, c| c["iss"] = json!("ffff"));
    emu.assert_refused(
        &emu.post_assertion(&wrong),
        401,
        "invalid_client",
        "InvalidIssuer",
    );
    assert!(emu.stderr().contains("iss=\"ffff\""));
}

#[test]
fn a_wrong_audience_is_refused_and_the_accounts_token_url_accepted() {
    let keys = Keys::p256();
    let emu = Emulator::with(&keys, &[]);
    let spec = format!(
        "client-id={CLIENT},cert={},account=1234567_SB1",
        keys.cert()
    );
    let with_account = Emulator::start(&["--register", &spec]);
    let netsuite =
        "https://1234567-sb1.suitetalk.api.netsuite.com/services/rest/auth/oauth2/v1/token";
    let to_netsuite = emu.assertion(&keys, |_, c| c["aud"] = json!(netsuite));
    emu.assert_refused(
        &emu.post_assertion(&to_netsuite),
        400,
        "invalid_grant",
        "TokenNotAcceptable",
    );
    assert!(emu.stderr().contains("aud"), "{}", emu.stderr());
    let resp = with_account
        .post_assertion(&with_account.assertion(&keys, |_, c| c["aud"] = json!(netsuite)));
    assert_eq!(resp.status, 200, "{resp:?}");
}

#[test]
fn an_expired_assertion_is_refused() {
    let keys = Keys::p256();
    let emu = Emulator::with(&keys, &[]);
    let expired = emu.assertion(&keys, |_, c| {
        c["iat"] = json!(now() - 400);
        c["exp"] = json!(now() - 100);
    });
    emu.assert_refused(
        &emu.post_assertion(&expired),
        400,
        "invalid_grant",
        "TokenExpired",
    );
}

#[test]
fn an_iat_in_the_future_is_refused() {
    let keys = Keys::p256();
    let emu = Emulator::with(&keys, &[]);
    let future = emu.assertion(&keys, |_, c| {
        c["iat"] = json!(now() + 60);
        c["exp"] = json!(now() + 360);
    });
    emu.assert_refused(
        &emu.post_assertion(&future),
        400,
        "invalid_grant",
        "TokenNotAcceptable",
    );
    assert!(emu.stderr().contains("in the future"));
}

#[test]
fn an_exp_more_than_an_hour_after_iat_is_refused() {
    let keys = Keys::p256();
    let emu = Emulator::with(&keys, &[]);
    let long = emu.assertion(&keys, |_, c| c["exp"] = json!(now() + 3601));
    emu.assert_refused(
        &emu.post_assertion(&long),
        400,
        "invalid_grant",
        "TokenNotAcceptable",
    );
    assert!(emu.stderr().contains("at most 3600 s"));
}

#[test]
fn a_scope_not_enabled_or_unknown_is_invalid_scope() {
    let keys = Keys::p256();
    let spec = format!("client-id={CLIENT},cert={},scopes=restlets", keys.cert());
    let emu = Emulator::start(&["--register", &spec]);
    let not_enabled = emu.assertion(&keys, |_, c| {
        c["scope"] = json!("restlets,rest_webservices")
    });
    emu.assert_refused(
        &emu.post_assertion(&not_enabled),
        400,
        "invalid_scope",
        "ScopeMismatched",
    );
    assert!(emu.stderr().contains("rest_webservices is not enabled"));
    let unknown = emu.assertion(&keys, |_, c| c["scope"] = json!(["restlets", "everything"]));
    emu.assert_refused(
        &emu.post_assertion(&unknown),
        400,
        "invalid_scope",
        "ScopeMismatched",
    );
    assert!(emu.stderr().contains(r#"unknown scope "everything""#));
    // A token with only restlets does not open the REST web services resource.
    let resp = emu.post_assertion(&emu.assertion(&keys, |_, c| c["scope"] = json!(["restlets"])));
    let bearer = format!("Bearer {}", resp.json()["access_token"].as_str().unwrap());
    assert_eq!(
        emu.request("GET", CATALOG_PATH, &[("Authorization", &bearer)], "")
            .status,
        401
    );
}

#[test]
fn a_missing_field_is_invalid_request() {
    let keys = Keys::p256();
    let emu = Emulator::with(&keys, &[]);
    let body = form(&emu.assertion(&keys, |_, _| {}));
    let without_grant = body.replace("grant_type=client_credentials&", "");
    emu.assert_refused(
        &emu.post_form(&without_grant),
        400,
        "invalid_request",
        "InvalidRequest",
    );
    assert!(emu.stderr().contains("grant_type is missing"));
}

#[test]
fn an_extra_or_duplicated_field_is_invalid_request() {
    let keys = Keys::p256();
    let emu = Emulator::with(&keys, &[]);
    let body = form(&emu.assertion(&keys, |_, _| {}));
    emu.assert_refused(
        &emu.post_form(&format!("{body}&scope=restlets")),
        400,
        "invalid_request",
        "InvalidRequest",
    );
    assert!(emu.stderr().contains(r#"unexpected field "scope""#));
    let twice = format!("{body}&grant_type=client_credentials");
    emu.assert_refused(
        &emu.post_form(&twice),
        400,
        "invalid_request",
        "InvalidRequest",
    );
    assert!(emu.stderr().contains("grant_type is duplicated"));
    assert_eq!(emu.stats()["tokens_issued"], 0);
}

#[test]
fn a_wrong_content_type_or_basic_auth_is_invalid_request() {
    let keys = Keys::p256();
    let emu = Emulator::with(&keys, &[]);
    let body = form(&emu.assertion(&keys, |_, _| {}));
    let resp = emu.request(
        "POST",
        TOKEN_PATH,
        &[("Content-Type", "application/json")],
        &body,
    );
    emu.assert_refused(&resp, 400, "invalid_request", "InvalidRequest");
    assert!(emu.stderr().contains("content type"));
    let resp = emu.request(
        "POST",
        TOKEN_PATH,
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Authorization", "Basic eDp5"),
        ],
        &body,
    );
    emu.assert_refused(&resp, 400, "invalid_request", "InvalidRequest");
    assert!(
        emu.stderr()
            .contains("several client authentication methods")
    );
}

#[test]
fn a_replayed_jti_is_refused() {
    let keys = Keys::p256();
    let emu = Emulator::with(&keys, &[]);
    let assertion = emu.assertion(&keys, |_, c| c["jti"] = json!("once"));
    assert_eq!(emu.post_assertion(&assertion).status, 200);
    emu.assert_refused(
        &emu.post_assertion(&assertion),
        400,
        "invalid_grant",
        "Replayed",
    );
    // A new assertion reusing the jti is a replay too.
    let reused = emu.assertion(&keys, |_, c| {
        c["jti"] = json!("once");
        c["exp"] = json!(now() + 200);
    });
    emu.assert_refused(
        &emu.post_assertion(&reused),
        400,
        "invalid_grant",
        "Replayed",
    );
    assert_eq!(emu.stats()["jtis"], json!(["once"]));
}

#[test]
fn fail_first_answers_500_then_serves() {
    let keys = Keys::p256();
    let emu = Emulator::with(&keys, &["--fail-first", "2"]);
    for _ in 0..2 {
        let resp = emu.post_assertion(&emu.assertion(&keys, |_, _| {}));
        assert_eq!(
            (resp.status, resp.body.as_str()),
            (500, r#"{"error":"server_error"}"#)
        );
    }
    assert_eq!(
        emu.post_assertion(&emu.assertion(&keys, |_, _| {})).status,
        200
    );
    assert!(emu.stderr().contains("--fail-first"));
    let stats = emu.stats();
    assert_eq!(
        (
            stats["token_requests"].as_u64(),
            stats["tokens_issued"].as_u64()
        ),
        (Some(3), Some(1))
    );
}

#[test]
fn rate_limit_answers_429_with_retry_after_after_the_failures() {
    let keys = Keys::p256();
    let emu = Emulator::with(&keys, &["--fail-first", "1", "--rate-limit", "2"]);
    let statuses: Vec<(u16, Option<String>)> = (0..4)
        .map(|_| {
            let resp = emu.post_assertion(&emu.assertion(&keys, |_, _| {}));
            (resp.status, resp.header("retry-after").map(str::to_owned))
        })
        .collect();
    let one = Some("1".to_owned());
    assert_eq!(
        statuses,
        vec![(500, None), (429, one.clone()), (429, one), (200, None)]
    );
    assert!(emu.stderr().contains("--rate-limit"));
}

#[test]
fn delay_ms_delays_every_token_answer() {
    let keys = Keys::p256();
    let emu = Emulator::with(&keys, &["--delay-ms", "300"]);
    let assertion = emu.assertion(&keys, |_, _| {});
    let started = Instant::now();
    assert_eq!(emu.post_assertion(&assertion).status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn short_token_lifetime_expires_the_access_token() {
    let keys = Keys::p256();
    let emu = Emulator::with(&keys, &["--token-lifetime", "1"]);
    let resp = emu.post_assertion(&emu.assertion(&keys, |_, _| {}));
    assert_eq!(resp.json()["expires_in"], 1);
    let bearer = format!("Bearer {}", resp.json()["access_token"].as_str().unwrap());
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        emu.request("GET", CATALOG_PATH, &[("Authorization", &bearer)], "")
            .status,
        401
    );
    assert!(emu.stderr().contains("expired"));
}

#[test]
fn other_methods_paths_and_big_bodies_are_refused_like_a_web_server() {
    let keys = Keys::p256();
    let emu = Emulator::with(&keys, &[]);
    assert_eq!(emu.request("GET", TOKEN_PATH, &[], "").status, 405);
    assert_eq!(
        emu.request("POST", "/services/rest/auth/oauth2/v1/token/", &[], "")
            .status,
        404
    );
    let big = "a".repeat(100 * 1024);
    let resp = emu.post_form(&big);
    assert_eq!(resp.status, 413, "{resp:?}");
    assert_eq!(emu.stats()["token_requests"], 0);
}

#[test]
fn sigterm_stops_the_emulator_with_status_0() {
    let keys = Keys::p256();
    let mut emu = Emulator::with(&keys, &[]);
    let pid = emu.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = emu.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", emu.stderr());
}

fn run_emulate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_suitekey"))
        .arg("emulate")
        .args(args)
        .output()
        .unwrap();
    let (stdout, stderr) = common::texts(&out);
    (out.status.code().unwrap(), stdout, stderr)
}

/// What makes the emulator go with a test process that is killed outright: the kernel closes
/// the pipe on the emulator's stdin, as dropping our end does here.
#[test]
fn the_emulator_exits_when_the_pipe_on_its_stdin_closes() {
    let keys = Keys::p256();
    let mut emu = Emulator::with(&keys, &[]);
    drop(emu.stdin.take());
    // A deadline for a hang, not a measure of speed.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = emu.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the emulator still runs 30 s after its stdin closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}: {}", emu.stderr());
}

#[test]
fn a_non_loopback_listen_address_is_refused() {
    let keys = Keys::p256();
    let spec = format!("client-id={CLIENT},cert={}", keys.cert());
    for (addr, word) in [
        ("0.0.0.0:0", "only on loopback"),
        ("192.0.2.1:8080", "only on loopback"),
        ("[::]:0", "only on loopback"),
        ("localhost:0", "host names are not resolved"),
    ] {
        let (code, stdout, stderr) = run_emulate(&["--listen", addr, "--register", &spec]);
        assert_eq!(code, 2, "{addr}: {stderr}");
        assert_eq!(stdout, "", "{addr}");
        assert!(
            stderr.contains(&format!("--listen '{addr}'")) && stderr.contains(word),
            "{stderr}"
        );
    }
}

#[test]
fn a_bad_register_spec_is_refused() {
    let keys = Keys::p256();
    let weak = Keys::rsa(2048);
    let cert = keys.cert();
    let cases = [
        (
            format!("client-id={CLIENT},cert={cert},colour=red"),
            "unknown key 'colour'".to_owned(),
        ),
        (
            format!("client-id={CLIENT}"),
            "cert=FILE is missing".to_owned(),
        ),
        (format!("cert={cert}"), "client-id=ID is missing".to_owned()),
        (
            format!("client-id={CLIENT},cert=/nonexistent.pem"),
            "cannot read certificate file".to_owned(),
        ),
        (
            format!("client-id={CLIENT},cert={cert},scopes=restlets+all"),
            "unknown scope 'all'".to_owned(),
        ),
        (
            format!("client-id={CLIENT},cert={}", weak.cert()),
            "NetSuite refuses certificates with a RSA 2048 key".to_owned(),
        ),
    ];
    for (spec, word) in cases {
        let (code, stdout, stderr) = run_emulate(&["--register", &spec]);
        assert_eq!(code, 2, "{spec}: {stderr}");
        assert_eq!(stdout, "");
        assert!(stderr.contains(&word), "{word} not in {stderr}");
    }
    let spec = format!("client-id={CLIENT},cert={cert}");
    let (code, _, stderr) = run_emulate(&["--register", &spec, "--register", &spec]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("each certificate can be registered once"),
        "{stderr}"
    );
    let (code, _, stderr) = run_emulate(&[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--register"), "{stderr}");
}

#[test]
fn a_given_certificate_id_replaces_the_computed_one() {
    let keys = Keys::p256();
    let spec = format!(
        "client-id={CLIENT},cert={},certificate-id=MyCertId",
        keys.cert()
    );
    let emu = Emulator::start(&["--register", &spec]);
    let computed = emu.assertion(&keys, |_, _| {});
    emu.assert_refused(
        &emu.post_assertion(&computed),
        400,
        "invalid_grant",
        "MissingKey",
    );
    let given = emu.assertion(&keys, |h, _| h["kid"] = json!("MyCertId"));
    assert_eq!(emu.post_assertion(&given).status, 200);
}

/// The computed certificate id matches `suitekey::cert` (so the test's independent openssl
/// computation and the library agree).
#[test]
fn the_computed_certificate_id_is_the_x5t_s256_thumbprint() {
    let keys = Keys::p256();
    let cert = suitekey::cert::Certificate::load(Path::new(keys.cert())).unwrap();
    assert_eq!(cert.certificate_id().to_string(), keys.kid());
}

/// NetSuite refuses assertions made with a certificate outside its validity period.
#[test]
fn expired_and_not_yet_valid_certificates_are_refused() {
    // Both are 30-day certificates: made 40 days ago, and made to start in 2 days.
    for (made_at, audit) in [
        ("-40d", "CertificateExpired"),
        ("+2d", "CertificateNotYetValid"),
    ] {
        let keys = Keys::p256_made_at(made_at);
        let emu = Emulator::with(&keys, &[]);
        let resp = emu.post_assertion(&emu.assertion(&keys, |_, _| {}));
        emu.assert_refused(&resp, 400, "invalid_grant", audit);
        assert_eq!(emu.stats()["tokens_issued"], 0, "{made_at}");
        // Said at start too, where the certificate is registered.
        assert!(
            emu.stderr().contains("token requests with it are refused"),
            "{}",
            emu.stderr()
        );
    }
}

/// The certificate's validity is checked at each token request: one registered while valid is
/// refused once the emulator's clock passes its end.
#[test]
fn a_certificate_that_expires_while_the_emulator_runs_is_refused_from_then_on() {
    let keys = Keys::p256(); // valid for 30 days from now
    let dir = tempfile::tempdir().unwrap();
    let clock = dir.path().join("faketime");
    std::fs::write(&clock, "+0\n").unwrap();
    let preload = common::libfaketime();
    let spec = format!("client-id={CLIENT},cert={}", keys.cert());
    let emu = Emulator::start_with_env(
        "127.0.0.1:0",
        &["--register", &spec],
        &[
            ("LD_PRELOAD", preload.to_str().unwrap()),
            ("FAKETIME_TIMESTAMP_FILE", clock.to_str().unwrap()),
            // Read the file at every clock call, so the test can move the clock.
            ("FAKETIME_NO_CACHE", "1"),
            // The runtime's timers run on the monotonic clock: leave it alone.
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    let resp = emu.post_assertion(&emu.assertion(&keys, |_, _| {}));
    assert_eq!(resp.status, 200, "{resp:?} {}", emu.stderr());
    std::fs::write(&clock, "+31d\n").unwrap();
    let later = now() + 31 * 86_400;
    let assertion = emu.assertion(&keys, |_, c| {
        c["iat"] = json!(later);
        c["exp"] = json!(later + 300);
    });
    emu.assert_refused(
        &emu.post_assertion(&assertion),
        400,
        "invalid_grant",
        "CertificateExpired",
    );
    assert_eq!(emu.stats()["tokens_issued"], 1);
}

/// netsuite-m2m.md: "No `sub`, no `nbf`" in a client assertion.
#[test]
fn sub_and_nbf_claims_are_refused() {
    let keys = Keys::p256();
    let emu = Emulator::with(&keys, &[]);
    for (claim, value) in [("sub", json!(CLIENT)), ("nbf", json!(now()))] {
        let assertion = emu.assertion(&keys, |_, c| c[claim] = value);
        emu.assert_refused(
            &emu.post_assertion(&assertion),
            400,
            "invalid_grant",
            "TokenNotAcceptable",
        );
        let log = emu.stderr();
        assert!(
            log.contains(&format!("the assertion has a {claim} claim")),
            "{claim}: {log}"
        );
    }
    assert_eq!(emu.stats()["tokens_issued"], 0);
}

/// stdout's one line stays the base URL (scripts read it); the full token URL, what a client's
/// `--token-url` needs, is told on stderr, unless `-q`.
#[test]
fn the_token_url_is_told_on_stderr_and_stdout_keeps_only_the_base_url() {
    let keys = Keys::p256();
    let spec = format!("client-id={CLIENT},cert={}", keys.cert());
    for quiet in [false, true] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_suitekey"));
        if quiet {
            cmd.arg("-q");
        }
        // stdin at end of file: the emulator binds, prints, and stops at once.
        let out = cmd
            .args(["emulate", "--exit-on-stdin-eof", "--register", &spec])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let (stdout, stderr) = common::texts(&out);
        assert!(out.status.success(), "{stderr}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1, "{stdout:?}");
        let base = lines[0];
        assert!(base.starts_with("http://127.0.0.1:"), "{base}");
        assert!(!base.contains("/services"), "{base}");
        let told = format!("token URL: {base}{TOKEN_PATH}");
        assert_eq!(stderr.contains(&told), !quiet, "quiet={quiet}: {stderr}");
    }
}
