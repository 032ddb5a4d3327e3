//! The certificate API through HTTP against an in-process emulator: software P-256 keys make
//! the certificates (in-process, `cert::testing`) and sign the assertions for the bearer
//! tokens. End-to-end tests through the real binary are in `tests/emulate_certificates.rs`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use p256::ecdsa::signature::Signer as _;
use serde_json::{Value, json};

use super::mapping::{InternalId, Mapping};
use super::upload::MAX_PEM;
use super::*;
use crate::cert::Certificate;
use crate::cert::testing::{p256_certificate, p256_key};
use crate::emulator::harness::{Answer, Emulator};
use crate::emulator::rules::{Lifecycle, Registration};
use crate::emulator::{Config, TOKEN_PATH};
use crate::jose::b64url;
use crate::netsuite::Scopes;

const CLIENT: &str = "c0ffee";
const OTHER: &str = "beef42";

/// The certificate for the P-256 key `seed` with this subject, valid for 30 days from its first
/// use: made once (each certificate has a random serial, so a second one has another id).
fn cert(seed: u8, subject: &str) -> Certificate {
    static MADE: Mutex<Vec<(u8, String, Certificate)>> = Mutex::new(Vec::new());
    let mut made = MADE.lock().unwrap();
    if let Some((_, _, c)) = made.iter().find(|(s, n, _)| *s == seed && n == subject) {
        return c.clone();
    }
    let c = p256_certificate(seed, subject, SystemTime::now(), 30);
    made.push((seed, subject.to_owned(), c.clone()));
    c
}

/// `cert` registered for `client` with `scopes` and this mapping.
fn registration(cert: &Certificate, client: &str, scopes: &str, mapping: Mapping) -> Registration {
    Registration {
        client_id: client.parse().unwrap(),
        certificate_id: cert.certificate_id(),
        public_key: cert.public_key().unwrap(),
        scopes: scopes.parse::<Scopes>().unwrap(),
        account: None,
        valid_from: cert.not_before(),
        valid_until: cert.not_after(),
        mapping,
        lifecycle: Lifecycle::uploaded_at(SystemTime::now()),
    }
}

fn managing() -> Mapping {
    Mapping {
        manage_certificates: true,
        ..Mapping::default()
    }
}

/// An emulator with key 1 registered for CLIENT (all scopes, the permission) and `options`.
fn emulator(options: ApiOptions) -> Emulator {
    emulator_with(
        vec![registration(
            &cert(1, "one"),
            CLIENT,
            "restlets,rest_webservices",
            managing(),
        )],
        options,
    )
}

