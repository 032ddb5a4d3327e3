//! Entry points for the `cargo fuzz` targets in `fuzz/` and for the property tests: each feeds
//! untrusted bytes to one parser the way the program does, so the fuzzers exercise the real
//! code rather than a copy. Not a stable API; hidden from the documentation.
//!
//! Each function returns normally for every input the parser handles (accepted or refused);
//! a panic, a hang or an allocation beyond the fuzzer's limit is a bug. Where a parser has an
//! invariant that can be checked cheaply (a URI formats and parses back to itself), the entry
//! point asserts it, so a broken invariant shows up as a crash too.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use p256::ecdsa::signature::Signer as _;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncWriteExt as _, DuplexStream, ReadBuf};
use tokio::sync::mpsc;

use crate::agent::api::{self, Agent};
use crate::agent::connections::{Connections, Limits};
use crate::agent::profiles::{self, Options};
use crate::agent::signers::OpenError;
use crate::agent::socket::AllowedUids;
use crate::config::{self, Config, ProfileOverrides};
use crate::emulator::rules::{
    self, Context, Lifecycle, Mapping, Registration, ReplayLog, TokenRequest,
};
use crate::jose::{Curve, PublicKey, b64url};
use crate::pkcs11::Pkcs11Uri;

/// Parses `data` as a PKCS#11 URI; one that parses must format to a string that parses back
/// to an equal value (without the `pin-value`, which is never written) and formats the same.
pub fn pkcs11_uri(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(uri) = text.parse::<Pkcs11Uri>() else {
        return;
    };
    let written = uri.to_string();
    let again: Pkcs11Uri = written
        .parse()
        .unwrap_or_else(|e| panic!("{written:?} does not parse back: {e}"));
    let expected = Pkcs11Uri {
        pin_value: None,
        ..uri
    };
    assert!(again == expected, "{written:?} parses back to another URI");
    assert_eq!(again.to_string(), written, "formatting is not stable");
    let _ = again.redacted();
}

/// Reads `data` as a config file (through the size limit, as `--config` does), then resolves
/// every profile in it.
pub fn config(data: &[u8]) {
    let path = Path::new("fuzz.toml");
    let Ok(text) = config::read_limited(data, path) else {
        return;
    };
    let Ok(config) = Config::parse(path, &text) else {
        return;
    };
    let _ = config.allowed_uids();
    for name in config.profile_names() {
        if let Ok(table) = config.profile(name) {
            let _ = config::resolve(Some(table), ProfileOverrides::default());
        }
    }
}

/// Reads `data` as a token endpoint's answer: as a success body and as an error body. An
/// accepted token must be printable ASCII and expire within a day of `now`.
pub fn token_response(data: &[u8]) {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    if let Ok(token) = crate::exchange::parse_success(data, now) {
        assert!(token.expose_secret().bytes().all(|b| b.is_ascii_graphic()));
        let lifetime = token.expires_in(now);
        assert!(lifetime >= Duration::from_secs(1) && lifetime <= Duration::from_secs(86_400));
    }
    let _ = crate::exchange::error_fields(data);
}

/// The emulator's clock for [`emulator_assertion`]: assertions made for this instant are
/// current.
pub const EMULATOR_NOW: u64 = 1_800_000_000;
/// The client id registered in [`emulator_assertion`]'s emulator.
pub const EMULATOR_CLIENT: &str = "abc123";
/// The certificate id (`kid`) registered in [`emulator_assertion`]'s emulator.
pub const EMULATOR_KID: &str = "cert7";
/// The emulator's own token URL in [`emulator_assertion`]: a valid `aud`.
pub const EMULATOR_AUD: &str = "http://127.0.0.1:4000/services/rest/auth/oauth2/v1/token";

/// The fixed P-256 key whose public half [`emulator_assertion`] registers. A test fixture,
/// never a product key: it only signs seeds and mutations for the emulator's verifier.
fn emulator_key() -> p256::ecdsa::SigningKey {
    // A valid scalar (well below the group order), so this cannot fail.
    p256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap_or_else(|_| unreachable!())
}

fn emulator_registration() -> Registration {
    let point = emulator_key().verifying_key().to_sec1_point(false);
    Registration {
        client_id: EMULATOR_CLIENT.parse().unwrap_or_else(|_| unreachable!()),
        certificate_id: EMULATOR_KID.parse().unwrap_or_else(|_| unreachable!()),
        public_key: PublicKey::Ec {
            curve: Curve::P256,
            point: point.as_bytes().to_vec(),
        },
        scopes: "restlets,rest_webservices"
            .parse()
            .unwrap_or_else(|_| unreachable!()),
        account: None,
        // Valid around EMULATOR_NOW, so that only the assertion decides.
        valid_from: SystemTime::UNIX_EPOCH,
        valid_until: SystemTime::UNIX_EPOCH + Duration::from_secs(2 * EMULATOR_NOW),
        mapping: Mapping::default(),
        lifecycle: Lifecycle::default(),
    }
}

