//! Process faults: the agent killed with SIGKILL while a refresh is in flight and started again
//! on the same socket; the PEM output of `cert` and `keygen` in an unwritable directory, on a
//! full disk (a one-page tmpfs in a private mount namespace), and over the file size limit.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::agent::Agent;
use common::certified::CertifiedCopy;
use common::emulator::Emulator;
use common::{fixture, suitekey_with_conf, texts};

#[test]
fn an_agent_killed_mid_refresh_is_replaced_on_its_stale_socket_and_service_resumes() {
    let s = CertifiedCopy::new();
    let conf = &s.conf;
    // 5-second tokens, each answer held 1.5 s: the agent renews over a second before expiry, so
    // a renewal is in flight for 1.5 s a few seconds after the first token.
    let emu = s.emulator(&["--delay-ms", "1500", "--token-lifetime", "5"]);
    let config = s.config(&emu.token_url(), &[("prod", &s.uri())]);
    let mut first = Agent::start(conf, &config, &[], &[]);
    let socket = first.socket.clone();
    let (status, body) = first.get("/v1/profiles/prod/token");
    assert_eq!(status, 200, "{body}");
    wait_for_renewal_in_flight(&emu);
    first.signal("KILL");
    let status = first.wait_exit(Duration::from_secs(5));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    assert_eq!(
        emu.stats()["tokens_issued"],
        1,
        "the renewal was cut off before its token was issued"
    );
    assert!(socket.exists(), "SIGKILL leaves the socket file behind");

    let mut second = Agent::start_at(Some(&socket), conf, &config, &[], &[]);
    assert!(
        second.stderr().contains("stale socket"),
        "{}",
        second.stderr()
    );
    let (status, body) = second.get("/v1/profiles/prod/token");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        emu.stats()["token_requests"],
        3,
        "the new agent made its own exchange"
    );
    assert!(emu.stats()["tokens_issued"].as_u64() >= Some(1));
    second.signal("TERM");
    assert!(second.wait_exit(Duration::from_secs(10)).success());
    let mut left: Vec<String> = std::fs::read_dir(socket.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["agent.log"], "no socket or temp file is left");
}

/// Waits until the agent's background renewal (the second token request) has reached the
/// emulator, which holds it for 1.5 s.
fn wait_for_renewal_in_flight(emu: &Emulator) {
    let start = std::time::Instant::now();
    while emu.stats()["token_requests"] != 2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no renewal started: {}",
            emu.stats()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// No PEM and no temp file in `dir`, except the `allowed` names.
fn assert_only(dir: &Path, allowed: &[&str]) {
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !allowed.contains(&n.as_str()))
        .collect();
    assert!(
        left.is_empty(),
        "left behind in {}: {left:?}",
        dir.display()
    );
}

/// Whether the token copy `conf` holds a private key labelled `label`.
fn has_key(conf: &Path, label: &str) -> bool {
    let out = suitekey_with_conf(conf)
        .args(["list", "--module"])
        .arg(common::module_path())
        .env("SUITEKEY_PIN", common::PIN)
        .output()
        .unwrap();
    texts(&out).0.contains(&format!("'{label}' id "))
}

#[test]
fn an_unwritable_output_directory_fails_before_any_key_is_made() {
    let f = fixture();
    let conf = f.token_copy(None);
    // sysfs refuses new files to everyone, root included.
    let out = Path::new("/sys/suitekey-test.pem");
    let key = f.new_key_uri("never-made");
    let run = suitekey_with_conf(&conf)
        .args(["keygen", "--alg", "ES256", "--key", &key, "--out"])
        .arg(out)
        .output()
        .unwrap();
    let (_, stderr) = texts(&run);
    assert_eq!(run.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("/sys/suitekey-test.pem") && stderr.contains("choose a writable directory"),
        "{stderr}"
    );
    assert!(!stderr.contains("made"), "no key was made: {stderr}");
    assert!(!has_key(&conf, "never-made"), "no key was made");
    let run = suitekey_with_conf(&conf)
        .args(["cert", "--replace", "--key", &f.uri("p256"), "--out"])
        .arg(out)
        .output()
        .unwrap();
    let (_, stderr) = texts(&run);
    assert_eq!(run.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("choose a writable directory"), "{stderr}");
}

