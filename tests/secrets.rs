//! The secrets audit: every command, succeeding and failing, at `RUST_LOG=trace`, with a
//! recognizable PIN from each PIN source; no PIN and no access token the emulator issued may
//! appear in stdout (except where a command's job is to hand the token out), stderr, the agent's
//! and the emulator's logs, the agent's HTTP answers, argv, or — once dropped — the agent's
//! memory.

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::agent::Agent;
use common::profile::{ACCOUNT, CLIENT, Profile};
use common::secrets::{Secrets, scan_memory};
use common::{PIN, TOKEN, fixture, module_path, texts};
use serde_json::Value;

/// A wrong PIN, as recognizable as the right one: it must not leak either.
const WRONG_PIN: &str = "wrong-PIN-91733";

/// `suitekey emulate` at `RUST_LOG=trace`, its log in a file (the shared helper keeps the
/// emulator quiet); killed by PID when dropped, and gone when its stdin closes.
struct TracedEmulator {
    child: Child,
    _stdin: ChildStdin,
    base: String,
    stdout: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl TracedEmulator {
    fn start(args: &[String]) -> TracedEmulator {
        let dir = common::temp_dir();
        let log = dir.path().join("emulator.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_suitekey"))
            .args(["emulate", "--exit-on-stdin-eof", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "trace")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start suitekey emulate");
        let stdin = child.stdin.take().expect("stdin");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the base URL");
        assert!(line.starts_with("http://127.0.0.1:"), "emulator: {line}");
        TracedEmulator {
            child,
            _stdin: stdin,
            base: line.trim_end().to_owned(),
            stdout: line,
            log,
            _dir: dir,
        }
    }

    fn token_url(&self) -> String {
        format!("{}{}", self.base, common::emulator::TOKEN_PATH)
    }

    fn stats(&self) -> Value {
        common::emulator::stats_at(&self.base)
    }

    fn log(&self) -> Vec<u8> {
        std::fs::read(&self.log).expect("emulator log")
    }
}

impl Drop for TracedEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one command printed, scanned once every token is known.
struct Run {
    label: String,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// The command's job is to print an access token on stdout.
    prints_token: bool,
}

/// The audit's state: the secrets so far and every output to scan.
struct Audit {
    secrets: Secrets,
    runs: Vec<Run>,
    dir: tempfile::TempDir,
}

impl Audit {
    fn new() -> Audit {
        let mut secrets = Secrets::default();
        secrets.add_pin("the PIN", PIN);
        secrets.add_pin("the wrong PIN", WRONG_PIN);
        Audit {
            secrets,
            runs: Vec::new(),
            dir: common::temp_dir(),
        }
    }

    /// Runs `cmd` at trace level, expecting exit `code`, and keeps its output.
    fn run(&mut self, label: &str, mut cmd: assert_cmd::Command, code: i32) -> Output {
        let out = cmd.env("RUST_LOG", "trace").output().expect("run suitekey");
        let (_, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(code), "{label}: {stderr}");
        assert!(
            code != 0 || stderr.len() > 200 || label.starts_with("emulate"),
            "{label}: trace logging is on"
        );
        self.keep(label, &out, false);
        out
    }

    /// Like [`Audit::run`] for a command that prints an access token, which is collected.
    fn run_token(&mut self, label: &str, cmd: assert_cmd::Command, format: &str) -> String {
        let out = self.run(label, cmd, 0);
        self.runs.last_mut().expect("kept").prints_token = true;
        let stdout = String::from_utf8(out.stdout).expect("UTF-8");
        let token = token_in(&stdout, format);
        self.secrets.add_token(&token);
        token
    }

    fn keep(&mut self, label: &str, out: &Output, prints_token: bool) {
        self.runs.push(Run {
            label: label.to_owned(),
            stdout: out.stdout.clone(),
            stderr: out.stderr.clone(),
            prints_token,
        });
    }

    /// Scans every kept output for every secret known now.
    fn scan_runs(&self) {
        for run in &self.runs {
            let stdout = format!("`{}` stdout", run.label);
            if run.prints_token {
                self.secrets.assert_no_pin(&stdout, &run.stdout);
            } else {
                self.secrets.assert_absent(&stdout, &run.stdout);
            }
            self.secrets
                .assert_absent(&format!("`{}` stderr", run.label), &run.stderr);
        }
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).expect("write");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        path
    }
}

