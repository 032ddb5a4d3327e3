//! The emulator's certificate API driven end to end: `suitekey emulate` as a process, bearer
//! tokens from `suitekey token` signing in a real SoftHSM2 token, certificates for the
//! token's keys from `suitekey cert`, and unfit certificates from the `openssl` CLI. Each
//! rule has a test that breaks it, asserting the status, NetSuite's error code and the reason
//! the emulator logs.

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::certified::CertifiedCopy;
use common::emulator::{Emulator, certificates_path, revoke_path};
use common::http::{Response, http_within};
use common::openssl::Keys;
use common::profile::{
    CLIENT, MANAGE_CERTIFICATES as MANAGE, Profile, registration, registration_for,
};
use common::{fixture, make_cert, texts};
use serde_json::{Value, json};

/// Another integration record.
const OTHER_CLIENT: &str = "0ddba11000000000000000000000000000000000000000000000000000000000";

/// An emulator that knows `copy`'s certificate for CLIENT, its spec ending with `extra`, and
/// more `args`.
fn emulator(copy: &CertifiedCopy, extra: &str, args: &[&str]) -> Emulator {
    copy.emulator_with_spec("127.0.0.1:0", extra, args)
}

/// `suitekey token` on the copy's token with fixture key `label`, certificate `kid` and
/// `more` flags, against `emu`.
fn suitekey_token(
    copy: &CertifiedCopy,
    label: &str,
    kid: &str,
    emu: &Emulator,
    more: &[&str],
) -> Output {
    let profile = Profile::new(fixture().uri(label), kid).token_url(&emu.token_url());
    common::suitekey_with_conf(&copy.conf)
        .arg("token")
        .args(profile.flags())
        .args(more)
        .output()
        .expect("suitekey token")
}

/// An access token for the copy's own key and certificate (never printed).
fn access_token(copy: &CertifiedCopy, emu: &Emulator, more: &[&str]) -> String {
    let out = suitekey_token(copy, &copy.label, &copy.kid, emu, more);
    assert!(out.status.success(), "suitekey token: {}", texts(&out).1);
    texts(&out).0.trim().to_owned()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn list(emu: &Emulator, token: &str) -> Response {
    emu.request(
        "GET",
        &certificates_path(CLIENT),
        &[("Authorization", &bearer(token))],
        "",
    )
}

/// Uploads `pem` for `role` and `entity` (JSON values as given).
fn upload(emu: &Emulator, token: &str, pem: &str, role: Value, entity: Value) -> Response {
    let body = json!({"fileContent": pem, "role": role, "entity": entity}).to_string();
    upload_body(emu, token, &body)
}

fn upload_body(emu: &Emulator, token: &str, body: &str) -> Response {
    let auth = bearer(token);
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    emu.request("POST", &certificates_path(CLIENT), &headers, body)
}

fn revoke(emu: &Emulator, token: &str, id: &str) -> Response {
    emu.request(
        "POST",
        &revoke_path(CLIENT, id),
        &[("Authorization", &bearer(token))],
        "",
    )
}

/// Asserts a refusal: status, NetSuite's error shape with `code`, and `reason` in the log.
fn assert_refused(emu: &Emulator, answer: &Response, status: u16, code: &str, reason: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    let body = answer.json();
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["title"].is_string() && body["type"].is_string(),
        "{body}"
    );
    assert_eq!(body["o:errorDetails"][0]["o:errorCode"], code, "{body}");
    assert!(body["o:errorDetails"][0]["detail"].is_string(), "{body}");
    let log = emu.stderr();
    assert!(
        log.contains(&format!("refused: {reason}: ")),
        "{reason} not in: {log}"
    );
}