fn emulator_with(registrations: Vec<Registration>, options: ApiOptions) -> Emulator {
    let mut config = Config::new(registrations).unwrap();
    config.certificate_api = options;
    Emulator::start(config).unwrap()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The token endpoint's answer to an assertion signed by key `seed` with `kid`, for `client`.
fn exchange(emu: &Emulator, seed: u8, kid: &str, client: &str, scopes: &[&str]) -> Answer {
    static JTI: AtomicU64 = AtomicU64::new(0);
    let header = json!({"typ": "JWT", "alg": "ES256", "kid": kid});
    let iat = unix_now();
    let claims = json!({
        "iss": client, "scope": scopes, "aud": emu.token_url(), "iat": iat, "exp": iat + 300,
        "jti": format!("jti-{}", JTI.fetch_add(1, Ordering::Relaxed)),
    });
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let signature: p256::ecdsa::Signature = p256_key(seed).sign(input.as_bytes());
    let assertion = format!("{input}.{}", b64url(&signature.to_bytes()));
    let form: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair(
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        )
        .append_pair("client_assertion", &assertion)
        .finish();
    emu.request(
        "POST",
        TOKEN_PATH,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    )
}

/// A bearer token from key `seed` (certificate `kid`) for `client`.
fn token(emu: &Emulator, seed: u8, kid: &str, client: &str, scopes: &[&str]) -> String {
    let answer = exchange(emu, seed, kid, client, scopes);
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.json()["access_token"].as_str().unwrap().to_owned()
}

/// CLIENT's token from key 1.
fn client_token(emu: &Emulator) -> String {
    token(
        emu,
        1,
        &cert(1, "one").certificate_id().to_string(),
        CLIENT,
        &["rest_webservices"],
    )
}

fn path(client: &str) -> String {
    format!("/services/rest/auth/oauth2/v1/clients/{client}/certificates")
}

fn list(emu: &Emulator, bearer: &str) -> Answer {
    emu.request(
        "GET",
        &path(CLIENT),
        &[("Authorization", &format!("Bearer {bearer}"))],
        b"",
    )
}

fn upload_body(emu: &Emulator, bearer: &str, body: &str) -> Answer {
    let auth = format!("Bearer {bearer}");
    emu.request(
        "POST",
        &path(CLIENT),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
}

fn upload(emu: &Emulator, bearer: &str, cert: &Certificate) -> Answer {
    let body = json!({"fileContent": cert.to_pem().unwrap(), "role": 3, "entity": "-5"});
    upload_body(emu, bearer, &body.to_string())
}

fn revoke(emu: &Emulator, bearer: &str, id: &str) -> Answer {
    let auth = format!("Bearer {bearer}");
    emu.request(
        "POST",
        &format!("{}/{id}/revoke", path(CLIENT)),
        &[("Authorization", &auth)],
        b"",
    )
}

/// Asserts NetSuite's error shape with this status and error code.
fn assert_error(answer: &Answer, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    let body = answer.json();
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["o:errorDetails"][0]["o:errorCode"], code, "{body}");
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .starts_with("https://www.rfc-editor.org/rfc/rfc9110.html#section-")
    );
    assert!(body["title"].is_string() && body["o:errorDetails"][0]["detail"].is_string());
}

