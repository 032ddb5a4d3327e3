//! `suitekey assertion` against a real SoftHSM2 token: every algorithm verified by an
//! independent verifier, and every bad input refused clearly with nothing on stdout.

mod common;

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{KEYS, PIN, decode_jws, fixture, signed_jws, verify};

const CLIENT_ID: &str = "1c34f6a7b5e2d8c9f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4fe3e2";
const CERT_ID: &str = "NPMnRyPg-4F2mZ8r7kTq1xYv9bWc3dLsE0aHjUoNiQp";

/// `suitekey assertion` for a fixture key, with the standard profile flags plus `extra`.
fn assertion(object: &str, extra: &[&str]) -> assert_cmd::Command {
    let f = fixture();
    let mut cmd = f.suitekey();
    let uri = f.uri(object);
    profile(&mut cmd, &uri, "1234567_SB1");
    cmd.args(extra);
    cmd
}

fn id_of(label: &str) -> u8 {
    KEYS.iter()
        .find(|k| k.0 == label)
        .map(|k| k.1)
        .expect("fixture key")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Adds `assertion` and the profile flags for `key` and `account` to `cmd`.
fn profile(cmd: &mut assert_cmd::Command, key: &str, account: &str) {
    cmd.args(["assertion", "--key", key, "--client-id", CLIENT_ID]);
    cmd.args(["--certificate-id", CERT_ID, "--account", account]);
}

/// Runs a successful assertion and returns its stdout, checking stdout holds exactly one line.
fn signed(object: &str, extra: &[&str]) -> String {
    let out = assertion(object, extra)
        .assert()
        .success()
        .get_output()
        .clone();
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(
        stdout.lines().count(),
        1,
        "stdout must hold only the JWS: {stdout:?}"
    );
    assert!(stdout.ends_with('\n'));
    stdout
}

#[test]
fn every_algorithm_signs_in_the_token_and_verifies_independently() {
    let cases = [
        ("p256", None, "ES256", 64),
        ("p384", None, "ES384", 96),
        ("p521", None, "ES512", 132),
        ("rsa3072", None, "PS256", 384),
        ("rsa3072", Some("PS384"), "PS384", 384),
        ("rsa4096", Some("PS512"), "PS512", 512),
    ];
    for (object, alg, expected_alg, sig_len) in cases {
        let mut extra = vec![];
        if let Some(alg) = alg {
            extra.extend(["--alg", alg]);
        }
        let before = now();
        let jws = decode_jws(&signed(object, &extra));
        let after = now();
        assert_eq!(
            jws.header,
            serde_json::json!({"typ": "JWT", "alg": expected_alg, "kid": CERT_ID}),
            "{object}"
        );
        assert_eq!(
            jws.signature.len(),
            sig_len,
            "{expected_alg} signature length"
        );
        verify(&jws, &fixture().public_key(id_of(object)))
            .unwrap_or_else(|e| panic!("{expected_alg} with {object}: {e}"));

        let claims = jws.claims.as_object().expect("claims object");
        let mut names: Vec<&str> = claims.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["aud", "exp", "iat", "iss", "jti", "scope"],
            "no other claims"
        );
        assert_eq!(claims["iss"], CLIENT_ID);
        assert_eq!(
            claims["scope"],
            serde_json::json!(["restlets", "rest_webservices"])
        );
        assert_eq!(
            claims["aud"],
            "https://1234567-sb1.suitetalk.api.netsuite.com/services/rest/auth/oauth2/v1/token"
        );
        let iat = claims["iat"].as_u64().expect("integer iat");
        assert!((before..=after).contains(&iat), "iat {iat} is now");
        assert_eq!(
            claims["exp"].as_u64(),
            Some(iat + 300),
            "default lifetime is 300 s"
        );
        assert!(
            claims["jti"].as_str().is_some_and(|j| j.len() >= 16),
            "random jti"
        );
    }
}