/// The access token in `token`'s stdout for `format`.
fn token_in(stdout: &str, format: &str) -> String {
    let line = stdout.trim_end();
    let token = match format {
        "raw" => line,
        "json" => {
            let json: Value = serde_json::from_str(line).expect("JSON");
            return json["access_token"]
                .as_str()
                .expect("access_token")
                .to_owned();
        }
        "header" => line.strip_prefix("Authorization: Bearer ").expect("header"),
        "env" => line
            .strip_prefix("NETSUITE_ACCESS_TOKEN='")
            .and_then(|t| t.strip_suffix('\''))
            .expect("env"),
        other => panic!("format {other}"),
    };
    token.to_owned()
}

/// A key URI for fixture key `object` whose PIN comes from `pin` (a `pin-source` value, or
/// none: SUITEKEY_PIN or a prompt).
fn key(object: &str, pin: Option<&str>) -> String {
    let base = format!(
        "pkcs11:token={TOKEN};object={object};type=private?module-path={}",
        module_path().display()
    );
    match pin {
        Some(source) => format!("{base}&pin-source={source}"),
        None => base,
    }
}

/// `suitekey CMD --key KEY` plus the profile flags for `kid` at `url`, on a fresh token copy.
fn profile_cmd(cmd: &str, key: &str, kid: &str, url: &str) -> assert_cmd::Command {
    let mut c = fixture().suitekey();
    c.arg(cmd)
        .args(Profile::new(key, kid).token_url(url).flags());
    c
}

/// A certificate for fixture key `label` (made by `suitekey cert`, itself audited): its file
/// and id.
fn cert(audit: &mut Audit, label: &str) -> (PathBuf, String) {
    let pem = audit.dir.path().join(format!("{label}.pem"));
    let mut cmd = fixture().suitekey();
    cmd.args(["cert", "--replace", "--force", "--key"])
        .arg(key(
            label,
            Some(&format!("file:{}", fixture().pin_file.display())),
        ))
        .arg("--out")
        .arg(&pem);
    let out = audit.run(&format!("cert {label}"), cmd, 0);
    (
        pem,
        String::from_utf8(out.stdout)
            .expect("UTF-8")
            .trim()
            .to_owned(),
    )
}

fn registration(pem: &Path, extra: &str) -> [String; 2] {
    [
        "--register".to_owned(),
        format!("{}{extra}", common::profile::registration(pem)),
    ]
}

#[test]
fn no_command_leaks_the_pin_or_a_token_at_trace_level_succeeding_or_failing() {
    let mut audit = Audit::new();
    let f = fixture();
    let pin_file = format!("file:{}", f.pin_file.display());
    let (p256, kid) = cert(&mut audit, "p256");
    let (p384, kid384) = cert(&mut audit, "p384");
    let mut args = registration(&p256, "").to_vec();
    args.extend(registration(&p384, ",scopes=restlets"));
    let emu = TracedEmulator::start(&args);
    let mut faulty_args = registration(&p256, "").to_vec();
    faulty_args.extend(["--fail-first", "1", "--rate-limit", "1"].map(String::from));
    let faulty = TracedEmulator::start(&faulty_args);
    let mut down_args = registration(&p256, "").to_vec();
    down_args.extend(["--fail-first", "9"].map(String::from));
    let down = TracedEmulator::start(&down_args);
    let url = emu.token_url();

    local_commands(&mut audit, &pin_file, &p256);
    tokens_from_every_pin_source(&mut audit, &kid, &url);
    refusals_and_failures(&mut audit, (&kid, &kid384), (&emu, &faulty, &down));
    exec_keeps_secrets_out_of_argv(&mut audit, &kid, &url);

    // Every token the emulators issued was seen (so the scans below look for all of them).
    let issued: u64 = [&emu, &faulty, &down]
        .iter()
        .map(|e| e.stats()["tokens_issued"].as_u64().expect("count"))
        .sum();
    // One token is never shown: the one `exec` of a missing program fetched.
    assert_eq!(
        issued as usize,
        audit.secrets.tokens() + 1,
        "tokens collected"
    );
    assert!(issued >= 8, "{issued}");
    audit.scan_runs();
    for (name, e) in [
        ("emulator", &emu),
        ("faulty emulator", &faulty),
        ("down emulator", &down),
    ] {
        audit
            .secrets
            .assert_absent(&format!("{name} log"), &e.log());
        audit
            .secrets
            .assert_absent(&format!("{name} stdout"), e.stdout.as_bytes());
    }
    eprintln!(
        "audited {} command runs, {} access tokens, {} PIN forms",
        audit.runs.len(),
        audit.secrets.tokens(),
        10
    );
}