fn detail(answer: &Answer) -> String {
    answer.json()["o:errorDetails"][0]["detail"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn an_upload_is_listed_gets_tokens_and_is_refused_once_revoked() {
    let emu = emulator(ApiOptions::default());
    let bearer = client_token(&emu);
    let new = cert(2, "two");
    let kid = new.certificate_id().to_string();
    let answer = upload(&emu, &bearer, &new);
    assert_eq!(answer.status, 200, "{answer:?}");
    let body = answer.json();
    assert_eq!(body["certificate_id"], kid.as_str());
    assert_eq!(
        (body["algorithm"].clone(), body["invalidated"].clone()),
        (json!("EC"), json!(false))
    );
    assert_eq!(
        (
            body["entity_role_id"].clone(),
            body["application_id"].clone()
        ),
        (json!(2), json!(1))
    );
    for field in ["valid_from", "valid_until", "created_at"] {
        assert!(
            body[field].as_str().unwrap().ends_with('Z'),
            "{field}: {body}"
        );
    }
    // Old and new side by side: both get tokens.
    token(&emu, 2, &kid, CLIENT, &["restlets"]);
    client_token(&emu);
    let listed = list(&emu, &bearer).json();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(listed[1]["certificate_id"], kid.as_str());
    assert_eq!(
        (
            listed[1]["role"]["id"].clone(),
            listed[1]["entity"]["id"].clone()
        ),
        (json!(3), json!(-5))
    );

    let answer = revoke(&emu, &bearer, &kid);
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "Successfully revoked")
    );
    assert!(
        answer
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let refused = exchange(&emu, 2, &kid, CLIENT, &["restlets"]);
    assert_eq!(
        (refused.status, refused.body.as_str()),
        (400, r#"{"error":"invalid_grant"}"#)
    );
    assert_eq!(list(&emu, &bearer).json()[1]["revoked"], true);
    assert_error(&revoke(&emu, &bearer, &kid), 400, "USER_ERROR");
    assert_error(
        &revoke(&emu, &bearer, "no-such-certificate"),
        404,
        "NONEXISTENT_ID",
    );
    assert_error(
        &revoke(&emu, &bearer, "not%20an%20id"),
        404,
        "NONEXISTENT_ID",
    );
    let again = upload(&emu, &bearer, &new);
    assert_error(&again, 400, "USER_ERROR");
    assert!(
        detail(&again).contains("cannot be uploaded again"),
        "{again:?}"
    );
    // The token made with the revoked certificate's sibling still works; the caller's own
    // certificate can be revoked too, and its token keeps working until it expires.
    let own = cert(1, "one").certificate_id().to_string();
    assert_eq!(revoke(&emu, &bearer, &own).status, 200);
    assert_eq!(list(&emu, &bearer).status, 200);
}

#[test]
fn no_or_a_foreign_or_an_expired_token_is_401() {
    let emu = emulator(ApiOptions::default());
    for headers in [
        vec![],
        vec![("Authorization", "Bearer not-issued")],
        vec![("Authorization", "Basic dXNlcjpwYXNz")],
    ] {
        let answer = emu.request("GET", &path(CLIENT), &headers, b"");
        assert_error(&answer, 401, "INVALID_LOGIN");
        assert!(
            answer
                .header("www-authenticate")
                .unwrap()
                .starts_with("Bearer")
        );
    }
    let mut config = Config::new(vec![registration(
        &cert(1, "one"),
        CLIENT,
        "rest_webservices",
        managing(),
    )])
    .unwrap();
    config.token_lifetime = Duration::from_secs(1);
    let short = Emulator::start(config).unwrap();
    let bearer = client_token(&short);
    assert_eq!(list(&short, &bearer).status, 200);
    std::thread::sleep(Duration::from_millis(1100));
    assert_error(&list(&short, &bearer), 401, "INVALID_LOGIN");
}

#[test]
fn a_token_without_the_scope_or_the_permission_or_of_another_client_is_403() {
    let (one, two, three) = (cert(1, "one"), cert(2, "two"), cert(3, "three"));
    let no_permission = Mapping {
        role: InternalId::from(1009),
        ..Mapping::default()
    };
    let emu = emulator_with(
        vec![
            registration(&one, CLIENT, "restlets,rest_webservices", managing()),
            registration(&two, CLIENT, "restlets,rest_webservices", no_permission),
            registration(&three, OTHER, "rest_webservices", managing()),
        ],
        ApiOptions::default(),
    );
    let id = |c: &Certificate| c.certificate_id().to_string();
    let restlets_only = token(&emu, 1, &id(&one), CLIENT, &["restlets"]);
    let answer = list(&emu, &restlets_only);
    assert_error(&answer, 403, "INSUFFICIENT_PERMISSION");
    assert!(detail(&answer).contains("rest_webservices"));
    let unpermitted = token(&emu, 2, &id(&two), CLIENT, &["rest_webservices"]);
    let answer = list(&emu, &unpermitted);
    assert_error(&answer, 403, "INSUFFICIENT_PERMISSION");
    assert!(detail(&answer).contains("Manage own OAuth 2.0 Client Credentials certificates"));
    let other = token(&emu, 3, &id(&three), OTHER, &["rest_webservices"]);
    for answer in [
        list(&emu, &other),
        upload(&emu, &other, &cert(4, "four")),
        revoke(&emu, &other, &id(&one)),
    ] {
        assert_error(&answer, 403, "INSUFFICIENT_PERMISSION");
        assert!(
            detail(&answer).contains("another integration record"),
            "{answer:?}"
        );
    }
    // Nothing changed, and OTHER sees only its own certificate.
    let bearer = token(&emu, 1, &id(&one), CLIENT, &["rest_webservices"]);
    assert_eq!(list(&emu, &bearer).json().as_array().unwrap().len(), 2);
    let answer = emu.request(
        "GET",
        &path(OTHER),
        &[("Authorization", &format!("Bearer {other}"))],
        b"",
    );
    assert_eq!(answer.json().as_array().unwrap().len(), 1);
}

#[test]
fn an_uploaded_certificate_of_a_permitted_role_may_manage_certificates_in_turn() {
    let emu = emulator(ApiOptions::default());
    let bearer = client_token(&emu);
    let (permitted, other_role) = (cert(2, "two"), cert(3, "three"));
    assert_eq!(upload(&emu, &bearer, &permitted).status, 200);
    let body = json!({"fileContent": other_role.to_pem().unwrap(), "role": "1009", "entity": 77});
    assert_eq!(upload_body(&emu, &bearer, &body.to_string()).status, 200);
    let new_bearer = token(
        &emu,
        2,
        &permitted.certificate_id().to_string(),
        CLIENT,
        &["rest_webservices"],
    );
    assert_eq!(list(&emu, &new_bearer).status, 200);
    let listed = list(&emu, &new_bearer).json();
    assert_eq!(
        (
            listed[2]["role"]["id"].clone(),
            listed[2]["entity"]["id"].clone()
        ),
        (json!(1009), json!(77))
    );
    let unpermitted = token(
        &emu,
        3,
        &other_role.certificate_id().to_string(),
        CLIENT,
        &["rest_webservices"],
    );
    assert_error(&list(&emu, &unpermitted), 403, "INSUFFICIENT_PERMISSION");
}

#[test]
fn duplicates_and_a_sixth_active_certificate_are_refused() {
    let emu = emulator(ApiOptions::default());
    let bearer = client_token(&emu);
    let duplicate = upload(&emu, &bearer, &cert(1, "one"));
    assert_error(&duplicate, 400, "USER_ERROR");
    assert!(detail(&duplicate).contains("already uploaded"));
    for seed in 2..=5 {
        assert_eq!(
            upload(&emu, &bearer, &cert(seed, "more")).status,
            200,
            "upload {seed}"
        );
    }
    let sixth = upload(&emu, &bearer, &cert(6, "sixth"));
    assert_error(&sixth, 400, "USER_ERROR");
    assert!(
        detail(&sixth).contains("5 active certificates"),
        "{sixth:?}"
    );
    // A revoked one no longer counts.
    let revoked = cert(2, "more").certificate_id().to_string();
    assert_eq!(revoke(&emu, &bearer, &revoked).status, 200);
    assert_eq!(upload(&emu, &bearer, &cert(6, "sixth")).status, 200);
    assert_eq!(list(&emu, &bearer).json().as_array().unwrap().len(), 6);
}

#[test]
fn certificates_outside_their_validity_are_refused() {
    let emu = emulator(ApiOptions::default());
    let bearer = client_token(&emu);
    let day = Duration::from_secs(86_400);
    let expired = p256_certificate(2, "old", SystemTime::now() - 40 * day, 30);
    let future = p256_certificate(3, "future", SystemTime::now() + day, 30);
    for (c, says) in [(expired, "expired on"), (future, "not valid until")] {
        let answer = upload(&emu, &bearer, &c);
        assert_error(&answer, 400, "USER_ERROR");
        assert!(detail(&answer).contains(says), "{answer:?}");
    }
    assert_eq!(list(&emu, &bearer).json().as_array().unwrap().len(), 1);
}

#[test]
fn malformed_uploads_are_refused_without_echoing_them() {
    let emu = emulator(ApiOptions::default());
    let bearer = client_token(&emu);
    let pem = cert(2, "two").to_pem().unwrap();
    // An Ed25519 private key made for this test, never used anywhere.
    let secret = "MC4CAQAwBQYDK2VwBCIEIG5MAp9AUGINaVRY5zBiVcrmhUJfNqTZuGJ7d82EnOEd";
    let private = format!("-----BEGIN PRIVATE KEY-----\n{secret}\n-----END PRIVATE KEY-----\n");
    for (body, says) in [
        ("not json".to_owned(), "not a JSON object"),
        ("[]".to_owned(), "not a JSON object"),
        (json!({"role": 3, "entity": -5}).to_string(), "fileContent is missing"),
        (json!({"fileContent": pem, "entity": -5}).to_string(), "role is missing"),
        (json!({"fileContent": pem, "role": 3, "entity": -5, "colour": 1}).to_string(), "unknown field \"colour\""),
        (json!({"fileContent": pem, "role": 3.5, "entity": -5}).to_string(), "role is not an internal id"),
        (json!({"fileContent": pem, "role": 3, "entity": "five"}).to_string(), "entity is not an internal id"),
        (json!({"fileContent": 7, "role": 3, "entity": -5}).to_string(), "not a string"),
        (json!({"fileContent": "MIIB", "role": 3, "entity": -5}).to_string(), "not PEM text"),
        (json!({"fileContent": private, "role": 3, "entity": -5}).to_string(), "not a CERTIFICATE"),
        (json!({"fileContent": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "role": 3, "entity": -5}).to_string(), "not an X.509 certificate"),
        (json!({"fileContent": format!("{pem}{}", " ".repeat(MAX_PEM)), "role": 3, "entity": -5}).to_string(), "a certificate's PEM is at most 8192"),
    ] {
        let answer = upload_body(&emu, &bearer, &body);
        assert_error(&answer, 400, "INVALID_CONTENT");
        assert!(detail(&answer).contains(says), "{says}: {answer:?}");
        assert!(!answer.body.contains(&secret[20..]), "{answer:?}");
    }
    let auth = format!("Bearer {bearer}");
    let body = json!({"fileContent": pem, "role": 3, "entity": -5}).to_string();
    let answer = emu.request(
        "POST",
        &path(CLIENT),
        &[("Authorization", &auth), ("Content-Type", "text/plain")],
        body.as_bytes(),
    );
    assert_error(&answer, 415, "INVALID_CONTENT");
    let huge = vec![b' '; crate::emulator::MAX_BODY + 1];
    let answer = emu.request(
        "POST",
        &path(CLIENT),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        &huge,
    );
    assert_error(&answer, 413, "INVALID_CONTENT");
    // Ids as numeric strings are fine.
    let body = json!({"fileContent": pem, "role": "3", "entity": "-5"}).to_string();
    assert_eq!(upload_body(&emu, &bearer, &body).status, 200);
    assert_eq!(list(&emu, &bearer).json().as_array().unwrap().len(), 2);
}

#[test]
fn the_list_shape_can_vary_for_tests_of_lenient_clients() {
    let options = ApiOptions {
        list_shape: "object,string-ids,extra-field".parse().unwrap(),
        ..ApiOptions::default()
    };
    let emu = emulator(options);
    let bearer = client_token(&emu);
    let body = list(&emu, &bearer).json();
    assert_eq!(
        (body["count"].clone(), body["hasMore"].clone()),
        (json!(1), json!(false))
    );
    let entry = &body["items"][0];
    assert_eq!(
        (entry["role"]["id"].clone(), entry["entity"]["id"].clone()),
        (json!("3"), json!("-5"))
    );
    assert!(entry[answer::EXTRA_FIELD].is_object() && body[answer::EXTRA_FIELD].is_object());
    for field in ["certificate_id", "valid_from", "valid_until", "created"] {
        assert!(entry[field].is_string(), "{field}: {entry}");
    }
    assert_eq!(
        (entry["algorithm"].clone(), entry["revoked"].clone()),
        (json!("EC"), json!(false))
    );
    assert!(
        "objects"
            .parse::<ListShape>()
            .unwrap_err()
            .contains("object, string-ids, extra-field")
    );
    assert_eq!("".parse::<ListShape>().unwrap(), ListShape::default());
}

#[test]
fn a_list_cut_short_shows_only_the_newest_certificate() {
    let options = ApiOptions {
        list_shape: "object,newest-only".parse().unwrap(),
        ..ApiOptions::default()
    };
    let emu = emulator(options);
    let bearer = client_token(&emu);
    let body = list(&emu, &bearer).json();
    assert_eq!(
        (body["count"].clone(), body["hasMore"].clone()),
        (json!(1), json!(false))
    );
    let new = cert(2, "two");
    assert_eq!(upload(&emu, &bearer, &new).status, 200);
    let body = list(&emu, &bearer).json();
    assert_eq!(
        (
            body["count"].clone(),
            body["hasMore"].clone(),
            body["totalResults"].clone()
        ),
        (json!(1), json!(true), json!(2))
    );
    assert_eq!(
        body["items"][0]["certificate_id"],
        json!(new.certificate_id().to_string())
    );
}

#[test]
fn injected_faults_fail_the_first_requests_before_or_after_they_act() {
    let options = ApiOptions {
        faults: ["list:500:1", "upload:500-after:1", "revoke:500"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect(),
        ..ApiOptions::default()
    };
    let emu = emulator(options);
    let bearer = client_token(&emu);
    assert_error(&list(&emu, &bearer), 500, "UNEXPECTED_ERROR");
    assert_eq!(list(&emu, &bearer).status, 200);
    let new = cert(2, "two");
    assert_error(&upload(&emu, &bearer, &new), 500, "UNEXPECTED_ERROR");
    // It took effect all the same: a second upload is a duplicate.
    assert_eq!(list(&emu, &bearer).json().as_array().unwrap().len(), 2);
    assert_error(&upload(&emu, &bearer, &new), 400, "USER_ERROR");
    let kid = new.certificate_id().to_string();
    for _ in 0..2 {
        assert_error(&revoke(&emu, &bearer, &kid), 500, "UNEXPECTED_ERROR");
    }
    assert_eq!(list(&emu, &bearer).json()[1]["revoked"], false);
    let calls = emu.shared_calls();
    assert_eq!((calls.list, calls.upload, calls.revoke), (4, 2, 2));
}

#[test]
fn a_hanging_call_does_nothing_and_ends_when_the_emulator_stops() {
    let options = ApiOptions {
        faults: vec!["upload:hang".parse().unwrap()],
        ..ApiOptions::default()
    };
    let emu = emulator(options);
    let bearer = client_token(&emu);
    let base = emu.base_url().to_owned();
    let pem = cert(2, "two").to_pem().unwrap();
    let waiting = std::thread::spawn(move || {
        let host = base.trim_start_matches("http://").to_owned();
        let body = json!({"fileContent": pem, "role": 3, "entity": -5}).to_string();
        let mut stream = std::net::TcpStream::connect(&host).unwrap();
        let request = format!(
            "POST {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAuthorization: Bearer {bearer}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            path(CLIENT),
            body.len()
        );
        std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = std::io::Read::read_to_string(&mut stream, &mut answer);
        answer
    });
    // The call is in: it hangs, and nothing is uploaded.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while emu.shared_calls().upload == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the upload never arrived"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(!waiting.is_finished(), "the hanging upload was answered");
    assert_eq!(emu.certificate_count(), 1);
    drop(emu);
    let answer = waiting.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
}

#[test]
fn a_new_certificate_is_refused_at_the_token_endpoint_during_the_propagation_window() {
    let options = ApiOptions {
        propagation: Duration::from_millis(700),
        ..ApiOptions::default()
    };
    let emu = emulator(options);
    let bearer = client_token(&emu);
    let new = cert(2, "two");
    let kid = new.certificate_id().to_string();
    assert_eq!(upload(&emu, &bearer, &new).status, 200);
    let early = exchange(&emu, 2, &kid, CLIENT, &["restlets"]);
    assert_eq!(
        (early.status, early.body.as_str()),
        (400, r#"{"error":"invalid_grant"}"#)
    );
    assert_eq!(
        list(&emu, &bearer).json()[1]["certificate_id"],
        kid.as_str(),
        "listed at once"
    );
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(exchange(&emu, 2, &kid, CLIENT, &["restlets"]).status, 200);
}

#[test]
fn the_state_for_tests_shows_every_certificate_and_the_calls() {
    let emu = emulator(ApiOptions::default());
    let bearer = client_token(&emu);
    assert_eq!(upload(&emu, &bearer, &cert(2, "two")).status, 200);
    let state: Value = emu
        .request("GET", crate::emulator::CERTIFICATES_STATE_PATH, &[], b"")
        .json();
    assert_eq!(state["calls"], json!({"list": 0, "upload": 1, "revoke": 0}));
    let certificates = state["certificates"].as_array().unwrap();
    assert_eq!(certificates.len(), 2);
    assert_eq!(certificates[1]["client_id"], CLIENT);
    assert_eq!(certificates[1]["revoked"], Value::Null);
    assert_eq!(certificates[0]["manage_certificates"], true);
    assert_eq!(
        certificates[1]["manage_certificates"], true,
        "role 3 has the permission"
    );
}
