//! The agent rotating a profile's certificate by itself (`rotate-before-days`): the real binary
//! on a real SoftHSM2 token copy, against the emulator's token endpoint and certificate API.
//! A rotation while 64 clients ask for tokens without a pause; a rotation that fails, is shown
//! and counted, and succeeds on a retry; a profile not yet due and a value out of range; two
//! profiles of one token rotated one after the other.

mod common;

use std::collections::HashSet;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::agent::{Agent, metric, parse_response};
use common::emulator::Emulator;
use common::profile::{CLIENT, MANAGE_CERTIFICATES, Profile, registration, write_config};
use common::readme_examples::{readme_line, with_suitekey_on_path};
use common::{PIN, fixture, suitekey_with_conf, temp_dir, texts};
use serde_json::Value;

/// A token copy whose keys have certificates the emulator knows (mapped to role 3 and entity
/// -5 with the permission to manage certificates), a PIN file of the test's own, and a state
/// directory for the rotation journals.
struct Setup {
    conf: PathBuf,
    /// (profile, key label, certificate id), in the order given.
    profiles: Vec<(String, String, String)>,
    emu: Emulator,
    pin: PathBuf,
    state: PathBuf,
    dir: tempfile::TempDir,
}

impl Setup {
    /// `profiles` as (name, key label, days its certificate is valid); `flags` for the emulator.
    fn new(profiles: &[(&str, &str, u32)], flags: &[&str]) -> Setup {
        let conf = fixture().token_copy(None);
        let dir = temp_dir();
        let pin = dir.path().join("user.pin");
        std::fs::write(&pin, format!("{PIN}\n")).unwrap();
        std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut specs = Vec::new();
        let mut made = Vec::new();
        for (name, label, days) in profiles {
            let pem = dir.path().join(format!("{label}.pem"));
            let kid = certificate(&conf, label, *days, &pem);
            specs.push(format!("{}{MANAGE_CERTIFICATES}", registration(&pem)));
            made.push(((*name).to_owned(), (*label).to_owned(), kid));
        }
        let mut args: Vec<&str> = Vec::new();
        for spec in &specs {
            args.extend(["--register", spec]);
        }
        args.extend_from_slice(flags);
        let emu = Emulator::start(&args);
        let state = dir.path().join("state");
        Setup {
            conf,
            profiles: made,
            emu,
            pin,
            state,
            dir,
        }
    }

    /// The key URI of `label`, reading the PIN from the test's own PIN file.
    fn uri(&self, label: &str) -> String {
        fixture().uri(label).replace(
            &fixture().pin_file.display().to_string(),
            &self.pin.display().to_string(),
        )
    }

    /// Writes the config file: each profile with `extra` lines; returns its path.
    fn config(&self, extra: &str) -> PathBuf {
        let profiles: Vec<(String, Profile)> = self
            .profiles
            .iter()
            .map(|(name, label, kid)| {
                let profile = Profile::new(self.uri(label), kid)
                    .token_url(&self.emu.token_url())
                    .with(extra);
                (name.clone(), profile)
            })
            .collect();
        let named: Vec<(&str, &Profile)> = profiles.iter().map(|(n, p)| (n.as_str(), p)).collect();
        write_config(&self.dir.path().join("config.toml"), &named)
    }

    /// An agent serving `config`, its journals in the test's state directory, with `args`.
    fn agent(&self, config: &Path, args: &[&str]) -> Agent {
        let state = self.state.display().to_string();
        Agent::start(
            &self.conf,
            config,
            args,
            &[("XDG_STATE_HOME", state.as_str())],
        )
    }

