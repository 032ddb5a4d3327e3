//! The agent's socket against other local users and floods of connections: where it may be
//! put (no symlinked or shared-writable directory on the way), who may reach it (`--allow-uid`
//! opens the modes itself), and how many idle or half-sent connections it holds.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::agent::{Agent, metric, socket_dir};
use common::certified::CertifiedCopy;
use common::{is_root, texts};

/// A config with one profile whose key does not exist: the agent starts and serves it as
/// failed, which is all the socket tests need.
fn keyless_config(dir: &Path) -> PathBuf {
    let config = dir.join("config.toml");
    std::fs::write(&config, "[profiles.p]\nkey = \"pkcs11:object=none\"\n").unwrap();
    config
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// Runs `suitekey agent ARGS` with `env`, expecting it to refuse to start: its output. A
/// coreutils `timeout` ends an agent that starts anyway (exit 124).
fn refused_agent(config: &Path, args: &[&str], env: &[(&str, &Path)]) -> (i32, String) {
    let mut cmd = Command::new("timeout");
    cmd.args(["10", env!("CARGO_BIN_EXE_suitekey"), "--config"])
        .arg(config)
        .arg("agent")
        .args(args)
        .env("RUST_LOG", "warn");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SUITEKEY_") {
            cmd.env_remove(name);
        }
    }
    for (name, value) in env {
        cmd.env(name, value);
    }
    let out = cmd.output().expect("timeout suitekey agent");
    let (stdout, stderr) = texts(&out);
    assert!(stdout.is_empty(), "no socket announced: {stdout}");
    (out.status.code().unwrap_or(-1), stderr)
}

