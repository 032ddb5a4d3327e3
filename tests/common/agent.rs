//! A `suitekey agent` child process for tests, on its own socket in a short temp dir (a Unix
//! socket path must fit in 108 bytes), plus a raw HTTP/1.1 client over the socket.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running `suitekey agent`; killed by PID when dropped.
pub struct Agent {
    /// The agent process.
    pub child: Child,
    /// The socket it printed.
    pub socket: PathBuf,
    stdout: BufReader<ChildStdout>,
    stderr: PathBuf,
    /// The socket's directory (and the agent's log).
    pub dir: tempfile::TempDir,
}

/// A short private directory under /tmp for a socket.
pub fn socket_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("sk-")
        .tempdir_in("/tmp")
        .expect("temp dir in /tmp")
}

impl Agent {
    /// Starts `suitekey --config CONFIG agent --socket DIR/agent.sock ARGS` against the
    /// SoftHSM2 token of `softhsm_conf`, with `env` added, and waits for the socket path it
    /// prints.
    pub fn start(softhsm_conf: &Path, config: &Path, args: &[&str], env: &[(&str, &str)]) -> Agent {
        Agent::start_at(None, softhsm_conf, config, args, env)
    }

    /// Like [`Agent::start`], on the socket `at` when given.
    pub fn start_at(
        at: Option<&Path>,
        softhsm_conf: &Path,
        config: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Agent {
        let mut agent = Agent::spawn_at(at, softhsm_conf, config, args, env);
        agent.wait_ready();
        agent
    }

    /// Starts the agent like [`Agent::start_at`] without waiting for it to listen.
    pub fn spawn_at(
        at: Option<&Path>,
        softhsm_conf: &Path,
        config: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Agent {
        Agent::spawn_under(&[], at, softhsm_conf, config, args, env)
    }

    /// Like [`Agent::start`], run through `wrapper`, a command that execs the rest of its
    /// arguments in the same process (e.g. `prlimit --nofile=1024:1024`): the agent keeps
    /// the PID.
    pub fn start_under(
        wrapper: &[&str],
        softhsm_conf: &Path,
        config: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Agent {
        let mut agent = Agent::spawn_under(wrapper, None, softhsm_conf, config, args, env);
        agent.wait_ready();
        agent
    }

    fn spawn_under(
        wrapper: &[&str],
        at: Option<&Path>,
        softhsm_conf: &Path,
        config: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Agent {
        let dir = socket_dir();
        let socket = at.map_or_else(|| dir.path().join("agent.sock"), Path::to_owned);
        let stderr = dir.path().join("agent.log");
        let suitekey = env!("CARGO_BIN_EXE_suitekey");
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(suitekey);
                cmd
            }
            None => Command::new(suitekey),
        };
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SUITEKEY_") {
                cmd.env_remove(name);
            }
        }
        cmd.env("SOFTHSM2_CONF", softhsm_conf)
            .env("RUST_LOG", "info,cryptoki=off")
            .envs(env.iter().copied())
            .arg("--config")
            .arg(config)
            .arg("agent")
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("agent log"));
        let mut child = cmd.spawn().expect("start suitekey agent");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Agent {
            child,
            socket,
            stdout,
            stderr,
            dir,
        }
    }

    /// Waits for the line naming the socket, which the agent prints once it listens.
    pub fn wait_ready(&mut self) {
        let line = self.read_stdout_line();
        if line.is_empty() {
            let _ = self.child.wait();
            panic!("agent did not start: {}", self.stderr());
        }
        assert_eq!(
            Path::new(line.trim_end()),
            self.socket,
            "stdout names the socket"
        );
    }

    /// The next line of stdout; empty at its end.
    pub fn read_stdout_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("read the agent's stdout");
        line
    }

    /// `GET path` over the socket: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.socket, path)
    }

    /// `METHOD path` over the socket.
    pub fn request(&self, method: &str, path: &str) -> Reply {
        http_request(&self.socket, method, path)
    }

    /// `GET path`, expecting 200 and JSON.
    pub fn json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).expect("JSON body")
    }

    /// What it logged so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Whether it logs `needle` within `limit` (a line written after the answer it follows may
    /// reach the file after the client has its answer).
    pub fn logs_within(&self, needle: &str, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if self.stderr().contains(needle) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal (`HUP`, `TERM`, …) by PID.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -s {name}");
    }

    /// Waits for the agent to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "agent still running after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP response read from the agent.
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The header lines, as sent.
    pub head: String,
    /// The body.
    pub body: String,
}

impl Reply {
    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("JSON body: {}", self.body))
    }
}

/// `METHOD path` over the Unix socket at `socket` with a raw HTTP/1.1 request.
pub fn http_request(socket: &Path, method: &str, path: &str) -> Reply {
    let mut stream = UnixStream::connect(socket)
        .unwrap_or_else(|e| panic!("connect to {}: {e}", socket.display()));
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (status, body) = parse_response(&response);
    let head = response[..response.len() - body.len()]
        .trim_end()
        .to_owned();
    Reply { status, head, body }
}

/// `GET path` over the Unix socket at `socket` with a raw HTTP/1.1 request: (status, body).
pub fn http_get(socket: &Path, path: &str) -> (u16, String) {
    let reply = http_request(socket, "GET", path);
    (reply.status, reply.body)
}

/// (status, body) of an HTTP/1.1 response with a Content-Length body.
pub fn parse_response(response: &str) -> (u16, String) {
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_owned())
}

/// The value of a metric line `name{labels} value` in the agent's `/metrics` text, if present.
pub fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}