/// A compact ES256 JWS over `header` and `claims` (JSON texts) by the key
/// [`emulator_assertion`] registers: valid seeds, and mutations that only a signature check
/// can tell from valid ones.
pub fn emulator_sign(header: &str, claims: &str) -> String {
    let input = format!(
        "{}.{}",
        b64url(header.as_bytes()),
        b64url(claims.as_bytes())
    );
    let signature: p256::ecdsa::Signature = emulator_key().sign(input.as_bytes());
    format!("{input}.{}", b64url(&signature.to_bytes()))
}

/// The emulator's verdict on `data` taken as a token request's form body (with the right
/// content type), and as a bare client assertion, against one registered P-256 key.
pub fn emulator_assertion(data: &[u8]) -> Result<rules::Grant, rules::Refusal> {
    let registrations = [emulator_registration()];
    let replays = ReplayLog::default();
    let ctx = Context {
        registrations: &registrations,
        now: SystemTime::UNIX_EPOCH + Duration::from_secs(EMULATOR_NOW),
        own_token_url: EMULATOR_AUD,
        also_accepted: &[],
        replays: &replays,
    };
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = rules::check_assertion(text, &ctx);
    }
    let request = TokenRequest {
        content_type: Some("application/x-www-form-urlencoded"),
        has_authorization: false,
        body: data,
    };
    rules::check_request(&request, &ctx)
}

/// Reads `data` as the body of a certificate upload to the emulator (sent as JSON). An upload
/// read must hold a certificate of at most the PEM limit and ids that fit NetSuite's.
pub fn emulator_upload(data: &[u8]) {
    if let Ok(upload) = crate::emulator::read_upload(Some("application/json"), data) {
        assert!(
            upload.certificate.der().len() <= 8 * 1024,
            "a certificate over the PEM limit"
        );
        let _ = (upload.role.get(), upload.entity.get());
    }
}

/// The config the fuzzed agent serves: one profile that cannot be resolved (so it is served
/// as failed without touching a token) beside the empty map's 404s.
const AGENT_CONFIG: &str = "[profiles.broken]\nkey = \"pkcs11:token=t;object=k\"\n";

/// The agent's real HTTP stack (`axum::serve` with [`api::router`]) on a single-threaded
/// runtime of its own, fed connections in memory instead of from the Unix socket (the peer-uid
/// check is the only part left out). Each [`AgentHttp::exchange`] is one connection; use one
/// `AgentHttp` per thread.
pub struct AgentHttp {
    runtime: tokio::runtime::Runtime,
    connections: mpsc::UnboundedSender<DuplexStream>,
}

/// A listener whose connections come through a channel.
struct Channel(mpsc::UnboundedReceiver<DuplexStream>);

impl axum::serve::Listener for Channel {
    type Io = DuplexStream;
    type Addr = ();