#[test]
fn a_symlinked_socket_directory_is_refused_and_its_target_left_as_it_was() {
    let tmp = socket_dir();
    let config = keyless_config(tmp.path());
    let target = tmp.path().join("target");
    std::fs::create_dir(&target).unwrap();
    chmod(&target, 0o755);

    // A link planted where the default directory goes ($XDG_RUNTIME_DIR/suitekey).
    let runtime = tmp.path().join("xdg");
    std::fs::create_dir(&runtime).unwrap();
    chmod(&runtime, 0o700);
    std::os::unix::fs::symlink(&target, runtime.join("suitekey")).unwrap();
    let (code, stderr) = refused_agent(&config, &[], &[("XDG_RUNTIME_DIR", &runtime)]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert!(stderr.contains("--socket PATH"), "{stderr}");

    // The same through --socket.
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let socket = link.join("agent.sock");
    let (code, stderr) = refused_agent(&config, &["--socket", socket.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("symbolic link"), "{stderr}");

    assert_eq!(mode(&target), 0o755, "the link's target was not chmodded");
    assert_eq!(
        std::fs::read_dir(&target).unwrap().count(),
        0,
        "nothing was bound in the link's target"
    );
}

#[test]
fn a_socket_directory_in_a_world_writable_parent_is_refused_unless_it_is_sticky() {
    let tmp = socket_dir();
    let config = keyless_config(tmp.path());
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    chmod(&shared, 0o777);
    let socket = shared.join("sub").join("agent.sock");
    let (code, stderr) = refused_agent(&config, &["--socket", socket.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("writable by other users"), "{stderr}");
    assert!(stderr.contains(&shared.display().to_string()), "{stderr}");
    assert!(!shared.join("sub").exists(), "nothing created in it");

    // /tmp-like: world-writable and sticky, so others cannot replace what is ours in it.
    chmod(&shared, 0o1777);
    let mut agent = Agent::start_at(Some(&socket), Path::new("/nonexistent"), &config, &[], &[]);
    // It serves (its one keyless profile is reported failed, which is beside the point here).
    assert_eq!(agent.json("/v1/health")["profiles"], 1);
    assert_eq!(mode(&shared.join("sub")), 0o700);
    agent.signal("TERM");
    assert!(
        agent
            .wait_exit(std::time::Duration::from_secs(10))
            .success()
    );
}

/// A token copy with a certificate for the fixture's p256 key, an emulator that knows it, and
/// a config serving `profiles` (all on that key) from it.
struct Serving {
    copy: CertifiedCopy,
    config: PathBuf,
    /// Kept running for the agent.
    _emu: common::emulator::Emulator,
}

impl Serving {
    fn new(profiles: &[&str], emulator_flags: &[&str]) -> Serving {
        let copy = CertifiedCopy::new();
        let emu = copy.emulator(emulator_flags);
        let key = copy.uri();
        let named: Vec<(&str, &str)> = profiles.iter().map(|n| (*n, key.as_str())).collect();
        let config = copy.config(&emu.token_url(), &named);
        Serving {
            copy,
            config,
            _emu: emu,
        }
    }

    fn agent(&self, args: &[&str]) -> Agent {
        self.copy.agent(&self.config, args)
    }
}

/// `curl` as `uid` for `path` on the agent's socket: (curl's exit code, HTTP status, body).
fn curl_as(uid: u32, socket: &Path, path: &str) -> (i32, u16, String) {
    let out = Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .args(["--clear-groups", "curl", "-s", "-w", "\n%{http_code}"])
        .arg("--unix-socket")
        .arg(socket)
        .arg(format!("http://localhost{path}"))
        .output()
        .expect("setpriv curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        out.status.code().unwrap_or(-1),
        status.parse().unwrap_or(0),
        body.to_owned(),
    )
}

#[test]
fn an_allowed_uid_gets_a_token_with_nothing_else_changed_and_another_uid_gets_403() {
    if !is_root() {
        eprintln!("skipped: needs root to run clients as other users (setpriv)");
        return;
    }
    let s = Serving::new(&["prod"], &[]);
    let agent = s.agent(&["--allow-uid", "65534"]);
    let (code, status, body) = curl_as(65534, &agent.socket, "/v1/profiles/prod/token");
    assert_eq!((code, status), (0, 200), "{body}\n{}", agent.stderr());
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(json["access_token"].is_string(), "{body}");
    let (code, status, body) = curl_as(65533, &agent.socket, "/v1/profiles/prod/token");
    assert_eq!((code, status), (0, 403), "{body}");
    assert!(body.contains("\"forbidden\""), "{body}");
    assert_eq!(
        mode(agent.socket.parent().unwrap()) & 0o011,
        0o011,
        "searchable"
    );
    assert_eq!(mode(&agent.socket), 0o666);
}

#[test]
fn allowed_uids_from_the_config_open_the_socket_and_a_reload_without_them_closes_it() {
    if !is_root() {
        eprintln!("skipped: needs root to run clients as other users (setpriv)");
        return;
    }
    let s = Serving::new(&["prod"], &[]);
    let plain = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(
        &s.config,
        format!("{plain}[agent]\nallowed-uids = [65534]\n"),
    )
    .unwrap();
    let agent = s.agent(&[]);
    let (code, status, body) = curl_as(65534, &agent.socket, "/v1/health");
    assert_eq!((code, status), (0, 200), "{body}");

    std::fs::write(&s.config, plain).unwrap();
    agent.signal("HUP");
    let start = std::time::Instant::now();
    while !agent.stderr().contains("config reloaded") {
        assert!(start.elapsed().as_secs() < 15, "{}", agent.stderr());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(mode(&agent.socket), 0o600);
    let (code, _, _) = curl_as(65534, &agent.socket, "/v1/health");
    assert_eq!(code, 7, "curl cannot connect any more");
    assert_eq!(
        agent.json("/v1/health")["status"],
        "ok",
        "the owner still can"
    );
}

/// `curl` (its own process) for `path` on the agent's socket: the body when the answer was
/// 200, else what went wrong.
fn curl(socket: &Path, path: &str) -> Result<String, String> {
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "20",
            "-w",
            "\n%{http_code}",
            "--unix-socket",
        ])
        .arg(socket)
        .arg(format!("http://localhost{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    match text.rsplit_once('\n') {
        Some((body, "200")) if out.status.success() => Ok(body.to_owned()),
        _ => Err(format!("curl exit {:?}: {text}", out.status.code())),
    }
}

/// Opens `n` connections to `socket` and keeps them, sending nothing.
fn hold_idle(socket: &Path, n: usize) -> Vec<std::os::unix::net::UnixStream> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    // Room for them in this process (the soft limit may be 1024).
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    );
    (0..n)
        .map(|i| {
            std::os::unix::net::UnixStream::connect(socket)
                .unwrap_or_else(|e| panic!("connection {i}: {e}"))
        })
        .collect()
}

/// 2,000 idle connections from one process while 8 other processes keep asking for tokens of
/// 8 cold profiles (each signed during the flood, the module opening its files). The agent has
/// 1,024 descriptors, as under a default `ulimit -n`: before the fix it ran out, stopped
/// accepting, and every client hung.
#[test]
fn two_thousand_idle_connections_from_one_process_starve_no_other_client() {
    let profiles: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
    let names: Vec<&str> = profiles.iter().map(String::as_str).collect();
    let s = Serving::new(&names, &[]);
    let agent = Agent::start_under(
        &["prlimit", "--nofile=1024:1024"],
        &s.copy.conf,
        &s.config,
        &[],
        &[],
    );
    let idle = hold_idle(&agent.socket, 2000);

    let clients: Vec<_> = profiles
        .iter()
        .map(|profile| {
            let (socket, path) = (
                agent.socket.clone(),
                format!("/v1/profiles/{profile}/token"),
            );
            // Each client stops at its first failure: one is enough to fail the test.
            std::thread::spawn(move || {
                (0..15)
                    .find_map(|_| {
                        let answer = curl(&socket, &path);
                        std::thread::sleep(std::time::Duration::from_millis(200));
                        answer.err()
                    })
                    .into_iter()
                    .collect::<Vec<String>>()
            })
        })
        .collect();
    let failures: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("client thread"))
        .collect();
    let metrics = curl(&agent.socket, "/metrics");
    drop(idle);
    let log = agent.stderr();
    assert!(failures.is_empty(), "{failures:#?}\n{log}");
    let metrics = metrics.expect("metrics during the flood");
    for profile in &profiles {
        let signed = metric(
            &metrics,
            &format!("suitekey_agent_signatures_total{{profile=\"{profile}\"}}"),
        );
        assert!(signed >= Some(1.0), "{profile} signed: {metrics}");
    }
    assert!(
        !metrics.contains("suitekey_agent_upstream_failures_total{"),
        "no failed exchange or signature: {metrics}"
    );
    assert!(
        !log.contains("os error 24") && !log.contains("Too many open files"),
        "{log}"
    );
    let refused = metric(
        &metrics,
        "suitekey_agent_connections_refused_total{reason=\"process_limit\"}",
    )
    .unwrap_or(0.0);
    assert!(refused >= 1000.0, "refusals counted: {metrics}");
    let lines = log.matches("refused").count();
    assert!(
        lines <= 5,
        "refusals logged {lines} times, not once each:\n{log}"
    );
}

