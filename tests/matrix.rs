//! The same end-to-end suite on every PKCS#11 module of the matrix (tests/common/modules.rs): for
//! each algorithm, `keygen` → `check` → an assertion verified by RustCrypto → an access token
//! from the emulator; `list` and `list --mechanisms`; and for each cell a module cannot do, the
//! refusal that names the module's limit. One test per module, each on its own token.

mod common;

use std::path::Path;

use common::emulator::Emulator;
use common::modules::{ALGS, Cell, LABEL, ModuleToken, render_table, selected};
use common::{PIN, cert_public_key, decode_jws, expected_certificate_id, texts, verify};

const CLIENT: &str = "b6a1c0b1f7e24c8e9f3a5d2c4e6f8a0b1c3d5e7f9a2b4c6d8e0f1a3b5c7d9e1f";
const ACCOUNT: &str = "1234567";

#[test]
fn softhsm2() {
    matrix("softhsm2");
}

#[test]
fn tpm2() {
    matrix("tpm2");
}

#[test]
fn kryoptic() {
    matrix("kryoptic");
}

#[test]
fn the_readme_shows_exactly_the_matrix_these_tests_run() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let table = render_table();
    assert!(
        readme.contains(&table),
        "README.md's Tokens table is not what tests/common/modules.rs declares; paste this:\n{table}"
    );
}

/// The whole matrix row of one module.
fn matrix(name: &str) {
    let Some(spec) = selected(name) else {
        eprintln!("{name}: not in SUITEKEY_TEST_MODULES, not run");
        return;
    };
    let token = spec.start();
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    check_mechanisms_listing(&token);
    for (i, alg) in ALGS.iter().enumerate() {
        match (spec.keygen[i], spec.sign[i]) {
            (Cell::Works, Cell::Works) => end_to_end(&token, alg, work.path()),
            (Cell::Refused(why), Cell::Refused(sign_why)) => {
                keygen_refused(&token, alg, &[], why, work.path());
                sign_refused(&token, alg, sign_why);
            }
            cells => panic!("{name} {alg}: no test for the cells {cells:?}"),
        }
    }
    match spec.rsa4096 {
        Cell::Works => {
            let pem = keygen(
                &token,
                "PS256",
                "rsa4096",
                &["--rsa-bits", "4096"],
                work.path(),
            );
            let (_, key) = cert_public_key(&pem);
            assert!(
                matches!(&key, common::PublicKey::Rsa { n, .. } if n.len() == 512),
                "{name}: not a 4096-bit key: {key:?}"
            );
        }
        Cell::Refused(why) => {
            keygen_refused(&token, "PS256", &["--rsa-bits", "4096"], why, work.path())
        }
    }
    check_key_listing(&token);
}

/// `suitekey ARGS` on the token: (exit code, stdout, stderr); the PIN never in the output.
fn run(token: &ModuleToken, args: &[&str]) -> (i32, String, String) {
    run_with(token, args, &[])
}