    /// The emulator's certificates of the client.
    fn certificates(&self) -> Vec<Value> {
        self.emu.certificates()["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["client_id"] == CLIENT)
            .cloned()
            .collect()
    }

    /// Checks NetSuite's side after `old` was rotated to `new`: the old certificate revoked,
    /// the new one active, uploaded once.
    fn assert_replaced(&self, old: &str, new: &str) {
        let certs = self.certificates();
        let find = |id: &str| {
            certs
                .iter()
                .find(|c| c["certificate_id"] == id)
                .unwrap_or_else(|| panic!("{id} not in {certs:#?}"))
        };
        assert!(find(old)["revoked"].is_string(), "{certs:#?}");
        assert!(find(new)["revoked"].is_null(), "{certs:#?}");
        assert_eq!(
            certs.iter().filter(|c| c["certificate_id"] == new).count(),
            1
        );
    }
}

/// A certificate valid for `days` for the fixture key `label`, stored on the token and
/// written to `pem`; its certificate id.
fn certificate(conf: &Path, label: &str, days: u32, pem: &Path) -> String {
    let out = suitekey_with_conf(conf)
        .args(["cert", "--replace", "--force", "--days", &days.to_string()])
        .args(["--key", &fixture().uri(label), "--out"])
        .arg(pem)
        .output()
        .unwrap();
    assert!(out.status.success(), "cert: {}", texts(&out).1);
    texts(&out).0.trim().to_owned()
}

/// The `/v1/profiles` entry of `name`.
fn profile(agent: &Agent, name: &str) -> Value {
    let profiles = agent.json("/v1/profiles");
    profiles["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no profile {name}: {profiles}"))
}

