//! `suitekey rotate` end to end: the real binary on a real SoftHSM2 token against the
//! emulator's certificate API (`suitekey emulate`). A whole rotation for an EC and an RSA key;
//! a rotation killed (SIGKILL) after every step, and after every journal write, then run
//! again; each failure of the API; `--dry-run`; the README's examples as written.

mod common;

use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::Output;
use std::sync::Mutex;

use common::emulator::{Emulator, certificates_path, revoke_path};
use common::profile::{ACCOUNT, CLIENT, MANAGE_CERTIFICATES, Profile, registration};
use common::readme_examples::{readme_line, with_suitekey_on_path};
use common::{PIN, fixture, make_cert, module_path, suitekey_with_conf, temp_dir, texts};
use serde_json::{Value, json};

/// The test hook that makes `rotate` kill itself.
const STOP_AFTER: &str = "SUITEKEY_ROTATE_STOP_AFTER";

/// Rotations on this process's own token (where this process can read the new key's
/// attributes) take turns: SoftHSM2 cannot take two processes writing one token at once.
static OWN_TOKEN: Mutex<()> = Mutex::new(());

/// A profile `prod` on a fixture key with a certificate the emulator knows (mapped to role 3
/// and entity -5, with the permission to manage certificates unless told otherwise), in a
/// config file with comments, and a private state directory for the journal.
struct Rotation {
    /// `SOFTHSM2_CONF` of the token.
    conf: PathBuf,
    /// The fixture key's label.
    label: String,
    /// The current certificate id.
    kid: String,
    emu: Emulator,
    config: PathBuf,
    /// The config file's text before the rotation.
    original: String,
    /// `XDG_STATE_HOME`.
    state: PathBuf,
    dir: tempfile::TempDir,
}

impl Rotation {
    /// On a fresh copy of the fixture token, key `label`, the emulator's `--register` spec
    /// ending with `spec` and its `flags`, and `extra` lines in the profile.
    fn on_copy(label: &str, spec: &str, flags: &[&str], extra: &str) -> Rotation {
        Rotation::on(fixture().token_copy(None), label, spec, flags, extra)
    }

    fn on(conf: PathBuf, label: &str, spec: &str, flags: &[&str], extra: &str) -> Rotation {
        let dir = temp_dir();
        let pem = dir.path().join(format!("{label}.pem"));
        let kid = make_cert(&conf, &fixture().uri(label), &pem);
        let register = format!("{}{spec}", registration(&pem));
        let mut args = vec!["--register", register.as_str()];
        args.extend_from_slice(flags);
        let emu = Emulator::start(&args);
        let original = format!(
            "# NetSuite, rotated by suitekey\n[profiles.prod]   # the main integration\nkey = \"{}\"   # the HSM key\nclient-id = \"{CLIENT}\"\ncertificate-id = \"{kid}\"\naccount = \"{ACCOUNT}\"\ntoken-url = \"{}\"\ntimeout = 3\n{extra}\n# the end\n",
            fixture().uri(label),
            emu.token_url()
        );
        let config = dir.path().join("config.toml");
        std::fs::write(&config, &original).unwrap();
        Rotation {
            conf,
            label: label.to_owned(),
            kid,
            emu,
            config,
            original,
            state: dir.path().join("state"),
            dir,
        }
    }

    /// `suitekey` on the token, with the config file and state directory.
    fn suitekey(&self) -> assert_cmd::Command {
        let mut cmd = suitekey_with_conf(&self.conf);
        cmd.env("SUITEKEY_CONFIG", &self.config)
            .env("XDG_STATE_HOME", &self.state);
        cmd
    }

