//! Golden tests of what users see: the exact stdout, stderr and exit status of representative
//! commands and refusals, against the real SoftHSM2 fixture token and the emulator. Each case's
//! transcript lives in `tests/golden/NAME.txt`, so that a change of wording is a reviewed diff.
//!
//! What changes from run to run is redacted before the comparison: temp paths, the module
//! path, ports, the token's serial, certificate ids, access tokens, dates and times. After an
//! intended change, `SNAPSHOTS=overwrite cargo test --test golden` rewrites the transcripts.

mod common;

use std::path::{Path, PathBuf};

use common::certified::CertifiedCopy;
use common::emulator::Emulator;
use common::profile::{ACCOUNT, CLIENT, Profile, write_config};
use common::{PIN, fixture, module_path, temp_dir};

/// A command to run and how its transcript is redacted.
struct Golden {
    args: Vec<String>,
    env: Vec<(String, String)>,
    conf: Option<PathBuf>,
    redactions: snapbox::Redactions,
    /// Directories the command's files live in, removed once the command has run.
    dirs: Vec<tempfile::TempDir>,
}

impl Golden {
    /// `suitekey ARGS` on a fresh copy of the fixture token.
    fn new<S: AsRef<str>>(args: &[S]) -> Golden {
        let mut golden = Golden {
            args: args.iter().map(|a| a.as_ref().to_owned()).collect(),
            env: Vec::new(),
            conf: None,
            redactions: snapbox::Redactions::new(),
            dirs: Vec::new(),
        };
        let f = fixture();
        golden.redact("[MODULE]", module_path().display().to_string());
        golden.redact("[FIXTURE]", f.dir.display().to_string());
        golden.redact("[TARGET_TMP]", env!("CARGO_TARGET_TMPDIR"));
        golden.redact("[SERIAL]", f.serial());
        golden.pattern("[COPY]", r"copy-[0-9]+");
        golden.pattern("[PORT]", r"127\.0\.0\.1:(?<redacted>[0-9]+)");
        // SoftHSM2 derives slot ids from the token's serial.
        golden.pattern("[SLOT]", r"slot (?<redacted>[0-9]+) \(SoftHSM slot ID");
        golden.pattern("[SLOT_ID]", r"SoftHSM slot ID (?<redacted>0x[0-9a-f]+)");
        // Keys come in the order the module stores them, which differs between token builds.
        golden.pattern("[KEYS]", r"which holds (?<redacted>.*); run 'suitekey list");
        // Counted from the moment of the request, so a second may have passed.
        golden.pattern("[SECONDS]", r#""expires_in":(?<redacted>[0-9]+)"#);
        golden.pattern(
            "[TIME]",
            r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z?",
        );
        golden.pattern("[DATE]", r"[0-9]{4}-[0-9]{2}-[0-9]{2}");
        golden
    }

    /// Adds `VAR=VALUE` to the command's environment (shown in the transcript).
    fn env(mut self, var: &str, value: impl Into<String>) -> Golden {
        self.env.push((var.to_owned(), value.into()));
        self
    }

    /// Runs on the token of this `softhsm2.conf` instead of a fresh copy.
    fn on(mut self, conf: &Path) -> Golden {
        self.conf = Some(conf.to_owned());
        self
    }

    /// Keeps `dir` until the command has run, and redacts its path as `[TMP]`.
    fn in_dir(mut self, dir: tempfile::TempDir) -> Golden {
        self.redact("[TMP]", dir.path().display().to_string());
        self.dirs.push(dir);
        self
    }

    /// Replaces `value` with `placeholder` wherever it appears.
    fn redact(&mut self, placeholder: &'static str, value: impl Into<String>) {
        self.redactions
            .insert(placeholder, value.into())
            .expect("placeholder");
    }

    /// Replaces what `pattern` matches (its `redacted` group, if any) with `placeholder`.
    fn pattern(&mut self, placeholder: &'static str, pattern: &str) {
        let regex = regex::Regex::new(pattern).expect("pattern");
        self.redactions
            .insert(placeholder, regex)
            .expect("placeholder");
    }

    /// The same, with `value` redacted as `placeholder`.
    fn redacting(mut self, placeholder: &'static str, value: impl Into<String>) -> Golden {
        self.redact(placeholder, value);
        self
    }

    /// Runs the command: its stdout, stderr and exit status as text.
    fn run(&self) -> (String, String, Option<i32>) {
        let mut cmd = match &self.conf {
            Some(conf) => common::suitekey_with_conf(conf),
            None => fixture().suitekey(),
        };
        cmd.args(&self.args);
        for (var, value) in &self.env {
            cmd.env(var, value);
        }
        // A command that should have ended but serves instead fails the test, not the run.
        let out = cmd
            .timeout(std::time::Duration::from_secs(60))
            .output()
            .expect("run suitekey");
        let (stdout, stderr) = common::texts(&out);
        (stdout, stderr, out.status.code())
    }

    /// Runs the command and compares its transcript with `tests/golden/NAME.txt`.
    fn matches(self, name: &str) {
        let (stdout, stderr, code) = self.run();
        self.compare(name, &stdout, &stderr, code);
    }

    /// Compares a transcript of this command with `tests/golden/NAME.txt`.
    fn compare(&self, name: &str, stdout: &str, stderr: &str, code: Option<i32>) {
        assert!(
            !stdout.contains(PIN) && !stderr.contains(PIN),
            "{name}: the PIN leaked"
        );
        let env: String = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}={} ", quoted(v)))
            .collect();
        let args: Vec<String> = self.args.iter().map(|a| quoted(a)).collect();
        let status = code.map_or_else(|| "killed by a signal".to_owned(), |c| c.to_string());
        let transcript = format!(
            "$ {env}suitekey {}\nexit status: {status}\n--- stdout\n{stdout}--- stderr\n{stderr}",
            args.join(" ")
        );
        let expected = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(format!("{name}.txt"));
        snapbox::Assert::new().action_env("SNAPSHOTS").eq(
            self.redactions.redact(&transcript),
            snapbox::Data::read_from(&expected, None),
        );
    }
}