fn detail(answer: &Response) -> String {
    answer.json()["o:errorDetails"][0]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A certificate for fixture key `label` made on the copy's token: its PEM and id.
fn token_cert(copy: &CertifiedCopy, label: &str) -> (String, String) {
    let pem = copy.dir.path().join(format!("{label}-new.pem"));
    let kid = make_cert(&copy.conf, &fixture().uri(label), &pem);
    (std::fs::read_to_string(&pem).unwrap(), kid)
}

fn listed(emu: &Emulator, token: &str) -> Vec<Value> {
    let answer = list(emu, token);
    assert_eq!(answer.status, 200, "{answer:?}");
    answer
        .json()
        .as_array()
        .expect("a bare array by default")
        .clone()
}

#[test]
fn the_list_shows_the_registered_certificate_with_its_mapping() {
    let copy = CertifiedCopy::new();
    let emu = emulator(
        &copy,
        ",role=1009,entity=42,permissions=manage-certificates",
        &[],
    );
    let token = access_token(&copy, &emu, &[]);
    let items = listed(&emu, &token);
    assert_eq!(items.len(), 1);
    let entry = &items[0];
    assert_eq!(entry["certificate_id"], copy.kid.as_str());
    assert_eq!(entry["algorithm"], "EC");
    assert_eq!(entry["revoked"], false);
    assert_eq!(
        (entry["role"]["id"].clone(), entry["entity"]["id"].clone()),
        (json!(1009), json!(42))
    );
    assert_eq!(entry["application"]["client_id"], CLIENT);
    for field in ["valid_from", "valid_until", "created"] {
        assert!(
            entry[field].as_str().unwrap().ends_with('Z'),
            "{field}: {entry}"
        );
    }
    let log = emu.stderr();
    assert!(!log.contains(&token), "the access token is in the log");
}

#[test]
fn no_token_an_unknown_one_or_an_expired_one_is_401() {
    let copy = CertifiedCopy::new();
    let emu = emulator(&copy, MANAGE, &["--token-lifetime", "1"]);
    let path = certificates_path(CLIENT);
    let none = emu.request("GET", &path, &[], "");
    assert_refused(&emu, &none, 401, "INVALID_LOGIN", "InvalidLogin");
    assert!(
        none.header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    let forged = emu.request(
        "GET",
        &path,
        &[(
            "Authorization",
            "Bearer AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )],
        "",
    );
    assert_refused(&emu, &forged, 401, "INVALID_LOGIN", "InvalidLogin");
    let token = access_token(&copy, &emu, &[]);
    std::thread::sleep(Duration::from_millis(1100));
    assert_refused(
        &emu,
        &list(&emu, &token),
        401,
        "INVALID_LOGIN",
        "TokenExpired",
    );
}

#[test]
fn a_token_without_rest_webservices_is_403() {
    let copy = CertifiedCopy::new();
    let emu = emulator(&copy, MANAGE, &[]);
    let token = access_token(&copy, &emu, &["--scope", "restlets"]);
    let pem = Keys::p256().pem();
    for answer in [
        list(&emu, &token),
        upload(&emu, &token, &pem, json!(3), json!(-5)),
        revoke(&emu, &token, &copy.kid),
    ] {
        assert_refused(
            &emu,
            &answer,
            403,
            "INSUFFICIENT_PERMISSION",
            "ScopeMismatched",
        );
        assert!(detail(&answer).contains("rest_webservices"));
    }
    assert_eq!(
        emu.certificates()["certificates"][0]["revoked"],
        Value::Null
    );
}

#[test]
fn a_role_without_the_permission_is_403() {
    let copy = CertifiedCopy::new();
    let emu = emulator(&copy, ",role=3,entity=-5", &[]);
    let token = access_token(&copy, &emu, &[]);
    let (pem, _) = token_cert(&copy, "p384");
    for answer in [
        list(&emu, &token),
        upload(&emu, &token, &pem, json!(3), json!(-5)),
        revoke(&emu, &token, &copy.kid),
    ] {
        assert_refused(
            &emu,
            &answer,
            403,
            "INSUFFICIENT_PERMISSION",
            "PermissionViolation",
        );
        assert!(detail(&answer).contains("Manage own OAuth 2.0 Client Credentials certificates"));
    }
    assert_eq!(
        emu.certificates()["certificates"].as_array().unwrap().len(),
        1
    );
}

#[test]
fn a_token_of_another_integration_record_is_403() {
    let copy = CertifiedCopy::new();
    let dir = common::temp_dir();
    let (other_pem, other_kid) = fixture().cert_for("p384", dir.path());
    let other_spec = format!("{}{MANAGE}", registration_for(OTHER_CLIENT, &other_pem));
    let emu = emulator(&copy, MANAGE, &["--register", &other_spec]);
    let profile = Profile::new(fixture().uri("p384"), &other_kid)
        .client(OTHER_CLIENT)
        .token_url(&emu.token_url());
    let out = common::suitekey_with_conf(&fixture().token_copy(None))
        .arg("token")
        .args(profile.flags())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", texts(&out).1);
    let other_token = texts(&out).0.trim().to_owned();
    let (pem, _) = token_cert(&copy, "p521");
    for answer in [
        list(&emu, &other_token),
        upload(&emu, &other_token, &pem, json!(3), json!(-5)),
        revoke(&emu, &other_token, &copy.kid),
    ] {
        assert_refused(&emu, &answer, 403, "INSUFFICIENT_PERMISSION", "OtherClient");
    }
    let state = emu.certificates();
    assert_eq!(state["certificates"].as_array().unwrap().len(), 2);
    assert_eq!(state["certificates"][0]["revoked"], Value::Null);
}

#[test]
fn an_uploaded_certificate_gets_tokens_for_its_mapping_beside_the_old_one() {
    let copy = CertifiedCopy::new();
    let emu = copy.emulator_managing_certificates(&[]);
    let token = access_token(&copy, &emu, &[]);
    let (pem, kid) = token_cert(&copy, "rsa3072");
    // Ids as numeric strings, as some clients send them.
    let answer = upload(&emu, &token, &pem, json!("1009"), json!("-5"));
    assert_eq!(answer.status, 200, "{answer:?}");
    let body = answer.json();
    assert_eq!(
        body["certificate_id"],
        kid.as_str(),
        "the id NetSuite computes"
    );
    assert_eq!(
        (body["algorithm"].clone(), body["invalidated"].clone()),
        (json!("RSA"), json!(false))
    );
    for field in [
        "valid_from",
        "valid_until",
        "created_at",
        "entity_role_id",
        "application_id",
    ] {
        assert!(!body[field].is_null(), "{field}: {body}");
    }
    let out = suitekey_token(&copy, "rsa3072", &kid, &emu, &[]);
    assert!(
        out.status.success(),
        "the new certificate: {}",
        texts(&out).1
    );
    let out = suitekey_token(&copy, &copy.label, &copy.kid, &emu, &[]);
    assert!(
        out.status.success(),
        "the old one still works: {}",
        texts(&out).1
    );
    let items = listed(&emu, &token);
    assert_eq!(items.len(), 2);
    assert_eq!(items[1]["certificate_id"], kid.as_str());
    assert_eq!(
        (
            items[1]["role"]["id"].clone(),
            items[1]["entity"]["id"].clone()
        ),
        (json!(1009), json!(-5))
    );
}

#[test]
fn a_revoked_certificate_is_refused_by_the_token_endpoint_and_cannot_come_back() {
    let copy = CertifiedCopy::new();
    let emu = emulator(&copy, MANAGE, &[]);
    let token = access_token(&copy, &emu, &[]);
    let (pem, kid) = token_cert(&copy, "p384");
    assert_eq!(upload(&emu, &token, &pem, json!(3), json!(-5)).status, 200);
    let answer = revoke(&emu, &token, &kid);
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

    let out = suitekey_token(&copy, "p384", &kid, &emu, &[]);
    assert!(!out.status.success());
    assert!(texts(&out).1.contains("invalid_grant"), "{}", texts(&out).1);
    assert!(
        emu.stderr()
            .contains("token request refused: CertificateRevoked"),
        "{}",
        emu.stderr()
    );
    let items = listed(&emu, &token);
    assert_eq!(
        (
            items[1]["certificate_id"].clone(),
            items[1]["revoked"].clone()
        ),
        (json!(kid), json!(true))
    );

    assert_refused(
        &emu,
        &revoke(&emu, &token, &kid),
        400,
        "USER_ERROR",
        "AlreadyRevoked",
    );
    assert_refused(
        &emu,
        &revoke(&emu, &token, "NoSuchCertificate"),
        404,
        "NONEXISTENT_ID",
        "UnknownCertificate",
    );
    let again = upload(&emu, &token, &pem, json!(3), json!(-5));
    assert_refused(&emu, &again, 400, "USER_ERROR", "PreviouslyRevoked");
}

#[test]
fn a_duplicate_and_a_sixth_active_certificate_are_refused() {
    let copy = CertifiedCopy::new();
    let emu = emulator(&copy, MANAGE, &[]);
    let token = access_token(&copy, &emu, &[]);
    let registered = std::fs::read_to_string(&copy.pem).unwrap();
    let duplicate = upload(&emu, &token, &registered, json!(3), json!(-5));
    assert_refused(&emu, &duplicate, 400, "USER_ERROR", "Duplicate");
    let more: Vec<Keys> = (0..5).map(|_| Keys::p256()).collect();
    for keys in &more[..4] {
        assert_eq!(
            upload(&emu, &token, &keys.pem(), json!(3), json!(-5)).status,
            200
        );
    }
    let sixth = upload(&emu, &token, &more[4].pem(), json!(3), json!(-5));
    assert_refused(&emu, &sixth, 400, "USER_ERROR", "TooManyActive");
    assert!(
        detail(&sixth).contains(&copy.kid),
        "names the active ones: {sixth:?}"
    );
    assert_eq!(revoke(&emu, &token, &more[0].kid()).status, 200);
    assert_eq!(
        upload(&emu, &token, &more[4].pem(), json!(3), json!(-5)).status,
        200
    );
    assert_eq!(listed(&emu, &token).len(), 6);
}

#[test]
fn certificates_netsuite_refuses_are_refused() {
    let copy = CertifiedCopy::new();
    let emu = emulator(&copy, MANAGE, &[]);
    let token = access_token(&copy, &emu, &[]);
    for (keys, reason) in [
        (Keys::rsa(2048), "KeyRefused"),
        (Keys::p256_for_days(3 * 365), "ValidityTooLong"),
        (Keys::p256_made_at("-40d"), "CertificateExpired"),
        (Keys::p256_made_at("+2d"), "CertificateNotYetValid"),
    ] {
        let answer = upload(&emu, &token, &keys.pem(), json!(3), json!(-5));
        assert_refused(&emu, &answer, 400, "USER_ERROR", reason);
    }
    assert_eq!(listed(&emu, &token).len(), 1, "nothing was uploaded");
}

#[test]
fn malformed_uploads_are_refused() {
    let copy = CertifiedCopy::new();
    let emu = emulator(&copy, MANAGE, &[]);
    let token = access_token(&copy, &emu, &[]);
    let keys = Keys::p256();
    let pem = keys.pem();
    let private = std::fs::read_to_string(&keys.key).unwrap();
    for (body, reason) in [
        ("{\"fileContent\": ".to_owned(), "InvalidContent"),
        (
            json!({"fileContent": pem, "role": 3}).to_string(),
            "InvalidContent",
        ),
        (
            json!({"fileContent": pem, "role": [3], "entity": -5}).to_string(),
            "InvalidContent",
        ),
        (
            json!({"fileContent": pem, "role": 3, "entity": -5, "extra": 1}).to_string(),
            "InvalidContent",
        ),
        (
            json!({"fileContent": "garbage", "role": 3, "entity": -5}).to_string(),
            "InvalidCertificate",
        ),
        (
            json!({"fileContent": private, "role": 3, "entity": -5}).to_string(),
            "InvalidCertificate",
        ),
        (
            json!({"fileContent": pem.repeat(20), "role": 3, "entity": -5}).to_string(),
            "InvalidContent",
        ),
    ] {
        let answer = upload_body(&emu, &token, &body);
        assert_refused(&emu, &answer, 400, "INVALID_CONTENT", reason);
    }
    let key_body = private.lines().nth(1).unwrap();
    assert!(
        !emu.stderr().contains(key_body),
        "the private key reached the log"
    );
    let huge = " ".repeat(17 * 1024);
    assert_refused(
        &emu,
        &upload_body(&emu, &token, &huge),
        413,
        "INVALID_CONTENT",
        "InvalidContent",
    );
    assert_eq!(listed(&emu, &token).len(), 1);
}

#[test]
fn with_a_propagation_window_a_new_certificate_works_only_after_it() {
    const WINDOW: Duration = Duration::from_secs(5);
    let copy = CertifiedCopy::new();
    let emu = emulator(&copy, MANAGE, &["--certificate-propagation-ms", "5000"]);
    let token = access_token(&copy, &emu, &[]);
    let (pem, kid) = token_cert(&copy, "p384");
    let uploaded = Instant::now();
    assert_eq!(upload(&emu, &token, &pem, json!(3), json!(-5)).status, 200);
    let early = suitekey_token(&copy, "p384", &kid, &emu, &[]);
    assert!(
        uploaded.elapsed() < WINDOW,
        "the early token request took longer than the window; nothing was tested"
    );
    assert!(
        !early.status.success(),
        "accepted during the propagation window"
    );
    assert!(
        emu.stderr().contains("token request refused: MissingKey"),
        "{}",
        emu.stderr()
    );
    std::thread::sleep((WINDOW + Duration::from_millis(200)).saturating_sub(uploaded.elapsed()));
    let late = suitekey_token(&copy, "p384", &kid, &emu, &[]);
    assert!(
        late.status.success(),
        "after the window: {}",
        texts(&late).1
    );
}

#[test]
fn a_500_fault_fails_the_first_calls_and_changes_nothing() {
    let copy = CertifiedCopy::new();
    let emu = emulator(
        &copy,
        MANAGE,
        &[
            "--fail-certificates",
            "list:500:1",
            "--fail-certificates",
            "upload:500",
        ],
    );
    let token = access_token(&copy, &emu, &[]);
    assert_refused(
        &emu,
        &list(&emu, &token),
        500,
        "UNEXPECTED_ERROR",
        "InjectedFault",
    );
    assert_eq!(list(&emu, &token).status, 200, "only the first list fails");
    let pem = Keys::p256().pem();
    for _ in 0..2 {
        assert_refused(
            &emu,
            &upload(&emu, &token, &pem, json!(3), json!(-5)),
            500,
            "UNEXPECTED_ERROR",
            "InjectedFault",
        );
    }
    let state = emu.certificates();
    assert_eq!(state["calls"], json!({"list": 2, "upload": 2, "revoke": 0}));
    assert_eq!(state["certificates"].as_array().unwrap().len(), 1);
}

#[test]
fn a_500_after_fault_takes_effect_and_loses_the_answer() {
    let copy = CertifiedCopy::new();
    let emu = emulator(
        &copy,
        MANAGE,
        &["--fail-certificates", "upload:500-after:1"],
    );
    let token = access_token(&copy, &emu, &[]);
    let keys = Keys::p256();
    let answer = upload(&emu, &token, &keys.pem(), json!(3), json!(-5));
    assert_refused(&emu, &answer, 500, "UNEXPECTED_ERROR", "InjectedFault");
    assert_eq!(
        listed(&emu, &token)[1]["certificate_id"],
        keys.kid().as_str()
    );
}

#[test]
fn a_hanging_revoke_outlasts_a_client_timeout_and_revokes_nothing() {
    let copy = CertifiedCopy::new();
    let emu = emulator(&copy, MANAGE, &["--fail-certificates", "revoke:hang"]);
    let token = access_token(&copy, &emu, &[]);
    let before = emu.certificates();
    let auth = bearer(&token);
    let answer = http_within(
        &emu.base,
        "POST",
        &revoke_path(CLIENT, &copy.kid),
        &[("Authorization", &auth)],
        "",
        Duration::from_secs(2),
    );
    assert!(answer.is_err(), "the revoke was answered: {answer:?}");
    let after = emu.certificates();
    assert_eq!(after["certificates"], before["certificates"]);
    assert_eq!(after["calls"]["revoke"], 1);
    assert!(emu.stderr().contains("request 1 hangs"), "{}", emu.stderr());
    // The other calls go on.
    assert_eq!(list(&emu, &token).status, 200);
}

#[test]
fn the_list_shape_can_be_an_object_with_string_ids_and_an_unknown_field() {
    let copy = CertifiedCopy::new();
    let emu = emulator(
        &copy,
        MANAGE,
        &["--certificate-list-shape", "object,string-ids,extra-field"],
    );
    let token = access_token(&copy, &emu, &[]);
    let body = list(&emu, &token).json();
    let entry = &body["items"][0];
    assert_eq!(entry["certificate_id"], copy.kid.as_str());
    assert_eq!(
        (entry["role"]["id"].clone(), entry["entity"]["id"].clone()),
        (json!("3"), json!("-5"))
    );
    let known = [
        "certificate_id",
        "algorithm",
        "valid_from",
        "valid_until",
        "created",
        "revoked",
        "application",
        "entity",
        "role",
    ];
    let unknown: Vec<&String> = entry
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .collect();
    assert_eq!(unknown.len(), 1, "{entry}");
}

#[test]
fn bad_certificate_flags_are_usage_errors() {
    let copy = CertifiedCopy::new();
    let spec = registration(&copy.pem);
    for (flag, value, says) in [
        ("--fail-certificates", "delete:500", "unknown call"),
        ("--fail-certificates", "upload:503", "unknown fault"),
        ("--certificate-list-shape", "xml", "unknown shape"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_suitekey"))
            .args(["emulate", "--register", &spec, flag, value])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let stderr = texts(&out).1;
        assert!(
            stderr.contains(&format!("{flag} '{value}': ")) && stderr.contains(says),
            "{stderr}"
        );
    }
}

/// README's certificate API examples, run as written: the emulator started from its line, then
/// the list, upload and revoke lines with the profile in `SUITEKEY_*` variables; curl gets the
/// token on its stdin, never in an argv.
#[test]
fn the_readme_certificate_api_examples_run_as_written() {
    use common::profile::ACCOUNT;
    use common::readme_examples::{readme_line, run_traced};
    let copy = CertifiedCopy::new();
    let emulate = readme_line("suitekey emulate --register client-id=ID,cert=cert.pem,role=")
        .replace("client-id=ID", &format!("client-id={CLIENT}"))
        .replace("cert=cert.pem", &format!("cert={}", copy.pem.display()));
    let args: Vec<&str> = emulate
        .strip_prefix("suitekey emulate ")
        .unwrap()
        .split_whitespace()
        .collect();
    let emu = Emulator::start(&args);
    let (pem, kid) = token_cert(&copy, "p384");
    let upload_json = copy.dir.path().join("upload.json");
    let body = json!({"fileContent": pem, "role": 3, "entity": -5});
    std::fs::write(&upload_json, body.to_string()).unwrap();
    let url = "http://127.0.0.1:PORT/services/rest/auth/oauth2/v1/clients/ID/certificates";
    let run = |prefix: &str| {
        let line = readme_line(prefix)
            .replace("[profile flags] ", "")
            .replace("CERT-ID", &kid)
            .replace("http://127.0.0.1:PORT", &emu.base)
            .replace("/clients/ID/", &format!("/clients/{CLIENT}/"))
            .replace("@upload.json", &format!("@{}", upload_json.display()));
        let traced = run_traced(&line, copy.dir.path(), |cmd| {
            cmd.env("SOFTHSM2_CONF", &copy.conf)
                .env("SUITEKEY_KEY", copy.uri())
                .env("SUITEKEY_CLIENT_ID", CLIENT)
                .env("SUITEKEY_CERTIFICATE_ID", &copy.kid)
                .env("SUITEKEY_ACCOUNT", ACCOUNT)
                .env("SUITEKEY_TOKEN_URL", emu.token_url());
        });
        let (stdout, stderr) = texts(&traced.output);
        assert!(traced.output.status.success(), "{line}: {stderr}");
        traced.assert_token_sent_but_in_no_argv();
        stdout
    };
    let token = "suitekey token [profile flags] --format curl-config | curl -K - ";
    let listed: Value = serde_json::from_str(&run(&format!("{token}{url}"))).unwrap();
    assert_eq!(listed[0]["certificate_id"], copy.kid.as_str());
    let uploaded: Value = serde_json::from_str(&run(&format!("{token}-H 'Content-Type"))).unwrap();
    assert_eq!(uploaded["certificate_id"], kid.as_str());
    assert_eq!(run(&format!("{token}-X POST")), "Successfully revoked");
    assert!(emu.certificates()["certificates"][1]["revoked"].is_string());
}