/// Polls `/v1/profiles` until `name`'s entry satisfies `done` (at most `limit`: a bound that
/// only catches a hang); the entry.
fn wait_for(agent: &Agent, name: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let entry = profile(agent, name);
        if done(&entry) {
            return entry;
        }
        assert!(
            Instant::now() < deadline,
            "profile {name} never got there: {entry:#}\n{}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the rotation of `entry` has finished once.
fn rotated(entry: &Value) -> bool {
    entry["rotation"]["last_certificate_id"].is_string()
}

/// `GET path` over the socket, without panicking: the status and body, or what went wrong.
fn try_get(socket: &Path, path: &str) -> Result<(u16, String), String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    if !response.contains("\r\n\r\n") {
        return Err(format!("not an HTTP answer: {response:?}"));
    }
    Ok(parse_response(&response))
}

/// What the emulator says of an access token it issued: `{client_id, certificate_id, …}`, or
/// `None` when it did not issue it or it has expired.
fn issued(emu: &Emulator, token: &str) -> Option<Value> {
    let bearer = format!("Bearer {token}");
    let answer = emu.request("GET", "/_emulator/token", &[("Authorization", &bearer)], "");
    (answer.status == 200).then(|| answer.json())
}

/// What the clients saw: requests answered 200, the failures, and every distinct token.
#[derive(Default)]
struct Seen {
    served: u64,
    failures: Vec<String>,
    tokens: HashSet<String>,
}

/// `n` clients asking for `profile`'s token in a loop until `stop`.
fn clients(
    socket: &Path,
    profile: &str,
    n: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Seen>> {
    let path = format!("/v1/profiles/{profile}/token");
    (0..n)
        .map(|_| {
            let (socket, path, stop) = (socket.to_owned(), path.clone(), Arc::clone(stop));
            std::thread::spawn(move || {
                let mut seen = Seen::default();
                while !stop.load(Ordering::Relaxed) {
                    match try_get(&socket, &path) {
                        Ok((200, body)) => {
                            let json: Value = serde_json::from_str(&body).unwrap_or_default();
                            match json["access_token"].as_str() {
                                Some(token) => {
                                    seen.served += 1;
                                    seen.tokens.insert(token.to_owned());
                                }
                                None => seen.failures.push(format!("200 without a token: {body}")),
                            }
                        }
                        Ok((status, body)) => seen.failures.push(format!("{status}: {body}")),
                        Err(e) => seen.failures.push(e),
                    }
                }
                seen
            })
        })
        .collect()
}

#[test]
fn the_agent_rotates_a_due_profile_while_64_clients_get_tokens_without_a_failure() {
    // The new certificate works only 3 s after its upload: the clients are well under way
    // before the switch.
    let s = Setup::new(
        &[("prod", "p256", 20)],
        &["--certificate-propagation-ms", "3000"],
    );
    let old = s.profiles[0].2.clone();
    let config = s.config("rotate-before-days = 30\n");
    let agent = s.agent(&config, &["--rotation-retry", "1"]);
    // The agent holds the PIN: the rotation (and the profile reopened with the new key) must
    // log in with it, never read the PIN source again.
    std::fs::remove_file(&s.pin).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let threads = clients(&agent.socket, "prod", 64, &stop);
    let done = wait_for(&agent, "prod", Duration::from_secs(120), rotated);
    // Tokens of the new mapping for a moment, too.
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let mut seen = Seen::default();
    for thread in threads {
        let one = thread.join().expect("client thread");
        seen.served += one.served;
        seen.failures.extend(one.failures);
        seen.tokens.extend(one.tokens);
    }
    eprintln!(
        "64 clients: {} requests served in {:.1} s while the agent rotated the certificate, {} failed",
        seen.served,
        started.elapsed().as_secs_f64(),
        seen.failures.len()
    );
    assert!(
        seen.failures.is_empty(),
        "{} failed, e.g. {:?}\n{}",
        seen.failures.len(),
        seen.failures.first(),
        agent.stderr()
    );
    let new = done["rotation"]["last_certificate_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new, old);
    assert_eq!(done["certificate_id"], new.as_str(), "{done:#}");
    assert_eq!(done["status"], "ok", "{done:#}");
    assert_eq!(done["rotation"]["state"], "scheduled", "{done:#}");
    s.assert_replaced(&old, &new);
    // Every token a client got was issued by the emulator, for this client, with the old or
    // the new certificate; both served.
    let mut certificates = HashSet::new();
    for token in &seen.tokens {
        let issued = issued(&s.emu, token).expect("a token the emulator issued, not expired");
        assert_eq!(issued["client_id"], CLIENT);
        certificates.insert(issued["certificate_id"].as_str().unwrap().to_owned());
    }
    let both: HashSet<String> = [old.clone(), new.clone()].into();
    assert_eq!(certificates, both, "the old key served until the switch");
    let (_, metrics) = agent.get("/metrics");
    let p = "profile=\"prod\"";
    let rotations = |result: &str| {
        metric(
            &metrics,
            &format!("suitekey_agent_rotations_total{{{p},result=\"{result}\"}}"),
        )
    };
    assert_eq!(rotations("ok"), Some(1.0), "{metrics}");
    assert_eq!(rotations("failed"), Some(0.0), "{metrics}");
    let not_after = metric(
        &metrics,
        &format!("suitekey_agent_certificate_not_after_seconds{{{p}}}"),
    )
    .expect("the new certificate's end");
    let days = (not_after - unix_now()) / 86_400.0;
    assert!((729.0..=730.0).contains(&days), "{days} days: {metrics}");
    let log = agent.stderr();
    // The profile was swapped to the new key before the old certificate was revoked.
    let swapped = log
        .find("now serves tokens of its new key")
        .expect("the swap is logged");
    let revoked = log
        .find("revoked the old certificate")
        .expect("the revoke is logged");
    assert!(swapped < revoked, "{log}");
    assert!(!log.contains(PIN), "the PIN is in the log");
    let config_text = std::fs::read_to_string(&config).unwrap();
    assert!(config_text.contains(&new) && !config_text.contains(&old));
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn a_failed_rotation_is_shown_counted_and_retried_while_the_old_key_serves() {
    // The first two uploads fail with NetSuite's 500.
    let s = Setup::new(
        &[("prod", "p256", 20)],
        &["--fail-certificates", "upload:500:2"],
    );
    let old = s.profiles[0].2.clone();
    let config = s.config("rotate-before-days = 30\n");
    let agent = s.agent(&config, &["--rotation-retry", "2"]);
    let failed = wait_for(&agent, "prod", Duration::from_secs(60), |p| {
        p["rotation"]["state"] == "failed"
    });
    let rotation = &failed["rotation"];
    assert_eq!(rotation["step"], 3, "{failed:#}");
    assert_eq!(rotation["step_name"], "upload the new certificate");
    assert_eq!(rotation["failures"], 1);
    assert!(rotation["next_retry_at"].as_str().unwrap().ends_with('Z'));
    let error = rotation["error"].as_str().unwrap();
    assert!(
        error.contains("stopped at step 3 of 7 (upload the new certificate)")
            && error.contains("still uses the old key"),
        "{error}"
    );
    // The profile keeps serving with its old key and certificate.
    assert_eq!(failed["certificate_id"], old.as_str());
    let (status, body) = agent.get("/v1/profiles/prod/token");
    assert_eq!(status, 200, "{body}");
    let token: Value = serde_json::from_str(&body).unwrap();
    let token = issued(&s.emu, token["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(token["certificate_id"], old.as_str());
    let (_, metrics) = agent.get("/metrics");
    let failures = "suitekey_agent_rotations_total{profile=\"prod\",result=\"failed\"}";
    assert!(metric(&metrics, failures) >= Some(1.0), "{metrics}");
    assert!(
        agent.logs_within("the agent tries again at", Duration::from_secs(5)),
        "{}",
        agent.stderr()
    );
    let log = agent.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("stopped at step 3 of 7"))
        .expect("the failure is logged");
    assert!(line.contains("ERROR"), "{line}");
    // Retried after 2 s, then 4 s: the third upload passes.
    let done = wait_for(&agent, "prod", Duration::from_secs(60), rotated);
    let new = done["rotation"]["last_certificate_id"].as_str().unwrap();
    s.assert_replaced(&old, new);
    let (_, metrics) = agent.get("/metrics");
    let ok = "suitekey_agent_rotations_total{profile=\"prod\",result=\"ok\"}";
    assert_eq!(metric(&metrics, ok), Some(1.0), "{metrics}");
    assert_eq!(metric(&metrics, failures), Some(2.0), "{metrics}");
    assert_eq!(s.emu.certificates()["calls"]["upload"], 3);
}

/// Runs README.md's line starting with `prefix` with `sh -c`, `SUITEKEY_AUTH_SOCK` naming
/// `agent`'s socket; its stdout.
fn run_readme_line(prefix: &str, agent: &Agent) -> String {
    let line = readme_line(prefix);
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &line]);
    let out = with_suitekey_on_path(&mut cmd)
        .env("SUITEKEY_AUTH_SOCK", &agent.socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "{line}: {}", texts(&out).1);
    texts(&out).0
}

#[test]
fn a_profile_not_yet_due_is_scheduled_and_a_value_out_of_range_is_refused() {
    let s = Setup::new(&[("prod", "p256", 730)], &[]);
    // README's line, as written.
    let config = s.config(&format!("{}\n", readme_line("rotate-before-days = ")));
    let mut text = std::fs::read_to_string(&config).unwrap();
    let kid = &s.profiles[0].2;
    let bad = Profile::new(s.uri("p384"), kid)
        .token_url(&s.emu.token_url())
        .with("rotate-before-days = 366\n");
    text.push_str(&format!("\n{}", bad.section("bad")));
    std::fs::write(&config, &text).unwrap();
    let agent = s.agent(&config, &[]);
    let prod = profile(&agent, "prod");
    assert_eq!(prod["rotation"]["state"], "scheduled", "{prod:#}");
    assert_eq!(prod["rotation"]["rotate_before_days"], 30);
    let (_, metrics) = agent.get("/metrics");
    let not_after = metric(
        &metrics,
        "suitekey_agent_certificate_not_after_seconds{profile=\"prod\"}",
    )
    .unwrap() as u64;
    let due = Command::new("date")
        .args(["-u", "-d", &format!("@{}", not_after - 30 * 86_400)])
        .arg("+%Y-%m-%dT%H:%M:%SZ")
        .output()
        .unwrap();
    let due = String::from_utf8(due.stdout).unwrap();
    assert_eq!(prod["rotation"]["due_at"], due.trim(), "{prod:#}");
    // Nothing asked of the certificate API; the profile serves.
    let calls = &s.emu.certificates()["calls"];
    assert_eq!((&calls["list"], &calls["upload"]), (&0.into(), &0.into()));
    assert_eq!(agent.get("/v1/profiles/prod/token").0, 200);
    // README's lines for watching it.
    let shown = run_readme_line(
        "curl -s --unix-socket \"$SUITEKEY_AUTH_SOCK\" http://localhost/v1/profiles",
        &agent,
    );
    let first: Value = serde_json::from_str(shown.lines().next().unwrap()).unwrap();
    assert_eq!(first["name"], "bad");
    let second: Value = serde_json::from_str(shown.lines().nth(1).unwrap()).unwrap();
    assert_eq!(second["rotation"], prod["rotation"], "{shown}");
    let shown = run_readme_line(
        "curl -s --unix-socket \"$SUITEKEY_AUTH_SOCK\" http://localhost/metrics",
        &agent,
    );
    assert!(
        shown.contains("suitekey_agent_rotations_total{profile=\"prod\",result=\"ok\"} 0\n")
            && shown.contains(&format!(
                "suitekey_agent_certificate_not_after_seconds{{profile=\"prod\"}} {not_after}\n"
            )),
        "{shown}"
    );
    assert!(
        shown.lines().all(|l| l.starts_with("suitekey_agent_")),
        "{shown}"
    );
    // 366 days: the profile is refused with what is allowed, by the agent and by a command.
    let bad = profile(&agent, "bad");
    assert_eq!(bad["status"], "failed");
    let message = bad["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("field 'rotate-before-days'") && message.contains("from 1 to 365"),
        "{message}"
    );
    let out = suitekey_with_conf(&s.conf)
        .args(["--config"])
        .arg(&config)
        .args(["--profile", "bad", "token"])
        .output()
        .unwrap();
    let stderr = texts(&out).1;
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("profile 'bad': field 'rotate-before-days': rotate-before-days '366' is not a whole number of days from 1 to 365"),
        "{stderr}"
    );
}

#[test]
fn two_due_profiles_of_one_token_are_rotated_one_after_the_other() {
    let s = Setup::new(&[("a", "p256", 10), ("b", "p384", 10)], &[]);
    let config = s.config("rotate-before-days = 30\n");
    let agent = s.agent(&config, &[]);
    let a = wait_for(&agent, "a", Duration::from_secs(120), rotated);
    let b = wait_for(&agent, "b", Duration::from_secs(120), rotated);
    s.assert_replaced(
        &s.profiles[0].2,
        a["rotation"]["last_certificate_id"].as_str().unwrap(),
    );
    s.assert_replaced(
        &s.profiles[1].2,
        b["rotation"]["last_certificate_id"].as_str().unwrap(),
    );
    // Every line of one rotation lies between its begin and its end, and the two spans do not
    // overlap.
    let log = agent.stderr();
    let lines: Vec<&str> = log.lines().collect();
    let span = |name: &str| {
        let marker = format!("rotation of profile '{name}'");
        let at: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].contains(&marker))
            .collect();
        let (first, last) = (at[0], *at.last().unwrap());
        assert!(lines[first].contains("begins"), "{}", lines[first]);
        assert!(lines[last].contains("ended"), "{}", lines[last]);
        (first, last)
    };
    let (a_span, b_span) = (span("a"), span("b"));
    assert!(
        a_span.1 < b_span.0 || b_span.1 < a_span.0,
        "the rotations overlap: a {a_span:?}, b {b_span:?}\n{log}"
    );
    assert_eq!(log.matches("begins").count(), 2, "one rotation each: {log}");
}