/// `list`, `keygen`, `cert`, `check`, `assertion`, with good and bad PINs and URIs.
fn local_commands(audit: &mut Audit, pin_file: &str, pem: &Path) {
    let f = fixture();
    let wrong = audit.file("wrong.pin", &format!("{WRONG_PIN}\n"));
    let wrong_file = format!("file:{}", wrong.display());
    let module = module_path().display().to_string();
    let list = |extra: &[&str], pin: Option<&str>| {
        let mut cmd = f.suitekey();
        cmd.args(["list", "--module", &module]).args(extra);
        if let Some(pin) = pin {
            cmd.env("SUITEKEY_PIN", pin);
        }
        cmd
    };
    audit.run("list", list(&[], None), 0);
    audit.run("list --login", list(&["--login"], Some(PIN)), 0);
    audit.run(
        "list --login --mechanisms",
        list(&["--login", "--mechanisms"], Some(PIN)),
        0,
    );
    audit.run(
        "list --login, wrong PIN",
        list(&["--login"], Some(WRONG_PIN)),
        4,
    );

    let out_pem = audit.dir.path().join("new.pem");
    let mut keygen = f.suitekey();
    keygen
        .args(["keygen", "--alg", "ES256", "--key"])
        .arg(key("audit-new", Some(pin_file)).replace(";type=private", ""))
        .arg("--out")
        .arg(&out_pem);
    audit.run("keygen", keygen, 0);
    let mut keygen = f.suitekey();
    keygen
        .args(["keygen", "--alg", "ES256", "--key"])
        .arg(key("audit-new", Some(&wrong_file)).replace(";type=private", ""))
        .arg("--out")
        .arg(audit.dir.path().join("wrong.pem"));
    audit.run("keygen, wrong PIN", keygen, 4);

    let mut check = f.suitekey();
    check
        .args(["check", "--cert"])
        .arg(pem)
        .args(["--key", &key("p256", Some(pin_file))]);
    audit.run("check --key", check, 0);
    let mut check = f.suitekey();
    check
        .args(["check", "--cert"])
        .arg(pem)
        .args(["--key", &key("p256", None)]);
    check.env("SUITEKEY_PIN", WRONG_PIN);
    audit.run("check --key, wrong PIN", check, 4);

    let assertion = |key: &str| {
        let mut cmd = f.suitekey();
        cmd.arg("assertion").args(Profile::new(key, "kid").flags());
        cmd
    };
    audit.run("assertion", assertion(&key("p256", Some(pin_file))), 0);
    for (label, key, code) in [
        (
            "assertion, wrong PIN file",
            key("p256", Some(&wrong_file)),
            4,
        ),
        (
            "assertion, missing PIN file",
            key("p256", Some("file:/nonexistent/pin")),
            4,
        ),
        (
            "assertion, unknown key",
            key("no-such-key", Some(pin_file)),
            3,
        ),
        (
            "assertion, unset pin-source=env:",
            key("p256", Some("env:AUDIT_UNSET")),
            4,
        ),
        // A PIN pasted where it does not belong is refused without being echoed.
        (
            "assertion, pin-value",
            format!("{}&pin-value={PIN}", key("p256", None)),
            2,
        ),
        (
            "assertion, PIN as attribute",
            format!("pkcs11:token={TOKEN};objekt={PIN}"),
            2,
        ),
        (
            "assertion, PIN as pin-source",
            format!("{}&pin-source={PIN}", key("p256", None)),
            2,
        ),
        (
            "assertion, PIN as pin-source=env:",
            format!("{}&pin-source=env:{PIN}", key("p256", None)),
            2,
        ),
        (
            "assertion, PIN as pin-source=file:",
            format!("{}&pin-source=file:{PIN}", key("p256", None)),
            2,
        ),
    ] {
        audit.run(label, assertion(&key), code);
    }
}

/// (what, `pin-source` value, environment variable that holds the PIN).
type PinSourceCase = (
    &'static str,
    Option<String>,
    Option<(&'static str, &'static str)>,
);