    /// `suitekey --profile prod rotate ARGS` with `env`.
    fn rotate_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.suitekey();
        cmd.args(["--profile", "prod", "rotate"]).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("suitekey rotate")
    }

    fn rotate(&self, args: &[&str]) -> Output {
        self.rotate_with(args, &[])
    }

    /// A rotation that succeeds: the new certificate id it printed.
    fn rotated(&self, args: &[&str]) -> String {
        let out = self.rotate(args);
        let (stdout, stderr) = texts(&out);
        assert!(out.status.success(), "rotate: {stderr}");
        let id = stdout.trim().to_owned();
        assert_eq!(stdout, format!("{id}\n"), "stdout holds only the new id");
        assert_eq!(id.len(), 43, "{id}");
        id
    }

    /// Whether the profile, as the config file names it now, gets an access token.
    fn profile_gets_a_token(&self) -> Result<(), String> {
        let out = self
            .suitekey()
            .args(["--profile", "prod", "token"])
            .output()
            .unwrap();
        match out.status.success() {
            true => Ok(()),
            false => Err(texts(&out).1),
        }
    }

    /// `suitekey token` with the key and certificate the profile had before the rotation (the
    /// key by its id: step 7 changes its label).
    fn old_mapping_token(&self) -> Output {
        let id = common::KEYS.iter().find(|k| k.0 == self.label).unwrap().1;
        let uri = fixture()
            .uri(&self.label)
            .replace(&format!("object={}", self.label), &format!("id=%{id:02X}"));
        let profile = Profile::new(uri, &self.kid).token_url(&self.emu.token_url());
        suitekey_with_conf(&self.conf)
            .arg("token")
            .args(profile.flags())
            .output()
            .unwrap()
    }

    /// The profile's `certificate-id` in the config file now.
    fn configured_id(&self) -> String {
        self.configured("certificate-id")
    }

    fn configured(&self, key: &str) -> String {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let doc: toml::Table = toml::from_str(&text).unwrap();
        doc["profiles"]["prod"]
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    }

    /// The emulator's certificates of the client.
    fn certificates(&self) -> Vec<Value> {
        self.emu.client_certificates(CLIENT)
    }

    /// How many `call`s (list, upload, revoke) the certificate API got.
    fn calls(&self, call: &str) -> u64 {
        self.emu.certificates()["calls"][call].as_u64().unwrap()
    }

    /// The token's objects as `suitekey list --login` shows them.
    fn objects(&self) -> String {
        let out = suitekey_with_conf(&self.conf)
            .args(["list", "--login", "--module"])
            .arg(module_path())
            .env("SUITEKEY_PIN", PIN)
            .output()
            .unwrap();
        assert!(out.status.success(), "list: {}", texts(&out).1);
        texts(&out).0
    }

    /// The journal file.
    fn journal(&self) -> PathBuf {
        self.state.join("suitekey/rotate/prod.json")
    }

    /// Everything a rotation may change, to compare before and after.
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            objects: self.objects(),
            config: std::fs::read(&self.config).unwrap(),
            journal: std::fs::read(self.journal()).ok(),
            certificates: self.certificates(),
            uploads: self.calls("upload"),
            revokes: self.calls("revoke"),
        }
    }

    /// The end of every successful rotation to `new_id`: the profile names it and gets tokens;
    /// NetSuite has exactly the old certificate, revoked (and refused by the token endpoint),
    /// and the new one, active, uploaded once; the config kept its comments and layout; the
    /// token holds the new key once and the old one relabelled.
    fn assert_rotated(&self, new_id: &str) {
        assert_eq!(self.configured_id(), new_id);
        let new_key = self.configured("key");
        let expected = self
            .original
            .replace(&self.kid, new_id)
            .replace(&fixture().uri(&self.label), &new_key);
        assert_eq!(std::fs::read_to_string(&self.config).unwrap(), expected);
        self.profile_gets_a_token().unwrap();
        let certs = self.certificates();
        assert_eq!(certs.len(), 2, "{certs:#?}");
        let old = certs
            .iter()
            .find(|c| c["certificate_id"] == self.kid.as_str())
            .unwrap();
        let new = certs
            .iter()
            .find(|c| c["certificate_id"] == new_id)
            .unwrap();
        assert!(old["revoked"].is_string(), "{old}");
        assert!(new["revoked"].is_null(), "{new}");
        assert_eq!(
            (new["role"].as_i64(), new["entity"].as_i64()),
            (Some(3), Some(-5))
        );
        let refused = self.old_mapping_token();
        assert_eq!(refused.status.code(), Some(6), "{}", texts(&refused).1);
        assert!(
            texts(&refused).1.contains("invalid_grant"),
            "{}",
            texts(&refused).1
        );
        let objects = self.objects();
        let label = new_key
            .split("object=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap();
        let private_keys = objects
            .lines()
            .filter(|l| l.trim_start().starts_with(&format!("'{label}' id")))
            .count();
        assert_eq!(
            private_keys, 2,
            "the new key and its certificate, once each: {objects}"
        );
        assert!(
            objects.contains(&format!("'{}-revoked-", self.label)),
            "{objects}"
        );
        assert!(
            objects.contains(&format!("certificate id {new_id}")),
            "{objects}"
        );
    }
}

/// What a rotation may change.
#[derive(Debug, PartialEq)]
struct Snapshot {
    objects: String,
    config: Vec<u8>,
    journal: Option<Vec<u8>>,
    certificates: Vec<Value>,
    uploads: u64,
    revokes: u64,
}

