//! The client side: `token` and `exec` ask the agent named by `SUITEKEY_AUTH_SOCK` for a
//! profile's access token instead of signing themselves.
//!
//! Whatever answers on that socket is checked before anything is read from it: its peer
//! credentials (`SO_PEERCRED`, taken by the kernel when it listened) must be this user's, root's,
//! or the uid named by `SUITEKEY_AGENT_UID`. Another local user who can put a socket where
//! `SUITEKEY_AUTH_SOCK` points (a shared directory, a stale variable) would otherwise choose
//! the token, or the message, that a script acts on.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use hyper::body::Body as _;
use hyper_util::rt::TokioIo;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use tokio::net::UnixStream;
use zeroize::Zeroizing;

use super::api::{BAD_REQUEST, UNKNOWN_PROFILE};
use crate::exchange::{self, AccessToken};
use crate::kind::{HasKind, Kind};

/// Longer than the agent's own worst case: three attempts at the token endpoint.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The variable naming the uid of a system agent (one run as a service user) that may answer
/// on the socket, besides the caller's own uid and root.
pub const AGENT_UID_ENV: &str = "SUITEKEY_AGENT_UID";

/// Why the agent gave no token.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers on the socket.
    #[error(
        "cannot reach the suitekey agent at '{}' (named by SUITEKEY_AUTH_SOCK): {reason}; start it with 'suitekey agent', correct SUITEKEY_AUTH_SOCK, or pass --no-agent to sign here",
        .socket.display()
    )]
    Unreachable {
        /// The socket path.
        socket: PathBuf,
        /// What the connection attempt said.
        reason: String,
    },
    /// The process answering on the socket runs as a user that is not trusted to hand out
    /// tokens.
    #[error(
        "the process answering on '{}' (named by SUITEKEY_AUTH_SOCK) runs as uid {uid}, not as you (uid {own}) or root, so nothing is read from it; if it is a system agent run as a service user, set SUITEKEY_AGENT_UID={uid}; otherwise another user may have put that socket there: check who owns the socket and its directory, start your own agent, or pass --no-agent",
        .socket.display()
    )]
    UntrustedPeer {
        /// The socket path.
        socket: PathBuf,
        /// The peer's uid, from its credentials.
        uid: u32,
        /// This process's uid.
        own: u32,
    },
    /// `SUITEKEY_AGENT_UID` is not a uid.
    #[error(
        "SUITEKEY_AGENT_UID is not a numeric user id: set it to the uid the agent runs as (id -u USER), or unset it"
    )]
    AgentUid,
    /// The agent answered with an error.
    #[error("the agent at '{}' could not give a token: {message}", .socket.display())]
    Refused {
        /// The socket path.
        socket: PathBuf,
        /// The agent's `error` code.
        code: String,
        /// The agent's explanation.
        message: String,
    },
    /// The answer was not what an agent sends.
    #[error("the agent at '{}' sent an unusable answer: {reason}; is it a suitekey agent?", .socket.display())]
    Protocol {
        /// The socket path.
        socket: PathBuf,
        /// What is wrong with the answer (never its body: it may hold a token).
        reason: String,
    },
}

impl HasKind for ClientError {
    /// What the agent reported keeps the kind (and so the exit code) the command would have
    /// had itself; a profile it does not serve, or a name it cannot route, is the user's
    /// input; an unreachable, untrusted or misbehaving agent (or a name no agent sends) is the
    /// agent's; a bad `SUITEKEY_AGENT_UID` is the user's input.
    fn kind(&self) -> Kind {
        match self {
            ClientError::Refused { code, .. } => match code.as_str() {
                UNKNOWN_PROFILE | BAD_REQUEST => Kind::Usage,
                name => Kind::from_name(name).unwrap_or(Kind::Agent),
            },
            ClientError::AgentUid => Kind::Usage,
            ClientError::Unreachable { .. }
            | ClientError::UntrustedPeer { .. }
            | ClientError::Protocol { .. } => Kind::Agent,
        }
    }
}

/// `GET /v1/profiles` on the agent at `socket`, once its peer is trusted: every profile it
/// serves with its status (for `doctor`).
pub async fn fetch_profiles(socket: &Path) -> Result<serde_json::Value, ClientError> {
    let named = agent_uid(std::env::var_os(AGENT_UID_ENV))?;
    let (status, body) = tokio::time::timeout(TIMEOUT, ask(socket, "/v1/profiles".into(), named))
        .await
        .unwrap_or_else(|_| {
            Err(ClientError::Protocol {
                socket: socket.to_owned(),
                reason: format!("no complete answer within {} s", TIMEOUT.as_secs()),
            })
        })?;
    let protocol = |reason: String| ClientError::Protocol {
        socket: socket.to_owned(),
        reason,
    };
    if !status.is_success() {
        return Err(protocol(format!("HTTP {status} for /v1/profiles")));
    }
    serde_json::from_slice(&body).map_err(|e| protocol(format!("not JSON: {e}")))
}