#[test]
fn a_tampered_assertion_fails_the_independent_verifier() {
    // Shows the verifier can fail: flip one claim byte after signing.
    let mut jws = decode_jws(&signed("p256", &[]));
    jws.signing_input.push('x');
    assert!(verify(&jws, &fixture().public_key(id_of("p256"))).is_err());
}

#[test]
fn scope_lifetime_and_token_url_are_honoured() {
    let out = signed(
        "p384",
        &[
            "--scope",
            "suite_analytics,restlets",
            "--lifetime",
            "3600",
            "--token-url",
            "http://127.0.0.1:8080/services/rest/auth/oauth2/v1/token",
        ],
    );
    let jws = decode_jws(&out);
    assert_eq!(
        jws.claims["scope"],
        serde_json::json!(["suite_analytics", "restlets"])
    );
    assert_eq!(
        jws.claims["aud"],
        "http://127.0.0.1:8080/services/rest/auth/oauth2/v1/token"
    );
    assert_eq!(
        jws.claims["exp"].as_u64().unwrap() - jws.claims["iat"].as_u64().unwrap(),
        3600
    );
}

#[test]
fn each_assertion_has_a_fresh_jti() {
    let a = decode_jws(&signed("p256", &[]));
    let b = decode_jws(&signed("p256", &[]));
    assert_ne!(a.claims["jti"], b.claims["jti"]);
}

#[test]
fn profile_values_can_come_from_the_environment() {
    let f = fixture();
    let jws = signed_jws(
        f.suitekey()
            .arg("assertion")
            .env("SUITEKEY_KEY", f.uri("p256"))
            .env("SUITEKEY_CLIENT_ID", CLIENT_ID)
            .env("SUITEKEY_CERTIFICATE_ID", CERT_ID)
            .env("SUITEKEY_ACCOUNT", "7654321"),
    );
    assert_eq!(
        jws.claims["aud"],
        "https://7654321.suitetalk.api.netsuite.com/services/rest/auth/oauth2/v1/token"
    );
}

#[test]
fn pin_from_suitekey_pin_and_module_from_suitekey_module() {
    let f = fixture();
    let uri = format!("pkcs11:token={};object=p256", common::TOKEN);
    let jws = signed_jws(
        f.suitekey()
            .args([
                "assertion",
                "--key",
                &uri,
                "--client-id",
                CLIENT_ID,
                "--certificate-id",
                CERT_ID,
                "--account",
                "1",
            ])
            .env("SUITEKEY_PIN", PIN)
            .env("SUITEKEY_MODULE", common::module_path()),
    );
    verify(&jws, &f.public_key(id_of("p256"))).expect("verifies");
}

#[test]
fn always_authenticate_keys_get_a_context_login_before_each_signature() {
    // First show SoftHSM2 enforces the attribute: signing without a context login fails.
    let f = fixture();
    let session = f.session();
    let key = f.private_key(&session, id_of("p256-always-auth"));
    let direct = session.sign(&cryptoki::mechanism::Mechanism::Ecdsa, key, &[0u8; 32]);
    assert!(
        direct.is_err(),
        "SoftHSM2 must refuse an always-authenticate key without a context login"
    );
    let jws = decode_jws(&signed("p256-always-auth", &[]));
    verify(&jws, &f.public_key(id_of("p256-always-auth"))).expect("verifies");
}

/// `refused` for `assertion` with `key` and the standard profile (account `1`).
fn refused_key(key: &str, code: i32, needles: &[&str]) -> String {
    let mut cmd = fixture().suitekey();
    profile(&mut cmd, key, "1");
    refused(cmd, code, needles)
}

/// Runs a command that must fail: non-zero `code`, empty stdout, stderr containing `needles`,
/// and never the PIN.
fn refused(mut cmd: assert_cmd::Command, code: i32, needles: &[&str]) -> String {
    let out = cmd
        .env("RUST_LOG", "trace")
        .assert()
        .code(code)
        .get_output()
        .clone();
    assert!(
        out.stdout.is_empty(),
        "stdout must stay empty on failure: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8(out.stderr).expect("utf-8");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "stderr lacks {needle:?}:\n{stderr}"
        );
    }
    assert!(!stderr.contains(PIN), "the PIN leaked:\n{stderr}");
    stderr
}