/// The new private key (by label) on this process's own token: sensitive, never extractable,
/// and its value unreadable.
fn assert_non_extractable(label: &str) {
    use cryptoki::object::{Attribute, AttributeType, ObjectClass};
    let session = fixture().session();
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .unwrap();
    assert_eq!(found.len(), 1, "one private key labelled {label}");
    let attrs = session
        .get_attributes(
            found[0],
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::NeverExtractable,
            ],
        )
        .unwrap();
    for want in [
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::NeverExtractable(true),
    ] {
        assert!(attrs.contains(&want), "{label}: {want:?} not in {attrs:?}");
    }
    let value = session.get_attributes(found[0], &[AttributeType::Value]);
    assert!(
        value.map_or(true, |v| v.is_empty()),
        "the private key's value is unreadable"
    );
}

/// A full rotation on this process's own token of fixture key `label` (with `args`).
fn full_rotation_on_own_token(label: &str, args: &[&str]) {
    let _turn = OWN_TOKEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let r = Rotation::on(fixture().conf.clone(), label, MANAGE_CERTIFICATES, &[], "");
    r.profile_gets_a_token().unwrap();
    let id = r.rotated(args);
    assert_ne!(id, r.kid);
    r.assert_rotated(&id);
    let new_key = r.configured("key");
    let new_label = new_key
        .split("object=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    assert_non_extractable(new_label);
    let status = r.rotate(&["--status"]);
    let (stdout, _) = texts(&status);
    assert!(stdout.contains("rotation complete"), "{stdout}");
    assert!(stdout.contains(&id), "{stdout}");
}

#[test]
fn an_ec_profile_is_rotated_end_to_end() {
    full_rotation_on_own_token("p256", &[]);
}

#[test]
fn an_rsa_profile_is_rotated_end_to_end() {
    full_rotation_on_own_token("rsa3072", &[]);
}

#[test]
fn another_algorithm_is_written_to_the_profile_and_the_old_key_deleted_when_asked() {
    let r = Rotation::on_copy("p256", MANAGE_CERTIFICATES, &[], "");
    let id = r.rotated(&[
        "--alg",
        "PS384",
        "--delete-old-key",
        "--days",
        "90",
        "--new-label",
        "ns-rsa",
    ]);
    assert_eq!(r.configured("alg"), "PS384");
    assert!(
        r.configured("key").contains("object=ns-rsa;"),
        "{}",
        r.configured("key")
    );
    r.profile_gets_a_token().unwrap();
    let objects = r.objects();
    assert!(
        objects.contains("'ns-rsa' id") && objects.contains("RSA 3072"),
        "{objects}"
    );
    assert!(
        !objects.contains("'p256'") && !objects.contains("p256-revoked"),
        "the old key is gone: {objects}"
    );
    let new = r
        .certificates()
        .into_iter()
        .find(|c| c["certificate_id"] == id.as_str())
        .unwrap();
    assert_eq!(new["algorithm"], "RSA");
}

/// Kills a rotation right after step `step` did its work (before the journal records it),
/// and in another run right after the journal records it; each time the profile still gets
/// tokens, the config is untouched before the switch, and running rotate again ends as an
/// uninterrupted rotation does (after the last step's record, the rotation is complete).
fn killed_after(step: u8) {
    for moment in [step.to_string(), format!("{step}j")] {
        let r = Rotation::on_copy("p256", MANAGE_CERTIFICATES, &[], "");
        let killed = r.rotate_with(&[], &[(STOP_AFTER, &moment)]);
        assert_eq!(
            killed.status.signal(),
            Some(9),
            "{moment}: {}",
            texts(&killed).1
        );
        assert!(texts(&killed).0.is_empty());
        r.profile_gets_a_token()
            .unwrap_or_else(|e| panic!("after {moment}, the configured mapping fails: {e}"));
        if step < 5 {
            assert_eq!(
                std::fs::read_to_string(&r.config).unwrap(),
                r.original,
                "{moment}"
            );
            assert!(r.old_mapping_token().status.success(), "{moment}");
        }
        let id = if moment == "7j" {
            // Killed once the journal says the rotation is complete: there is nothing to
            // continue (running rotate again would start another rotation); --status shows it.
            let status = texts(&r.rotate(&["--status"])).0;
            assert!(status.contains("rotation complete"), "{status}");
            r.configured_id()
        } else {
            r.rotated(&[])
        };
        r.assert_rotated(&id);
        assert_eq!(r.calls("upload"), 1, "{moment}: uploaded once");
    }
}

#[test]
fn killed_after_step_1_it_ends_as_an_uninterrupted_rotation() {
    killed_after(1);
}

#[test]
fn killed_after_step_2_it_ends_as_an_uninterrupted_rotation() {
    killed_after(2);
}

#[test]
fn killed_after_step_3_it_ends_as_an_uninterrupted_rotation() {
    killed_after(3);
}

#[test]
fn killed_after_step_4_it_ends_as_an_uninterrupted_rotation() {
    killed_after(4);
}

#[test]
fn killed_after_step_5_it_ends_as_an_uninterrupted_rotation() {
    killed_after(5);
}

#[test]
fn killed_after_step_6_it_ends_as_an_uninterrupted_rotation() {
    killed_after(6);
}

#[test]
fn killed_after_step_7_it_ends_as_an_uninterrupted_rotation() {
    killed_after(7);
}

/// Asserts that `out` failed with `code` at step `step`, saying `words`.
fn assert_failed(out: &Output, code: i32, step: u8, words: &[&str]) {
    let (stdout, stderr) = texts(out);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    let at = format!("stopped at step {step} of 7");
    assert!(stderr.contains(&at), "{at} not in: {stderr}");
    for word in words {
        assert!(stderr.contains(word), "{word} not in: {stderr}");
    }
}

#[test]
fn five_active_certificates_stop_the_preflight_and_are_named() {
    let dir = temp_dir();
    let conf = fixture().token_copy(None);
    let mut register = Vec::new();
    let mut ids = Vec::new();
    for (entity, label) in ["p384", "p521", "rsa3072", "rsa4096"]
        .into_iter()
        .enumerate()
    {
        let pem = dir.path().join(format!("{label}.pem"));
        ids.push(make_cert(&conf, &fixture().uri(label), &pem));
        register.push(format!(
            "{},role=3,entity={}",
            registration(&pem),
            100 + entity
        ));
    }
    let mut flags = Vec::new();
    for spec in &register {
        flags.extend(["--register", spec.as_str()]);
    }
    let r = Rotation::on(conf, "p256", MANAGE_CERTIFICATES, &flags, "");
    let before = r.snapshot();
    let out = r.rotate(&[]);
    ids.push(r.kid.clone());
    let mut words = vec!["5 active certificates", "nothing was changed"];
    words.extend(ids.iter().map(String::as_str));
    assert_failed(&out, 6, 1, &words);
    assert_eq!(r.snapshot(), before);
}

#[test]
fn a_role_without_the_permission_stops_the_preflight() {
    let r = Rotation::on_copy("p256", ",role=3,entity=-5", &[], "");
    let before = r.snapshot();
    let out = r.rotate(&[]);
    assert_failed(
        &out,
        6,
        1,
        &[
            "HTTP 403",
            "Manage own OAuth 2.0 Client Credentials certificates",
            "nothing was changed",
        ],
    );
    assert_eq!(r.snapshot(), before);
}

#[test]
fn an_integration_without_rest_webservices_stops_the_preflight() {
    let spec = format!(",scopes=restlets{MANAGE_CERTIFICATES}");
    let r = Rotation::on_copy("p256", &spec, &[], "scope = [\"restlets\"]");
    r.profile_gets_a_token().unwrap();
    let before = r.snapshot();
    let out = r.rotate(&[]);
    assert_failed(
        &out,
        6,
        1,
        &["invalid_scope", "rest_webservices", "nothing was changed"],
    );
    assert_eq!(r.snapshot(), before);
}

#[test]
fn a_failing_list_stops_the_preflight_and_changes_nothing() {
    let r = Rotation::on_copy(
        "p256",
        MANAGE_CERTIFICATES,
        &["--fail-certificates", "list:500"],
        "",
    );
    let before = r.snapshot();
    let out = r.rotate(&[]);
    assert_failed(
        &out,
        6,
        1,
        &["HTTP 500", "listing the integration's certificates"],
    );
    assert_eq!(r.snapshot(), before);
}

#[test]
fn a_failed_upload_names_step_3_and_the_next_run_finishes() {
    let r = Rotation::on_copy(
        "p256",
        MANAGE_CERTIFICATES,
        &["--fail-certificates", "upload:500:1"],
        "",
    );
    let out = r.rotate(&[]);
    assert_failed(
        &out,
        6,
        3,
        &[
            "HTTP 500",
            "uploading the certificate",
            "still uses the old key",
            "prod.json",
        ],
    );
    assert_eq!(std::fs::read_to_string(&r.config).unwrap(), r.original);
    r.profile_gets_a_token().unwrap();
    let status = texts(&r.rotate(&["--status"])).0;
    for want in [
        "rotation in progress, next step 3 of 7",
        "last error   step 3 of 7",
        "HTTP 500",
    ] {
        assert!(status.contains(want), "{want}: {status}");
    }
    // Another plan is refused while this one is in progress.
    let out = r.rotate(&["--alg", "ES384"]);
    assert_eq!(out.status.code(), Some(2), "{}", texts(&out).1);
    assert!(texts(&out).1.contains("in progress"), "{}", texts(&out).1);
    let id = r.rotated(&[]);
    r.assert_rotated(&id);
    assert_eq!(
        r.calls("upload"),
        2,
        "the refused upload, then the one that worked"
    );
}

#[test]
fn an_upload_whose_answer_is_lost_is_not_repeated() {
    let r = Rotation::on_copy(
        "p256",
        MANAGE_CERTIFICATES,
        &["--fail-certificates", "upload:500-after:1"],
        "",
    );
    let id = r.rotated(&[]);
    r.assert_rotated(&id);
    assert_eq!(r.calls("upload"), 1);
}

#[test]
fn an_upload_hanging_past_the_timeout_names_step_3() {
    let r = Rotation::on_copy(
        "p256",
        MANAGE_CERTIFICATES,
        &["--fail-certificates", "upload:hang:1"],
        "",
    );
    let started = std::time::Instant::now();
    let out = r.rotate(&[]);
    assert_failed(
        &out,
        6,
        3,
        &["no complete answer", "within 3 s", "--timeout"],
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "bounded by the timeout"
    );
    assert_eq!(std::fs::read_to_string(&r.config).unwrap(), r.original);
    let id = r.rotated(&[]);
    r.assert_rotated(&id);
}

#[test]
fn a_failed_revoke_names_step_6_after_the_switch_and_the_next_run_finishes() {
    let r = Rotation::on_copy(
        "p256",
        MANAGE_CERTIFICATES,
        &["--fail-certificates", "revoke:500:1"],
        "",
    );
    let out = r.rotate(&[]);
    assert_failed(
        &out,
        6,
        6,
        &[
            "HTTP 500",
            "revoking the certificate",
            "already uses the new key",
        ],
    );
    assert_ne!(r.configured_id(), r.kid);
    r.profile_gets_a_token().unwrap();
    let id = r.rotated(&[]);
    r.assert_rotated(&id);
}

#[test]
fn a_certificate_uploaded_already_is_not_uploaded_again_and_a_revoked_one_stops_step_3() {
    for revoke_it in [false, true] {
        let r = Rotation::on_copy("p256", MANAGE_CERTIFICATES, &[], "");
        let killed = r.rotate_with(&[], &[(STOP_AFTER, "2j")]);
        assert_eq!(killed.status.signal(), Some(9));
        let journal: Value = serde_json::from_slice(&std::fs::read(r.journal()).unwrap()).unwrap();
        let pem = journal["certificate"].as_str().unwrap();
        let new_id = journal["plan"]["new_certificate_id"]
            .as_str()
            .unwrap()
            .to_owned();
        // Someone uploads it (and revokes it) with the old mapping's token.
        let token = texts(&r.old_mapping_token()).0.trim().to_owned();
        let auth = format!("Bearer {token}");
        let body = json!({"fileContent": pem, "role": 3, "entity": -5}).to_string();
        let headers = [
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ];
        let up = r
            .emu
            .request("POST", &certificates_path(CLIENT), &headers, &body);
        assert_eq!(up.status, 200, "{up:?}");
        if revoke_it {
            let gone = r
                .emu
                .request("POST", &revoke_path(CLIENT, &new_id), &headers[..1], "");
            assert_eq!(gone.status, 200, "{gone:?}");
            let out = r.rotate(&[]);
            assert_failed(
                &out,
                6,
                3,
                &[
                    "is revoked in NetSuite",
                    "cannot be uploaded again",
                    "remove the rotation's journal",
                ],
            );
        } else {
            assert_eq!(r.rotated(&[]), new_id);
            r.assert_rotated(&new_id);
        }
        assert_eq!(r.calls("upload"), 1, "rotate never uploaded it");
    }
}

#[test]
fn a_dry_run_changes_nothing() {
    let r = Rotation::on_copy("p256", MANAGE_CERTIFICATES, &[], "");
    let before = r.snapshot();
    let out = r.rotate(&["--dry-run"]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    for want in [
        "dry run, nothing was changed",
        "new key",
        "EC P-256 for ES256",
        "label 'p256-",
        "role 3 and entity -5",
        &r.kid,
    ] {
        assert!(stdout.contains(want), "{want}: {stdout}");
    }
    assert_eq!(r.snapshot(), before);
    assert!(!r.journal().exists());
    // And in the middle of a rotation: the plan and the next step, still nothing changed.
    let killed = r.rotate_with(&[], &[(STOP_AFTER, "3j")]);
    assert_eq!(killed.status.signal(), Some(9));
    let before = r.snapshot();
    let stdout = texts(&r.rotate(&["--dry-run"])).0;
    assert!(stdout.contains("continue it from step 4 of 7"), "{stdout}");
    assert_eq!(r.snapshot(), before);
}

#[test]
fn a_symlinked_state_directory_is_refused() {
    let r = Rotation::on_copy("p256", MANAGE_CERTIFICATES, &[], "");
    let elsewhere = r.dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::create_dir_all(r.state.join("suitekey")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, r.state.join("suitekey/rotate")).unwrap();
    let before = r.snapshot();
    let out = r.rotate(&[]);
    let stderr = texts(&out).1;
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("symbolic link") && stderr.contains("nothing was changed"),
        "{stderr}"
    );
    assert_eq!(r.snapshot(), before);
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
}

#[test]
fn the_readme_examples_run_as_written() {
    let r = Rotation::on_copy("p256", MANAGE_CERTIFICATES, &[], "");
    let run = |prefix: &str| {
        let line = readme_line(prefix);
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", &line]);
        with_suitekey_on_path(&mut cmd)
            .env("SOFTHSM2_CONF", &r.conf)
            .env("SUITEKEY_CONFIG", &r.config)
            .env("XDG_STATE_HOME", &r.state);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{line}: {}", texts(&out).1);
        texts(&out).0
    };
    assert!(run("suitekey --profile prod rotate --dry-run").contains("rotate would"));
    let id = run("suitekey --profile prod rotate  ").trim().to_owned();
    r.assert_rotated(&id);
    assert!(run("suitekey --profile prod rotate --status").contains("rotation complete"));
}

#[test]
fn flags_that_name_another_mapping_are_refused() {
    let r = Rotation::on_copy("p256", MANAGE_CERTIFICATES, &[], "");
    let before = r.snapshot();
    let out = r.rotate(&["--certificate-id", "other"]);
    let stderr = texts(&out).1;
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("takes no --certificate-id"), "{stderr}");
    let out = r.rotate_with(&[], &[("SUITEKEY_KEY", "pkcs11:object=x")]);
    assert!(texts(&out).1.contains("SUITEKEY_KEY"), "{}", texts(&out).1);
    assert_eq!(r.snapshot(), before);
}

