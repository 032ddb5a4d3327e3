//! The `scripts/tokens/` interface itself (tests/matrix.rs runs the tokens it makes): what
//! `start` accepts and keeps, and that `stop` only stops what `start` started.

mod common;

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use common::modules::{LABEL, MODULES, ModuleSpec};
use common::{PIN, texts};

fn module(name: &str) -> &'static ModuleSpec {
    MODULES
        .iter()
        .find(|m| m.name == name)
        .expect("a module of the matrix")
}

/// `list --login` of the matrix token, as text.
fn listing(token: &common::modules::ModuleToken) -> String {
    let out = token
        .suitekey()
        .args(["list", "--login", "--token", LABEL])
        .env("SUITEKEY_PIN", PIN)
        .output()
        .expect("run suitekey");
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{}: list: {stderr}", token.spec.name);
    stdout
}

/// `start` on a directory that already holds a token keeps it, keys and all.
fn start_again_keeps_the_token(name: &str) {
    let mut token = module(name).start();
    token.keypairgen_outside("kept", "6b", "EC:prime256v1");
    token.restart();
    let listed = listing(&token);
    assert!(
        listed.contains("'kept' id 6b: EC P-256"),
        "{name}: the key did not survive a second start:\n{listed}"
    );
}

#[test]
fn tpm2_start_again_keeps_the_token() {
    start_again_keeps_the_token("tpm2");
}

#[test]
fn kryoptic_start_again_keeps_the_token() {
    start_again_keeps_the_token("kryoptic");
}

#[test]
fn kryoptic_start_never_reinitializes_a_token_of_another_label() {
    let spec = module("kryoptic");
    let token = spec.start();
    token.keypairgen_outside("kept", "6b", "EC:prime256v1");
    let out = spec.run_script(&[
        "start".as_ref(),
        token.dir().as_os_str(),
        "other-label".as_ref(),
    ]);
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("already holds a kryoptic token not labelled 'other-label'"),
        "{stderr}"
    );
    assert!(
        listing(&token).contains("'kept' id 6b"),
        "the token was wiped"
    );
}

#[test]
fn stop_never_signals_a_process_it_did_not_start() {
    let dir = tempfile::Builder::new().prefix("sk-").tempdir().unwrap();
    // A PID file left by an earlier run, whose PID now belongs to some other process.
    let mut other = Command::new("sleep").arg("600").spawn().unwrap();
    let pid_file = dir.path().join("1-swtpm.pid");
    std::fs::write(&pid_file, format!("{}\n", other.id())).unwrap();
    let out = module("tpm2").run_script(&["stop".as_ref(), dir.path().as_os_str()]);
    let still_running = other.try_wait().unwrap().is_none();
    let _ = other.kill();
    let _ = other.wait();
    assert!(out.status.success(), "{}", texts(&out).1);
    assert!(still_running, "stop killed a process it did not start");
    assert!(!pid_file.exists(), "the stale PID file is still there");
}

#[test]
fn start_refuses_a_dir_with_characters_outside_a_plain_path() {
    let parent = tempfile::tempdir().unwrap();
    for bad in ["with space", "quote'", "dollar$x", "semi;colon"] {
        let dir = parent.path().join(bad);
        let out = module("softhsm2").run_script(&["start".as_ref(), dir.as_os_str()]);
        let (_, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(1), "{bad}: {stderr}");
        assert!(
            stderr.contains("DIR may hold only letters, digits and / . _ -")
                && stderr.contains("use a short plain path"),
            "{bad}: {stderr}"
        );
        assert!(!dir.exists(), "{bad}: created anyway");
    }
}

#[test]
fn start_makes_its_dir_private() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("token");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = module("softhsm2").run_script(&[OsStr::new("start"), dir.as_os_str()]);
    assert!(out.status.success(), "{}", texts(&out).1);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "DIR");
    for file in ["user.pin", "so.pin"] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
}