#[test]
fn malformed_uri_is_refused() {
    refused_key("pkcs11:token=acc;bogus=1", 2, &["bogus"]);
    refused_key("/path/to/key.pem", 2, &["pkcs11:"]);
    // A module reads labels as C strings: this would have selected the key "Test".
    let f = fixture();
    refused_key(&f.uri("p256%00Label"), 2, &["'object'", "NUL", "%00"]);
    refused_key(
        &f.uri("p256")
            .replace(";object=", ";library-version=2.256;object="),
        2,
        &["library-version", "0 to 255"],
    );
}

#[test]
fn pin_value_on_the_command_line_is_refused_without_echoing_it() {
    let uri = format!(
        "pkcs11:token={};object=p256?module-path={}&pin-value={PIN}",
        common::TOKEN,
        common::module_path().display()
    );
    refused_key(&uri, 2, &["pin-value", "pin-source=file:"]);
}

#[test]
fn unknown_token_is_refused_and_the_present_tokens_listed() {
    let f = fixture();
    let uri = f.uri("p256").replace(common::TOKEN, "no-such-token");
    refused_key(
        &uri,
        3,
        &[
            "no token matching 'pkcs11:token=no-such-token'",
            common::TOKEN,
        ],
    );
}

#[test]
fn two_matching_tokens_are_refused_with_the_candidates() {
    let f = fixture();
    // A second token with the same label, made the way users make tokens.
    let twin = f.dir.join("twin");
    let setup = std::process::Command::new("bash")
        .args(["softhsm/setup-token.sh"])
        .arg(&twin)
        .arg(common::TOKEN)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run softhsm/setup-token.sh");
    assert!(
        setup.status.success(),
        "setup-token.sh: {}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let mut cmd = f.suitekey_with_extra_tokens(Some(&twin.join("tokens")));
    let uri = f.uri("p256");
    profile(&mut cmd, &uri, "1");
    let stderr = refused(
        cmd,
        3,
        &[
            "2 tokens match 'pkcs11:token=suitekey-test'",
            "serial=",
            "slot-id=",
        ],
    );
    assert_eq!(
        stderr.matches("'suitekey-test' (serial").count(),
        2,
        "both candidates listed:\n{stderr}"
    );
}

#[test]
fn unknown_key_is_refused_with_a_pointer_to_list() {
    refused(
        assertion("no-such-key", &[]),
        3,
        &[
            "object=no-such-key",
            "not found in token 'suitekey-test'",
            "suitekey list",
        ],
    );
}

#[test]
fn two_matching_keys_are_refused_with_their_ids() {
    refused(
        assertion("twin", &[]),
        3,
        &["2 keys match", "id 08", "id 09", "id="],
    );
}

#[test]
fn wrong_pin_is_refused_once_and_never_shown() {
    let f = fixture();
    let wrong = f.dir.join("wrong.pin");
    std::fs::write(&wrong, "not-the-PIN-31337\n").unwrap();
    let uri = f.uri("p256").replace(
        &f.pin_file.display().to_string(),
        &wrong.display().to_string(),
    );
    let stderr = refused_key(
        &uri,
        4,
        &[
            "PIN rejected by token 'suitekey-test'",
            "not retried",
            "wrong.pin",
        ],
    );
    assert!(
        !stderr.contains("not-the-PIN-31337"),
        "the wrong PIN leaked:\n{stderr}"
    );
}

#[test]
fn missing_pin_file_is_named() {
    let f = fixture();
    let uri = f.uri("p256").replace(
        &f.pin_file.display().to_string(),
        "/nonexistent/suitekey.pin",
    );
    refused_key(&uri, 4, &["/nonexistent/suitekey.pin"]);
}

#[test]
fn no_pin_source_without_a_terminal_is_explained() {
    let uri = format!(
        "pkcs11:token={};object=p256?module-path={}",
        common::TOKEN,
        common::module_path().display()
    );
    refused_key(&uri, 4, &["no PIN", "pin-source=file:", "SUITEKEY_PIN"]);
}

#[test]
fn rsa_2048_is_refused_with_netsuites_rule() {
    refused(assertion("rsa2048", &[]), 3, &["RSA 2048", "3072"]);
}

#[test]
fn alg_key_mismatch_is_refused() {
    refused(
        assertion("p256", &["--alg", "ES384"]),
        3,
        &["ES384 needs an EC P-384 key", "EC P-256", "--alg ES256"],
    );
    refused(
        assertion("rsa3072", &["--alg", "ES256"]),
        3,
        &["ES256 needs an EC P-256 key", "RSA 3072"],
    );
    refused(
        assertion("rsa3072", &["--alg", "RS256"]),
        2,
        &["RS256", "PS256"],
    );
}

#[test]
fn bad_account_id_is_refused() {
    let f = fixture();
    let mut cmd = f.suitekey();
    let uri = f.uri("p256");
    profile(&mut cmd, &uri, "1234567.evil.example");
    refused(cmd, 2, &["1234567.evil.example", "letters, digits"]);
}

#[test]
fn unknown_scope_is_refused() {
    refused(
        assertion("p256", &["--scope", "restlets,rest_web_services"]),
        2,
        &["unknown scope 'rest_web_services'", "rest_webservices"],
    );
}

#[test]
fn lifetime_over_an_hour_is_refused() {
    refused(
        assertion("p256", &["--lifetime", "3601"]),
        2,
        &["3601", "3600"],
    );
}

#[test]
fn plain_http_token_url_off_loopback_is_refused() {
    refused(
        assertion("p256", &["--token-url", "http://example.com/token"]),
        2,
        &["http://", "loopback"],
    );
}

#[test]
fn a_module_that_is_not_pkcs11_is_named() {
    let f = fixture();
    let uri = format!(
        "pkcs11:token={};object=p256?module-path=/etc/hostname&pin-source=file:{}",
        common::TOKEN,
        f.pin_file.display()
    );
    refused_key(&uri, 3, &["/etc/hostname", "PKCS#11"]);
}

/// `assertion` for the `p256` key through OpenSC's pkcs11-spy, which wraps SoftHSM2 and logs
/// every call the module receives to the returned file; the PIN from `pin_source` (a
/// `pin-source` value), else `SUITEKEY_PIN`.
fn spied(pin_source: Option<&str>) -> (assert_cmd::Command, PathBuf) {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let f = fixture();
    let log = f
        .dir
        .join(format!("spy-{}.log", RUNS.fetch_add(1, Ordering::Relaxed)));
    let query = pin_source.map_or_else(String::new, |s| format!("&pin-source={s}"));
    let uri = format!(
        "pkcs11:token={};object=p256?module-path={}{query}",
        common::TOKEN,
        common::pkcs11_spy().display()
    );
    let mut cmd = f.suitekey();
    profile(&mut cmd, &uri, "1");
    cmd.env("PKCS11SPY", common::module_path())
        .env("PKCS11SPY_OUTPUT", &log);
    (cmd, log)
}

/// The module calls pkcs11-spy logged to `log`, having checked that it saw any at all.
fn spy_log(log: &Path) -> String {
    let calls = std::fs::read_to_string(log).expect("pkcs11-spy log");
    assert!(calls.contains("C_GetSlotList"), "pkcs11-spy saw no call");
    calls
}

/// A file of this process's token directory holding `content`, mode 0600.
fn pin_file(name: &str, content: &[u8]) -> PathBuf {
    let path = fixture().dir.join(name);
    std::fs::write(&path, content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
fn a_wrong_pin_costs_exactly_one_c_login() {
    let wrong = pin_file("wrong-once.pin", b"not-the-PIN-27182\n");
    let (cmd, log) = spied(Some(&format!("file:{}", wrong.display())));
    refused(cmd, 4, &["PIN rejected", "not retried"]);
    let calls = spy_log(&log);
    assert_eq!(
        calls.matches("C_Login").count(),
        1,
        "exactly one login attempt"
    );
    assert!(calls.contains("CKR_PIN_INCORRECT"));
}

/// [`spied`] with `pin` from `from`: `file` (a new file, `name`), `env:SPIED_PIN` or
/// `SUITEKEY_PIN`. Returns the command, the spy's log and what a message must name as the
/// PIN's source.
fn spied_with_pin(from: &str, name: &str, pin: &str) -> (assert_cmd::Command, PathBuf, String) {
    match from {
        "file" => {
            let file = pin_file(name, pin.as_bytes());
            let (cmd, log) = spied(Some(&format!("file:{}", file.display())));
            (cmd, log, name.to_owned())
        }
        "env:SPIED_PIN" => {
            let (mut cmd, log) = spied(Some(from));
            cmd.env("SPIED_PIN", pin);
            (cmd, log, "SPIED_PIN".to_owned())
        }
        _ => {
            let (mut cmd, log) = spied(None);
            cmd.env("SUITEKEY_PIN", pin);
            (cmd, log, "SUITEKEY_PIN".to_owned())
        }
    }
}

#[test]
fn a_malformed_pin_is_refused_without_a_c_login() {
    // (where the PIN comes from, its bytes, what the message must name). Each is the right PIN
    // spoilt the way editors, `echo` and copy-paste spoil PINs: each would cost a PIN try.
    let cases: [(&str, String, &str); 8] = [
        ("file", format!("\u{feff}{PIN}\n"), "byte order mark"),
        ("file", format!("{PIN}  \n"), "whitespace"),
        ("file", format!(" {PIN}\r\n"), "whitespace"),
        ("file", format!("{PIN}\n\n"), "control character"),
        (
            "env:SPIED_PIN",
            format!("{PIN}\u{1b}[0m"),
            "control character",
        ),
        (
            "env:SPIED_PIN",
            format!("{PIN}\r\n\r\n"),
            "control character",
        ),
        ("SUITEKEY_PIN", format!("{PIN} \n"), "whitespace"),
        ("SUITEKEY_PIN", format!("\u{feff}{PIN}"), "byte order mark"),
    ];
    for (n, (from, pin, problem)) in cases.iter().enumerate() {
        let (cmd, log, named) = spied_with_pin(from, &format!("malformed-{n}.pin"), pin);
        refused(cmd, 4, &[problem, &named, "not sent to the token"]);
        assert_eq!(
            spy_log(&log).matches("C_Login").count(),
            0,
            "case {n}: a malformed PIN from {from} reached the token"
        );
    }
}

#[test]
fn a_pin_with_one_line_ending_of_any_kind_logs_in() {
    // Windows editors end lines with \r\n, old Mac ones with \r; `echo` adds \n.
    let cases: [(&str, String); 5] = [
        ("env:SPIED_PIN", format!("{PIN}\r\n")),
        ("SUITEKEY_PIN", format!("{PIN}\r\n")),
        ("SUITEKEY_PIN", format!("{PIN}\n")),
        ("file", format!("{PIN}\r")),
        ("file", format!("{PIN}\r\n")),
    ];
    for (n, (from, pin)) in cases.iter().enumerate() {
        let (mut cmd, log, _) = spied_with_pin(from, &format!("one-ending-{n}.pin"), pin);
        let out = cmd.assert().success().get_output().stdout.clone();
        let jws = decode_jws(&String::from_utf8(out).unwrap());
        verify(&jws, &fixture().public_key(id_of("p256"))).expect("verifies");
        assert_eq!(spy_log(&log).matches("C_Login").count(), 1);
    }
}

#[test]
fn a_pin_fifo_is_read_from_its_writer_and_one_without_a_writer_times_out() {
    let fifo = fixture().dir.join("pin.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo (coreutils)");
    // A writer that comes a moment later (a secret manager) is waited for.
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            let mut pipe = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
            pipe.write_all(format!("{PIN}\n").as_bytes()).unwrap();
        })
    };
    let source = format!("file:{}", fifo.display());
    let (mut cmd, _) = spied(Some(&source));
    cmd.timeout(Duration::from_secs(60)).assert().success();
    writer.join().unwrap();
    // Nothing ever writes: the run ends after the documented 10 s (the bound only catches a
    // hang), naming the file, and no PIN is sent.
    let (mut cmd, log) = spied(Some(&source));
    cmd.timeout(Duration::from_secs(60));
    refused(cmd, 4, &["pin.fifo", "no PIN within 10 s", "FIFO"]);
    assert_eq!(spy_log(&log).matches("C_Login").count(), 0);
}