#[test]
fn no_pin_or_access_token_reaches_the_output_or_the_journal_at_trace_level() {
    let r = Rotation::on_copy("p256", MANAGE_CERTIFICATES, &[], "");
    let out = r.rotate_with(&[], &[("RUST_LOG", "trace")]);
    let (stdout, stderr) = texts(&out);
    assert!(
        out.status.success(),
        "{}",
        stderr.lines().last().unwrap_or_default()
    );
    assert!(stderr.contains("TRACE"), "traced");
    let mut secrets = common::secrets::Secrets::default();
    secrets.add_pin("the user PIN", PIN);
    let journal = std::fs::read(r.journal()).unwrap();
    for (place, text) in [
        ("stdout", stdout.as_bytes()),
        ("stderr", stderr.as_bytes()),
        ("the journal", &journal),
        ("the config", &std::fs::read(&r.config).unwrap()),
    ] {
        secrets.assert_absent(place, text);
    }
    // Access tokens travel only in the token endpoint's answers and Authorization headers.
    let bearer = regex::Regex::new(r"(?i)bearer\s+[A-Za-z0-9._~+/-]{16,}").unwrap();
    assert!(!bearer.is_match(&stderr), "a bearer token in the trace");
    assert!(
        !stderr.contains("access_token"),
        "a token answer in the trace"
    );
}

