//! `suitekey doctor`: each check it lists catches the misconfiguration it is for, through the
//! real binary against a SoftHSM2 token copy and the emulator. Each test breaks one thing and
//! looks at the JSON report: that check fails (or warns), the ones before it pass, and the ones
//! that need it are skipped.

mod common;

use std::path::Path;

use serde_json::Value;

use common::certified::CertifiedCopy;
use common::emulator::Emulator;
use common::fault_proxy::{FaultProxy, TestCa};
use common::profile::Profile;
use common::{PIN, fixture, texts};

const CHECKS: [&str; 13] = [
    "profile",
    "module",
    "token",
    "pin_source",
    "login",
    "key",
    "certificate",
    "certificate_id",
    "expiry",
    "token_url",
    "tls",
    "clock",
    "agent",
];

/// A token copy with a certificate for the p256 key and an emulator that knows it.
struct Setup {
    c: CertifiedCopy,
    emu: Emulator,
}

fn setup() -> Setup {
    let c = CertifiedCopy::new();
    let emu = c.emulator(&[]);
    Setup { c, emu }
}

/// What one `doctor --format json` run gave.
struct Outcome {
    json: Value,
    code: Option<i32>,
    stderr: String,
}

impl Outcome {
    fn status(&self, name: &str) -> &str {
        self.check(name)["status"].as_str().unwrap()
    }

    fn check(&self, name: &str) -> &Value {
        self.json["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no check {name}: {:#}", self.json))
    }

    /// `name` has `status`; every check before it passed (or was skipped), and those in `then`
    /// are skipped.
    fn only(&self, name: &str, status: &str, then: &[&str]) {
        assert_eq!(self.status(name), status, "{:#}", self.json);
        let at = CHECKS.iter().position(|c| *c == name).unwrap();
        for before in &CHECKS[..at] {
            assert!(
                ["ok", "skipped"].contains(&self.status(before)),
                "{before}: {:#}",
                self.json
            );
        }
        for after in then {
            assert_eq!(self.status(after), "skipped", "{after}: {:#}", self.json);
        }
        if status == "failed" {
            assert_eq!(self.code, Some(1), "{}", self.stderr);
            assert_eq!(self.json["ok"], false);
            assert!(self.check(name)["remedy"].is_string(), "{:#}", self.json);
        }
    }
}

impl Setup {
    fn profile(&self) -> Profile {
        self.c.profile().token_url(&self.emu.token_url())
    }

    fn doctor(&self, profile: &Profile, extra: &[&str]) -> Outcome {
        self.doctor_with(common::suitekey_with_conf(&self.c.conf), profile, extra)
    }

    fn doctor_with(
        &self,
        mut cmd: assert_cmd::Command,
        profile: &Profile,
        extra: &[&str],
    ) -> Outcome {
        let out = cmd
            .arg("doctor")
            .args(profile.flags())
            .args(["--format", "json"])
            .args(extra)
            .env_remove("SUITEKEY_AUTH_SOCK")
            .timeout(std::time::Duration::from_secs(60))
            .output()
            .unwrap();
        outcome(&out)
    }
}

fn outcome(out: &std::process::Output) -> Outcome {
    let (stdout, stderr) = texts(out);
    assert!(!stdout.contains(PIN) && !stderr.contains(PIN));
    let json: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout}\n{stderr}"));
    let names: Vec<&str> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, CHECKS, "every check, in order");
    Outcome {
        json,
        code: out.status.code(),
        stderr,
    }
}

#[test]
fn a_sound_profile_passes_every_check_and_says_so_in_text_too() {
    let s = setup();
    let out = s.doctor(&s.profile(), &[]);
    assert_eq!(out.code, Some(0), "{:#}\n{}", out.json, out.stderr);
    assert_eq!(out.json["ok"], true);
    for name in CHECKS {
        let want = match name {
            "login" | "agent" => "skipped",
            _ => "ok",
        };
        assert_eq!(out.status(name), want, "{name}: {:#}", out.json);
    }
    let with_login = s.doctor(&s.profile(), &["--login"]);
    assert_eq!(with_login.code, Some(0), "{:#}", with_login.json);
    assert_eq!(with_login.status("login"), "ok");
    assert_eq!(with_login.status("key"), "ok");

    let text = common::suitekey_with_conf(&s.c.conf)
        .arg("doctor")
        .args(s.profile().flags())
        .output()
        .unwrap();
    let (stdout, _) = texts(&text);
    assert!(text.status.success());
    // Not a terminal: plain words, not symbols.
    assert!(
        stdout.lines().next().unwrap().starts_with("ok   profile "),
        "{stdout}"
    );
    assert!(stdout.contains("\nskip login "), "{stdout}");
    assert!(stdout.ends_with("all checks passed\n"), "{stdout}");
}