/// The certificate id the agent at `socket` serves `profile` with, once its peer is trusted;
/// `None` when it serves no profile of that name (or names no certificate for it).
pub async fn served_certificate(
    socket: &Path,
    profile: &str,
) -> Result<Option<String>, ClientError> {
    let profiles = fetch_profiles(socket).await?;
    let entry = profiles["profiles"]
        .as_array()
        .and_then(|list| list.iter().find(|p| p["name"] == profile));
    Ok(entry
        .and_then(|p| p["certificate_id"].as_str())
        .map(str::to_owned))
}

/// `GET /v1/profiles/{profile}/token` on the agent at `socket`, once its peer is trusted.
pub async fn fetch_token(socket: &Path, profile: &str) -> Result<AccessToken, ClientError> {
    let named = agent_uid(std::env::var_os(AGENT_UID_ENV))?;
    let path = format!(
        "/v1/profiles/{}/token",
        utf8_percent_encode(profile, NON_ALPHANUMERIC)
    );
    let (status, body) = tokio::time::timeout(TIMEOUT, ask(socket, path, named))
        .await
        .unwrap_or_else(|_| {
            Err(ClientError::Protocol {
                socket: socket.to_owned(),
                reason: format!("no complete answer within {} s", TIMEOUT.as_secs()),
            })
        })?;
    let protocol = |reason: String| ClientError::Protocol {
        socket: socket.to_owned(),
        reason,
    };
    if status.is_success() {
        return exchange::parse_success(&body, SystemTime::now()).map_err(protocol);
    }
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
        message: String,
    }
    let refusal: ErrorBody = serde_json::from_slice(&body)
        .map_err(|_| protocol(format!("HTTP {status} without a JSON error")))?;
    Err(ClientError::Refused {
        socket: socket.to_owned(),
        code: refusal.error,
        message: printable(&refusal.message),
    })
}

/// The uid `SUITEKEY_AGENT_UID` names, if set (empty is unset).
fn agent_uid(value: Option<std::ffi::OsString>) -> Result<Option<u32>, ClientError> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    value
        .to_str()
        .and_then(|text| text.trim().parse().ok())
        .map(Some)
        .ok_or(ClientError::AgentUid)
}

/// Whether a peer of uid `peer` may hand this user (`own`) a token: the user itself, root
/// (who can read the user's tokens anyway), or the system agent's uid the user named.
fn trusted(peer: u32, own: u32, named: Option<u32>) -> bool {
    peer == own || peer == 0 || named == Some(peer)
}

/// Connects, checks the peer, and sends `GET path` on that very connection (a second
/// connection could reach another listener): the status and the body, read up to
/// [`exchange::MAX_BODY`] like a token endpoint's.
async fn ask(
    socket: &Path,
    path: String,
    named: Option<u32>,
) -> Result<(hyper::StatusCode, Zeroizing<Vec<u8>>), ClientError> {
    let unreachable = |reason: String| ClientError::Unreachable {
        socket: socket.to_owned(),
        reason,
    };
    let protocol = |reason: String| ClientError::Protocol {
        socket: socket.to_owned(),
        reason,
    };
    let stream = connect_trusted(socket, named).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(crate::report::chain(&e)))?;
    // Drives the connection while the request is sent and its answer read; it ends with them.
    let driver = tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, "localhost")
        .body(String::new())
        .map_err(|e| protocol(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| unreachable(crate::report::chain(&e)))?;
    let status = response.status();
    let body = read_capped(response.into_body()).await.map_err(protocol);
    driver.abort();
    let body = body?;
    tracing::debug!(%status, bytes = body.len(), "the agent answered");
    Ok((status, body))
}