#[test]
fn a_new_certificate_that_takes_a_while_to_work_is_waited_for() {
    let r = Rotation::on_copy(
        "p256",
        MANAGE_CERTIFICATES,
        &["--certificate-propagation-ms", "2500"],
        "",
    );
    let out = r.rotate(&[]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("NetSuite does not accept the new certificate yet"),
        "{stderr}"
    );
    r.assert_rotated(stdout.trim());
}

#[test]
fn a_profile_switched_back_after_a_failed_revoke_is_switched_again_before_the_revoke() {
    let r = Rotation::on_copy(
        "p256",
        MANAGE_CERTIFICATES,
        &["--fail-certificates", "revoke:500:1"],
        "",
    );
    assert_failed(
        &r.rotate(&[]),
        6,
        6,
        &["HTTP 500", "revoking the certificate"],
    );
    // Someone puts the old key and certificate back (by hand, a restored backup).
    std::fs::write(&r.config, &r.original).unwrap();
    r.profile_gets_a_token().unwrap();
    let out = r.rotate(&[]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("no longer names the new key and certificate")
            && stderr.contains("proving the new key again"),
        "{stderr}"
    );
    // The profile was switched again before its old certificate was revoked: it works.
    r.assert_rotated(stdout.trim());
    assert_eq!(
        r.calls("revoke"),
        2,
        "the refused revoke, then the one that worked"
    );
}