/// `arg` as a shell would need it.
fn quoted(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=,+@%[]".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// `suitekey assertion` with the profile flags for fixture key `object` (a made-up certificate
/// id) and `extra`.
fn assertion(object: &str, extra: &[&str]) -> Golden {
    assertion_with(&Profile::new(fixture().uri(object), "kid-1"), extra)
}

/// `suitekey assertion` with the flags of `profile` and `extra`.
fn assertion_with(profile: &Profile, extra: &[&str]) -> Golden {
    let mut args = vec!["assertion".to_owned()];
    args.extend(profile.flags());
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    Golden::new(&args)
}

// ---- list and check ---------------------------------------------------------------------------

#[test]
fn list_shows_the_fixture_token() {
    Golden::new(&["list", "--module", &module_path().display().to_string()]).matches("list");
}

#[test]
fn list_of_a_module_that_is_not_there() {
    Golden::new(&["list", "--module", "/nonexistent/module.so"]).matches("list_missing_module");
}

#[test]
fn check_of_a_certificate_made_by_cert() {
    let c = CertifiedCopy::new();
    Golden::new(&[
        "check",
        "--cert",
        &c.pem.display().to_string(),
        "--key",
        &c.uri(),
    ])
    .on(&c.conf)
    .redacting("[TMP]", c.dir.path().display().to_string())
    .redacting("[CERT_ID]", &c.kid)
    .matches("check_good");
}

#[test]
fn check_of_an_unfit_certificate() {
    let dir = temp_dir();
    let pem = dir.path().join("rsa2048.pem");
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-nodes", "-subj", "/CN=rsa2048"])
        .args(["-newkey", "rsa:2048", "-days", "1000", "-keyout"])
        .arg(dir.path().join("rsa2048.key"))
        .arg("-out")
        .arg(&pem)
        .output()
        .expect("openssl req");
    assert!(made.status.success(), "openssl req");
    Golden::new(&["check", "--cert", &pem.display().to_string()])
        .in_dir(dir)
        .redacting("[CERT_ID]", common::expected_certificate_id(&pem))
        .matches("check_unfit");
}

// ---- assertion refusals -----------------------------------------------------------------------

#[test]
fn assertion_refuses_a_malformed_uri() {
    let profile = Profile::new("pkcs11:token=acc;bogus=1", "kid-1");
    assertion_with(&profile, &[]).matches("assertion_bad_uri");
}

#[test]
fn assertion_refuses_a_pin_value_in_argv() {
    let key = format!(
        "pkcs11:token={};object=p256?module-path={}&pin-value={PIN}",
        common::TOKEN,
        module_path().display()
    );
    let mut golden = assertion_with(&Profile::new(key, "kid-1"), &[]);
    // The command line holds the PIN; the transcript must not.
    golden.redact("[PIN]", PIN);
    let (stdout, stderr, code) = golden.run();
    golden.compare("assertion_pin_value", &stdout, &stderr, code);
}

#[test]
fn assertion_refuses_an_unknown_key() {
    assertion("no-such-key", &[]).matches("assertion_unknown_key");
}

#[test]
fn assertion_refuses_a_wrong_pin() {
    let dir = temp_dir();
    let wrong = dir.path().join("wrong.pin");
    std::fs::write(&wrong, "not-the-PIN-31337\n").expect("write");
    // Readable by others whatever the umask, so the warning about it is always there.
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    let f = fixture();
    let key = f.uri("p256").replace(
        &f.pin_file.display().to_string(),
        &wrong.display().to_string(),
    );
    assertion_with(&Profile::new(key, "kid-1"), &[])
        .in_dir(dir)
        .matches("assertion_wrong_pin");
}

#[test]
fn assertion_refuses_rsa_2048() {
    assertion("rsa2048", &[]).matches("assertion_rsa2048");
}

#[test]
fn assertion_refuses_es512_on_a_p256_key() {
    assertion("p256", &["--alg", "ES512"]).matches("assertion_alg_mismatch");
}

#[test]
fn assertion_refuses_a_bad_account() {
    let profile = Profile::new(fixture().uri("p256"), "kid-1").account("1234567.evil.example");
    assertion_with(&profile, &[]).matches("assertion_bad_account");
}

#[test]
fn assertion_refuses_an_unknown_scope() {
    assertion("p256", &["--scope", "restlets,rest_web_services"]).matches("assertion_bad_scope");
}

#[test]
fn assertion_refuses_a_lifetime_over_an_hour() {
    assertion("p256", &["--lifetime", "3601"]).matches("assertion_lifetime");
}

#[test]
fn assertion_refuses_an_http_token_url_off_loopback() {
    assertion("p256", &["--token-url", "http://example.com/token"]).matches("assertion_http_url");
}

// ---- token against the emulator ---------------------------------------------------------------

/// `suitekey token --no-agent` for the certified key at `emu`, with `extra`, on the token copy
/// that holds the certificate (so no stale certificate is warned about).
fn token(c: &CertifiedCopy, emu: &Emulator, extra: &[&str]) -> Golden {
    let mut args = vec!["token".to_owned(), "--no-agent".to_owned()];
    args.extend(c.profile().token_url(&emu.token_url()).flags());
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    Golden::new(&args)
        .on(&c.conf)
        .redacting("[TMP]", c.dir.path().display().to_string())
        .redacting("[CERT_ID]", &c.kid)
}

/// The access token in `token`'s stdout for `format`.
fn access_token(stdout: &str, format: &str) -> String {
    let line = stdout.trim_end();
    match format {
        "json" => {
            let json: serde_json::Value = serde_json::from_str(line).expect("JSON");
            json["access_token"]
                .as_str()
                .expect("access_token")
                .to_owned()
        }
        "header" => line
            .strip_prefix("Authorization: Bearer ")
            .expect("header")
            .to_owned(),
        "env" => line
            .strip_prefix("NETSUITE_ACCESS_TOKEN='")
            .and_then(|t| t.strip_suffix('\''))
            .expect("env")
            .to_owned(),
        _ => line.to_owned(),
    }
}

#[test]
fn token_in_each_format() {
    let c = CertifiedCopy::new();
    let emu = c.emulator(&[]);
    for format in ["raw", "json", "header", "env"] {
        let mut golden = token(&c, &emu, &["--format", format]);
        let (stdout, stderr, code) = golden.run();
        golden.redact("[ACCESS_TOKEN]", access_token(&stdout, format));
        golden.compare(&format!("token_{format}"), &stdout, &stderr, code);
    }
}

#[test]
fn token_refused_with_invalid_grant_is_explained() {
    let c = CertifiedCopy::new();
    let emu = c.emulator(&[]);
    let mut args = vec!["token".to_owned(), "--no-agent".to_owned()];
    let wrong = Profile::new(c.uri(), "not-the-certificate-id").token_url(&emu.token_url());
    args.extend(wrong.flags());
    Golden::new(&args)
        .on(&c.conf)
        .redacting("[CERT_ID]", &c.kid)
        .matches("token_invalid_grant");
}

#[test]
fn token_retries_server_errors_and_gives_up() {
    let c = CertifiedCopy::new();
    let emu = c.emulator(&["--fail-first", "10"]);
    token(&c, &emu, &[]).matches("token_server_errors");
}

#[test]
fn token_with_the_endpoint_refusing_connections() {
    let c = CertifiedCopy::new();
    // A port nobody listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("http://127.0.0.1:{port}/services/rest/auth/oauth2/v1/token");
    let mut args = vec!["token".to_owned(), "--no-agent".to_owned()];
    args.extend(c.profile().token_url(&url).flags());
    Golden::new(&args)
        .on(&c.conf)
        .redacting("[CERT_ID]", &c.kid)
        .matches("token_connection_refused");
}

#[test]
fn exec_of_a_missing_program() {
    let c = CertifiedCopy::new();
    let emu = c.emulator(&[]);
    let mut args = vec!["exec".to_owned(), "--no-agent".to_owned()];
    args.extend(c.profile().token_url(&emu.token_url()).flags());
    args.extend(["--".to_owned(), "/nonexistent/program".to_owned()]);
    Golden::new(&args)
        .on(&c.conf)
        .redacting("[CERT_ID]", &c.kid)
        .matches("exec_missing_program");
}

// ---- keygen refusals --------------------------------------------------------------------------

#[test]
fn keygen_refuses_an_existing_label() {
    let dir = temp_dir();
    let out = dir.path().join("p256.pem");
    let key = fixture().new_key_uri("p256");
    Golden::new(&[
        "keygen",
        "--key",
        &key,
        "--alg",
        "ES256",
        "--out",
        &out.display().to_string(),
    ])
    .in_dir(dir)
    .matches("keygen_existing_label");
}

#[test]
fn keygen_refuses_more_than_two_years() {
    let dir = temp_dir();
    let out = dir.path().join("new.pem");
    let key = fixture().new_key_uri("brand-new");
    let out = out.display().to_string();
    Golden::new(&[
        "keygen", "--key", &key, "--alg", "ES256", "--days", "731", "--out", &out,
    ])
    .in_dir(dir)
    .matches("keygen_days");
}

// ---- config errors ----------------------------------------------------------------------------

/// `suitekey --config FILE [--profile test] token` with FILE holding `text`.
fn with_config(text: &str, profile: &str) -> Golden {
    let dir = temp_dir();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, text).expect("write the config");
    Golden::new(&[
        "--config",
        &config.display().to_string(),
        "--profile",
        profile,
        "token",
    ])
    .in_dir(dir)
}