#[test]
fn doctor_catches_a_broken_profile() {
    let s = setup();
    // No client id anywhere: flags, variables or a config file.
    let mut flags = s.profile().flags();
    let at = flags.iter().position(|f| f == "--client-id").unwrap();
    flags.drain(at..at + 2);
    let out = common::suitekey_with_conf(&s.c.conf)
        .arg("doctor")
        .args(&flags)
        .args(["--format", "json"])
        .env_remove("SUITEKEY_AUTH_SOCK")
        .output()
        .unwrap();
    let out = outcome(&out);
    out.only("profile", "failed", &CHECKS[1..12]);
    let detail = out.check("profile")["detail"].as_str().unwrap();
    assert!(detail.contains("client"), "{detail}");
}

#[test]
fn doctor_catches_a_missing_module() {
    let s = setup();
    let key = s.c.uri().replace(
        &common::module_path().display().to_string(),
        "/nonexistent/module.so",
    );
    let out = s.doctor(
        &Profile::new(key, &s.c.kid).token_url(&s.emu.token_url()),
        &[],
    );
    out.only(
        "module",
        "failed",
        &["token", "pin_source", "key", "expiry"],
    );
    let detail = out.check("module")["detail"].as_str().unwrap();
    assert!(detail.contains("p11-kit-modules"), "{detail}");
}

#[test]
fn doctor_catches_a_token_that_is_not_there() {
    let s = setup();
    let key = s.c.uri().replace("token=suitekey-test", "token=elsewhere");
    let out = s.doctor(
        &Profile::new(key, &s.c.kid).token_url(&s.emu.token_url()),
        &[],
    );
    out.only("token", "failed", &["pin_source", "key", "certificate"]);
}

