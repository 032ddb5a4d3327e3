//! The PIN prompt on a real pseudo-terminal (util-linux `script`), as a person meets it.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use common::{PIN, TOKEN, decode_jws, fixture, verify};

const PROMPT: &str = "PIN for token 'suitekey-test': ";

/// Runs `suitekey assertion` for the p384 key (no PIN source) on a pseudo-terminal, then
/// `stty -a` on the same terminal; `keys` are typed once the prompt is up, as a person would.
/// Returns the exit status of the whole session and everything the terminal showed.
fn on_terminal(keys: &[u8]) -> (i32, String) {
    let f = fixture();
    let key = format!(
        "pkcs11:token={TOKEN};object=p384?module-path={}",
        common::module_path().display()
    );
    let cmd = f.suitekey();
    let suitekey = cmd.get_program().to_string_lossy().into_owned();
    // `trap '' INT` keeps the shell alive past a Ctrl-C so that `stty -a` shows what the
    // terminal was left with; suitekey installs its own handler for the prompt.
    let shell = format!(
        "trap '' INT; '{suitekey}' assertion --key '{key}' --client-id abc --certificate-id kid --account 1; echo \"exit=$?\"; stty -a"
    );
    let (status, seen) = common::terminal::type_at_prompt(&cmd, &shell, &[], PROMPT, keys);
    (
        status.code().unwrap_or(-1),
        String::from_utf8(seen).expect("utf-8"),
    )
}

/// The exit status `echo "exit=$?"` printed for suitekey.
fn suitekey_exit(screen: &str) -> &str {
    screen
        .split("exit=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("none")
}

fn echo_restored(screen: &str) -> bool {
    screen.split_whitespace().any(|w| w == "echo")
        && !screen.split_whitespace().any(|w| w == "-echo")
}

#[test]
fn the_pin_is_prompted_for_without_echo_and_the_terminal_is_restored() {
    let (status, screen) = on_terminal(format!("{PIN}\n").as_bytes());
    assert_eq!(status, 0, "{screen}");
    assert_eq!(suitekey_exit(&screen), "0", "{screen}");
    assert!(!screen.contains(PIN), "the PIN was echoed:\n{screen}");
    let jws = screen
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("eyJ"))
        .expect("a JWS on the terminal");
    verify(&decode_jws(jws), &fixture().public_key(0x02)).expect("verifies");
    assert!(
        echo_restored(&screen),
        "echo is still off afterwards:\n{screen}"
    );
}

#[test]
fn ctrl_c_at_the_prompt_ends_suitekey_and_restores_echo() {
    let (_, screen) = on_terminal(b"12\x03");
    assert_eq!(suitekey_exit(&screen), "130", "killed by SIGINT:\n{screen}");
    assert!(echo_restored(&screen), "Ctrl-C left echo off:\n{screen}");
}

#[test]
fn enter_as_carriage_return_ends_the_pin() {
    // A terminal left in raw mode sends CR for Enter; the prompt must still end the line.
    let (_, screen) = on_terminal(format!("{PIN}\r").as_bytes());
    assert_eq!(suitekey_exit(&screen), "0", "{screen}");
}