/// OpenSC's pkcs11-tool on the token of `conf`, logged in (the PIN through its environment):
/// its output.
fn pkcs11_tool(conf: &std::path::Path, args: &[&std::ffi::OsStr]) -> String {
    let out = std::process::Command::new("pkcs11-tool")
        .arg("--module")
        .arg(module_path())
        .args([
            "--token-label",
            common::TOKEN,
            "--login",
            "--pin",
            "env:ROTATE_PIN",
        ])
        .args(args)
        .env("SOFTHSM2_CONF", conf)
        .env("ROTATE_PIN", PIN)
        .output()
        .expect("pkcs11-tool (OpenSC)");
    assert!(out.status.success(), "{}", texts(&out).1);
    texts(&out).0
}

/// Stores another application's EC P-256 public key and its certificate on the token of `conf`,
/// both labelled `other-app` and with the `CKA_ID` `id` (hex) of a fixture key.
fn store_other_apps_objects(conf: &std::path::Path, dir: &std::path::Path, id: &str) {
    let key = dir.join("other-app.pem");
    let public = dir.join("other-app.pub.der");
    let cert = dir.join("other-app.crt.der");
    for args in [
        vec![
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ],
        vec!["pkey", "-pubout", "-outform", "DER", "-in", "KEY", "-out"],
        vec![
            "req",
            "-x509",
            "-subj",
            "/CN=other-app",
            "-days",
            "30",
            "-outform",
            "DER",
            "-key",
            "KEY",
            "-out",
        ],
    ] {
        let out_file = match args[0] {
            "genpkey" => &key,
            "pkey" => &public,
            _ => &cert,
        };
        let out = std::process::Command::new("openssl")
            .args(args.iter().map(|a| {
                if *a == "KEY" {
                    key.as_os_str()
                } else {
                    a.as_ref()
                }
            }))
            .arg(out_file)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "{}", texts(&out).1);
    }
    for (kind, file) in [("pubkey", &public), ("cert", &cert)] {
        pkcs11_tool(
            conf,
            &[
                "--write-object".as_ref(),
                file.as_os_str(),
                "--type".as_ref(),
                kind.as_ref(),
                "--id".as_ref(),
                id.as_ref(),
                "--label".as_ref(),
                "other-app".as_ref(),
            ],
        );
    }
}