/// `token` in every format, the PIN from a file, `SUITEKEY_PIN`, `pin-source=env:` and a
/// prompt on a pseudo-terminal.
fn tokens_from_every_pin_source(audit: &mut Audit, kid: &str, url: &str) {
    let sources: [PinSourceCase; 3] = [
        (
            "file",
            Some(format!("file:{}", fixture().pin_file.display())),
            None,
        ),
        ("SUITEKEY_PIN", None, Some(("SUITEKEY_PIN", PIN))),
        (
            "env:AUDIT_PIN",
            Some("env:AUDIT_PIN".into()),
            Some(("AUDIT_PIN", PIN)),
        ),
    ];
    for (source, pin, env) in &sources {
        for format in ["raw", "json", "header", "env"] {
            let mut cmd = profile_cmd("token", &key("p256", pin.as_deref()), kid, url);
            cmd.args(["--format", format]);
            if let Some((name, value)) = env {
                cmd.env(name, value);
            }
            audit.run_token(
                &format!("token --format {format}, PIN from {source}"),
                cmd,
                format,
            );
        }
    }
    token_at_a_prompt(audit, kid, url);
}

/// `token` on a pseudo-terminal (util-linux `script`), the PIN typed at the prompt; its stderr
/// goes to a file, the terminal shows the prompt and the token.
fn token_at_a_prompt(audit: &mut Audit, kid: &str, url: &str) {
    let cmd = profile_cmd("token", &key("p256", None), kid, url);
    let program = cmd.get_program().to_string_lossy().into_owned();
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect();
    let stderr = audit.dir.path().join("prompt.stderr");
    let shell = format!("'{program}' {} 2>'{}'", args.join(" "), stderr.display());
    let typed = format!("{PIN}\n");
    let (status, screen) = common::terminal::type_at_prompt(
        &cmd,
        &shell,
        &[("RUST_LOG", "trace")],
        "PIN for token",
        typed.as_bytes(),
    );
    assert!(status.success());
    let text = String::from_utf8_lossy(&screen).into_owned();
    let token = text
        .lines()
        .map(str::trim)
        .rfind(|l| l.len() >= 32 && !l.contains(' '))
        .expect("the token on the terminal");
    audit.secrets.add_token(token);
    audit.runs.push(Run {
        label: "token, PIN typed at a prompt".into(),
        stdout: screen,
        stderr: std::fs::read(&stderr).expect("stderr file"),
        prints_token: true,
    });
}

/// Each kind of refusal and failure the emulator and the network produce, and an agent that
/// is not there.
fn refusals_and_failures(
    audit: &mut Audit,
    (kid, kid384): (&str, &str),
    (emu, faulty, down): (&TracedEmulator, &TracedEmulator, &TracedEmulator),
) {
    let pin = format!("file:{}", fixture().pin_file.display());
    let p256 = key("p256", Some(&pin));
    let url = emu.token_url();
    let alias = url.replace("127.0.0.1", "localhost");
    let token = |key: &str, kid: &str, url: &str, extra: &[&str]| {
        let mut cmd = profile_cmd("token", key, kid, url);
        cmd.args(extra);
        cmd
    };
    for (label, cmd) in [
        (
            "unknown kid (invalid_grant)",
            token(&p256, "no-such-certificate", &url, &[]),
        ),
        (
            "bad signature (invalid_grant)",
            token(&p256, kid384, &url, &["--scope", "restlets"]),
        ),
        (
            "scope not enabled (invalid_scope)",
            token(&p256, kid384, &url, &["--scope", "rest_webservices"]),
        ),
        (
            "wrong audience (invalid_grant)",
            token(&p256, kid, &alias, &[]),
        ),
        (
            "server errors, retries exhausted (500)",
            token(&p256, kid, &down.token_url(), &[]),
        ),
        (
            "connection refused",
            token(&p256, kid, "http://127.0.0.1:1/t", &[]),
        ),
    ] {
        audit.run(&format!("token, {label}"), cmd, 6);
    }
    let mut cmd = fixture().suitekey();
    let wrong_issuer = Profile::new(p256.as_str(), kid).client("0000");
    cmd.arg("token").args(wrong_issuer.token_url(&url).flags());
    audit.run("token, wrong issuer (invalid_client)", cmd, 6);
    // A 500 and then a 429 (Retry-After) before the token.
    let cmd = token(&p256, kid, &faulty.token_url(), &[]);
    audit.run_token("token after a 500 and a 429", cmd, "raw");
    let mut cmd = fixture().suitekey();
    cmd.args(["--profile", "prod", "token"])
        .env("SUITEKEY_AUTH_SOCK", "/nonexistent/agent.sock");
    audit.run("token, agent unreachable", cmd, 7);
}

