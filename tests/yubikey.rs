//! The YubiKey path, on the virtual PIV card (`tests/common/piv.rs`) through both real PKCS#11
//! modules for PIV, Yubico's ykcs11 and OpenSC, driving the real `suitekey` binary: slot 9c's
//! PIN before every signature, `list`'s key URIs, PIN tries, `keygen` and `cert` with the
//! management key, a key that waits for a touch, and a card removed and put back under the
//! agent. One card per test (each start ≈ 0.5 s), one at a time.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::agent::Agent;
use common::emulator::Emulator;
use common::piv::{Card, READER_IN_URI, YKCS11_TOKEN, card_can_run};
use common::profile::{ACCOUNT, CLIENT, Profile, registration, write_config};
use common::readme_examples::readme_blocks;
use common::terminal::Terminal;
use common::{cert_public_key, decode_jws, expected_certificate_id, texts, verify};
use serde_json::Value;

/// `suitekey ARGS` with `env`, no inherited SUITEKEY_* settings: (exit code, stdout, stderr).
/// The card's PIN and management key never appear in the output.
fn run(card: &Card, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = assert_cmd::Command::cargo_bin("suitekey").expect("suitekey binary");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SUITEKEY_") || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    let out = cmd
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run suitekey");
    let (stdout, stderr) = texts(&out);
    for secret in [card.pin(), card.secret("management.key")] {
        assert!(
            !stdout.contains(&secret) && !stderr.contains(&secret),
            "a secret of the card leaked from {:?}",
            args.first()
        );
    }
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// The profile flags of key `uri` with the certificate `pem`'s id.
fn profile_flags(uri: &str, pem: &Path) -> Vec<String> {
    Profile::new(uri, expected_certificate_id(pem))
        .flags()
        .into_iter()
        .collect()
}

/// `suitekey assertion` with key `uri`: the JWS, verified with RustCrypto against `pem`.
fn assertion_verifies(card: &Card, uri: &str, pem: &Path, alg: &str) {
    let mut args = vec!["assertion".to_owned()];
    args.extend(profile_flags(uri, pem));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = run(card, &args, &[]);
    assert_eq!(code, 0, "assertion with {uri}: {stderr}");
    let jws = decode_jws(&stdout);
    assert_eq!(jws.header["alg"], alg);
    let (_, key) = cert_public_key(pem);
    verify(&jws, &key).unwrap_or_else(|e| panic!("{uri}: {e}"));
}

/// The lines of `calls` (a pkcs11-spy log) that start each call named `name`.
fn calls(log: &str, name: &str) -> usize {
    log.lines()
        .filter(|l| {
            l.split_once(": ").is_some_and(|(n, call)| {
                n.chars().all(|c| c.is_ascii_digit()) && call.trim() == name
            })
        })
        .count()
}

/// How many context-specific logins a pkcs11-spy log holds.
fn context_logins(log: &str) -> usize {
    log.matches("CKU_CONTEXT_SPECIFIC").count()
}

/// An agent serving `profiles` (name, key URI, certificate), its module wrapped in pkcs11-spy
/// when `spied` names the module to spy on (then its log is `log`), and its emulator issuing
/// `lifetime`-second tokens for the certificates.
struct Served {
    agent: Agent,
    emulator: Emulator,
    _dir: tempfile::TempDir,
}

fn serve(
    profiles: &[(&str, &str, &Path)],
    lifetime: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Served {
    let dir = common::temp_dir();
    // One client per certificate: the emulator registers each certificate once.
    let mut pems: Vec<&Path> = Vec::new();
    for (_, _, pem) in profiles {
        if !pems.contains(pem) {
            pems.push(pem);
        }
    }
    let client = |pem: &Path| {
        let i = pems.iter().position(|p| *p == pem).unwrap_or_default();
        format!("{}{i}", &CLIENT[..CLIENT.len() - 1])
    };
    let registrations: Vec<String> = pems
        .iter()
        .map(|pem| registration(pem).replace(CLIENT, &client(pem)))
        .collect();
    let mut args = vec!["--token-lifetime", lifetime];
    for r in &registrations {
        args.extend(["--register", r]);
    }
    let emulator = Emulator::start(&args);
    let list: Vec<(String, Profile)> = profiles
        .iter()
        .map(|(name, uri, pem)| {
            let profile = Profile::new(*uri, expected_certificate_id(pem))
                .client(&client(pem))
                .token_url(&emulator.token_url());
            ((*name).to_owned(), profile)
        })
        .collect();
    let named: Vec<(&str, &Profile)> = list.iter().map(|(n, p)| (n.as_str(), p)).collect();
    let config = write_config(&dir.path().join("config.toml"), &named);
    let agent = Agent::start(Path::new("/dev/null"), &config, extra, env);
    Served {
        agent,
        emulator,
        _dir: dir,
    }
}

/// Asks the agent for profile `name`'s token: (status, JSON body).
fn ask(agent: &Agent, name: &str) -> (u16, Value) {
    let (status, body) = agent.get(&format!("/v1/profiles/{name}/token"));
    let json = serde_json::from_str(&body).unwrap_or_else(|_| panic!("JSON: {body}"));
    (status, json)
}

/// Waits until `done` (checked every 100 ms), at most `limit`.
fn wait_for(agent: &Agent, what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "{what} within {limit:?}; agent log:\n{}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn slot_9c_gets_the_pin_before_every_signature_of_the_agent_on_both_modules() {
    if !card_can_run("slot_9c_gets_the_pin_before_every_signature_of_the_agent_on_both_modules") {
        return;
    }
    let card = Card::start();
    let cert = card.provision("9c", "ECCP384");
    for module in [&card.ykcs11, &card.opensc] {
        let what = module.display().to_string();
        let log = card.path().join("spy.log");
        let _ = std::fs::remove_file(&log);
        let uri = card.uri(&common::pkcs11_spy(), 2);
        let env = [
            ("PKCS11SPY", module.to_str().unwrap()),
            ("PKCS11SPY_OUTPUT", log.to_str().unwrap()),
        ];
        // 2-second tokens: each request a second apart needs a new one, signed then.
        let served = serve(&[("sign9c", &uri, &cert)], "2", &[], &env);
        let mut tokens = std::collections::HashSet::new();
        for _ in 0..4 {
            let (status, json) = ask(&served.agent, "sign9c");
            assert_eq!(status, 200, "{what}: {json}\n{}", served.agent.stderr());
            tokens.insert(json["access_token"].as_str().unwrap().to_owned());
            std::thread::sleep(Duration::from_millis(1100));
        }
        let stats = served.emulator.stats();
        drop(served);
        let spied = std::fs::read_to_string(&log).expect("pkcs11-spy log");
        // One C_SignInit per signature (C_SignFinal is called twice: its length, then it).
        let signatures = calls(&spied, "C_SignInit");
        assert!(
            tokens.len() >= 3,
            "{what}: {} tokens, {stats}",
            tokens.len()
        );
        assert!(signatures >= 3, "{what}: {signatures} signatures");
        // The card refuses a 9c signature without a VERIFY right before it (ykcs11 would let
        // the first one through after C_Login): each signature had its own PIN.
        assert_eq!(
            context_logins(&spied),
            signatures,
            "{what}: one context-specific login per signature"
        );
        assert_eq!(
            calls(&spied, "C_Login") - context_logins(&spied),
            1,
            "{what}: one user login in all"
        );
    }
}

#[test]
fn the_key_uris_list_prints_open_the_keys_on_both_modules() {
    if !card_can_run("the_key_uris_list_prints_open_the_keys_on_both_modules") {
        return;
    }
    let card = Card::start();
    let certs = [
        card.provision("9a", "ECCP256"),
        card.provision("9c", "ECCP384"),
    ];
    let pin_source = format!("&pin-source=file:{}", card.pin_file().display());
    for (module, labels) in [
        (
            &card.ykcs11,
            [
                (
                    "Private key for PIV Authentication",
                    "Public key for PIV Authentication",
                ),
                (
                    "Private key for Digital Signature",
                    "Public key for Digital Signature",
                ),
            ],
        ),
        (
            &card.opensc,
            [
                ("PIV AUTH key", "PIV AUTH pubkey"),
                ("SIGN key", "SIGN pubkey"),
            ],
        ),
    ] {
        let what = module.display().to_string();
        let module_arg = module.to_str().unwrap();
        let pin = card.pin();
        let (code, stdout, stderr) = run(
            &card,
            &["list", "--module", module_arg, "--login"],
            &[("SUITEKEY_PIN", &pin)],
        );
        assert_eq!(code, 0, "{what}: {stderr}");
        for (i, (private, public)) in labels.iter().enumerate() {
            let id = i + 1;
            // One entry per key pair, found by CKA_ID, with each half's own label.
            assert_eq!(
                stdout.matches(&format!("' id 0{id}: EC")).count(),
                1,
                "{what}: {stdout}"
            );
            assert!(
                stdout.contains(&format!("'{private}' id 0{id}: EC P-"))
                    && stdout.contains(&format!("its public half is labelled '{public}'")),
                "{what}: {stdout}"
            );
            let uri = stdout
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with("pkcs11:") && l.contains(&format!(";id=%0{id};")))
                .unwrap_or_else(|| panic!("{what}: no URI for id {id}:\n{stdout}"));
            let alg = if id == 1 { "ES256" } else { "ES384" };
            assertion_verifies(&card, &format!("{uri}{pin_source}"), &certs[i], alg);
        }
        // Without login only the public halves are seen: their URIs name the key by its id,
        // since the private half's label is another.
        let (_, stdout, _) = run(&card, &["list", "--module", module_arg], &[]);
        let uri = stdout
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("pkcs11:") && l.contains(";id=%01;"))
            .unwrap_or_else(|| panic!("{what}: no URI for id 1:\n{stdout}"));
        assert!(!uri.contains("object="), "{what}: {uri}");
        assertion_verifies(&card, &format!("{uri}{pin_source}"), &certs[0], "ES256");
    }
}