/// How many objects of the token of `conf` carry the label `label`, as pkcs11-tool lists them.
fn objects_labelled(conf: &std::path::Path, label: &str) -> usize {
    pkcs11_tool(conf, &["--list-objects".as_ref()])
        .lines()
        .filter(|l| l.trim() == format!("label:      {label}"))
        .count()
}

#[test]
fn step_7_leaves_another_applications_objects_with_the_old_keys_id_alone() {
    for delete in [false, true] {
        let r = Rotation::on_copy("p256", MANAGE_CERTIFICATES, &[], "");
        store_other_apps_objects(&r.conf, r.dir.path(), "01");
        assert_eq!(objects_labelled(&r.conf, "other-app"), 2);
        let listed = pkcs11_tool(&r.conf, &["--list-objects".as_ref()]);
        let args: &[&str] = if delete { &["--delete-old-key"] } else { &[] };
        let out = r.rotate(args);
        let (stdout, stderr) = texts(&out);
        assert!(out.status.success(), "{stderr}");
        assert_eq!(
            objects_labelled(&r.conf, "other-app"),
            2,
            "delete {delete}: the other application's public key and certificate are untouched: {stderr}"
        );
        assert!(
            stderr.contains(
                "other object(s) with the same id, not the old key's, were left as they are"
            ),
            "{stderr}"
        );
        let after = pkcs11_tool(&r.conf, &["--list-objects".as_ref()]);
        // Each object pkcs11-tool lists: a line, then its attributes indented.
        let other_app = |listing: &str| {
            let mut objects: Vec<String> = Vec::new();
            for line in listing.lines() {
                match objects.last_mut() {
                    Some(object) if line.starts_with(' ') => object.push_str(line),
                    _ => objects.push(line.to_owned()),
                }
            }
            objects
                .into_iter()
                .filter(|o| o.contains("other-app"))
                .collect::<std::collections::BTreeSet<_>>()
        };
        assert_eq!(
            other_app(&after),
            other_app(&listed),
            "the same objects, unchanged"
        );
        let id = stdout.trim();
        if delete {
            assert_eq!(objects_labelled(&r.conf, "p256"), 0, "{after}");
            assert!(!after.contains("p256-revoked"), "{after}");
            r.profile_gets_a_token().unwrap();
        } else {
            // The old key's private and public key and its certificate, relabelled.
            let revoked = after
                .lines()
                .filter(|l| l.trim().starts_with("label:      p256-revoked-"))
                .count();
            assert_eq!(revoked, 3, "{after}");
            r.assert_rotated(id);
        }
    }
}

