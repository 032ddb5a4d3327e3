//! `pin-source=credential:NAME`: the PIN from systemd's `$CREDENTIALS_DIRECTORY` (what
//! `LoadCredential=NAME:…` gives a service), with the hygiene of a PIN file.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use common::{PIN, fixture, signed_jws, verify};

const CLIENT_ID: &str = "1c34f6a7b5e2d8c9f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4fe3e2";

/// `suitekey assertion` for the fixture's p256 key with `pin-source=credential:NAME`.
fn assertion(name: &str) -> assert_cmd::Command {
    let f = fixture();
    let key = format!(
        "pkcs11:token={};object=p256;type=private?module-path={}&pin-source=credential:{name}",
        common::TOKEN,
        common::module_path().display()
    );
    let mut cmd = f.suitekey();
    cmd.args(["assertion", "--key", &key, "--client-id", CLIENT_ID]);
    cmd.args(["--certificate-id", "kid-1", "--account", "1234567"]);
    cmd.env_remove("CREDENTIALS_DIRECTORY");
    cmd
}

/// A credentials directory (0500, as systemd makes it) holding `pin` with `content` (0400).
fn credentials(content: &[u8]) -> tempfile::TempDir {
    let dir = common::temp_dir();
    let file = dir.path().join("pin");
    std::fs::write(&file, content).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

#[test]
fn the_pin_comes_from_the_credentials_directory() {
    let dir = credentials(format!("{PIN}\n").as_bytes());
    let jws = signed_jws(assertion("pin").env("CREDENTIALS_DIRECTORY", dir.path()));
    verify(&jws, &fixture().public_key(0x01)).expect("signed with the p256 key");
}

#[test]
fn without_credentials_directory_it_is_refused_saying_how_to_set_it() {
    for unset in [None, Some(""), Some("relative/dir")] {
        let mut cmd = assertion("pin");
        if let Some(value) = unset {
            cmd.env("CREDENTIALS_DIRECTORY", value);
        }
        let out = cmd.assert().code(4).get_output().clone();
        let (stdout, stderr) = common::texts(&out);
        assert!(stdout.is_empty());
        assert!(
            stderr.contains("pin-source=credential:pin")
                && stderr.contains("CREDENTIALS_DIRECTORY")
                && stderr.contains("LoadCredential=pin:"),
            "{stderr}"
        );
    }
}

#[test]
fn a_spoilt_or_missing_credential_is_refused_unsent_naming_the_file() {
    let spoilt = credentials(format!("{PIN}\n\n").as_bytes());
    let out = assertion("pin")
        .env("CREDENTIALS_DIRECTORY", spoilt.path())
        .assert()
        .code(4)
        .get_output()
        .clone();
    let (_, stderr) = common::texts(&out);
    let file = spoilt.path().join("pin");
    assert!(
        stderr.contains("not sent to the token") && stderr.contains(&file.display().to_string()),
        "{stderr}"
    );
    assert!(!stderr.contains(PIN), "{stderr}");

    let out = assertion("other")
        .env("CREDENTIALS_DIRECTORY", spoilt.path())
        .assert()
        .code(4)
        .get_output()
        .clone();
    let (_, stderr) = common::texts(&out);
    assert!(
        stderr.contains(&spoilt.path().join("other").display().to_string()),
        "{stderr}"
    );
}

#[test]
fn a_credential_readable_by_others_is_warned_about() {
    let dir = credentials(format!("{PIN}\n").as_bytes());
    let file = dir.path().join("pin");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = assertion("pin")
        .env("CREDENTIALS_DIRECTORY", dir.path())
        .assert()
        .success()
        .get_output()
        .clone();
    let (_, stderr) = common::texts(&out);
    assert!(stderr.contains("readable by other users"), "{stderr}");

    // Group bits are what systemd's ACL on a credential looks like (its mask): no warning.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o440)).unwrap();
    let out = assertion("pin")
        .env("CREDENTIALS_DIRECTORY", dir.path())
        .assert()
        .success()
        .get_output()
        .clone();
    let (_, stderr) = common::texts(&out);
    assert!(!stderr.contains("readable by other users"), "{stderr}");
}

#[test]
fn a_credential_name_that_is_a_path_is_refused_before_anything_is_read() {
    for name in ["..", "a/b", "%2Fetc%2Fshadow", ""] {
        let dir = credentials(b"x\n");
        let out = assertion(name)
            .env("CREDENTIALS_DIRECTORY", dir.path().join("sub"))
            .assert()
            .code(2)
            .get_output()
            .clone();
        let (_, stderr) = common::texts(&out);
        assert!(stderr.contains("plain file name"), "{name}: {stderr}");
        assert!(Path::new(dir.path()).join("pin").exists());
    }
}
