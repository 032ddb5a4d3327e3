//! The agent's audit trail and machine-readable logs: one line per token handed out (peer uid
//! and pid, profile, the token's fingerprint, never the token), and `--log-format json`
//! writing one JSON object per line.

mod common;

use std::process::{Command, Stdio};

use common::certified::CertifiedCopy;
use serde_json::Value;
use sha2::Digest as _;

/// `suitekey --config CONFIG --profile prod token` through the agent at `socket`: the client's
/// pid and the token it printed.
fn token_through(config: &std::path::Path, socket: &std::path::Path) -> (u32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_suitekey"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SUITEKEY_") || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    let child = cmd
        .arg("--config")
        .arg(config)
        .args(["--profile", "prod", "token"])
        .env("SUITEKEY_AUTH_SOCK", socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run suitekey token");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = common::texts(&out);
    assert!(out.status.success(), "{stderr}");
    (pid, stdout.trim().to_owned())
}

fn fingerprint(token: &str) -> String {
    let digest = sha2::Sha256::digest(token.as_bytes());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn every_token_handed_out_is_audited_in_json_with_its_peer_and_fingerprint_never_the_token() {
    let c = CertifiedCopy::new();
    let emu = c.emulator(&[]);
    let config = c.config(&emu.token_url(), &[("prod", &c.uri())]);
    let agent = c.agent(&config, &["--log-format", "json"]);
    let handed: Vec<(u32, String)> = (0..3)
        .map(|_| token_through(&config, &agent.socket))
        .collect();

    let log = agent.stderr();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"))
        })
        .collect();
    assert!(lines.len() > 3, "{log}");
    for line in &lines {
        assert!(
            line["timestamp"].is_string() && line["level"].is_string(),
            "{line}"
        );
        assert!(line["message"].is_string(), "{line}");
    }
    let audits: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "suitekey::audit")
        .collect();
    assert_eq!(audits.len(), handed.len(), "{log}");
    let own_uid = rustix::process::getuid().as_raw();
    for (audit, (pid, token)) in audits.iter().zip(&handed) {
        assert_eq!(audit["message"], "access token handed out", "{audit}");
        assert_eq!(audit["level"], "INFO", "{audit}");
        assert_eq!(audit["profile"], "prod", "{audit}");
        assert_eq!(audit["peer_uid"], own_uid, "{audit}");
        assert_eq!(audit["peer_pid"], *pid, "{audit}");
        assert_eq!(audit["token_fingerprint"], fingerprint(token), "{audit}");
    }
    for (_, token) in &handed {
        assert!(!log.contains(token.as_str()), "a token reached the log");
    }
}

#[test]
fn text_logs_audit_each_request_too() {
    let c = CertifiedCopy::new();
    let emu = c.emulator(&[]);
    let agent = c.agent_for(&emu);
    let mut fingerprints = Vec::new();
    for _ in 0..2 {
        let body = agent.json("/v1/profiles/prod/token");
        let token = body["access_token"].as_str().unwrap();
        fingerprints.push(fingerprint(token));
        assert!(!agent.stderr().contains(token), "a token reached the log");
    }
    let log = agent.stderr();
    let audits: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("access token handed out"))
        .collect();
    assert_eq!(audits.len(), 2, "{log}");
    for (line, fp) in audits.iter().zip(&fingerprints) {
        assert!(
            line.contains(" INFO ")
                && line.contains("profile=\"prod\"")
                && line.contains(&format!("token_fingerprint={fp}"))
                && line.contains(&format!("peer_pid={}", std::process::id())),
            "{line}"
        );
    }
}

/// The system unit's `RUST_LOG` (as README says) keeps the audit lines and the warnings, and
/// nothing below them.
#[test]
fn the_system_units_log_filter_keeps_the_audit_lines() {
    let unit = std::fs::read_to_string("contrib/system/suitekey-agent.service").unwrap();
    let filter = unit
        .lines()
        .find_map(|l| l.strip_prefix("Environment=RUST_LOG="))
        .expect("the unit sets RUST_LOG");
    let c = CertifiedCopy::new();
    let emu = c.emulator(&[]);
    let config = c.config(&emu.token_url(), &[("prod", &c.uri())]);
    let agent = common::agent::Agent::start(&c.conf, &config, &[], &[("RUST_LOG", filter)]);
    let (pid, token) = token_through(&config, &agent.socket);
    let log = agent.stderr();
    let audits: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("access token handed out"))
        .collect();
    assert_eq!(audits.len(), 1, "{log}");
    assert!(
        audits[0].contains(&format!("peer_pid={pid}"))
            && audits[0].contains(&format!("token_fingerprint={}", fingerprint(&token))),
        "{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.contains(" INFO ") && !l.contains("access token handed out")),
        "only audit lines at info: {log}"
    );
}
