//! The agent's Unix socket: where it lives, binding it safely (a private directory, mode 0600,
//! a stale socket replaced, a live agent left alone), and refusing connections from other users.
//!
//! The directory's 0700 mode already keeps other users out; the peer-uid check is the second
//! wall, for sockets put in shared directories or made accessible on purpose.

use std::io::ErrorKind;
use std::os::unix::fs::{
    DirBuilderExt as _, FileTypeExt as _, MetadataExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{UnixListener, UnixStream};

use super::Error;

/// The socket's file name inside `$XDG_RUNTIME_DIR/suitekey/`.
const SOCKET_NAME: &str = "agent.sock";

/// The body connections from other users get, with a 403, before the connection is closed.
const FORBIDDEN: &str =
    r#"{"error":"forbidden","message":"this agent serves only its own user and the allowed uids"}"#;

fn forbidden_response() -> String {
    format!(
        "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{FORBIDDEN}",
        FORBIDDEN.len()
    )
}

/// `$XDG_RUNTIME_DIR/suitekey/agent.sock`, when `XDG_RUNTIME_DIR` is an absolute path.
pub fn default_path() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("XDG_RUNTIME_DIR")?);
    dir.is_absolute()
        .then(|| dir.join("suitekey").join(SOCKET_NAME))
}

/// Binds the socket at `path`: creates its directory (0700) when missing, replaces a socket
/// file no agent answers on, refuses when one does, and makes the socket 0600.
pub fn bind(path: &Path) -> Result<UnixListener, Error> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        prepare_dir(dir)?;
    }
    remove_stale(path)?;
    let listener = UnixListener::bind(path).map_err(|source| Error::Bind {
        path: path.to_owned(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        Error::Bind {
            path: path.to_owned(),
            source,
        }
    })?;
    Ok(listener)
}

fn prepare_dir(dir: &Path) -> Result<(), Error> {
    let dir_err = |source| Error::SocketDir {
        path: dir.to_owned(),
        source,
    };
    match std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(dir_err(e)),
    }
    let meta = std::fs::metadata(dir).map_err(dir_err)?;
    if meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0 {
        tracing::warn!(
            dir = %dir.display(),
            "the socket's directory is writable by other users, who could replace the socket; use a directory only you can write (the default under $XDG_RUNTIME_DIR is made 0700)"
        );
    }
    Ok(())
}

/// Removes a socket file left by an agent that is gone; an answering agent is an error.
fn remove_stale(path: &Path) -> Result<(), Error> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Bind {
                path: path.to_owned(),
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(Error::NotASocket(path.to_owned()));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(Error::AlreadyRunning(path.to_owned())),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            tracing::info!(socket = %path.display(), "replacing the stale socket of an agent that is gone");
            std::fs::remove_file(path).map_err(|source| Error::Bind {
                path: path.to_owned(),
                source,
            })
        }
        Err(source) => Err(Error::Bind {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The other users allowed on the socket: `--allow-uid` flags and the config's `[agent]
/// allowed-uids`, replaced when SIGHUP reloads the config.
#[derive(Debug, Default)]
pub struct AllowedUids(RwLock<Vec<u32>>);

impl AllowedUids {
    /// From now on, allows `flags` and `config` (the agent's own uid is always allowed).
    pub fn set(&self, flags: &[u32], config: &[u32]) {
        let mut uids: Vec<u32> = flags.iter().chain(config).copied().collect();
        uids.sort_unstable();
        uids.dedup();
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = uids;
    }

    fn contains(&self, uid: u32) -> bool {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&uid)
    }
}

/// A Unix listener that hands axum only connections from allowed users: this process's uid
/// and the [`AllowedUids`]. Others get a 403 and a log line.
pub struct PeerChecked {
    listener: UnixListener,
    own_uid: u32,
    allowed: Arc<AllowedUids>,
}

impl PeerChecked {
    /// Wraps `listener`; the agent's own uid is always allowed, other users when `allowed`
    /// lists them at the time they connect.
    pub fn new(listener: UnixListener, allowed: Arc<AllowedUids>) -> PeerChecked {
        PeerChecked {
            listener,
            own_uid: rustix::process::getuid().as_raw(),
            allowed,
        }
    }

    fn admits(&self, stream: &UnixStream) -> bool {
        match stream.peer_cred() {
            Ok(cred) if cred.uid() == self.own_uid || self.allowed.contains(cred.uid()) => true,
            Ok(cred) => {
                tracing::warn!(
                    uid = cred.uid(),
                    pid = cred.pid(),
                    "refused a connection from another user (403); allow it with --allow-uid or [agent] allowed-uids if intended"
                );
                false
            }
            Err(e) => {
                tracing::warn!("refused a connection whose peer credentials cannot be read: {e}");
                false
            }
        }
    }
}

impl axum::serve::Listener for PeerChecked {
    type Io = UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, addr)) if self.admits(&stream) => return (stream, addr),
                Ok((stream, _)) => {
                    tokio::spawn(refuse(stream));
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!("accept on the agent socket failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// Answers a refused connection with the 403, then reads what the client sent until it closes:
/// a Unix socket closed with unread data resets the peer (ECONNRESET), and the client would
/// lose the 403 it is reading. Bounded in time and bytes, so a refused client costs little.
async fn refuse(mut stream: UnixStream) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = stream.write_all(forbidden_response().as_bytes()).await;
        let _ = stream.shutdown().await;
        let mut sink = [0u8; 4096];
        let mut left: usize = 64 * 1024;
        while let Ok(n @ 1..) = stream.read(&mut sink).await {
            left = left.saturating_sub(n);
            if left == 0 {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forbidden_answer_announces_its_exact_length() {
        let response = forbidden_response();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"], "forbidden");
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_a_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("a.sock");
        let first = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap()).unwrap().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        assert!(matches!(bind(&path), Err(Error::AlreadyRunning(_))));
        drop(first); // the file stays behind, as after a crash
        assert!(path.exists());
        let _second = bind(&path).unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").unwrap();
        assert!(matches!(bind(&file), Err(Error::NotASocket(_))));
    }
}