/// A connection that sent half a request must not hold SIGTERM for the whole drain timeout
/// (30 s by default): the agent stops promptly and removes its socket.
#[test]
fn sigterm_with_a_half_sent_request_exits_promptly() {
    use std::io::{Read as _, Write as _};
    let tmp = socket_dir();
    let config = keyless_config(tmp.path());
    let mut agent = Agent::start(Path::new("/nonexistent"), &config, &[], &[]);
    let mut half = std::os::unix::net::UnixStream::connect(&agent.socket).unwrap();
    half.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // Also one that already had an answer and then began another request.
    let mut second = std::os::unix::net::UnixStream::connect(&agent.socket).unwrap();
    second
        .write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/hea")
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let start = std::time::Instant::now();
    agent.signal("TERM");
    // A bound that only catches the hang: well under the 30 s drain timeout.
    let status = agent.wait_exit(std::time::Duration::from_secs(15));
    assert!(status.success(), "{status:?}: {}", agent.stderr());
    assert!(
        !agent.stderr().contains("stopping anyway"),
        "cut by the drain timeout after {:?}: {}",
        start.elapsed(),
        agent.stderr()
    );
    assert!(!agent.socket.exists(), "socket removed");
    let mut rest = Vec::new();
    let _ = half.read_to_end(&mut rest);
    assert!(rest.is_empty(), "no answer to half a request");
}

/// The soft open-file limit (often 1,024) is raised to the hard one at start, so that the
/// connections and the PKCS#11 module have room.
#[test]
fn the_agent_raises_its_soft_open_file_limit_to_the_hard_one() {
    let tmp = socket_dir();
    let config = keyless_config(tmp.path());
    let agent = Agent::start_under(
        &["prlimit", "--nofile=1024:4096"],
        Path::new("/nonexistent"),
        &config,
        &[],
        &[],
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", agent.child.id())).unwrap();
    let open_files: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files")
        .split_whitespace()
        .collect();
    assert_eq!(open_files[3..5], ["4096", "4096"], "{limits}");
}