#[test]
fn config_with_an_unknown_key() {
    with_config(
        "[profiles.test]\nclient-id = \"abc\"\nclientid = \"x\"\n",
        "test",
    )
    .matches("config_unknown_key");
}

#[test]
fn config_with_a_missing_field() {
    with_config("[profiles.test]\nclient-id = \"abc\"\n", "test").matches("config_missing_field");
}

#[test]
fn config_with_a_bad_value() {
    let profile = Profile::new(fixture().uri("p256"), "kid-1").with("lifetime = \"long\"\n");
    with_config(&profile.section("test"), "test").matches("config_bad_value");
}

#[test]
fn config_without_the_profile_asked_for() {
    let profile = Profile::new(fixture().uri("p256"), "kid-1");
    with_config(&profile.section("test"), "nope").matches("config_unknown_profile");
}

// ---- the agent's clients ----------------------------------------------------------------------

#[test]
fn token_with_no_agent_at_suitekey_auth_sock() {
    let dir = common::agent::socket_dir();
    let socket = dir.path().join("agent.sock");
    let profile = Profile::new(fixture().uri("p256"), "kid-1");
    let mut args = vec!["token".to_owned()];
    args.extend(profile.flags());
    Golden::new(&args)
        .env("SUITEKEY_AUTH_SOCK", socket.display().to_string())
        .redacting("[SOCKET_DIR]", dir.path().display().to_string())
        .matches("agent_client_no_agent");
}