/// Runs `suitekey ARGS` with its output directory `dir` a full one-page tmpfs holding `old.pem`
/// (`OLD`), in a private user and mount namespace; prints the command's stderr, then
/// `---`, then the directory's listing and `old.pem`.
fn on_a_full_disk(conf: &Path, dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let script = r#"set -e
mount -t tmpfs -o size=4k tmpfs "$DIR"
printf OLD > "$DIR/old.pem"
head -c 8192 /dev/zero > "$DIR/fill" 2>/dev/null || true
set +e
"$@" 2>"$DIR/../stderr.txt"
rc=$?
echo "rc=$rc"
ls -A "$DIR"
echo "old=$(cat "$DIR/old.pem")"
"#;
    let out = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(env!("CARGO_BIN_EXE_suitekey"))
        .args(args)
        .env("DIR", dir)
        .env("SOFTHSM2_CONF", conf)
        .env_remove("RUST_LOG")
        .output()
        .expect("unshare (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr =
        std::fs::read_to_string(dir.parent().unwrap().join("stderr.txt")).unwrap_or_default();
    assert!(
        stdout.contains("rc="),
        "no private tmpfs: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rc = stdout
        .lines()
        .find_map(|l| l.strip_prefix("rc="))
        .and_then(|v| v.parse().ok());
    (rc, stdout, stderr)
}

#[test]
fn a_full_disk_leaves_the_old_pem_intact_and_no_temp_file_and_keygen_says_the_key_exists() {
    let f = fixture();
    let conf = f.token_copy(None);
    let base = common::temp_dir();
    let dir = base.path().join("out");
    std::fs::create_dir(&dir).unwrap();
    let target = format!("{}/old.pem", dir.display());
    let (rc, listing, stderr) = on_a_full_disk(
        &conf,
        &dir,
        &[
            "cert",
            "--replace",
            "--force",
            "--key",
            &f.uri("p256"),
            "--out",
            &target,
        ],
    );
    assert_eq!(rc, Some(5), "{listing}{stderr}");
    assert!(
        stderr.contains("No space left on device") && stderr.contains("nothing was written"),
        "{stderr}"
    );
    assert!(
        listing.contains("old=OLD"),
        "the old file is intact: {listing}"
    );
    assert!(
        !listing.contains(".suitekey-"),
        "no temp file left: {listing}"
    );

    let key = f.new_key_uri("full-disk");
    let target = format!("{}/new.pem", dir.display());
    let (rc, listing, stderr) = on_a_full_disk(
        &conf,
        &dir,
        &["keygen", "--alg", "ES256", "--key", &key, "--out", &target],
    );
    assert_eq!(rc, Some(5), "{listing}{stderr}");
    assert!(
        !listing.contains("new.pem") && !listing.contains(".suitekey-"),
        "{listing}"
    );
    assert!(
        stderr.contains("the key pair was made and stays in the token")
            && stderr
                .contains("suitekey cert --key 'pkcs11:token=suitekey-test;object=full-disk;id=")
            && stderr.contains("No space left on device"),
        "{stderr}"
    );
    assert!(
        has_key(&conf, "full-disk"),
        "the key exists, as the error says"
    );
}

#[test]
fn a_pem_over_the_file_size_limit_is_not_left_half_written() {
    let f = fixture();
    let conf = f.token_copy(None);
    let dir = common::temp_dir();
    let target = dir.path().join("cert.pem");
    std::fs::write(&target, "OLD").unwrap();
    // 400 bytes: SoftHSM2's 320-byte token.object (rewritten at login) fits, a PEM does not.
    // SIGXFSZ is ignored (inherited through exec), so the write fails with EFBIG instead.
    let out = Command::new("sh")
        .args(["-c", "trap '' XFSZ; exec prlimit --fsize=400 \"$@\"", "sh"])
        .arg(env!("CARGO_BIN_EXE_suitekey"))
        .args([
            "cert",
            "--force",
            "--replace",
            "--key",
            &f.uri("p256"),
            "--out",
        ])
        .arg(&target)
        .env("SOFTHSM2_CONF", &conf)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("File too large") && stderr.contains("nothing was written"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "OLD");
    assert_only(dir.path(), &["cert.pem"]);
}
