//! A token endpoint that fails on demand: a loopback HTTP (or HTTPS) server in front of the
//! emulator whose [`Mode`] a test switches while suitekey talks to it. Every connection carries
//! one request and is closed after the answer (`Connection: close`), so a client that pools
//! connections (the agent) meets each switch on its next request. It counts the requests it
//! saw, to check how often suitekey tried.
//!
//! Plain threads and blocking I/O; TLS by rustls (a dependency of suitekey itself) with
//! certificates made by `openssl` ([`TestCa`]).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// How the proxy answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward to the emulator and relay its answer.
    Pass,
    /// Close the listening socket: connections are refused (it is bound again on the next
    /// switch).
    Refuse,
    /// Read the request and say nothing for a few seconds.
    Slow,
    /// HTTP 500 without a body.
    ServerError,
    /// HTTP 429 with `Retry-After: 1`.
    TooMany,
    /// HTTP 429 with `Retry-After` of this many seconds.
    TooManyFor(u64),
    /// HTTP 200 announcing 500 bytes, sending a few, then closing.
    Truncated,
    /// HTTP 200 with an HTML page.
    NotJson,
    /// HTTP 200 with a 100 000-byte body and its Content-Length.
    Oversized,
    /// HTTP 200 with no Content-Length, 256 KiB, ended by closing.
    OversizedUnannounced,
    /// HTTPS with a certificate from another CA (for a TLS proxy).
    UntrustedTls,
    /// A redirect (307 or 308) to this location.
    Redirect(u16, String),
    /// HTTP 200 with a well-formed token response granting this access token (a hostile
    /// server's choice of token).
    Grant(String),
    /// Forward every request, except token requests whose client assertion names certificate
    /// id `kid` once `pass` of those were forwarded (counted from this switch): HTTP 500.
    FailKid {
        /// The certificate id (the assertion's `kid`).
        kid: String,
        /// How many of its requests pass first.
        pass: u32,
    },
}

/// How long [`Mode::Slow`] keeps a request waiting.
pub const SLOW: Duration = Duration::from_secs(4);

struct State {
    mode: Mutex<Mode>,
    upstream: Mutex<Option<SocketAddr>>,
    requests: AtomicU32,
    connections: AtomicU32,
    /// Requests naming [`Mode::FailKid`]'s kid since the switch.
    kid_requests: AtomicU32,
    tls: Option<(Arc<rustls::ServerConfig>, Arc<rustls::ServerConfig>)>,
}

/// A running fault proxy; its threads end with the test process.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
}

impl FaultProxy {
    /// A plain-http proxy on a free loopback port, in [`Mode::Pass`].
    pub fn http() -> FaultProxy {
        FaultProxy::start(None)
    }

    /// An https proxy presenting `ca`'s certificate for 127.0.0.1 (and, in
    /// [`Mode::UntrustedTls`], `other`'s).
    pub fn https(ca: &TestCa, other: &TestCa) -> FaultProxy {
        FaultProxy::start(Some((ca.server_config(), other.server_config())))
    }

    fn start(tls: Option<(Arc<rustls::ServerConfig>, Arc<rustls::ServerConfig>)>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(State {
            mode: Mutex::new(Mode::Pass),
            upstream: Mutex::new(None),
            requests: AtomicU32::new(0),
            connections: AtomicU32::new(0),
            kid_requests: AtomicU32::new(0),
            tls,
        });
        let shared = Arc::clone(&state);
        std::thread::spawn(move || accept_loop(Some(listener), addr, &shared));
        FaultProxy { addr, state }
    }

    /// Where requests are forwarded in [`Mode::Pass`]: the emulator's base URL.
    pub fn forward_to(&self, base: &str) {
        let addr = base
            .trim_start_matches("http://")
            .parse()
            .expect("emulator address");
        *lock(&self.state.upstream) = Some(addr);
    }