#[test]
fn keygen_makes_an_es256_key_in_slot_9a_through_ykcs11_with_the_management_key() {
    if !card_can_run("keygen_makes_an_es256_key_in_slot_9a_through_ykcs11_with_the_management_key")
    {
        return;
    }
    let card = Card::start();
    let dir = common::temp_dir();
    let pem = dir.path().join("9a.pem");
    let key_file = card.management_key_file();
    let source = format!("file:{}", key_file.display());
    let uri = card.uri(&card.ykcs11, 1);
    let keygen = |uri: &str, source: &str, out: &Path| {
        run(
            &card,
            &[
                "keygen",
                "--key",
                uri,
                "--alg",
                "ES256",
                "--management-key-source",
                source,
                "--out",
                out.to_str().unwrap(),
            ],
            &[],
        )
    };
    let (code, stdout, stderr) = keygen(&uri, &source, &pem);
    assert_eq!(code, 0, "{stderr}");
    let kid = expected_certificate_id(&pem);
    assert_eq!(stdout.trim(), kid);
    // The URI keygen prints names the key as the module does, and opens it.
    let made = stderr
        .lines()
        .find_map(|l| l.strip_prefix("key URI: "))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        made.contains("object=Private%20key%20for%20PIV%20Authentication;id=%01"),
        "{made}"
    );

    // check: NetSuite's rules and the token key in the certificate; ykcs11's placeholder
    // certificate ("CN=YubiKey PIV Slot 9a", zero validity) was replaced.
    let (code, stdout, stderr) = run(
        &card,
        &["check", "--cert", pem.to_str().unwrap(), "--key", made],
        &[],
    );
    assert_eq!((code, stdout.trim()), (0, kid.as_str()), "{stderr}");
    let (_, listed, _) = run(
        &card,
        &["list", "--module", card.ykcs11.to_str().unwrap()],
        &[],
    );
    assert!(
        listed.contains(&format!("certificate id {kid}")),
        "{listed}"
    );
    assert!(!listed.contains("YubiKey PIV Slot"), "{listed}");

    // An assertion verified by RustCrypto, and through OpenSC as well; then a token.
    assertion_verifies(&card, made, &pem, "ES256");
    assertion_verifies(&card, &card.uri(&card.opensc, 1), &pem, "ES256");
    let emulator = Emulator::start(&["--register", &registration(&pem)]);
    let mut args = vec!["token".to_owned()];
    args.extend(profile_flags(made, &pem));
    args.extend(["--token-url".to_owned(), emulator.token_url()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = run(&card, &args, &[]);
    assert_eq!(code, 0, "{stderr}\n{}", emulator.stderr());
    assert!(stdout.trim().len() > 20, "{stdout}");

    // The slot is taken now: never overwritten.
    let (code, _, stderr) = keygen(&uri, &source, &dir.path().join("again.pem"));
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("choose another slot with id="), "{stderr}");
    assert!(!dir.path().join("again.pem").exists());
}