/// [`run`] with extra environment variables.
fn run_with(token: &ModuleToken, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = token
        .suitekey()
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run suitekey");
    let (stdout, stderr) = texts(&out);
    assert!(
        !stdout.contains(PIN) && !stderr.contains(PIN),
        "{}: the PIN leaked from {args:?}",
        token.spec.name
    );
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// `keygen` for `alg` into a key labelled `object`; returns the certificate file.
fn keygen(
    token: &ModuleToken,
    alg: &str,
    object: &str,
    extra: &[&str],
    dir: &Path,
) -> std::path::PathBuf {
    let name = token.spec.name;
    let pem = dir.join(format!("{name}-{object}.pem"));
    let uri = token.uri(object);
    let mut args = vec!["keygen", "--key", &uri, "--alg", alg];
    args.extend(extra);
    args.extend(["--out", pem.to_str().expect("UTF-8 path")]);
    let (code, _, stderr) = run(token, &args);
    assert_eq!(code, 0, "{name} keygen {alg} {extra:?}: {stderr}");
    pem
}

/// keygen → check → assertion verified by RustCrypto → access token from the emulator.
fn end_to_end(token: &ModuleToken, alg: &str, dir: &Path) {
    let name = token.spec.name;
    let pem = keygen(token, alg, alg, &[], dir);
    let uri = token.uri(alg);
    let pem_arg = pem.to_str().expect("UTF-8 path");

    let (code, stdout, stderr) = run(token, &["check", "--cert", pem_arg, "--key", &uri]);
    assert_eq!(code, 0, "{name} check {alg}: {stderr}");
    let kid = expected_certificate_id(&pem);
    assert_eq!(stdout.trim(), kid, "{name} check {alg}: certificate id");

    let profile = [
        "--key",
        &uri,
        "--client-id",
        CLIENT,
        "--certificate-id",
        &kid,
        "--account",
        ACCOUNT,
        "--alg",
        alg,
    ];
    let (code, stdout, stderr) = run(token, &[&["assertion"][..], &profile].concat());
    assert_eq!(code, 0, "{name} assertion {alg}: {stderr}");
    let jws = decode_jws(&stdout);
    assert_eq!(jws.header["alg"], *alg, "{name}");
    let (_, key) = cert_public_key(&pem);
    verify(&jws, &key).unwrap_or_else(|e| panic!("{name} {alg}: signature does not verify: {e}"));

    let emulator = Emulator::start(&[
        "--register",
        &format!("client-id={CLIENT},cert={pem_arg},account={ACCOUNT}"),
    ]);
    let url = emulator.token_url();
    let (code, stdout, stderr) = run(
        token,
        &[&["token"][..], &profile, &["--token-url", &url]].concat(),
    );
    assert_eq!(
        code,
        0,
        "{name} token {alg}: {stderr}\nemulator: {}",
        emulator.stderr()
    );
    assert!(
        stdout.trim().len() > 20,
        "{name} {alg}: no access token: {stdout:?}"
    );
}

/// keygen is refused with exit 3, the module's limit in the message, and no file written.
fn keygen_refused(token: &ModuleToken, alg: &str, extra: &[&str], why: &[&str], dir: &Path) {
    let name = token.spec.name;
    let pem = dir.join(format!("{name}-refused-{alg}.pem"));
    let uri = token.uri(&format!("refused-{alg}"));
    let mut args = vec!["keygen", "--key", &uri, "--alg", alg];
    args.extend(extra);
    args.extend(["--out", pem.to_str().expect("UTF-8 path")]);
    let (code, stdout, stderr) = run(token, &args);
    assert_eq!(
        code, 3,
        "{name} keygen {alg} {extra:?} should be refused: {stderr}"
    );
    assert!(stdout.is_empty(), "{stdout}");
    for text in why {
        assert!(
            stderr.contains(text),
            "{name} keygen {alg}: {text:?} missing in: {stderr}"
        );
    }
    assert!(
        !pem.exists(),
        "{name}: a certificate was written for a refused key"
    );
}

/// Signing with a key of `alg`'s kind, made outside suitekey, is refused with exit 3 and the
/// module's limit in the message.
fn sign_refused(token: &ModuleToken, alg: &str, why: &[&str]) {
    let name = token.spec.name;
    let key_type = match alg {
        "ES256" => "EC:prime256v1",
        "ES384" => "EC:secp384r1",
        "ES512" => "EC:secp521r1",
        _ => "rsa:3072",
    };
    let object = format!("outside-{alg}");
    token.keypairgen_outside(&object, "5e", key_type);
    let uri = token.uri(&object);
    let (code, stdout, stderr) = run(
        token,
        &[
            "assertion",
            "--key",
            &uri,
            "--client-id",
            CLIENT,
            "--certificate-id",
            "kid",
            "--account",
            ACCOUNT,
            "--alg",
            alg,
        ],
    );
    assert_eq!(code, 3, "{name} sign {alg} should be refused: {stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    for text in why {
        assert!(
            stderr.contains(text),
            "{name} sign {alg}: {text:?} missing in: {stderr}"
        );
    }
}

/// `list --mechanisms` says, per algorithm, exactly what the matrix declares.
fn check_mechanisms_listing(token: &ModuleToken) {
    let spec = token.spec;
    let (code, stdout, stderr) = run(token, &["list", "--mechanisms", "--token", LABEL]);
    assert_eq!(code, 0, "{} list: {stderr}", spec.name);
    assert!(stdout.contains(&format!("token '{LABEL}'")), "{stdout}");
    let yes = |c: &Cell| {
        if matches!(c, Cell::Works) {
            "yes"
        } else {
            "no "
        }
    };
    let mut can_sign = Vec::new();
    for (i, alg) in ALGS.iter().enumerate() {
        let want = format!(
            "{alg}  keygen: {}  sign: {}  (",
            yes(&spec.keygen[i]),
            yes(&spec.sign[i])
        );
        assert!(
            stdout.contains(&want),
            "{}: {want:?} missing in\n{stdout}",
            spec.name
        );
        if let Cell::Refused(why) = spec.sign[i] {
            let line = stdout
                .lines()
                .find(|l| l.contains(&want))
                .unwrap_or_default();
            assert!(
                why.iter().all(|t| line.contains(t)),
                "{}: {line}",
                spec.name
            );
        } else {
            can_sign.push(*alg);
        }
    }
    let want = format!("can sign: {}\n", can_sign.join(" "));
    assert!(
        stdout.contains(&want),
        "{}: {want:?} missing in\n{stdout}",
        spec.name
    );
}

/// After the matrix, `list --login` shows each key keygen made, with the algorithms it signs.
fn check_key_listing(token: &ModuleToken) {
    let spec = token.spec;
    let (code, stdout, stderr) = run_with(
        token,
        &["list", "--login", "--token", LABEL],
        &[("SUITEKEY_PIN", PIN)],
    );
    assert_eq!(code, 0, "{} list --login: {stderr}", spec.name);
    for (i, alg) in ALGS.iter().enumerate() {
        if matches!(spec.keygen[i], Cell::Works) {
            let line = stdout
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("'{alg}' id ")))
                .unwrap_or_else(|| panic!("{}: key {alg} not listed:\n{stdout}", spec.name));
            assert!(line.contains(alg), "{}: {line}", spec.name);
        }
    }
    if let Some(i) = ALGS.iter().position(|a| *a == "ES512")
        && matches!(spec.sign[i], Cell::Refused(_))
    {
        assert!(
            stdout.contains(
                "'outside-ES512' id 5e: EC P-521 → NetSuite this module cannot sign with it"
            ),
            "{}:\n{stdout}",
            spec.name
        );
    }
}