    /// Its token URL (the emulator's path), `http://` or `https://`.
    pub fn token_url(&self) -> String {
        let scheme = if self.state.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}{}", self.addr, super::emulator::TOKEN_PATH)
    }

    /// Switches the mode; the next connection sees it.
    pub fn set(&self, mode: Mode) {
        let mut current = lock(&self.state.mode);
        self.state.kid_requests.store(0, Ordering::SeqCst);
        *current = mode;
    }

    /// Requests seen so far (each attempt of suitekey is one).
    pub fn requests(&self) -> u32 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Connections accepted so far (a TLS handshake that fails is a connection, not a
    /// request).
    pub fn connections(&self) -> u32 {
        self.state.connections.load(Ordering::SeqCst)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Polls (non-blocking) so that [`Mode::Refuse`] can close the socket and a later mode bind
/// the same port again (std sets SO_REUSEADDR).
fn accept_loop(mut listener: Option<TcpListener>, addr: SocketAddr, state: &Arc<State>) {
    loop {
        let refusing = *lock(&state.mode) == Mode::Refuse;
        match (&listener, refusing) {
            (Some(_), true) => listener = None,
            (None, false) => listener = TcpListener::bind(addr).ok(),
            _ => {}
        }
        if let Some(l) = &listener {
            l.set_nonblocking(true).expect("non-blocking listener");
            if let Ok((stream, _)) = l.accept() {
                stream.set_nonblocking(false).expect("blocking stream");
                state.connections.fetch_add(1, Ordering::SeqCst);
                let state = Arc::clone(state);
                std::thread::spawn(move || serve(stream, &state));
                continue;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn serve(tcp: TcpStream, state: &State) {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    let mode = lock(&state.mode).clone();
    match &state.tls {
        None => answer(tcp.try_clone().expect("clone"), tcp, &mode, state),
        Some((good, bad)) => {
            let config = if mode == Mode::UntrustedTls {
                bad
            } else {
                good
            };
            let Ok(conn) = rustls::ServerConnection::new(Arc::clone(config)) else {
                return;
            };
            let tls = rustls::StreamOwned::new(conn, tcp.try_clone().expect("clone"));
            answer(tls, tcp, &mode, state);
        }
    }
}

/// Reads one request and answers it as `mode` says; `tcp` is the raw socket, for closing.
fn answer(mut stream: impl Read + Write, tcp: TcpStream, mode: &Mode, state: &State) {
    let Some(request) = read_message(&mut stream) else {
        return; // a failed TLS handshake, or a client that gave up
    };
    state.requests.fetch_add(1, Ordering::SeqCst);
    let reply: Vec<u8> = match mode {
        Mode::Pass | Mode::UntrustedTls | Mode::Refuse => forward(&request, state),
        Mode::Slow => {
            std::thread::sleep(SLOW);
            Vec::new()
        }
        Mode::ServerError => response("500 Internal Server Error", "", "", ""),
        Mode::TooMany => response("429 Too Many Requests", "Retry-After: 1\r\n", "", ""),
        Mode::TooManyFor(secs) => {
            response("429 Too Many Requests", &format!("Retry-After: {secs}\r\n"), "", "")
        }
        Mode::Truncated => b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\nConnection: close\r\n\r\n{\"access_token\":\"eyJ".to_vec(),
        Mode::NotJson => response("200 OK", "", "text/html", "<html><body>Sign in to continue</body></html>"),
        Mode::Oversized => response("200 OK", "", "application/json", &" ".repeat(100_000)),
        Mode::OversizedUnannounced => {
            let mut r = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n".to_vec();
            r.extend(std::iter::repeat_n(b' ', 256 * 1024));
            r
        }
        Mode::Grant(token) => {
            let body = serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600});
            response("200 OK", "", "application/json", &body.to_string())
        }
        Mode::FailKid { kid, pass } => {
            let named = assertion_kid(&request).is_some_and(|k| k == *kid);
            if named && state.kid_requests.fetch_add(1, Ordering::SeqCst) >= *pass {
                response("500 Internal Server Error", "", "", "")
            } else {
                forward(&request, state)
            }
        }
        Mode::Redirect(status, to) => {
            let status = format!("{status} Redirect");
            response(&status, &format!("Location: {to}\r\n"), "", "")
        }
    };
    let _ = stream.write_all(&reply);
    let _ = stream.flush();
    drop(stream);
    let _ = tcp.shutdown(Shutdown::Both);
}

fn response(status: &str, extra: &str, content_type: &str, body: &str) -> Vec<u8> {
    let ct = if content_type.is_empty() {
        String::new()
    } else {
        format!("Content-Type: {content_type}\r\n")
    };
    format!(
        "HTTP/1.1 {status}\r\n{ct}{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The `kid` of the client assertion in a token request, if it carries one.
fn assertion_kid(request: &[u8]) -> Option<String> {
    use base64::Engine as _;
    let text = String::from_utf8_lossy(request);
    let start = text.find("client_assertion=")? + "client_assertion=".len();
    let jwt = text[start..].split('&').next()?;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwt.split('.').next()?)
        .ok()?;
    let header: serde_json::Value = serde_json::from_slice(&header).ok()?;
    header["kid"].as_str().map(str::to_owned)
}

/// One HTTP/1.1 message with a Content-Length body (or none), as bytes.
fn read_message(stream: &mut impl Read) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = stream.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("content-length:")
                .map(|v| v.trim().parse().ok())
        })
        .flatten()
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = stream.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf)
}

/// Sends `request` to the emulator and returns its answer with `Connection: close` added.
fn forward(request: &[u8], state: &State) -> Vec<u8> {
    let upstream = lock(&state.upstream).expect("forward_to was not called");
    let mut emu = TcpStream::connect(upstream).expect("connect to the emulator");
    emu.write_all(request).expect("forward the request");
    let answer = read_message(&mut emu).expect("the emulator's answer");
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head")
        + 2;
    let mut out = answer[..split].to_vec();
    out.extend_from_slice(b"Connection: close\r\n");
    out.extend_from_slice(&answer[split..]);
    out
}

/// A private CA made by `openssl`, and a server certificate it signed.
pub struct TestCa {
    /// The CA certificate (PEM): what `--ca-file` names.
    pub ca_pem: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl TestCa {
    /// A CA named `name` in `dir`, with a P-256 server certificate for `san` (an openssl
    /// subjectAltName value such as `IP:127.0.0.1` or `DNS:wrong.example`).
    pub fn new(dir: &Path, name: &str, san: &str) -> TestCa {
        let path = |suffix: &str| dir.join(format!("{name}-{suffix}"));
        let ca = (path("ca.pem"), path("ca.key"));
        let (cert, key, csr) = (path("server.pem"), path("server.key"), path("server.csr"));
        self_signed_ca(&ca, name);
        server_request(&key, &csr);
        sign_server_cert(&csr, &ca, (san, &path("ext.cnf")), &cert);
        TestCa {
            ca_pem: ca.0,
            cert,
            key,
        }
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .expect("server certificate")
            .collect::<Result<_, _>>()
            .expect("PEM certificate");
        let key = PrivateKeyDer::from_pem_file(&self.key).expect("server key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        Arc::new(config)
    }
}

/// `openssl req` arguments for a new P-256 key, unencrypted.
const EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
];

/// A CA certificate and key (`pem`, `key`) valid for two days.
fn self_signed_ca((pem, key): &(PathBuf, PathBuf), name: &str) {
    openssl(
        &["req", "-x509"],
        &EC_KEY,
        &[
            "-keyout",
            s(key),
            "-out",
            s(pem),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} test CA"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    );
}

/// The server's key and its certificate request.
fn server_request(key: &Path, csr: &Path) {
    openssl(
        &["req", "-new"],
        &EC_KEY,
        &[
            "-keyout",
            s(key),
            "-out",
            s(csr),
            "-subj",
            "/CN=token endpoint",
        ],
    );
}

/// The server certificate for `san` (its extensions written to `ext`), signed by `ca`.
fn sign_server_cert(
    csr: &Path,
    (ca_pem, ca_key): &(PathBuf, PathBuf),
    (san, ext): (&str, &Path),
    cert: &Path,
) {
    std::fs::write(
        ext,
        format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"),
    )
    .expect("write ext.cnf");
    openssl(
        &["x509", "-req"],
        &[],
        &[
            "-in",
            s(csr),
            "-CA",
            s(ca_pem),
            "-CAkey",
            s(ca_key),
            "-CAcreateserial",
            "-out",
            s(cert),
            "-days",
            "2",
            "-extfile",
            s(ext),
        ],
    );
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn openssl(command: &[&str], key: &[&str], args: &[&str]) {
    let out = Command::new("openssl")
        .args(command)
        .args(key)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