/// Writes `text` to a new file in `dir`, mode 0600.
fn private_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    path
}

/// A command line, its environment, the exit code it must have, and texts its error must hold.
type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, i32, Vec<&'a str>);

#[test]
fn keygen_and_cert_are_refused_clearly_where_the_card_cannot_take_them() {
    if !card_can_run("keygen_and_cert_are_refused_clearly_where_the_card_cannot_take_them") {
        return;
    }
    let card = Card::start();
    card.provision("9a", "ECCP256");
    let dir = common::temp_dir();
    let out = dir.path().join("cert.pem");
    let out_arg = out.to_str().unwrap();
    let key_file = format!("file:{}", card.management_key_file().display());
    let wrong = private_file(dir.path(), "wrong.key", &format!("{}\n", "0f".repeat(24)));
    let malformed = private_file(dir.path(), "short.key", "0102030405\n");
    let (ykcs11, opensc) = (card.uri(&card.ykcs11, 1), card.uri(&card.opensc, 1));
    let free = card.uri(&card.ykcs11, 3);
    let no_slot = card.uri(&card.ykcs11, 0x42);
    let cases: Vec<Case> = vec![
        // OpenSC makes no keys and stores no certificates on a PIV card: the tools that can.
        (
            vec!["keygen", "--key", &opensc, "--alg", "ES256"],
            vec![],
            3,
            vec![
                "OpenSC's PIV driver cannot make keys",
                "yubico-piv-tool",
                "ykman",
            ],
        ),
        (
            vec!["cert", "--key", &opensc, "--replace"],
            vec![],
            3,
            vec![
                "cannot store a certificate",
                "yubico-piv-tool -k -a import-certificate",
                "libykcs11.so",
            ],
        ),
        // ykcs11 without the management key, with a malformed one, with a wrong one.
        (
            vec!["keygen", "--key", &free, "--alg", "ES256"],
            vec![],
            2,
            vec![
                "only after a login with the card's management key",
                "--management-key-source file:PATH",
            ],
        ),
        (
            vec![
                "cert",
                "--key",
                &ykcs11,
                "--replace",
                "--management-key-source",
                "0102030405060708",
            ],
            vec![],
            2,
            vec!["takes file:PATH or env:NAME", "not shown"],
        ),
        (
            vec![
                "cert",
                "--key",
                &ykcs11,
                "--replace",
                "--management-key-source",
                "env:YK_MGMT",
            ],
            vec![("YK_MGMT", "0102030405")],
            4,
            vec![
                "environment variable YK_MGMT",
                "is not 32, 48 or 64 hex digits long",
            ],
        ),
        (
            vec![
                "keygen",
                "--key",
                &free,
                "--alg",
                "ES256",
                "--management-key-source",
            ],
            vec![],
            4,
            vec![
                "management key from file",
                "short.key",
                "is not 32, 48 or 64 hex digits long",
            ],
        ),
        // A wrong management key: refused at the step that stores the certificate, and
        // the PEM file is not written before that step.
        (
            vec![
                "cert",
                "--key",
                &ykcs11,
                "--replace",
                "--management-key-source",
            ],
            vec![],
            4,
            vec![
                "refused the management key from file",
                "wrong.key",
                "not the card's management key",
            ],
        ),
        // ES512 and RSA keys beyond the module: its limits, named.
        (
            vec![
                "keygen",
                "--key",
                &free,
                "--alg",
                "ES512",
                "--management-key-source",
                &key_file,
            ],
            vec![],
            3,
            vec!["256 to 384 bits only, so not P-521"],
        ),
        (
            vec![
                "keygen",
                "--key",
                &free,
                "--alg",
                "PS256",
                "--management-key-source",
                &key_file,
            ],
            vec![],
            3,
            vec!["makes RSA keys of 1024 to 2048 bits only"],
        ),
        // A key URI naming no PIV slot.
        (
            vec![
                "keygen",
                "--key",
                &no_slot,
                "--alg",
                "ES256",
                "--management-key-source",
                &key_file,
            ],
            vec![],
            2,
            vec!["names no PIV slot", "id=%01 (9a", "id=%02 (9c"],
        ),
    ];
    let malformed_arg = format!("file:{}", malformed.display());
    let wrong_arg = format!("file:{}", wrong.display());
    for (mut args, env, want_code, texts) in cases {
        if args.last() == Some(&"--management-key-source") {
            args.push(if texts.iter().any(|t| t.contains("short.key")) {
                &malformed_arg
            } else {
                &wrong_arg
            });
        }
        args.extend(["--out", out_arg]);
        let (code, stdout, stderr) = run(&card, &args, &env);
        assert_eq!(code, want_code, "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        for text in texts {
            assert!(
                stderr.contains(text),
                "{args:?}: {text:?} missing in {stderr}"
            );
        }
        assert!(!stderr.contains("0102030405"), "{stderr}");
        assert!(!out.exists(), "{args:?} wrote {out_arg}");
    }
    // None of it cost a PIN try or touched the card's key and certificate.
    assert_eq!(card.tries_left(), 3);
}

