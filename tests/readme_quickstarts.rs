//! README's quick starts that are not run elsewhere, as written: "Quick start: a network HSM"
//! (SoftHSM2's module standing in for the HSM's, the emulator for NetSuite) and "In CI" (the
//! token made on one HOME, then the GitHub Actions and GitLab CI jobs' lines on another, with
//! the secrets in their environment). The first quick start (SoftHSM2 and the emulator, from
//! the package) is run by `scripts/quickstart.sh`; the YubiKey one by `tests/yubikey.rs`.
//!
//! Placeholders are filled in, nothing else changes: the HSM's module path, `/home/me`, the
//! ids, and NetSuite's hosts (the emulator's URL for `https://ACCT.suitetalk…` and `NS_API`;
//! `token-url` added to the profile, `SUITEKEY_TOKEN_URL` in the jobs' environment). A job's
//! package-install line is left out: the suitekey under test, SoftHSM2 and curl are here.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::emulator::Emulator;
use common::profile::{ACCOUNT, CLIENT, registration};
use common::readme_examples::{readme_blocks, with_suitekey_on_path};
use common::texts;

/// SoftHSM2's module, the stand-in for a network HSM's.
const SOFTHSM2: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// `line` run by bash with errexit, suitekey first on PATH, `env` set and `stdin` fed; it must
/// succeed. Returns stdout.
fn bash(line: &str, env: &[(&str, &str)], stdin: &str) -> String {
    let out = bash_output(line, env, stdin);
    let (stdout, stderr) = texts(&out);
    assert!(
        out.status.success(),
        "{line}\nexit {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status.code()
    );
    stdout
}

fn bash_output(line: &str, env: &[(&str, &str)], stdin: &str) -> Output {
    use std::io::Write as _;
    let mut cmd = Command::new("bash");
    cmd.args(["-e", "-c", line]);
    with_suitekey_on_path(&mut cmd).envs(env.iter().copied());
    // In HOME, as a user starts: files the lines write (ns-prod.pem, …) land there.
    if let Some((_, home)) = env.iter().find(|(name, _)| *name == "HOME") {
        cmd.current_dir(home);
    }
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("bash");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("bash output")
}

/// A new SoftHSM2 token labelled `label` in `dir`, by the checkout's set-up script (the one
/// the package installs as /usr/share/suitekey/softhsm/setup-token.sh); returns its
/// `SOFTHSM2_CONF` and user PIN.
fn softhsm_token(dir: &Path, label: &str) -> (String, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("softhsm/setup-token.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(dir)
        .arg(label)
        .output()
        .expect("setup-token.sh");
    assert!(out.status.success(), "{}", texts(&out).1);
    let pin = std::fs::read_to_string(dir.join("user.pin")).expect("user.pin");
    (
        dir.join("softhsm2.conf").display().to_string(),
        pin.trim().to_owned(),
    )
}

/// The catalog the emulator's REST resource answers, as curl printed it.
fn assert_catalog(stdout: &str) {
    assert!(
        stdout.starts_with(r#"{"items":["#) && stdout.contains(r#""name":"customer""#),
        "the API call did not answer the catalog: {stdout}"
    );
}

#[test]
fn the_network_hsm_quick_start_runs_as_written() {
    let home = tempfile::tempdir().expect("home");
    let token_dir = tempfile::tempdir().expect("token dir");
    let (conf, pin) = softhsm_token(token_dir.path(), "PARTITION");
    let home_s = home.path().display().to_string();
    let env = [
        ("HOME", home_s.as_str()),
        ("SOFTHSM2_CONF", conf.as_str()),
        ("RUST_LOG", "warn,cryptoki=off"),
    ];
    let fill = |l: &str| l.replace("/opt/hsm/lib/libpkcs11.so", SOFTHSM2);
    let marker = "## Quick start: a network HSM";
    let mut blocks = readme_blocks(marker, 3);
    let (setup, toml, calls) = (blocks.remove(0), blocks.remove(0), blocks.remove(0));
    let [list, pin_file, keygen] = &setup[..] else {
        panic!("{setup:#?}")
    };
    let listed = bash(&fill(list), &env, "");
    assert!(
        listed.contains("'PARTITION'") && listed.contains("ES256  keygen: yes  sign: yes"),
        "{listed}"
    );
    bash(&fill(pin_file), &env, &format!("{pin}\n"));
    let pin_path = home.path().join(".config/suitekey/hsm.pin");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&pin_path).unwrap().permissions(),
    );
    assert_eq!(mode & 0o077, 0, "the PIN file is readable by others");
    let kid = bash(&fill(keygen), &env, "").trim().to_owned();
    assert_eq!(kid.len(), 43, "keygen printed no certificate id: {kid}");

    let emu = Emulator::start(&[
        "--register",
        &registration(&home.path().join("ns-prod.pem")),
    ]);
    let mut profile: Vec<String> = toml
        .iter()
        .map(|l| {
            fill(l)
                .replace("/home/me", &home_s)
                .replace("\"ID\"", &format!("\"{CLIENT}\""))
                .replace("CERT_ID", &kid)
                .replace("ACCT", ACCOUNT)
        })
        .collect();
    profile.push(format!("token-url = \"{}\"", emu.token_url()));
    let config = home.path().join(".config/suitekey/config.toml");
    std::fs::write(&config, profile.join("\n") + "\n").expect("config");

    let [doctor, call] = &calls[..] else {
        panic!("{calls:#?}")
    };
    let checked = bash(doctor, &env, "");
    assert!(
        checked.contains("login") && !checked.contains("FAIL"),
        "{checked}"
    );
    let host = format!("https://{ACCOUNT}.suitetalk.api.netsuite.com");
    let call = call.replace("ACCT", ACCOUNT);
    assert!(call.contains(&host), "{call}");
    assert_catalog(&bash(&call.replace(&host, &emu.base), &env, ""));
}