#[test]
fn a_pin_file_other_users_can_read_is_warned_about() {
    for (name, mode) in [("group.pin", 0o640), ("world.pin", 0o604)] {
        let file = pin_file(name, format!("{PIN}\n").as_bytes());
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        let (mut cmd, _) = spied(Some(&format!("file:{}", file.display())));
        let out = cmd.assert().success().get_output().clone();
        let (_, stderr) = common::texts(&out);
        assert!(
            stderr.contains("readable by other users") && stderr.contains("chmod 600"),
            "no warning for mode {mode:o}:\n{stderr}"
        );
        assert!(stderr.contains(name), "the file is named:\n{stderr}");
    }
}

#[test]
fn pin_source_env_names_the_variable_to_read() {
    let f = fixture();
    let uri = format!(
        "pkcs11:token={};object=p256?module-path={}&pin-source=env:MY_TOKEN_PIN",
        common::TOKEN,
        common::module_path().display()
    );
    let mut cmd = f.suitekey();
    profile(&mut cmd, &uri, "1");
    let out = cmd
        .env("MY_TOKEN_PIN", PIN)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    verify(
        &decode_jws(&String::from_utf8(out).unwrap()),
        &f.public_key(id_of("p256")),
    )
    .expect("verifies");
    refused_key(&uri, 4, &["MY_TOKEN_PIN", "not set"]);
}

