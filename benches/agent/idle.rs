//! The idle-flood level of the load generator: one other process holds many idle connections
//! to the agent (it keeps at most 256 of one process and closes the rest at once) while the
//! measured keep-alive clients ask for tokens.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};

use super::BoxError;

/// Set (to the number of connections) in the holder process this module starts.
pub const HOLD_ENV: &str = "SUITEKEY_BENCH_HOLD_IDLE";

/// The holder: opens `n` connections to `socket`, says so on stdout, and keeps them until its
/// stdin closes.
pub fn hold(socket: &Path, n: usize) -> Result<(), BoxError> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let room = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    setrlimit(Resource::Nofile, room)?;
    let held = (0..n)
        .map(|_| UnixStream::connect(socket))
        .collect::<Result<Vec<_>, _>>()?;
    println!("holding {}", held.len());
    std::io::stdout().flush()?;
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    Ok(())
}

/// Idle connections held by another process for as long as the guard lives.
pub struct Flood(std::process::Child);

impl Flood {
    /// Starts this program again as the holder of `n` connections, and waits until it holds
    /// them.
    pub fn start(socket: &Path, n: usize) -> Result<Flood, BoxError> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(HOLD_ENV, n.to_string())
            .env("SUITEKEY_BENCH_SOCK", socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
        if !line.starts_with("holding ") {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("the idle-connection holder did not start: {line:?}").into());
        }
        Ok(Flood(child))
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

/// The value of `name` (with its labels) in the agent's `/metrics`.
pub fn metric(socket: &Path, name: &str) -> Result<String, BoxError> {
    let mut stream = UnixStream::connect(socket)?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .ok_or_else(|| format!("no {name} in /metrics"))?;
    Ok(value.to_owned())
}
