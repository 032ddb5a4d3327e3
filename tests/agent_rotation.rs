//! The agent rotating a profile's certificate by itself (`rotate-before-days`): the real binary
//! on a real SoftHSM2 token copy, against the emulator's token endpoint and certificate API.
//! A rotation while 64 clients ask for tokens without a pause; a rotation that fails, is shown
//! and counted, and succeeds on a retry; a profile not yet due and a value out of range; two
//! profiles of one token rotated one after the other.

mod common;

use std::collections::{HashMap, HashSet};
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
        self.config_at(extra, &self.emu.token_url())
    }

    /// Like [`Setup::config`], with the token endpoint (and so the certificate API) at `url`.
    fn config_at(&self, extra: &str, url: &str) -> PathBuf {
        let profiles: Vec<(String, Profile)> = self
            .profiles
            .iter()
            .map(|(name, label, kid)| {
                let profile = Profile::new(self.uri(label), kid)
                    .token_url(url)
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
        self.emu.client_certificates(CLIENT)
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

/// What the clients saw: requests answered 200, the failures, and every distinct token with
/// the last time a client got it.
#[derive(Default)]
struct Seen {
    served: u64,
    failures: Vec<String>,
    tokens: HashSet<String>,
    last_got: HashMap<String, Instant>,
}

impl Seen {
    /// Adds what another client saw.
    fn add(&mut self, other: Seen) {
        self.served += other.served;
        self.failures.extend(other.failures);
        self.tokens.extend(other.tokens);
        for (token, at) in other.last_got {
            let last = self.last_got.entry(token).or_insert(at);
            *last = (*last).max(at);
        }
    }

    /// Stops `threads` (by `stop`) and adds up what they saw.
    fn collect(stop: &AtomicBool, threads: Vec<std::thread::JoinHandle<Seen>>) -> Seen {
        stop.store(true, Ordering::Relaxed);
        let mut seen = Seen::default();
        for thread in threads {
            seen.add(thread.join().expect("client thread"));
        }
        seen
    }

    /// Panics with the first failure, if a request failed.
    fn assert_no_failure(&self, agent: &Agent) {
        assert!(
            self.failures.is_empty(),
            "{} of {} failed, e.g. {:?}\n{}",
            self.failures.len(),
            self.served + self.failures.len() as u64,
            self.failures.first(),
            agent.stderr()
        );
    }
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
                                    seen.last_got.insert(token.to_owned(), Instant::now());
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

/// The journal's new certificate id, once step 2 recorded it.
fn journal_new_id(s: &Setup, name: &str) -> String {
    let path = s.state.join(format!("suitekey/rotate/{name}.json"));
    let journal: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    journal["plan"]["new_certificate_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no new certificate id in {journal:#}"))
        .to_owned()
}

/// Whether `entry`'s rotation has failed at step `step` with an error containing `text`.
fn failed_at(entry: &Value, step: u64, text: &str) -> bool {
    let rotation = &entry["rotation"];
    rotation["state"] == "failed"
        && rotation["step"] == step
        && rotation["error"].as_str().is_some_and(|e| e.contains(text))
}

/// Whether the emulator has revoked certificate `id`.
fn revoked(s: &Setup, id: &str) -> bool {
    s.certificates()
        .iter()
        .any(|c| c["certificate_id"] == id && c["revoked"].is_string())
}

#[test]
fn a_failed_take_up_after_the_switch_is_retried_and_the_old_certificate_revoked_only_after_it() {
    use common::fault_proxy::{FaultProxy, Mode};
    // The token endpoint and certificate API through a proxy that can refuse the new key's
    // assertions; the first upload fails, so that the new certificate id is known (from the
    // journal) before step 4 proves it.
    let proxy = FaultProxy::http();
    let url = proxy.token_url();
    let s = Setup::new(
        &[("prod", "p256", 20)],
        &["--accept-aud", &url, "--fail-certificates", "upload:500:1"],
    );
    proxy.forward_to(&s.emu.base);
    let old = s.profiles[0].2.clone();
    let config = s.config_at("rotate-before-days = 30\n", &url);
    let old_text = std::fs::read_to_string(&config).unwrap();
    let agent = s.agent(&config, &["--rotation-retry", "1"]);
    let stop = Arc::new(AtomicBool::new(false));
    let threads = clients(&agent.socket, "prod", 16, &stop);
    let limit = Duration::from_secs(90);
    wait_for(&agent, "prod", limit, |p| failed_at(p, 3, "upload"));
    let new = journal_new_id(&s, "prod");
    // Step 4 proves the new key with one token request; every later one fails (HTTP 500).
    proxy.set(Mode::FailKid {
        kid: new.clone(),
        pass: 1,
    });
    let failed = wait_for(&agent, "prod", limit, |p| {
        failed_at(p, 6, "cannot serve profile 'prod' with its new key")
    });
    let error = failed["rotation"]["error"].as_str().unwrap();
    assert!(
        error.contains("step 5 switched the config file to the new key and certificate, but the agent still serves the old ones")
            && !error.contains("suitekey rotate"),
        "{error}"
    );
    assert_eq!(failed["certificate_id"], old.as_str(), "{failed:#}");
    assert!(!revoked(&s, &old), "revoked while the agent serves it");
    // The agent notices the rewritten config, but its new key gets no token: the old one
    // keeps serving.
    let kept = "it keeps serving with the settings it had";
    assert!(
        agent.logs_within(kept, Duration::from_secs(30)),
        "{}",
        agent.stderr()
    );
    // The file changed back to the old certificate meanwhile: the profile served matches the
    // file, but not the rotation's new certificate, so nothing is revoked either. The next try
    // proves the new key again before it would switch the file back (step 4, which the proxy
    // still fails), or stops at step 6 naming the old certificate, if it looked before.
    let new_text = std::fs::read_to_string(&config).unwrap();
    assert!(new_text.contains(&new), "{new_text}");
    std::fs::write(&config, &old_text).unwrap();
    let reverted = wait_for(&agent, "prod", limit, |p| {
        failed_at(p, 4, "HTTP 500") || failed_at(p, 6, &format!("names certificate {old}"))
    });
    assert_eq!(reverted["certificate_id"], old.as_str(), "{reverted:#}");
    assert!(!revoked(&s, &old), "revoked while the agent serves it");
    // Switched again (as step 5 left it), and the new key's tokens come through: the retry
    // takes up the new key, then revokes.
    std::fs::write(&config, &new_text).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while agent.stderr().matches(kept).count() < 2 {
        assert!(Instant::now() < deadline, "{}", agent.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    proxy.set(Mode::Pass);
    let done = wait_for(&agent, "prod", limit, rotated);
    std::thread::sleep(Duration::from_millis(500));
    let seen = Seen::collect(&stop, threads);
    seen.assert_no_failure(&agent);
    assert_eq!(done["rotation"]["last_certificate_id"], new.as_str());
    assert_eq!(done["certificate_id"], new.as_str(), "{done:#}");
    s.assert_replaced(&old, &new);
    let log = agent.stderr();
    let first_failure = log.find("cannot serve profile 'prod'").unwrap();
    let swapped = log
        .find("now serves tokens of its new key")
        .expect("the retried take-up swaps the new key in");
    let revoke = log.find("revoked the old certificate").unwrap();
    assert!(first_failure < swapped && swapped < revoke, "{log}");
    for line in log.lines().filter(|l| l.contains("the agent tries again")) {
        if line.contains("step=6") {
            assert!(!line.contains("suitekey"), "{line}");
        }
    }
}

/// `suitekey --config CONFIG --profile NAME rotate` on `s`'s token, asking the agent at
/// `socket`, started with its stderr piped.
fn rotate_by_hand(s: &Setup, config: &Path, name: &str, socket: &Path) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_suitekey"));
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("SUITEKEY_") || var == "RUST_LOG" {
            cmd.env_remove(var);
        }
    }
    cmd.env("SOFTHSM2_CONF", &s.conf)
        .env("XDG_STATE_HOME", &s.state)
        .env("SUITEKEY_AUTH_SOCK", socket)
        .arg("--config")
        .arg(config)
        .args(["--profile", name, "rotate"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_rotation_by_hand_waits_until_the_agent_serves_the_new_certificate_before_revoking() {
    use std::io::BufRead as _;
    let s = Setup::new(&[("prod", "p256", 730)], &[]);
    let old = s.profiles[0].2.clone();
    let config = s.config("");
    let agent = s.agent(&config, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let threads = clients(&agent.socket, "prod", 64, &stop);
    let started = Instant::now();
    let mut child = rotate_by_hand(&s, &config, "prod", &agent.socket);
    // Each line of rotate's progress, with when it came.
    let lines: Vec<(Instant, String)> = std::io::BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map(|l| (Instant::now(), l.unwrap()))
        .collect();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let status = child.wait().unwrap();
    let progress: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    let progress = progress.join("\n");
    assert!(status.success(), "{progress}\n{}", agent.stderr());
    let new = stdout.trim().to_owned();
    assert_ne!(new, old);
    // Clients go on a while after the revoke.
    std::thread::sleep(Duration::from_secs(1));
    let seen = Seen::collect(&stop, threads);
    eprintln!(
        "64 clients: {} requests served in {:.1} s while suitekey rotate ran, {} failed",
        seen.served,
        started.elapsed().as_secs_f64(),
        seen.failures.len()
    );
    seen.assert_no_failure(&agent);
    // rotate waited for the agent, which took up the rewritten config by itself (no SIGHUP),
    // and only then revoked.
    let position = |needle: &str| {
        lines
            .iter()
            .position(|(_, l)| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{progress}"))
    };
    let waiting = position("serves profile 'prod' with the old certificate: waiting");
    let serving = position("serves profile 'prod' with the new certificate now");
    let revoke = position("revoked the old certificate");
    assert!(waiting < serving && serving < revoke, "{progress}");
    assert!(
        agent.stderr().contains("reloaded the changed config file"),
        "{}",
        agent.stderr()
    );
    s.assert_replaced(&old, &new);
    // No client got a token of the old certificate after the revoke; they got the new one's.
    let revoked_at = lines[revoke].0;
    let mut after = 0;
    for (token, at) in &seen.last_got {
        let issued = issued(&s.emu, token).expect("a token the emulator issued, not expired");
        let certificate = issued["certificate_id"].as_str().unwrap();
        if *at > revoked_at {
            assert_eq!(
                certificate, new,
                "a token of the old certificate after the revoke"
            );
            after += 1;
        } else {
            assert!(certificate == old || certificate == new, "{issued}");
        }
    }
    assert!(after > 0, "no token handed out after the revoke");
    let prod = profile(&agent, "prod");
    assert_eq!(prod["certificate_id"], new.as_str(), "{prod:#}");
    assert_eq!(prod["status"], "ok", "{prod:#}");
    let (status, body) = agent.get("/v1/profiles/prod/token");
    assert_eq!(status, 200, "{body}");
    let token: Value = serde_json::from_str(&body).unwrap();
    let token = issued(&s.emu, token["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(token["certificate_id"], new.as_str());
}

#[test]
fn the_agent_reloads_its_config_file_when_it_changes_keeping_unchanged_profiles() {
    let s = Setup::new(&[("prod", "p256", 730)], &[]);
    let config = s.config("");
    let agent = s.agent(&config, &[]);
    let (status, first) = agent.get("/v1/profiles/prod/token");
    assert_eq!(status, 200, "{first}");
    let requests = s.emu.stats()["token_requests"].clone();
    // A profile added to the file, and no SIGHUP.
    let mut text = std::fs::read_to_string(&config).unwrap();
    let added = Profile::new(s.uri("p256"), &s.profiles[0].2).token_url(&s.emu.token_url());
    text.push_str(&format!("\n{}", added.section("added")));
    std::fs::write(&config, &text).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = |agent: &Agent| {
        agent.json("/v1/profiles")["profiles"]
            .as_array()
            .unwrap()
            .len()
    };
    while listed(&agent) < 2 {
        assert!(Instant::now() < deadline, "{}", agent.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    let entry = profile(&agent, "added");
    assert_eq!(entry["status"], "ok", "{entry:#}");
    assert_eq!(entry["certificate_id"], s.profiles[0].2.as_str());
    assert!(
        agent
            .stderr()
            .contains("the config file changed: reloading it"),
        "{}",
        agent.stderr()
    );
    // The unchanged profile kept its cached token: no exchange for it.
    let access = |body: &str| {
        let json: Value = serde_json::from_str(body).unwrap();
        json["access_token"].as_str().unwrap().to_owned()
    };
    assert_eq!(
        access(&agent.get("/v1/profiles/prod/token").1),
        access(&first)
    );
    assert_eq!(s.emu.stats()["token_requests"], requests);
    assert_eq!(agent.get("/v1/profiles/added/token").0, 200);
}