#[test]
fn tokens_can_be_chosen_by_serial_and_modules_by_name() {
    let f = fixture();
    // Debian's softhsm2 registers itself with p11-kit as module "softhsm2".
    let uri = format!(
        "pkcs11:serial={};id=%04?module-name=softhsm2&pin-source=file:{}",
        f.serial(),
        f.pin_file.display()
    );
    let mut cmd = f.suitekey();
    profile(&mut cmd, &uri, "1");
    let out = cmd.assert().success().get_output().stdout.clone();
    let jws = decode_jws(&String::from_utf8(out).unwrap());
    assert_eq!(jws.header["alg"], "PS256");
    verify(&jws, &f.public_key(id_of("rsa3072"))).expect("verifies");
}

#[test]
fn vendor_attributes_and_unknown_query_values_stay_out_of_messages() {
    let f = fixture();
    let unknown = format!("{}&password=hunter2-XYZ", f.uri("no-such-key"));
    let stderr = refused_key(&unknown, 3, &["not found"]);
    assert!(!stderr.contains("hunter2-XYZ"), "{stderr}");
    let vendor = f
        .uri("p256")
        .replace(";type=private", ";type=private;x-slot-hint=3");
    refused_key(&vendor, 2, &["x-slot-hint", "remove it"]);
}