/// `exec`: the child gets the token in its environment, and neither it nor the PIN in its
/// argv or suitekey's (which the child reads from `/proc/$PPID/cmdline` while suitekey runs).
fn exec_keeps_secrets_out_of_argv(audit: &mut Audit, kid: &str, url: &str) {
    let dir = audit.dir.path().to_owned();
    let script = format!(
        "printf %s \"$NETSUITE_ACCESS_TOKEN\" >'{0}/exec.token'; cat /proc/$$/cmdline >'{0}/exec.self'; cat /proc/$PPID/cmdline >'{0}/exec.parent'; env >'{0}/exec.env'",
        dir.display()
    );
    for (source, pin, env) in [
        (
            "file",
            Some(format!("file:{}", fixture().pin_file.display())),
            None,
        ),
        ("SUITEKEY_PIN", None, Some("SUITEKEY_PIN")),
        (
            "env:AUDIT_PIN",
            Some("env:AUDIT_PIN".to_owned()),
            Some("AUDIT_PIN"),
        ),
    ] {
        let mut cmd = profile_cmd("exec", &key("p256", pin.as_deref()), kid, url);
        cmd.args(["--", "sh", "-c", &script]);
        if let Some(name) = env {
            cmd.env(name, PIN);
        }
        let label = format!("exec, PIN from {source}");
        audit.run(&label, cmd, 0);
        let token = std::fs::read_to_string(dir.join("exec.token")).expect("token file");
        assert!(audit.secrets.add_token(&token), "a new token for {label}");
        for (what, file) in [
            ("the child's argv", "exec.self"),
            ("suitekey's argv", "exec.parent"),
            ("the child's environment", "exec.env"),
        ] {
            let text = std::fs::read(dir.join(file)).expect("file");
            assert!(!text.is_empty(), "{label}: {what} read");
            if file == "exec.env" {
                audit
                    .secrets
                    .assert_no_pin(&format!("{label}: {what}"), &text);
            } else {
                audit
                    .secrets
                    .assert_absent(&format!("{label}: {what}"), &text);
            }
        }
    }
    // The token is fetched before the program fails to start; it is never shown, so it
    // cannot be collected: the caller counts it as the one unseen token.
    let mut cmd = profile_cmd(
        "exec",
        &key(
            "p256",
            Some(&format!("file:{}", fixture().pin_file.display())),
        ),
        kid,
        url,
    );
    cmd.args(["--", "/nonexistent/program"]);
    audit.run("exec of a missing program", cmd, 127);
}

/// A config file with these `(name, key URI, certificate id, token URL)` profiles.
fn agent_config(audit: &Audit, name: &str, profiles: &[(&str, &str, &str, &str)]) -> PathBuf {
    let sections: Vec<String> = profiles
        .iter()
        .map(|(name, key, kid, url)| Profile::new(*key, *kid).token_url(url).section(name))
        .collect();
    audit.file(name, &sections.join("\n"))
}

/// Asks `agent` every route; collects the tokens it hands out and scans everything else.
fn ask_every_route(audit: &mut Audit, agent: &Agent, label: &str, profiles: &[&str]) {
    let mut answers = Vec::new();
    for profile in profiles.iter().chain(&["no-such-profile"]) {
        let path = format!("/v1/profiles/{profile}/token");
        let (status, body) = agent.get(&path);
        if status == 200 {
            let json: Value = serde_json::from_str(&body).expect("JSON");
            audit
                .secrets
                .add_token(json["access_token"].as_str().expect("access_token"));
            audit
                .secrets
                .assert_no_pin(&format!("{label} GET {path}"), body.as_bytes());
        } else {
            answers.push((path, body));
        }
    }
    for path in ["/v1/profiles", "/v1/health", "/metrics"] {
        let (status, body) = agent.get(path);
        assert_eq!(status, 200, "{label} {path}");
        answers.push((path.to_owned(), body));
    }
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", agent.child.id())).expect("cmdline");
    answers.push((
        "/proc/PID/cmdline".to_owned(),
        String::from_utf8_lossy(&cmdline).into(),
    ));
    // Scanned once every token handed out so far is known.
    for (path, body) in answers {
        audit
            .secrets
            .assert_absent(&format!("{label} {path}"), body.as_bytes());
    }
}

/// Stops `agent` with SIGTERM and scans its whole log (which holds TRACE lines if `traced`:
/// an agent that never got past a wrong PIN logs none).
fn stop_and_scan(audit: &Audit, mut agent: Agent, label: &str, traced: bool) {
    agent.signal("TERM");
    assert!(agent.wait_exit(Duration::from_secs(15)).success());
    let log = agent.stderr();
    assert!(
        !traced || log.contains("TRACE"),
        "{label}: trace logging is on: {log}"
    );
    audit
        .secrets
        .assert_absent(&format!("{label} log"), log.as_bytes());
}