#[test]
fn doctor_catches_an_unreadable_pin_source_without_sending_it() {
    let s = setup();
    let key = s.c.uri().replace(
        &fixture().pin_file.display().to_string(),
        "/nonexistent/user.pin",
    );
    let out = s.doctor(
        &Profile::new(key, &s.c.kid).token_url(&s.emu.token_url()),
        &[],
    );
    assert_eq!(out.status("pin_source"), "failed", "{:#}", out.json);
    assert!(
        out.check("pin_source")["detail"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/user.pin")
    );
    assert_eq!(out.code, Some(1));
}

#[test]
fn doctor_login_catches_a_wrong_pin_that_reading_alone_does_not() {
    let s = setup();
    let wrong = s.c.dir.path().join("wrong.pin");
    std::fs::write(&wrong, "not-the-PIN-29381\n").unwrap();
    let key = s.c.uri().replace(
        &fixture().pin_file.display().to_string(),
        &wrong.display().to_string(),
    );
    let profile = Profile::new(key, &s.c.kid).token_url(&s.emu.token_url());
    let out = s.doctor(&profile, &["--login"]);
    out.only("login", "failed", &["key", "certificate"]);
    // Without --login the same PIN is only read: nothing fails.
    let out = s.doctor(&profile, &[]);
    assert_eq!(out.status("pin_source"), "ok");
    assert_eq!(out.status("login"), "skipped");
    assert_eq!(out.code, Some(0), "{:#}", out.json);
}

#[test]
fn doctor_catches_a_key_that_is_not_there() {
    let s = setup();
    let key = s.c.uri().replace("object=p256", "object=nope");
    let profile = Profile::new(key, &s.c.kid).token_url(&s.emu.token_url());
    for extra in [&[][..], &["--login"][..]] {
        let out = s.doctor(&profile, extra);
        out.only(
            "key",
            "failed",
            &["certificate", "certificate_id", "expiry"],
        );
    }
}

#[test]
fn doctor_catches_a_stored_certificate_of_another_key() {
    let s = setup();
    let p384 = s.c.dir.path().join("p384.pem");
    let kid = common::cert_at_clock(&s.c.conf, &fixture().uri("p384"), "+0", 730, &p384);
    common::store_certificate_with_id(&s.c.conf, &p384, "01", Some("stale"));
    let profile = Profile::new(s.c.uri(), &kid).token_url(&s.emu.token_url());
    let out = s.doctor(&profile, &[]);
    out.only("certificate", "failed", &[]);
    assert_eq!(out.status("certificate_id"), "ok");
}

#[test]
fn doctor_warns_when_the_configured_certificate_id_is_not_the_stored_ones() {
    let s = setup();
    let other = "B".repeat(43);
    let profile = Profile::new(s.c.uri(), &other).token_url(&s.emu.token_url());
    let out = s.doctor(&profile, &[]);
    out.only("certificate_id", "warning", &[]);
    let remedy = out.check("certificate_id")["remedy"].as_str().unwrap();
    assert!(
        remedy.contains(&s.c.kid) && remedy.contains(&other),
        "{remedy}"
    );
    assert_eq!(out.code, Some(0), "warnings do not fail");
}

#[test]
fn doctor_catches_a_certificate_near_or_past_its_expiry() {
    let s = setup();
    let pem = s.c.dir.path().join("soon.pem");
    let kid = common::cert_at_clock(&s.c.conf, &s.c.uri(), "-700d", 730, &pem);
    let out = s.doctor(
        &Profile::new(s.c.uri(), &kid).token_url(&s.emu.token_url()),
        &[],
    );
    out.only("expiry", "warning", &[]);
    let detail = out.check("expiry")["detail"].as_str().unwrap();
    assert!(detail.contains("30-day notice"), "{detail}");
    assert_eq!(out.code, Some(0));

    let kid = common::cert_at_clock(&s.c.conf, &s.c.uri(), "-37d", 1, &pem);
    let out = s.doctor(
        &Profile::new(s.c.uri(), &kid).token_url(&s.emu.token_url()),
        &[],
    );
    out.only("expiry", "failed", &[]);
}

#[test]
fn doctor_catches_a_token_url_on_another_accounts_host_and_sends_nothing_there() {
    let s = setup();
    let profile = s
        .c
        .profile()
        .token_url("https://7654321.suitetalk.api.netsuite.com/services/rest/auth/oauth2/v1/token");
    let out = s.doctor(&profile, &[]);
    out.only("token_url", "failed", &["tls", "clock"]);
}

#[test]
fn doctor_catches_an_endpoint_whose_tls_certificate_is_not_trusted() {
    let s = setup();
    let ca = TestCa::new(s.c.dir.path(), "private", "IP:127.0.0.1");
    let other = TestCa::new(s.c.dir.path(), "other", "IP:127.0.0.1");
    let proxy = FaultProxy::https(&ca, &other);
    proxy.forward_to(&s.emu.base);
    let profile = s.c.profile().token_url(&proxy.token_url());
    let out = s.doctor(&profile, &[]);
    out.only("tls", "failed", &["clock"]);
    let detail = out.check("tls")["detail"].as_str().unwrap();
    assert!(detail.contains("--ca-file"), "{detail}");
    assert_eq!(proxy.requests(), 0, "nothing was sent");
    let out = s.doctor(&profile, &["--ca-file", ca.ca_pem.to_str().unwrap()]);
    assert_eq!(out.status("tls"), "ok", "{:#}", out.json);
    assert_eq!(out.code, Some(0), "{:#}", out.json);
}

#[test]
fn doctor_catches_a_clock_ahead_of_the_endpoints() {
    let s = setup();
    let mut cmd = assert_cmd::Command::new("faketime");
    cmd.args(["-f", "+120s"])
        .arg(env!("CARGO_BIN_EXE_suitekey"))
        .env("SOFTHSM2_CONF", &s.c.conf)
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env_remove("RUST_LOG");
    let out = s.doctor_with(cmd, &s.profile(), &[]);
    out.only("clock", "failed", &[]);
    let detail = out.check("clock")["detail"].as_str().unwrap();
    assert!(detail.contains("ahead"), "{detail}");
}

#[test]
fn doctor_checks_the_agent_and_the_profile_it_serves() {
    let s = setup();
    let config = s.c.config(&s.emu.token_url(), &[("prod", &s.c.uri())]);
    let agent = s.c.agent(&config, &[]);
    let run = |profile: &str, socket: &Path| {
        let out = common::suitekey_with_conf(&s.c.conf)
            .arg("--config")
            .arg(&config)
            .args(["--profile", profile, "doctor", "--format", "json"])
            .env("SUITEKEY_AUTH_SOCK", socket)
            .output()
            .unwrap();
        outcome(&out)
    };
    let out = run("prod", &agent.socket);
    assert_eq!(out.status("agent"), "ok", "{:#}", out.json);
    assert_eq!(out.code, Some(0), "{:#}", out.json);

    let out = run("prod", &s.c.dir.path().join("no-agent.sock"));
    out.only("agent", "failed", &[]);
    let detail = out.check("agent")["detail"].as_str().unwrap();
    assert!(detail.contains("no-agent.sock"), "{detail}");

    // A profile of the config file that this agent (started before it) does not serve.
    let both = s.c.config(
        &s.emu.token_url(),
        &[("prod", &s.c.uri()), ("other", &s.c.uri())],
    );
    assert_eq!(both, config);
    let out = run("other", &agent.socket);
    out.only("agent", "failed", &[]);
}