    async fn accept(&mut self) -> (DuplexStream, ()) {
        match self.0.recv().await {
            Some(io) => (io, ()),
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How many turns of the scheduler without news from the agent mean it waits for more input.
const QUIET_TURNS: u32 = 32;

impl AgentHttp {
    /// Starts the server with a failed profile `broken` and no working one.
    pub fn new() -> std::io::Result<AgentHttp> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let config = Config::parse(Path::new("agent.toml"), AGENT_CONFIG)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let options = Options {
            config: None,
            socket: None,
            allow_uids: Vec::new(),
            module: None,
            open: |_, _| {
                Err(OpenError::new(crate::Error::Usage(
                    "no token while fuzzing".into(),
                )))
            },
            drain_timeout: Duration::from_secs(1),
            sign_timeout: Duration::from_secs(1),
            rotation: Default::default(),
        };
        let served = profiles::open_all(
            &config,
            &Default::default(),
            &options,
            &Arc::default(),
            runtime.handle(),
        );
        let connections = Connections::new(Limits::for_open_files(1024));
        let agent = Arc::new(Agent::new(
            served,
            Arc::new(AllowedUids::default()),
            Arc::new(connections),
        ));
        let (connections, incoming) = mpsc::unbounded_channel();
        let server = axum::serve(Channel(incoming), api::router(agent));
        runtime.spawn(std::future::IntoFuture::into_future(server));
        Ok(AgentHttp {
            runtime,
            connections,
        })
    }

    /// Sends `request` on a new connection and returns what the agent answered until it closed
    /// the connection or went quiet waiting for more (the sending side is not shut: hyper drops
    /// a half-closed connection without answering). `None` when that took over five seconds
    /// (a hang: a bug).
    pub fn exchange(&self, request: &[u8]) -> Option<Vec<u8>> {
        let (client, server) = tokio::io::duplex(64 * 1024);
        self.connections.send(server).ok()?;
        let (mut reader, mut writer) = tokio::io::split(client);
        let sent = std::cell::Cell::new(false);
        let write = async {
            // The agent may answer and close before reading everything.
            let _ = writer.write_all(request).await;
            sent.set(true);
        };
        let read = async {
            let mut answer = Vec::new();
            let mut quiet = 0;
            while quiet < QUIET_TURNS {
                match read_now(&mut reader).await {
                    Poll::Ready(None) => break,
                    Poll::Ready(Some(bytes)) => {
                        answer.extend_from_slice(&bytes);
                        quiet = 0;
                    }
                    Poll::Pending => {
                        quiet = if sent.get() { quiet + 1 } else { 0 };
                        tokio::task::yield_now().await;
                    }
                }
            }
            answer
        };
        let answer = self.runtime.block_on(async {
            let work = async { tokio::join!(write, read).1 };
            tokio::time::timeout(Duration::from_secs(5), work)
                .await
                .ok()
        });
        // Closed now, so that the agent ends the connection before the next one: nothing is
        // left over between inputs (or at exit, where a fuzzer would report it as a leak).
        drop((reader, writer));
        self.runtime.block_on(async {
            for _ in 0..QUIET_TURNS {
                tokio::task::yield_now().await;
            }
        });
        answer
    }
}

/// What `reader` has now: bytes, `None` at the end (or an error), or `Pending`.
async fn read_now(reader: &mut (impl AsyncRead + Unpin)) -> Poll<Option<Vec<u8>>> {
    let mut chunk = [0u8; 8192];
    std::future::poll_fn(|cx| {
        let mut buf = ReadBuf::new(&mut chunk);
        Poll::Ready(match Pin::new(&mut *reader).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                Poll::Ready(Some(buf.filled().to_vec()))
            }
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes the seeds of `fuzz/corpus/emulator_upload`, an upload with ids as numbers and
    /// as strings: `cargo test --lib write_emulator_upload_seeds -- --ignored`.
    #[test]
    #[ignore = "writes the fuzz corpus seeds"]
    fn write_emulator_upload_seeds() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/emulator_upload");
        std::fs::create_dir_all(&dir).unwrap();
        let made = SystemTime::UNIX_EPOCH + Duration::from_secs(EMULATOR_NOW);
        let pem = crate::cert::testing::p256_certificate(7, "seed", made, 730)
            .to_pem()
            .unwrap();
        for (name, role, entity) in [("numbers", "3", "-5"), ("strings", "\"3\"", "\"-5\"")] {
            let body = format!(
                r#"{{"fileContent":{},"role":{role},"entity":{entity}}}"#,
                serde_json::to_string(&pem).unwrap()
            );
            assert!(
                crate::emulator::read_upload(Some("application/json"), body.as_bytes()).is_ok()
            );
            std::fs::write(dir.join(format!("seed-{name}")), body).unwrap();
        }
    }

    /// Writes the signed seeds of `fuzz/corpus/emulator_assertion` (they must match the fixed
    /// key and clock): `cargo test --lib write_emulator_seeds -- --ignored`.
    #[test]
    #[ignore = "writes the fuzz corpus seeds"]
    fn write_emulator_seeds() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/emulator_assertion");
        std::fs::create_dir_all(&dir).unwrap();
        let header = format!(r#"{{"typ":"JWT","alg":"ES256","kid":"{EMULATOR_KID}"}}"#);
        let claims = format!(
            r#"{{"iss":"{EMULATOR_CLIENT}","scope":["restlets","rest_webservices"],"aud":"{EMULATOR_AUD}","iat":{EMULATOR_NOW},"exp":{},"jti":"seed-1"}}"#,
            EMULATOR_NOW + 300
        );
        let assertion = emulator_sign(&header, &claims);
        let form = format!(
            "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={assertion}"
        );
        assert!(emulator_assertion(form.as_bytes()).is_ok());
        std::fs::write(dir.join("seed-form"), &form).unwrap();
        std::fs::write(dir.join("seed-assertion"), &assertion).unwrap();
    }
}