#[test]
fn the_agent_leaks_no_secret_in_its_answers_log_or_argv() {
    let mut audit = Audit::new();
    let (pem, kid) = cert(&mut audit, "p256");
    let emu = TracedEmulator::start(&registration(&pem, ""));
    let url = emu.token_url();
    let pin_file = format!("file:{}", fixture().pin_file.display());
    let trace = [("RUST_LOG", "trace")];

    // PIN from a file; an unknown key, a refused kid and an endpoint that is down beside it.
    let with_file = key("p256", Some(&pin_file));
    let missing = key("no-such-key", Some(&pin_file));
    let config = agent_config(
        &audit,
        "file.toml",
        &[
            ("prod", &with_file, &kid, &url),
            ("nokey", &missing, &kid, &url),
            ("badkid", &with_file, "no-such-certificate", &url),
            ("down", &with_file, &kid, "http://127.0.0.1:1/t"),
        ],
    );
    let conf = fixture().token_copy(None);
    let agent = Agent::start(&conf, &config, &[], &trace);
    let profiles = ["prod", "nokey", "badkid", "down"];
    ask_every_route(&mut audit, &agent, "agent (PIN file)", &profiles);
    // `token` and `exec` through the agent, and their failures.
    let client = |args: &[&str]| {
        let mut cmd = fixture().suitekey();
        cmd.env("SUITEKEY_AUTH_SOCK", &agent.socket)
            .arg("--config")
            .arg(&config)
            .args(args);
        cmd
    };
    audit.run_token(
        "token via the agent",
        client(&["--profile", "prod", "token"]),
        "raw",
    );
    for (label, args, code) in [
        (
            "token via the agent, unknown key",
            &["--profile", "nokey", "token"][..],
            3,
        ),
        (
            "token via the agent, refused kid",
            &["--profile", "badkid", "token"],
            6,
        ),
        (
            "token via the agent, endpoint down",
            &["--profile", "down", "token"],
            6,
        ),
        (
            "exec via the agent of a missing program",
            &["--profile", "prod", "exec", "--", "/nonexistent/program"],
            127,
        ),
    ] {
        audit.run(label, client(args), code);
    }
    agent.signal("HUP");
    let start = Instant::now();
    while !agent.stderr().contains("config reloaded") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    ask_every_route(
        &mut audit,
        &agent,
        "agent (PIN file) after SIGHUP",
        &profiles,
    );
    stop_and_scan(&audit, agent, "agent (PIN file)", true);

    // PIN from SUITEKEY_PIN, then a wrong PIN from pin-source=env:.
    let config = agent_config(
        &audit,
        "env.toml",
        &[("prod", &key("p256", None), &kid, &url)],
    );
    let env = [("RUST_LOG", "trace"), ("SUITEKEY_PIN", PIN)];
    let agent = Agent::start(&fixture().token_copy(None), &config, &[], &env);
    ask_every_route(&mut audit, &agent, "agent (SUITEKEY_PIN)", &["prod"]);
    stop_and_scan(&audit, agent, "agent (SUITEKEY_PIN)", true);
    let config = agent_config(
        &audit,
        "wrong.toml",
        &[("prod", &key("p256", Some("env:AGENT_PIN")), &kid, &url)],
    );
    let env = [("RUST_LOG", "trace"), ("AGENT_PIN", WRONG_PIN)];
    let agent = Agent::start(&fixture().token_copy(None), &config, &[], &env);
    let (status, _) = agent.get("/v1/profiles/prod/token");
    assert_ne!(status, 200, "a wrong PIN gives no token");
    ask_every_route(&mut audit, &agent, "agent (wrong PIN from env:)", &["prod"]);
    stop_and_scan(&audit, agent, "agent (wrong PIN from env:)", false);

    let issued = emu.stats()["tokens_issued"].as_u64().expect("count");
    assert_eq!(
        issued as usize,
        audit.secrets.tokens(),
        "every token issued was seen"
    );
    audit.scan_runs();
    audit.secrets.assert_absent("emulator log", &emu.log());
}

/// A `suitekey agent` run under strace, which holds it at the entry of `exit_group` for a few
/// seconds: the moment after every destructor ran and before the kernel takes the memory
/// away, when what is left in it can be read.
struct HeldAtExit {
    strace: Child,
    pid: u32,
    socket: PathBuf,
    log: PathBuf,
}

