//! An emulator in a thread of the test process, for unit tests that talk HTTP to it.

use std::net::SocketAddr;
use std::sync::Arc;

use super::state::{Shared, Stats};
use super::{Config, Error, base_url, bind, serve_shared};

/// An emulator on `127.0.0.1:<free port>` in a thread of its own, for tests (sync or async);
/// it stops when dropped.
pub struct Emulator {
    base_url: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), Error>>>,
}

impl Emulator {
    /// Binds and starts serving; returns once the port is bound.
    pub fn start(config: Config) -> Result<Emulator, Error> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(Error::Io)?;
            runtime.block_on(async move {
                let bound = bind(SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)))
                    .await
                    .and_then(|l| Ok((l.local_addr().map_err(Error::Io)?, l)));
                let (addr, listener) = match bound {
                    Ok(bound) => bound,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return Ok(());
                    }
                };
                let shared = Shared::new(config, addr);
                let _ = ready_tx.send(Ok((addr, Arc::clone(&shared))));
                serve_shared(listener, shared, async {
                    let _ = stopped.await;
                })
                .await
            })
        });
        let gone = || {
            Error::Io(std::io::Error::other(
                "the emulator thread ended before binding",
            ))
        };
        let (addr, shared) = ready_rx.recv().map_err(|_| gone())??;
        Ok(Emulator {
            base_url: base_url(addr),
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The emulator's token URL (a valid `aud`).
    pub fn token_url(&self) -> &str {
        &self.shared.token_url
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        self.shared.lock().stats.clone()
    }

    /// The certificate API's calls so far.
    pub fn shared_calls(&self) -> super::certificates::calls::Calls {
        self.shared.lock().calls
    }

    /// How many certificates the account has, revoked ones included.
    pub fn certificate_count(&self) -> usize {
        self.shared.lock().certificates.registrations().len()
    }

    /// One HTTP/1.1 request on a connection of its own: the answer's status, headers and body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        use std::io::{Read as _, Write as _};
        let host = self.base_url.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(host).expect("connect");
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .expect("timeout");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        // The server may answer (413) before reading everything: a failed write is no failure.
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body);
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        Answer::parse(&String::from_utf8_lossy(&raw))
    }
}

/// An HTTP answer as [`Emulator::request`] read it.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The header lines, as `name: value` with the name lowercased.
    pub headers: Vec<String>,
    /// The body.
    pub body: String,
}

impl Answer {
    fn parse(text: &str) -> Answer {
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {text:?}"));
        let headers = lines
            .map(|l| match l.split_once(':') {
                Some((n, v)) => format!("{}: {}", n.to_ascii_lowercase(), v.trim()),
                None => l.to_owned(),
            })
            .collect();
        Answer {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// The value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find_map(|h| h.strip_prefix(name)?.strip_prefix(": "))
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
