//! `suitekey list` against a real SoftHSM2 token: what it shows, and that what it shows works.

mod common;

use common::{PIN, TOKEN, fixture, signed_jws, verify};

fn list(args: &[&str]) -> (String, String) {
    let f = fixture();
    let out = f
        .suitekey()
        .arg("list")
        .args(args)
        .env("SUITEKEY_MODULE", common::module_path())
        .assert()
        .success()
        .get_output()
        .clone();
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn list_shows_the_token_its_algorithms_and_every_key_without_login() {
    let (stdout, _) = list(&[]);
    assert!(stdout.contains(&format!("token '{TOKEN}'")), "{stdout}");
    assert!(
        stdout.contains("can sign: ES256 ES384 ES512 PS256 PS384 PS512"),
        "{stdout}"
    );
    for line in [
        "'p256' id 01: EC P-256 → NetSuite ES256",
        "'p384' id 02: EC P-384 → NetSuite ES384",
        "'p521' id 03: EC P-521 → NetSuite ES512",
        "'rsa3072' id 04: RSA 3072 → NetSuite PS256 PS384 PS512",
        "'rsa4096' id 05: RSA 4096 → NetSuite PS256 PS384 PS512",
        "'rsa2048' id 06: RSA 2048 → NetSuite refused",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in\n{stdout}");
    }
    // Without login SoftHSM2 shows only public halves; list says so and how to see more.
    assert!(stdout.contains("public half"), "{stdout}");
    assert!(stdout.contains("suitekey list --login"), "{stdout}");
    // Only the public half is seen, and a private half may be labelled otherwise (PIV
    // modules): the URI names the key by its id.
    assert!(
        stdout.contains(&format!(
            "pkcs11:token={TOKEN};id=%01;type=private?module-path="
        )),
        "{stdout}"
    );
}

#[test]
fn list_login_sees_private_keys_and_their_always_authenticate_flag() {
    let f = fixture();
    let out = f
        .suitekey()
        .args(["list", "--login", "--token", TOKEN])
        .env("SUITEKEY_MODULE", common::module_path())
        .env("SUITEKEY_PIN", PIN)
        .env("RUST_LOG", "trace")
        .assert()
        .success()
        .get_output()
        .clone();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stdout.contains("public half"), "{stdout}");
    assert!(
        stdout.contains("PIN needed for every signature"),
        "{stdout}"
    );
    // Logged in, the private half is listed with its own label, once per key.
    assert!(
        stdout.contains(&format!(
            "pkcs11:token={TOKEN};object=p256;id=%01;type=private?module-path="
        )),
        "{stdout}"
    );
    assert_eq!(stdout.matches("'p256' id 01:").count(), 1, "{stdout}");
    assert!(
        !stdout.contains(PIN) && !stderr.contains(PIN),
        "the PIN leaked"
    );
}

#[test]
fn a_uri_printed_by_list_signs_once_a_pin_source_is_added() {
    let (stdout, _) = list(&[]);
    let uri = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("pkcs11:") && l.contains("id=%02;"))
        .expect("a p384 URI");
    let f = fixture();
    let key = format!("{uri}&pin-source=file:{}", f.pin_file.display());
    let jws = signed_jws(f.suitekey().args([
        "assertion",
        "--key",
        &key,
        "--client-id",
        "abc123",
        "--certificate-id",
        "kid",
        "--account",
        "1234567",
    ]));
    verify(&jws, &f.public_key(0x02)).expect("verifies");
}

#[test]
fn list_filters_by_token_and_says_when_nothing_matches() {
    let (stdout, _) = list(&["--token", "nope"]);
    assert!(stdout.contains("no slot with token 'nope'"), "{stdout}");
    assert!(!stdout.contains(TOKEN), "{stdout}");
}

#[test]
fn list_shows_certificates_beside_their_keys() {
    let (stdout, _) = list(&[]);
    assert!(stdout.contains("certificates:"), "{stdout}");
    assert!(
        stdout.contains(&format!("'{}' id 01", common::CERT_LABEL)),
        "{stdout}"
    );
}

#[test]
fn a_token_that_cannot_be_listed_is_reported_and_the_exit_code_says_so() {
    let f = fixture();
    let out = f
        .suitekey()
        .args(["list", "--login", "--token", TOKEN])
        .env("SUITEKEY_MODULE", common::module_path())
        .env("SUITEKEY_PIN", "not-the-PIN-4410")
        .assert()
        .code(4)
        .get_output()
        .clone();
    let (stdout, stderr) = common::texts(&out);
    assert!(
        stdout.contains(&format!("token '{TOKEN}'")) && stdout.contains("cannot list this token"),
        "{stdout}"
    );
    assert!(
        stderr.contains("PIN rejected") && !stderr.contains("not-the-PIN-4410"),
        "{stderr}"
    );
}

/// A token labelled with a terminal escape sequence (whoever initialized it chose the label):
/// `list` and the error naming it show the sequence percent-encoded, never raw.
#[test]
fn a_token_label_with_escape_sequences_is_never_printed_raw() {
    let f = fixture();
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = dir.path().join("tokens");
    std::fs::create_dir_all(&tokens).expect("token dir");
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            tokens.display()
        ),
    )
    .expect("conf");
    let label = "evil\u{1b}]0;owned\u{7}\u{1b}[2J";
    let init = std::process::Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", label])
        .args(["--so-pin", "12345678", "--pin", "87654321"])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util");
    assert!(init.status.success(), "{}", common::texts(&init).1);
    let mut cmd = f.suitekey_with_extra_tokens(Some(&tokens));
    let out = cmd
        .arg("list")
        .env("SUITEKEY_MODULE", common::module_path())
        .output()
        .expect("list");
    let (stdout, stderr) = common::texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("token 'evil%1B]0;owned%07%1B[2J'"),
        "{stdout}"
    );
    // The error that lists the tokens present quotes the label too.
    let missing = f
        .suitekey_with_extra_tokens(Some(&tokens))
        .args(["assertion", "--key"])
        .arg(format!(
            "pkcs11:token=nothing;object=x?module-path={}",
            common::module_path().display()
        ))
        .args([
            "--client-id",
            "c",
            "--certificate-id",
            "k",
            "--account",
            "1",
        ])
        .output()
        .expect("assertion");
    let (_, stderr) = common::texts(&missing);
    assert_eq!(missing.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("evil%1B]0;owned%07"), "{stderr}");
    for text in [&stdout, &stderr] {
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text:?}"
        );
    }
}