/// What a pseudo-terminal showed so far, read by a thread so that the test never blocks on it.
struct Screen(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Screen {
    fn follow(mut output: impl Read + Send + 'static) -> Screen {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while let Ok(n @ 1..) = output.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Screen(seen)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Waits (at most 30 s) until the screen shows `what`.
    fn wait_for(&self, what: &str) {
        let start = std::time::Instant::now();
        while !self.text().contains(what) {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "no {what:?} on the terminal: {}",
                self.text()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Waits (at most 15 s) until `done` holds.
fn wait_until(what: &str, log: &std::path::Path, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(15),
            "{what}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `suitekey agent` on a pseudo-terminal, as a YubiKey user runs it: no PIN source, so it
/// prompts. Its socket and log are in `dir`.
struct TerminalAgent {
    child: std::process::Child,
    screen: Screen,
    /// The agent's PID.
    pid: String,
    socket: std::path::PathBuf,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl TerminalAgent {
    /// Starts the agent (one profile on the p256 key, no PIN source) and waits for its prompt.
    fn start() -> TerminalAgent {
        let f = fixture();
        let conf = f.token_copy(None);
        let dir = common::agent::socket_dir();
        let (config, socket, log) = (
            dir.path().join("config.toml"),
            dir.path().join("agent.sock"),
            dir.path().join("agent.log"),
        );
        let key = format!(
            "pkcs11:token={TOKEN};object=p256;type=private?module-path={}",
            common::module_path().display()
        );
        std::fs::write(
            &config,
            format!(
                "[profiles.prod]\nkey = \"{key}\"\nclient-id = \"abc\"\ncertificate-id = \"kid\"\naccount = \"1\"\ntoken-url = \"http://127.0.0.1:9/token\"\n"
            ),
        )
        .unwrap();
        let suitekey = f.suitekey().get_program().to_string_lossy().into_owned();
        // `exec`: the PID the shell prints is the agent's. `stty -a` afterwards shows what the
        // terminal was left with.
        let shell = format!(
            "echo pid=$$; '{suitekey}' --config '{}' agent --socket '{}' 2>'{}'; echo \"exit=$?\"; stty -a",
            config.display(),
            socket.display(),
            log.display()
        );
        let mut child = Command::new("timeout")
            .args(["60", "script", "-qec", &shell, "/dev/null"])
            .env("SOFTHSM2_CONF", &conf)
            .env("RUST_LOG", "info,cryptoki=off")
            .env_remove("SUITEKEY_PIN")
            .env_remove("SUITEKEY_AUTH_SOCK")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("coreutils timeout and util-linux script");
        let screen = Screen::follow(child.stdout.take().expect("stdout"));
        screen.wait_for(PROMPT);
        // The shell's PID; the agent is its only child.
        let shell_pid = screen
            .text()
            .split("pid=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("the shell's pid")
            .to_owned();
        let children = format!("/proc/{shell_pid}/task/{shell_pid}/children");
        let pid = std::fs::read_to_string(&children)
            .unwrap_or_else(|e| panic!("{children}: {e}"))
            .trim()
            .to_owned();
        assert!(!pid.is_empty() && !pid.contains(' '), "one child: {pid:?}");
        TerminalAgent {
            child,
            screen,
            pid,
            socket,
            log,
            _dir: dir,
        }
    }

    fn type_keys(&mut self, keys: &[u8]) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin.write_all(keys).expect("type");
        stdin.flush().expect("type");
    }

    fn kill(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.pid])
            .status();
        assert!(
            status.expect("kill").success(),
            "kill -s {signal} {}",
            self.pid
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the session to end (the agent, then `stty -a`); returns what the terminal
    /// showed.
    fn finish(&mut self) -> String {
        drop(self.child.stdin.take());
        let status = self.child.wait().expect("script exits");
        assert_eq!(status.code(), Some(0), "{}", self.screen.text());
        // The reader thread may still be catching up with the last output.
        let start = std::time::Instant::now();
        while !self.screen.text().contains("speed") && start.elapsed().as_secs() < 5 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.screen.text()
    }
}

/// How a YubiKey user runs the agent: no PIN source, so it prompts on the terminal. The
/// prompt's signal handling must not outlive it: afterwards SIGHUP reloads the config and
/// SIGTERM drains and removes the socket (before the fix both killed the agent outright).
#[test]
fn an_agent_that_prompted_for_its_pin_reloads_on_sighup_and_drains_on_sigterm() {
    let mut agent = TerminalAgent::start();
    agent.type_keys(format!("{PIN}\n").as_bytes());
    agent.screen.wait_for(&agent.socket.display().to_string());

    agent.kill("HUP");
    let alive = std::path::PathBuf::from(format!("/proc/{}", agent.pid));
    wait_until("reloaded after SIGHUP", &agent.log, || {
        assert!(
            alive.exists(),
            "SIGHUP killed the agent: {}",
            agent.screen.text()
        );
        agent.log().contains("config reloaded")
    });
    let (status, body) = common::agent::http_get(&agent.socket, "/v1/health");
    assert_eq!(status, 200, "still serving after SIGHUP: {body}");

    agent.kill("TERM");
    let screen = agent.finish();
    let log = agent.log();
    assert_eq!(suitekey_exit(&screen), "0", "{log}\n{screen}");
    assert!(log.contains("agent stopped"), "drained: {log}");
    assert!(!agent.socket.exists(), "socket removed: {log}");
    assert!(!screen.contains(PIN), "the PIN was echoed");
}

/// SIGTERM while the agent waits at its prompt ends the prompt (the terminal restored), and
/// the agent stops as it does during any startup: socket removed, nothing announced, exit 0.
#[test]
fn sigterm_at_the_agents_prompt_stops_it_cleanly_and_restores_echo() {
    let mut agent = TerminalAgent::start();
    agent.type_keys(b"12");
    std::thread::sleep(std::time::Duration::from_millis(200));
    agent.kill("TERM");
    let screen = agent.finish();
    let log = agent.log();
    assert_eq!(suitekey_exit(&screen), "0", "{log}\n{screen}");
    assert!(log.contains("stopped during startup"), "{log}");
    assert!(!agent.socket.exists(), "socket removed: {log}");
    assert!(echo_restored(&screen), "SIGTERM left echo off:\n{screen}");
}