#[test]
fn trace_logging_shows_neither_the_pin_nor_the_assertion() {
    let f = fixture();
    let mut cmd = f.suitekey();
    profile(&mut cmd, &f.uri("p256-always-auth"), "1");
    let out = cmd
        .env("RUST_LOG", "trace")
        .assert()
        .success()
        .get_output()
        .clone();
    let (stdout, stderr) = common::texts(&out);
    assert!(
        stderr.contains("key ready to sign"),
        "trace logging is on:\n{stderr}"
    );
    assert!(!stderr.contains(PIN), "the PIN leaked:\n{stderr}");
    let signature = stdout
        .trim_end()
        .rsplit('.')
        .next()
        .expect("signature part");
    assert!(
        !stderr.contains(signature),
        "the assertion leaked into the log:\n{stderr}"
    );
}

#[test]
fn credentials_in_a_token_url_are_refused_without_echoing_them() {
    let stderr = refused(
        assertion(
            "p256",
            &["--token-url", "https://user:S3CRET-77@example.com/token"],
        ),
        2,
        &["credentials"],
    );
    assert!(!stderr.contains("S3CRET-77"), "{stderr}");
}

#[test]
fn module_and_pin_file_paths_are_escaped_in_messages() {
    let f = fixture();
    // A directory whose name sets the terminal's title and starts a new line, and the form
    // messages must show it in (the URI's percent-encoding).
    let hostile = "x\u{1b}]0;pwned\u{7}\ny";
    let escaped = "x%1B]0%3Bpwned%07%0Ay";
    let in_uri = |path: &Path| path.display().to_string().replace(hostile, escaped);
    let dir = f.dir.join(hostile);
    std::fs::create_dir_all(&dir).unwrap();
    let module = dir.join("softhsm.so");
    std::os::unix::fs::symlink(common::module_path(), &module).unwrap();
    let wrong = dir.join("wrong.pin");
    std::fs::write(&wrong, "not-the-PIN-16180\n").unwrap();
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o644)).unwrap();
    let missing = Path::new("/nonexistent").join(hostile);
    let key = format!("pkcs11:token={};object=p256", common::TOKEN);
    let softhsm = format!("module-path={}", common::module_path().display());
    let pin = format!("pin-source=file:{}", f.pin_file.display());
    // (URI, SUITEKEY_MODULE, exit code, stderr lines, what stderr must show)
    let cases = [
        (
            format!("{key}?module-path={}/mod.so&{pin}", in_uri(&missing)),
            None,
            3,
            1,
            format!("/nonexistent/{escaped}/mod.so'"),
        ),
        (
            format!("{key}?{pin}"),
            Some(missing.join("mod.so")),
            3,
            1,
            format!("/nonexistent/{escaped}/mod.so'"),
        ),
        (
            format!("{key}?module-name={escaped}&{pin}"),
            None,
            2,
            1,
            format!("module named '{escaped}'"),
        ),
        (
            format!(
                "pkcs11:token=none;object=p256?module-path={}&{pin}",
                in_uri(&module)
            ),
            None,
            3,
            1,
            format!("{escaped}/softhsm.so'"),
        ),
        (
            format!("{key}?{softhsm}&pin-source=file:{}/pin", in_uri(&missing)),
            None,
            4,
            1,
            format!("/nonexistent/{escaped}/pin'"),
        ),
        // A wrong PIN in a file everyone may read: the warning and the error name the file.
        (
            format!("{key}?{softhsm}&pin-source=file:{}", in_uri(&wrong)),
            None,
            4,
            2,
            format!("{escaped}/wrong.pin"),
        ),
    ];
    for (uri, module, code, lines, shown) in cases {
        let mut cmd = f.suitekey();
        profile(&mut cmd, &uri, "1");
        if let Some(module) = module {
            cmd.env("SUITEKEY_MODULE", module);
        }
        let out = cmd.assert().code(code).get_output().clone();
        let (_, stderr) = common::texts(&out);
        assert!(
            !stderr.contains(['\u{1b}', '\u{7}', '\r']),
            "a control character reached stderr: {stderr:?}"
        );
        assert_eq!(stderr.lines().count(), lines, "{stderr:?}");
        assert_eq!(stderr.matches(&shown).count(), lines, "{uri}: {stderr}");
    }
}