/// The shell lines of a job: GitLab's `script:` items, or the lines of GitHub's `run: |`.
fn job_lines(yaml: &[String]) -> Vec<String> {
    let gitlab: Vec<String> = yaml
        .iter()
        .skip_while(|l| l.trim() != "script:")
        .skip(1)
        .filter_map(|l| l.trim().strip_prefix("- ").map(str::to_owned))
        .collect();
    if !gitlab.is_empty() {
        return gitlab;
    }
    yaml.iter()
        .skip_while(|l| l.trim() != "- run: |")
        .skip(1)
        .map(|l| l.trim().to_owned())
        .collect()
}

#[test]
fn the_ci_jobs_run_as_written_on_a_token_made_elsewhere() {
    let marker = "## In CI";
    let mut blocks = readme_blocks(marker, 3);
    let (make, github, gitlab) = (blocks.remove(0), blocks.remove(0), blocks.remove(0));

    // On "your machine": the token, its key and certificate, the secret.
    let mine = tempfile::tempdir().expect("my home");
    let mine_s = mine.path().display().to_string();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("softhsm/setup-token.sh");
    let script = script.display().to_string();
    let made = make
        .iter()
        .map(|l| l.replace("/usr/share/suitekey/softhsm/setup-token.sh", &script))
        .collect::<Vec<_>>()
        .join("\n");
    bash(&made, &[("HOME", &mine_s)], "");
    let secret = std::fs::read_to_string(mine.path().join("ci-token.b64")).expect("ci-token.b64");
    let pin = std::fs::read_to_string(mine.path().join("ci-token/user.pin")).expect("user.pin");
    let pem = mine.path().join("ns-ci.pem");
    let kid = Command::new(assert_cmd::cargo::cargo_bin("suitekey"))
        .args(["check", "--cert"])
        .arg(&pem)
        .output()
        .expect("check");
    let kid = texts(&kid).0.trim().to_owned();
    let emu = Emulator::start(&["--register", &registration(&pem)]);

    let (hub, lab) = (job_lines(&github), job_lines(&gitlab));
    assert!(
        hub[0].starts_with(
            "sudo apt-get update && sudo apt-get install -y softhsm2 curl ./suitekey.deb"
        ),
        "{hub:#?}"
    );
    assert!(
        lab[0].starts_with("apt-get update && apt-get install -y softhsm2 curl ./suitekey.deb"),
        "{lab:#?}"
    );
    assert_eq!(hub[1..], lab[1..], "the two jobs' lines differ");
    for name in [
        "SUITEKEY_TOKEN_TGZ",
        "SUITEKEY_TOKEN_PIN",
        "NS_CLIENT_ID",
        "NS_CERTIFICATE_ID",
        "NS_ACCOUNT",
        "NS_API",
    ] {
        assert!(
            github
                .iter()
                .any(|l| l.trim().starts_with(&format!("{name}: ${{{{ "))),
            "the GitHub job does not set {name}"
        );
    }

    // On the runner: another HOME, the secrets and variables in the environment.
    let runner = tempfile::tempdir().expect("runner home");
    let runner_s = runner.path().display().to_string();
    let token_url = emu.token_url();
    let env = [
        ("HOME", runner_s.as_str()),
        ("SUITEKEY_TOKEN_TGZ", secret.trim()),
        ("SUITEKEY_TOKEN_PIN", pin.trim()),
        ("NS_CLIENT_ID", CLIENT),
        ("NS_CERTIFICATE_ID", kid.as_str()),
        ("NS_ACCOUNT", ACCOUNT),
        ("NS_API", emu.base.as_str()),
        ("SUITEKEY_TOKEN_URL", token_url.as_str()),
        ("RUST_LOG", "warn,cryptoki=off"),
    ];
    let out = bash_output(&lab[1..].join("\n"), &env, "");
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert_catalog(&stdout);
    assert!(
        !stderr.contains(pin.trim()),
        "the PIN reached the job's log"
    );
}