#[test]
fn a_key_whose_id_another_private_key_shares_is_refused_before_anything_changes() {
    let r = Rotation::on_copy("p256", MANAGE_CERTIFICATES, &[], "");
    pkcs11_tool(
        &r.conf,
        &[
            "--keypairgen",
            "--key-type",
            "EC:prime256v1",
            "--id",
            "01",
            "--label",
            "other-app",
        ]
        .map(std::ffi::OsStr::new),
    );
    let before = r.snapshot();
    let out = r.rotate(&[]);
    assert_failed(
        &out,
        2,
        1,
        &[
            "CKA_ID 01 is shared by 1 other private key(s)",
            "'other-app' id 01",
            "give the keys distinct ids",
            "nothing was changed",
        ],
    );
    assert_eq!(r.snapshot(), before);
}

#[test]
fn another_profile_using_the_same_key_or_certificate_stops_the_preflight() {
    let other_key = fixture().uri("p384");
    // The same key, named by its id alone and with the token's serial.
    let same_key = format!(
        "pkcs11:serial={};id=%01?module-path={}&pin-source=file:{}",
        fixture().serial(),
        module_path().display(),
        fixture().pin_file.display()
    );
    let unused_id = "x1MST4MIlpfQnkY3cIPbW05n7jcJQX0rXv8WvN5Ngd8";
    for (key, id, says) in [
        (same_key.as_str(), unused_id, "uses the same key"),
        (other_key.as_str(), "SAME", "uses the same certificate-id"),
    ] {
        let r = Rotation::on_copy("p256", MANAGE_CERTIFICATES, &[], "");
        let id = if id == "SAME" { r.kid.as_str() } else { id };
        let backup = format!(
            "\n[profiles.backup]\nkey = \"{key}\"\nclient-id = \"{CLIENT}\"\ncertificate-id = \"{id}\"\naccount = \"{ACCOUNT}\"\n"
        );
        let text = format!("{}{backup}", r.original);
        std::fs::write(&r.config, &text).unwrap();
        let before = r.snapshot();
        let out = r.rotate(&[]);
        assert_failed(
            &out,
            2,
            1,
            &["profile 'backup'", says, "nothing was changed"],
        );
        assert_eq!(r.snapshot(), before);
    }
    // A profile with a key and certificate of its own is no obstacle.
    let r = Rotation::on_copy("p256", MANAGE_CERTIFICATES, &[], "");
    let backup = format!(
        "\n[profiles.backup]\nkey = \"{other_key}\"\nclient-id = \"{CLIENT}\"\ncertificate-id = \"{unused_id}\"\naccount = \"{ACCOUNT}\"\n"
    );
    std::fs::write(&r.config, format!("{}{backup}", r.original)).unwrap();
    let id = r.rotated(&[]);
    assert!(
        std::fs::read_to_string(&r.config)
            .unwrap()
            .contains(&backup)
    );
    assert_eq!(r.configured_id(), id);
}

#[test]
fn an_old_certificate_missing_from_the_list_is_never_taken_for_revoked() {
    let r = Rotation::on_copy(
        "p256",
        MANAGE_CERTIFICATES,
        &["--certificate-list-shape", "object,newest-only"],
        "",
    );
    let out = r.rotate(&[]);
    assert_failed(
        &out,
        6,
        6,
        &[
            &format!("does not hold the old certificate {}", r.kid),
            "cut short (paged)",
            "nothing was revoked",
        ],
    );
    assert_eq!(r.calls("revoke"), 0);
    let old = r
        .certificates()
        .into_iter()
        .find(|c| c["certificate_id"] == r.kid.as_str())
        .unwrap();
    assert!(old["revoked"].is_null(), "{old}");
    // The switch was done: the profile uses the new key, which works.
    assert_ne!(r.configured_id(), r.kid);
    r.profile_gets_a_token().unwrap();
    let status = texts(&r.rotate(&["--status"])).0;
    assert!(status.contains("next step 6 of 7"), "{status}");
}