/// `suitekey assertion` with the card's key 9a through `module`, the PIN from `pin_file`,
/// `extra` flags first: what [`run`] returns.
fn assertion_with_pin(
    card: &Card,
    module: &Path,
    pin_file: &Path,
    pem: &Path,
    extra: &[&str],
) -> (i32, String, String) {
    let uri = card.uri(module, 1).replace(
        &card.pin_file().display().to_string(),
        &pin_file.display().to_string(),
    );
    let mut args: Vec<String> = extra.iter().map(|a| (*a).to_owned()).collect();
    args.push("assertion".into());
    args.extend(profile_flags(&uri, pem));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(card, &args, &[])
}

/// `suitekey list` through `module`: its stdout.
fn listing(card: &Card, module: &Path) -> String {
    let (code, stdout, stderr) = run(card, &["list", "--module", module.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{stderr}");
    stdout
}

#[test]
fn a_wrong_pin_costs_one_try_and_the_final_try_is_spent_only_when_asked() {
    if !card_can_run("a_wrong_pin_costs_one_try_and_the_final_try_is_spent_only_when_asked") {
        return;
    }
    let card = Card::start();
    let pem = card.provision("9a", "ECCP256");
    let dir = common::temp_dir();
    let wrong = private_file(dir.path(), "wrong.pin", "11223344\n");
    assert_ne!(card.pin(), "11223344");
    let right = card.pin_file();
    let (ykcs11, opensc) = (card.ykcs11.clone(), card.opensc.clone());
    assert_eq!(card.tries_left(), 3);

    // A wrong PIN costs exactly one try, and the refusal says what the token reports now.
    for (module, left, reported) in [
        (&ykcs11, 2, "CKF_USER_PIN_COUNT_LOW"),
        (&opensc, 1, "CKF_USER_PIN_FINAL_TRY"),
    ] {
        let (code, _, stderr) = assertion_with_pin(&card, module, &wrong, &pem, &[]);
        assert_eq!(code, 4, "{stderr}");
        assert!(stderr.contains("PIN rejected by token"), "{stderr}");
        assert!(
            stderr.contains("the token now reports that") && stderr.contains(reported),
            "{}: {stderr}",
            module.display()
        );
        assert_eq!(card.tries_left(), left, "{}", module.display());
    }
    for module in [&ykcs11, &opensc] {
        assert!(
            listing(&card, module).contains("user PIN: the next wrong PIN locks it (CKF_USER_PIN_FINAL_TRY); suitekey sends it no PIN without --final-pin-try"),
            "{}: {}", module.display(), listing(&card, module)
        );
        // On the final try even the right PIN is not sent without the user's word.
        let (code, stdout, stderr) = assertion_with_pin(&card, module, &right, &pem, &[]);
        assert_eq!((code, stdout.as_str()), (4, ""), "{stderr}");
        assert!(
            stderr.contains("CKF_USER_PIN_FINAL_TRY")
                && stderr.contains("run again with --final-pin-try"),
            "{stderr}"
        );
        assert!(stderr.contains("yubico-piv-tool -a verify-pin"), "{stderr}");
        assert_eq!(card.tries_left(), 1, "no try spent");
    }
    // With it, the right PIN signs and the tries are back.
    let (code, stdout, stderr) =
        assertion_with_pin(&card, &ykcs11, &right, &pem, &["--final-pin-try"]);
    assert_eq!(code, 0, "{stderr}");
    let (_, key) = cert_public_key(&pem);
    verify(&decode_jws(&stdout), &key).expect("verifies");
    assert_eq!(card.tries_left(), 3);
    assert!(!listing(&card, &ykcs11).contains("user PIN:"));

    // Locked: two wrong PINs, then a third on the final try (asked for); nothing more is sent.
    for extra in [&[][..], &[], &["--final-pin-try"]] {
        let (code, _, stderr) = assertion_with_pin(&card, &ykcs11, &wrong, &pem, extra);
        assert_eq!(code, 4, "{stderr}");
    }
    assert_eq!(card.tries_left(), 0);
    for module in [&ykcs11, &opensc] {
        let (code, _, stderr) =
            assertion_with_pin(&card, module, &right, &pem, &["--final-pin-try"]);
        assert_eq!(code, 4, "{stderr}");
        assert!(
            stderr.contains("has locked its user PIN")
                && stderr.contains("yubico-piv-tool -a unblock-pin"),
            "{}: {stderr}",
            module.display()
        );
        assert!(
            listing(&card, module)
                .contains("user PIN: it is locked, no tries left (CKF_USER_PIN_LOCKED)"),
            "{}",
            module.display()
        );
    }
    assert_eq!(card.tries_left(), 0);
}

#[test]
fn a_key_waiting_for_a_touch_is_answered_in_time_and_signs_once_touched() {
    if !card_can_run("a_key_waiting_for_a_touch_is_answered_in_time_and_signs_once_touched") {
        return;
    }
    let card = Card::start_with_touch();
    let pem = card.provision("9a", "ECCP256");
    let uri = card.uri(&card.ykcs11, 1);
    let served = serve(
        &[("touch", &uri, &pem)],
        "3600",
        &["--sign-timeout", "1"],
        &[],
    );
    let agent = &served.agent;
    // Nobody touches the key: the card waits (15 s), the agent answers after its bound.
    let asked = Instant::now();
    let (status, json) = ask(agent, "touch");
    let took = asked.elapsed();
    assert_eq!(status, 503, "{json}");
    assert_eq!(json["error"], "token", "{json}");
    let message = json["message"].as_str().unwrap();
    for text in [
        "has not finished the signature within 1 s",
        "touch the key",
        "touch policy 'never'",
    ] {
        assert!(message.contains(text), "{text:?} missing in {message}");
    }
    assert!(took < Duration::from_secs(10), "answered after {took:?}");
    // Touched: the signature in flight ends, and the profile signs again (each signature
    // waits for a touch of its own).
    wait_for(
        agent,
        "a token once the key is touched",
        Duration::from_secs(40),
        || {
            if !card.touch_file().exists() {
                card.touch();
            }
            ask(agent, "touch").0 == 200
        },
    );
    let card_log = std::fs::read_to_string(card.path().join("card.log")).unwrap();
    assert!(card_log.contains("piv-card: touched"), "{card_log}");
}

#[test]
fn a_card_removed_and_put_back_fails_its_profiles_clearly_and_they_recover_by_themselves() {
    if !card_can_run(
        "a_card_removed_and_put_back_fails_its_profiles_clearly_and_they_recover_by_themselves",
    ) {
        return;
    }
    let mut card = Card::start();
    let pem = card.provision("9a", "ECCP256");
    let (ykcs11, opensc) = (card.uri(&card.ykcs11, 1), card.uri(&card.opensc, 1));
    // 4-second tokens: the agent signs every few seconds.
    let served = serve(
        &[("yk", &ykcs11, &pem), ("sc", &opensc, &pem)],
        "4",
        &[],
        &[],
    );
    let agent = &served.agent;
    for name in ["yk", "sc"] {
        assert_eq!(ask(agent, name).0, 200, "{name}: {}", agent.stderr());
    }
    card.stop();
    for name in ["yk", "sc"] {
        let mut last = Value::Null;
        wait_for(
            agent,
            &format!("{name} fails"),
            Duration::from_secs(30),
            || {
                let (status, json) = ask(agent, name);
                last = json;
                status == 503
            },
        );
        assert_eq!(last["error"], "token", "{name}: {last}");
        let message = last["message"].as_str().unwrap();
        assert!(
            message.contains(READER_IN_URI) && message.contains("id=%01"),
            "{name}: the key is named: {message}"
        );
        assert!(message.contains("put the key back"), "{name}: {message}");
        assert!(message.contains("no reload needed"), "{name}: {message}");
    }
    assert_eq!(agent.json("/v1/health")["failed"], 2);
    card.start_again();
    for name in ["yk", "sc"] {
        wait_for(
            agent,
            &format!("{name} recovers by itself"),
            Duration::from_secs(90),
            || ask(agent, name).0 == 200,
        );
    }
    assert_eq!(agent.json("/v1/health")["failed"], 0);
}

/// README's YubiKey lines with their placeholders filled in.
fn filled(line: &str, client: &str, kid: &str) -> String {
    line.replace("#SERIAL", YKCS11_TOKEN.trim_start_matches("YubiKey PIV "))
        .replace("%23SERIAL", &format!("%23{}", YKCS11_SERIAL))
        .replace("CERT_ID", kid)
        .replace(" ID ", &format!(" {client} "))
        .replace("\"ID\"", &format!("\"{client}\""))
        .replace("ACCT", ACCOUNT)
}

/// The serial number of every virtual card, in ykcs11's token label.
const YKCS11_SERIAL: &str = "5437251";

#[test]
fn the_readme_recipe_takes_a_new_yubikey_to_an_access_token() {
    if !card_can_run("the_readme_recipe_takes_a_new_yubikey_to_an_access_token") {
        return;
    }
    assert_eq!(YKCS11_TOKEN, format!("YubiKey PIV #{YKCS11_SERIAL}"));
    let card = Card::start_factory();
    let home = common::agent::socket_dir();
    let runtime = home.path().join("run");
    std::fs::create_dir(&runtime).unwrap();
    let (pin, puk) = ("24681357", "97531864");
    let mut env = Command::new("unused");
    common::readme_examples::with_suitekey_on_path(&mut env);
    env.env("HOME", home.path())
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("RUST_LOG", "warn,cryptoki=off")
        .current_dir(home.path());
    let lines = readme_blocks("**From a new YubiKey to an access token**", 1).remove(0);
    assert_eq!(lines.len(), 7, "{lines:#?}");
    let mut kid = String::new();
    let mut emulator = None;
    for line in &lines {
        let mut line = filled(line, CLIENT, &kid);
        if line.starts_with("suitekey token") {
            let pem = home.path().join("ns-prod.pem");
            let emu = Emulator::start(&["--register", &registration(&pem)]);
            env.env("SUITEKEY_TOKEN_URL", emu.token_url());
            // The account's REST host (ACCT filled in), where the emulator stands in for NetSuite.
            let host = format!("https://{ACCOUNT}.suitetalk.api.netsuite.com");
            assert!(line.contains(&host), "{line}");
            line = line.replace(&host, &emu.base);
            emulator = Some(emu);
        }
        let mut terminal = Terminal::start(&line, &env);
        let mgmt = || std::fs::read_to_string(home.path().join(".yubikey/management.key")).unwrap();
        let factory_key = "010203040506070801020304050607080102030405060708";
        match line.split_whitespace().take(3).collect::<Vec<_>>()[..] {
            ["yubico-piv-tool", "-a", "change-pin"] => {
                terminal.answer("Enter pin:", "123456");
                terminal.answer("Enter new pin:", pin);
                terminal.answer("Verifying - Enter new pin:", pin);
            }
            ["yubico-piv-tool", "-a", "change-puk"] => {
                terminal.answer("Enter puk:", "12345678");
                terminal.answer("Enter new puk:", puk);
                terminal.answer("Verifying - Enter new puk:", puk);
            }
            ["yubico-piv-tool", "-k", "-a"] => {
                terminal.answer("Enter management key:", factory_key);
                terminal.answer("Enter new management key:", &mgmt());
                terminal.answer("Verifying - Enter new management key:", &mgmt());
            }
            ["suitekey", "keygen" | "token", ..] => {
                terminal.answer(&format!("PIN for token '{YKCS11_TOKEN}':"), pin);
            }
            _ => {}
        }
        let (status, screen) = terminal.finish();
        assert!(status.success(), "{line}: {screen}");
        assert!(
            !screen.contains(pin) && !screen.contains(puk),
            "{line}: a secret was echoed"
        );
        if line.starts_with("suitekey list") {
            assert!(
                screen.contains(&format!("token '{YKCS11_TOKEN}'")),
                "{screen}"
            );
        }
        if line.starts_with("suitekey keygen") {
            kid = screen
                .lines()
                .find_map(|l| l.strip_prefix("certificate id NetSuite will show: "))
                .unwrap_or_else(|| panic!("{screen}"))
                .trim()
                .to_owned();
            assert!(!mgmt().is_empty() && !screen.contains(&mgmt()), "{screen}");
        }
        if line.starts_with("suitekey token") {
            // curl's answer, the emulator's metadata catalog, made with the access token.
            assert!(
                screen.contains(r#"{"items":["#) && screen.contains(r#""name":"customer""#),
                "the API call did not answer: {screen}"
            );
        }
    }
    let emulator = emulator.expect("the recipe ends with suitekey token");
    env.env_remove("SUITEKEY_TOKEN_URL");
    assert_eq!(card.tries_left(), 3);

    // The agent, asking for the PIN at its terminal, with README's profile.
    let config = home.path().join(".config/suitekey/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    let mut blocks = readme_blocks("**The agent with a prompted PIN**", 2);
    let (toml, lines) = (blocks.remove(0), blocks.remove(0));
    let mut text: Vec<String> = toml.iter().map(|l| filled(l, CLIENT, &kid)).collect();
    text.push(format!("token-url = \"{}\"", emulator.token_url()));
    std::fs::write(&config, text.join("\n") + "\n").unwrap();
    let [agent_line, client_line] = &lines[..] else {
        panic!("{lines:#?}")
    };
    assert!(agent_line.starts_with("suitekey agent"), "{agent_line}");
    // `exec`: the PID the shell prints is the agent's, to stop it with.
    let mut agent = Terminal::start(&format!("echo pid=$$; exec {agent_line}"), &env);
    agent.answer(&format!("PIN for token '{YKCS11_TOKEN}':"), pin);
    let socket = runtime.join("suitekey/agent.sock");
    agent.wait_for(&socket.display().to_string());
    let out = env_command(&env, client_line);
    let (stdout, stderr) = texts(&out);
    assert!(
        out.status.success(),
        "{client_line}: {stderr}\n{}",
        agent.text()
    );
    assert!(stdout.trim().len() >= 32, "{stdout}");
    let pid = agent
        .text()
        .split("pid=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the agent's pid")
        .to_owned();
    let killed = Command::new("kill").args(["-s", "TERM", &pid]).status();
    assert!(killed.expect("kill").success());
    let (status, screen) = agent.finish();
    assert!(status.success(), "{screen}");
    assert!(!screen.contains(pin), "the PIN was echoed");
    assert!(!socket.exists(), "socket removed");
}

/// `sh -c LINE` with the environment and working directory `env` was given.
fn env_command(env: &Command, line: &str) -> std::process::Output {
    let mut sh = Command::new("sh");
    for (name, value) in env.get_envs() {
        match value {
            Some(value) => sh.env(name, value),
            None => sh.env_remove(name),
        };
    }
    sh.args(["-c", line])
        .current_dir(env.get_current_dir().expect("a working directory"))
        .output()
        .expect("sh")
}

#[test]
fn the_card_wants_its_pin_again_once_a_command_has_ended() {
    if !card_can_run("the_card_wants_its_pin_again_once_a_command_has_ended") {
        return;
    }
    let card = Card::start();
    let pem = card.provision("9a", "ECCP256");
    // ykcs11 resets the card when suitekey lets go of it (before, the PIN stayed verified
    // after suitekey exited: any local program could sign with the 9a key without it).
    assertion_verifies(&card, &card.uri(&card.ykcs11, 1), &pem, "ES256");
    assert!(
        !card.pin_verified(),
        "the PIN is still verified after ykcs11"
    );
    assert_eq!(card.tries_left(), 3);
    // OpenSC leaves the card as it is, unless its configuration says to reset it (README).
    let opensc = card.uri(&card.opensc, 1);
    assertion_verifies(&card, &opensc, &pem, "ES256");
    assert!(
        card.pin_verified(),
        "OpenSC's default changed: update README"
    );
    let conf = card.path().join("opensc.conf");
    std::fs::write(
        &conf,
        "app default {\n  reader_driver pcsc {\n    disconnect_action = reset;\n  }\n}\n",
    )
    .unwrap();
    let mut args = vec!["assertion".to_owned()];
    args.extend(profile_flags(&opensc, &pem));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, stderr) = run(&card, &args, &[("OPENSC_CONF", conf.to_str().unwrap())]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !card.pin_verified(),
        "the PIN is still verified after OpenSC with reset"
    );
}

/// `rotate` on a profile whose key is on the card, through either module: the card makes keys
/// only with its management key, which `rotate` does not take (OpenSC makes none at all), so
/// step 1 stops, exit non-zero, saying why and what to do; nothing changes: the config file,
/// the journal (none), the emulator's certificates and its certificate API calls.
#[test]
fn rotate_on_a_piv_card_stops_at_step_1_saying_why_and_changes_nothing() {
    if !card_can_run("rotate_on_a_piv_card_stops_at_step_1_saying_why_and_changes_nothing") {
        return;
    }
    let card = Card::start();
    let cert = card.provision("9a", "ECCP256");
    let spec = registration(&cert) + common::profile::MANAGE_CERTIFICATES;
    let emulator = Emulator::start(&["--register", &spec]);
    for (module, why) in [
        (&card.ykcs11, "management key"),
        (&card.opensc, "cannot make keys"),
    ] {
        let what = module.display().to_string();
        let dir = common::temp_dir();
        let profile = Profile::new(card.uri(module, 1), expected_certificate_id(&cert))
            .token_url(&emulator.token_url());
        let config = write_config(&dir.path().join("config.toml"), &[("prod", &profile)]);
        // Step 1 reads the list (a read, not a change): certificates and changing calls compared.
        let changes = || {
            let seen = emulator.certificates();
            let calls = (
                seen["calls"]["upload"].clone(),
                seen["calls"]["revoke"].clone(),
            );
            (
                std::fs::read(&config).unwrap(),
                seen["certificates"].clone(),
                calls,
            )
        };
        let before = changes();
        let state = dir.path().join("state");
        let (code, stdout, stderr) = run(
            &card,
            &[
                "--config",
                config.to_str().unwrap(),
                "--profile",
                "prod",
                "rotate",
            ],
            &[("XDG_STATE_HOME", state.to_str().unwrap())],
        );
        assert_ne!(code, 0, "{what}: {stderr}");
        assert!(stdout.is_empty(), "{what}: {stdout}");
        assert!(
            stderr.contains("step 1")
                && stderr.contains(why)
                && stderr.contains("nothing was changed"),
            "{what}: {stderr}"
        );
        assert_eq!(changes(), before, "{what}: something changed");
        assert!(
            !state.join("suitekey/rotate/prod.json").exists(),
            "{what}: a journal"
        );
    }
}