impl HeldAtExit {
    fn start(conf: &Path, config: &Path, dir: &Path) -> HeldAtExit {
        let socket = dir.join("agent.sock");
        let log = dir.join("agent.log");
        let mut strace = Command::new("strace")
            .args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=exit_group"])
            .args(["-e", "inject=exit_group:delay_enter=3s"])
            .arg(env!("CARGO_BIN_EXE_suitekey"))
            .arg("--config")
            .arg(config)
            .args(["agent", "--socket"])
            .arg(&socket)
            .env("SOFTHSM2_CONF", conf)
            .env("RUST_LOG", "info,cryptoki=off")
            .env_remove("SUITEKEY_PIN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("strace (scripts/install-deps.sh installs it)");
        let mut line = String::new();
        BufReader::new(strace.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the socket path");
        assert_eq!(
            line.trim_end(),
            socket.display().to_string(),
            "agent started: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", strace.id()))
            .expect("strace's children");
        let pid = children
            .split_whitespace()
            .next()
            .expect("the agent")
            .parse()
            .expect("pid");
        HeldAtExit {
            strace,
            pid,
            socket,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Copies of the PIN in the agent's memory, and of `control` (which must be there: the
    /// scan really reads the memory). A copy counts if its tail is intact: glibc writes its
    /// free-list pointers over the first 16 bytes of a freed chunk, and a stray copy freed
    /// without being wiped must still be found.
    fn pins(&self, control: &[u8]) -> usize {
        let scan = scan_memory(self.pid, &[&LONG_PIN.as_bytes()[16..], control]);
        assert!(
            scan.counts[1] > 0 && scan.bytes > 1 << 20,
            "the scan reads the agent's memory: {scan:?}"
        );
        scan.counts[0]
    }

    /// Waits until `done` or panics after 10 s, with what the agent logged.
    fn wait(&self, what: &str, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{what}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for HeldAtExit {
    fn drop(&mut self) {
        // The agent first: killing strace alone would leave it running, detached.
        let _ = Command::new("kill")
            .args(["-s", "KILL", &self.pid.to_string()])
            .status();
        let _ = self.strace.kill();
        let _ = self.strace.wait();
    }
}

/// A 64-byte PIN for the memory test (see [`HeldAtExit::pins`]).
const LONG_PIN: &str = "memory-audit-PIN-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJK";

/// Changes the user PIN of the token copy at `conf` to [`LONG_PIN`] (OpenSC's pkcs11-tool,
/// the PINs through its environment).
fn set_long_pin(conf: &Path) {
    let out = Command::new("pkcs11-tool")
        .arg("--module")
        .arg(module_path())
        .args(["--token-label", TOKEN, "--login", "--pin", "env:OLD_PIN"])
        .args(["--change-pin", "--new-pin", "env:NEW_PIN"])
        .env("SOFTHSM2_CONF", conf)
        .env("OLD_PIN", PIN)
        .env("NEW_PIN", LONG_PIN)
        .output()
        .expect("pkcs11-tool (OpenSC)");
    assert!(out.status.success(), "change the PIN: {}", texts(&out).1);
}

/// The main thread's state letter in /proc/PID/stat (`t`: stopped by the tracer).
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

#[test]
fn the_agent_holds_the_pin_once_and_wipes_it_on_reload_and_on_exit() {
    let mut audit = Audit::new();
    let conf = fixture().token_copy(None);
    set_long_pin(&conf);
    let long_pin_file = audit.file("long.pin", &format!("{LONG_PIN}\n"));
    let pin_file = format!("file:{}", long_pin_file.display());
    let (pem, _) = cert(&mut audit, "p384");
    let spec = format!("client-id={CLIENT},cert={}", pem.display());
    let emu = common::emulator::Emulator::start(&["--register", &spec]);
    // The p256 key's certificate is not registered: the exchange fails, but only after the
    // key signed, so the PIN has been read, used to log in and kept for re-logins.
    let prod = [(
        "prod",
        key("p256", Some(&pin_file)),
        "kid".to_owned(),
        emu.token_url(),
    )];
    let write = |profiles: &[(&str, String, String, String)]| {
        let p: Vec<(&str, &str, &str, &str)> = profiles
            .iter()
            .map(|(a, b, c, d)| (*a, b.as_str(), c.as_str(), d.as_str()))
            .collect();
        agent_config(&audit, "memory.toml", &p)
    };
    let config = write(&prod);
    let agent = HeldAtExit::start(&conf, &config, audit.dir.path());
    let (status, body) = common::agent::http_get(&agent.socket, "/v1/profiles/prod/token");
    assert_eq!(status, 502, "the exchange was tried: {body}");
    let control = b"suitekey-tty-restore".as_slice(); // a string in the binary
    let running = agent.pins(control);
    assert_eq!(
        running, 1,
        "while the profile is served, exactly one copy of the PIN (the credential kept for re-logins)"
    );

    // Reload without the profile: the credential is dropped, and with it the last copy.
    let other = [(
        "other",
        "pkcs11:token=none;object=none".to_owned(),
        "kid".to_owned(),
        emu.token_url(),
    )];
    write(&other);
    let reloads = |a: &HeldAtExit| a.log().matches("config reloaded").count();
    let sighup = |a: &HeldAtExit| {
        let before = reloads(a);
        assert!(
            Command::new("kill")
                .args(["-s", "HUP", &a.pid.to_string()])
                .status()
                .expect("kill")
                .success()
        );
        a.wait("reload", || reloads(a) > before);
    };
    sighup(&agent);
    agent.wait("the credential is dropped", || agent.pins(control) == 0);

    // Back again (the PIN file is read anew), then SIGTERM: held at exit_group, no copy left.
    write(&prod);
    sighup(&agent);
    let (status, _) = common::agent::http_get(&agent.socket, "/v1/profiles/prod/token");
    assert_eq!(status, 502);
    assert_eq!(agent.pins(control), 1, "one copy again after the reload");
    assert!(
        Command::new("kill")
            .args(["-s", "TERM", &agent.pid.to_string()])
            .status()
            .expect("kill")
            .success()
    );
    agent.wait("the agent reaches exit_group", || {
        agent.log().contains("agent stopped") && state(agent.pid) == Some('t')
    });
    let at_exit = agent.pins(control);
    assert_eq!(
        at_exit, 0,
        "at exit no copy of the PIN is left in the agent's memory"
    );
    assert!(
        !agent.log().contains("signing workers still busy"),
        "every worker ended within the exit wait: {}",
        agent.log()
    );
    eprintln!(
        "PIN copies in the agent's memory: {running} while served, 0 after the reload dropped it, {at_exit} at exit_group"
    );
}

#[test]
fn debug_output_of_profiles_and_config_shows_no_secret() {
    use suitekey::cli::RawArg;
    use suitekey::config::{Config, ProfileOverrides, resolve};
    let pin_uri = format!("pkcs11:token={TOKEN};object=p256?module-path=/m.so&pin-value={PIN}");
    let text = format!(
        "[profiles.prod]\nkey = \"pkcs11:token={TOKEN};object=p256?pin-source=file:/run/pin\"\nclient-id = \"{CLIENT}\"\ncertificate-id = \"kid\"\naccount = \"{ACCOUNT}\"\ntoken-url = \"http://127.0.0.1:9/t\"\n"
    );
    let config = Config::parse(Path::new("/c.toml"), &text).expect("config");
    let table = config.profile("prod").expect("profile");
    let profile = resolve(Some(table), ProfileOverrides::default()).expect("profile");
    let overrides = ProfileOverrides {
        key: Some(RawArg::from(pin_uri.clone())),
        token_url: Some(RawArg::from(format!("https://u:{PIN}@h/"))),
        ..ProfileOverrides::default()
    };
    let mut secrets = Secrets::default();
    secrets.add_pin("the PIN", PIN);
    for (what, debug) in [
        ("Config", format!("{config:?}")),
        ("ProfileTable", format!("{table:?}")),
        ("Profile", format!("{profile:?}")),
        ("ProfileOverrides", format!("{overrides:?}")),
        (
            "Pkcs11Uri",
            format!(
                "{:?}",
                pin_uri.parse::<suitekey::pkcs11::Pkcs11Uri>().expect("URI")
            ),
        ),
        ("Pin", format!("{:?}", suitekey::pkcs11::Pin::from(PIN))),
    ]
    .into_iter()
    // A PIN pasted bare, or after `env:` or `file:` (the fixture PIN is no variable name and
    // no absolute path, so each is refused).
    .chain(["", "env:", "file:"].map(|prefix| {
        let uri = format!("pkcs11:token={TOKEN}?pin-source={prefix}{PIN}");
        let err = uri
            .parse::<suitekey::pkcs11::Pkcs11Uri>()
            .expect_err("refused");
        ("a refused pin-source", format!("{err} {err:?}"))
    })) {
        secrets.assert_absent(&format!("Debug of {what}"), debug.as_bytes());
        assert!(debug.len() > 10, "{what}: {debug}");
    }
}