#[test]
fn agent_refuses_a_config_with_an_unknown_key() {
    let dir = temp_dir();
    let config = dir.path().join("config.toml");
    let profile = Profile::new(fixture().uri("p256"), "kid-1").with("colour = \"red\"\n");
    write_config(&config, &[("prod", &profile)]);
    let socket_dir = common::agent::socket_dir();
    let socket = socket_dir.path().join("agent.sock");
    Golden::new(&[
        "--config",
        &config.display().to_string(),
        "agent",
        "--socket",
        &socket.display().to_string(),
    ])
    .in_dir(dir)
    .redacting("[SOCKET_DIR]", socket_dir.path().display().to_string())
    .matches("agent_config_unknown_key");
}

// ---- the emulator's flags ---------------------------------------------------------------------

#[test]
fn emulate_refuses_a_non_loopback_address() {
    let c = CertifiedCopy::new();
    let spec = common::profile::registration(&c.pem);
    Golden::new(&["emulate", "--listen", "0.0.0.0:0", "--register", &spec])
        .redacting("[TMP]", c.dir.path().display().to_string())
        .matches("emulate_not_loopback");
}

#[test]
fn emulate_refuses_a_bad_register_spec() {
    let c = CertifiedCopy::new();
    let spec = format!(
        "client-id={CLIENT},cert={},colour=red,account={ACCOUNT}",
        c.pem.display()
    );
    Golden::new(&["emulate", "--register", &spec])
        .redacting("[TMP]", c.dir.path().display().to_string())
        .matches("emulate_bad_register");
}

#[test]
fn a_usage_error_names_the_flag() {
    Golden::new(&["token", "--format", "xml"]).matches("usage_bad_format");
}