/// A connection to `socket` whose peer (its credentials as the kernel recorded them when it
/// listened) is [`trusted`]; nothing has been read from it yet.
async fn connect_trusted(socket: &Path, named: Option<u32>) -> Result<UnixStream, ClientError> {
    let unreachable = |reason: String| ClientError::Unreachable {
        socket: socket.to_owned(),
        reason,
    };
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let peer = stream
        .peer_cred()
        .map_err(|e| unreachable(format!("its peer credentials cannot be read: {e}")))?;
    let own = rustix::process::getuid().as_raw();
    if !trusted(peer.uid(), own, named) {
        return Err(ClientError::UntrustedPeer {
            socket: socket.to_owned(),
            uid: peer.uid(),
            own,
        });
    }
    tracing::debug!(
        socket = %socket.display(),
        peer_uid = peer.uid(),
        peer_pid = peer.pid(),
        "connected to the agent"
    );
    Ok(stream)
}

/// The body, abandoned as soon as it (or its announced length) exceeds [`exchange::MAX_BODY`].
async fn read_capped(mut body: hyper::body::Incoming) -> Result<Zeroizing<Vec<u8>>, String> {
    let too_large = || exchange::BodyError::TooLarge.to_string();
    if body.size_hint().lower() > exchange::MAX_BODY as u64 {
        return Err(too_large());
    }
    // Zeroizing: a success body holds the access token.
    let mut out = Zeroizing::new(Vec::new());
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|e| format!("the answer was cut short: {e}"))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > exchange::MAX_BODY {
                return Err(too_large());
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

/// The agent's message as it may reach a terminal: its lines kept, but no other control
/// characters (escape sequences or a carriage return could rewrite what the user sees), and
/// at most [`MAX_MESSAGE`] characters.
fn printable(message: &str) -> String {
    let mut shown: String = message
        .chars()
        .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
        .take(MAX_MESSAGE)
        .collect();
    if message.chars().count() > MAX_MESSAGE {
        shown.push_str(" (cut)");
    }
    shown
}

/// The longest agent message passed on: the agent's own are a few hundred characters.
const MAX_MESSAGE: usize = 2000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_messages_lose_control_characters_but_newlines_and_are_cut() {
        assert_eq!(printable("no\x1b[2Jkey\nhere"), "no [2Jkey\nhere");
        assert_eq!(printable("a\r\nb\tc\u{9b}d"), "a \nb c d");
        let long = "x".repeat(MAX_MESSAGE + 10);
        let shown = printable(&long);
        assert!(
            shown.ends_with(" (cut)") && shown.len() == MAX_MESSAGE + 6,
            "{}",
            shown.len()
        );
        assert_eq!(printable("the profile is fine"), "the profile is fine");
    }

    #[test]
    fn only_the_users_own_uid_root_or_the_named_agent_uid_is_trusted() {
        assert!(trusted(1000, 1000, None));
        assert!(trusted(0, 1000, None));
        assert!(!trusted(1001, 1000, None));
        assert!(trusted(998, 1000, Some(998)));
        assert!(!trusted(1001, 1000, Some(998)));
        assert!(trusted(0, 0, None));
        assert!(!trusted(65534, 0, None));
        assert_eq!(agent_uid(None).unwrap(), None);
        assert_eq!(agent_uid(Some("".into())).unwrap(), None);
        assert_eq!(agent_uid(Some("998".into())).unwrap(), Some(998));
        for bad in ["nobody", "-1", "4294967296", "1,2"] {
            let err = agent_uid(Some(bad.into())).unwrap_err();
            assert_eq!(err.kind().exit_code(), 2);
            assert!(!err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn agent_errors_keep_the_exit_codes_of_the_commands() {
        let refused = |code: &str| ClientError::Refused {
            socket: "/s".into(),
            code: code.into(),
            message: String::new(),
        };
        assert_eq!(refused("pin").kind().exit_code(), 4);
        assert_eq!(refused("upstream").kind().exit_code(), 6);
        assert_eq!(refused("unknown_profile").kind().exit_code(), 2);
        assert_eq!(refused("forbidden").kind().exit_code(), 7);
        let untrusted = ClientError::UntrustedPeer {
            socket: "/tmp/x/agent.sock".into(),
            uid: 1001,
            own: 1000,
        };
        assert_eq!(untrusted.kind().exit_code(), 7);
        let text = untrusted.to_string();
        assert!(
            text.contains("/tmp/x/agent.sock")
                && text.contains("uid 1001")
                && text.contains("SUITEKEY_AGENT_UID=1001"),
            "{text}"
        );
        let gone = ClientError::Unreachable {
            socket: "/run/x.sock".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(gone.kind().exit_code(), 7);
        let text = gone.to_string();
        assert!(
            text.contains("/run/x.sock") && text.contains("--no-agent"),
            "{text}"
        );
    }
}
