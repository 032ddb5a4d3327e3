//! One whole `suitekey rotate` on each software module of the matrix (tests/common/modules.rs):
//! SoftHSM2, tpm2-pkcs11 over swtpm, kryoptic. An ES256 key made by `keygen` is rotated against
//! the emulator's certificate API; the profile then gets tokens with the new key, and the old
//! certificate is revoked. A token that will not relabel the old key's objects is reported, not
//! an error. Modules left out of `SUITEKEY_TEST_MODULES` are skipped (and fail the run under CI).

mod common;

use common::emulator::Emulator;
use common::modules::{ModuleToken, selected};
use common::profile::{ACCOUNT, CLIENT, MANAGE_CERTIFICATES};
use common::{PIN, texts};

#[test]
fn softhsm2() {
    rotation("softhsm2");
}

#[test]
fn tpm2() {
    rotation("tpm2");
}

#[test]
fn kryoptic() {
    rotation("kryoptic");
}

/// `suitekey ARGS` on the token with `env`: (exit code, stdout, stderr); the PIN never in them.
fn run(
    token: &ModuleToken,
    args: &[&str],
    env: &[(&str, &std::path::Path)],
) -> (i32, String, String) {
    let mut cmd = token.suitekey();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run suitekey");
    let (stdout, stderr) = texts(&out);
    assert!(
        !stdout.contains(PIN) && !stderr.contains(PIN),
        "the PIN leaked from {args:?}"
    );
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

fn rotation(name: &str) {
    let Some(spec) = selected(name) else {
        eprintln!("{name}: not in SUITEKEY_TEST_MODULES, not run");
        return;
    };
    let token = spec.start();
    let work = common::temp_dir();
    let dir = work.path();
    let pem = dir.join("cert.pem");
    let uri = token.uri("rotate-me");
    let pem_arg = pem.to_str().expect("UTF-8 path");
    let (code, kid, stderr) = run(
        &token,
        &["keygen", "--key", &uri, "--alg", "ES256", "--out", pem_arg],
        &[],
    );
    assert_eq!(code, 0, "{name} keygen: {stderr}");
    let kid = kid.trim().to_owned();
    let emulator = Emulator::start(&[
        "--register",
        &format!("client-id={CLIENT},cert={pem_arg},account={ACCOUNT}{MANAGE_CERTIFICATES}"),
    ]);
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[profiles.prod]\nkey = \"{uri}\"\nclient-id = \"{CLIENT}\"\ncertificate-id = \"{kid}\"\naccount = \"{ACCOUNT}\"\ntoken-url = \"{}\"\n",
            emulator.token_url()
        ),
    )
    .unwrap();
    let state = dir.join("state");
    let env = [
        ("SUITEKEY_CONFIG", config.as_path()),
        ("XDG_STATE_HOME", state.as_path()),
    ];
    let (code, stdout, stderr) = run(&token, &["--profile", "prod", "rotate"], &env);
    assert_eq!(
        code,
        0,
        "{name} rotate: {stderr}\nemulator: {}",
        emulator.stderr()
    );
    let new_id = stdout.trim();
    assert_eq!(new_id.len(), 43, "{name}: {stdout:?}");
    assert!(std::fs::read_to_string(&config).unwrap().contains(new_id));
    let (code, _, stderr) = run(&token, &["--profile", "prod", "token"], &env);
    assert_eq!(code, 0, "{name} token with the new key: {stderr}");
    let state = emulator.certificates();
    let certs = state["certificates"].as_array().unwrap();
    let revoked = |id: &str| {
        certs
            .iter()
            .find(|c| c["certificate_id"] == id)
            .map(|c| c["revoked"].is_string())
    };
    assert_eq!(revoked(&kid), Some(true), "{name}: {certs:?}");
    assert_eq!(revoked(new_id), Some(false), "{name}: {certs:?}");
}
