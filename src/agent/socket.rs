//! The agent's Unix socket: where it lives, binding it safely (a private directory, mode 0600,
//! a stale socket replaced, a live agent left alone), and refusing connections from other users.
//!
//! The directory's 0700 mode already keeps other users out; the peer-uid check is the second
//! wall, for sockets put in shared directories or made accessible on purpose (as the agent does
//! itself while other uids are allowed). How many connections are held, and for how long, is
//! [`super::connections`]'s business.

use std::io::ErrorKind;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{UnixListener, UnixStream};

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;

use super::Error;
use super::connections::{Activity, Connections, Peer, Permit, Watched};
use super::metrics::Refusal;
use crate::private_dir::{self, DirError};

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

/// The socket file this agent created, by device, inode and birth time (a successor's
/// socket may get the inode number of the one it replaced): at exit the agent removes it only
/// if it is still there, not a successor's socket at the same path.
pub struct Bound {
    path: PathBuf,
    id: FileId,
    /// The socket's directory, opened without following links, and its absolute path.
    dir: (OwnedFd, PathBuf),
    /// The directory's mode while no other user is allowed: 0700 for the default directory,
    /// else as found (or created).
    dir_mode: u32,
}

type FileId = (u64, u64, Option<SystemTime>);

fn file_id(meta: &std::fs::Metadata) -> FileId {
    // No birth time on some file systems: device and inode then.
    (meta.dev(), meta.ino(), meta.created().ok())
}

impl Bound {
    /// Lets other users reach the socket (`open`: its directory searchable by everyone, the
    /// socket 0666), or keeps them out (the directory's own mode, the socket 0600). Opened, the
    /// directory still lets no one else list or change it, and every connection is admitted by
    /// its peer uid ([`PeerChecked`]). Failures are logged: the uid check still holds.
    pub fn admit_others(&self, open: bool) {
        use rustix::fs::{AtFlags, Mode};
        let (dir, dir_path) = &self.dir;
        let (dir_mode, socket_mode) = match open {
            true => (self.dir_mode | 0o011, 0o666),
            false => (self.dir_mode, 0o600),
        };
        let name = self.path.file_name().unwrap_or(self.path.as_os_str());
        let changed = rustix::fs::fchmod(dir, Mode::from_raw_mode(dir_mode)).and_then(|()| {
            let mode = Mode::from_raw_mode(socket_mode);
            rustix::fs::chmodat(dir, name, mode, AtFlags::empty())
        });
        match changed {
            Err(e) => tracing::warn!(
                socket = %self.path.display(),
                "cannot set the modes that let the allowed users reach the socket: {e}"
            ),
            Ok(()) if open => {
                tracing::info!(
                    socket = %self.path.display(),
                    "other users may connect (directory {dir_mode:04o}, socket 0666); only the allowed uids are served"
                );
                warn_if_unreachable(dir_path);
            }
            Ok(()) => {}
        }
    }

    /// Removes the socket file if it is still the one this agent bound.
    pub fn remove(&self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if file_id(&meta) == self.id => {
                let _ = std::fs::remove_file(&self.path);
            }
            Ok(_) => tracing::info!(
                socket = %self.path.display(),
                "the socket was replaced by another agent's; leaving it"
            ),
            Err(_) => {}
        }
    }
}

/// Binds the socket at `path`: refuses a directory that is a symbolic link, belongs to another
/// user, or lies under one that others could change, creates it (0700) when missing, replaces
/// a socket file no agent answers on, refuses when one does, and creates the socket 0600
/// (never wider, not even for a moment).
pub fn bind(path: &Path) -> Result<(UnixListener, Bound), Error> {
    let bind_err = |source| Error::Bind {
        path: path.to_owned(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let (dir, dir_mode) = prepare_dir(dir, default_path().as_deref() == Some(path))?;
    remove_stale(path)?;
    let listener = bind_private(path).map_err(bind_err)?;
    let meta = std::fs::symlink_metadata(path).map_err(bind_err)?;
    let bound = Bound {
        path: path.to_owned(),
        id: file_id(&meta),
        dir,
        dir_mode,
    };
    Ok((listener, bound))
}

/// Binds with the umask at 0o177, so the socket is created 0600. The umask is process-wide:
/// this runs at startup, before the agent creates any other file.
fn bind_private(path: &Path) -> std::io::Result<UnixListener> {
    use rustix::fs::Mode;
    use rustix::process::umask;
    let previous = umask(Mode::from_raw_mode(0o177));
    let listener = UnixListener::bind(path);
    umask(previous);
    let listener = listener?;
    // The umask can only narrow it; this makes the mode exact.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub use crate::private_dir::Unsafe;

/// The agent's error for a socket directory that is not safe (`dir`: the socket's directory).
fn dir_error(dir: &Path, e: DirError) -> Error {
    match e {
        DirError::Unsafe { path, reason } => Error::SocketPathUnsafe {
            dir: dir.to_owned(),
            path,
            reason,
        },
        DirError::Symlink(path) => Error::SocketDirSymlink(path),
        DirError::Owner { path, owner, uid } => Error::SocketDirOwner { path, owner, uid },
        DirError::Io { path, source } => Error::SocketDir { path, source },
    }
}

/// Makes the socket's directory safe to bind in, and returns it opened. Every directory above
/// it must be one only this user or root can change ([`check_ancestors`]); missing ones are
/// created 0700. The directory itself is opened without following a link (a symbolic link is
/// refused, never chmodded), must belong to this user, and is checked and chmodded through
/// that descriptor: the default directory is made 0700, another one must not be writable by
/// others unless sticky.
fn prepare_dir(dir: &Path, is_default: bool) -> Result<((OwnedFd, PathBuf), u32), Error> {
    use rustix::fs::Mode;
    let dir_err = |source| Error::SocketDir {
        path: dir.to_owned(),
        source,
    };
    let dir = &std::path::absolute(dir).map_err(dir_err)?;
    let own_uid = rustix::process::getuid().as_raw();
    let (fd, mut mode) = private_dir::prepare(dir, own_uid).map_err(|e| dir_error(dir, e))?;
    if is_default && mode != 0o700 {
        tracing::info!(dir = %dir.display(), "making the socket's directory 0700");
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700)).map_err(|e| dir_err(e.into()))?;
        mode = 0o700;
    } else if !is_default && mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(Error::SocketPathUnsafe {
            dir: dir.to_owned(),
            path: dir.to_owned(),
            reason: Unsafe::Writable(mode),
        });
    }
    Ok(((fd, dir.to_owned()), mode))
}

/// Warns when a directory above `dir` keeps other users from reaching the socket (no search
/// permission for others): e.g. `$XDG_RUNTIME_DIR`, which is 0700.
fn warn_if_unreachable(dir: &Path) {
    let closed = dir.ancestors().find_map(|path| {
        let meta = std::fs::metadata(path).ok()?;
        (meta.mode() & 0o001 == 0).then(|| (path, meta.mode() & 0o7777))
    });
    if let Some((path, mode)) = closed {
        tracing::warn!(
            dir = %path.display(),
            "other users are allowed on the socket but cannot reach it: '{}' is mode {mode:04o}, not searchable by them; pass a --socket PATH under directories they can enter (e.g. /run/suitekey for a service)",
            path.display()
        );
    }
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
/// allowed-uids`, replaced when SIGHUP reloads the config; and the socket whose modes follow
/// them (open to others while any uid is allowed, see [`Bound::admit_others`]).
#[derive(Default)]
pub struct AllowedUids {
    uids: RwLock<Vec<u32>>,
    socket: Option<Arc<Bound>>,
}

impl AllowedUids {
    /// The allowed uids of the agent listening on `socket`.
    pub fn for_socket(socket: Arc<Bound>) -> AllowedUids {
        AllowedUids {
            uids: RwLock::default(),
            socket: Some(socket),
        }
    }

    /// From now on, allows `flags` and `config` (the agent's own uid is always allowed), and
    /// opens the socket to other users when there are any, or closes it when there are none.
    pub fn set(&self, flags: &[u32], config: &[u32]) {
        let mut uids: Vec<u32> = flags.iter().chain(config).copied().collect();
        uids.sort_unstable();
        uids.dedup();
        let others = !uids.is_empty();
        *self.uids.write().unwrap_or_else(PoisonError::into_inner) = uids;
        if let Some(socket) = &self.socket {
            socket.admit_others(others);
        }
    }

    fn contains(&self, uid: u32) -> bool {
        self.uids
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&uid)
    }
}

/// A Unix listener that hands axum only connections from allowed users (this process's uid
/// and the [`AllowedUids`]) and only within the [`Connections`] limits, each [`Watched`] for
/// its timeouts. Other users get a 403; connections beyond the limits are closed at once.
pub struct PeerChecked {
    listener: UnixListener,
    own_uid: u32,
    allowed: Arc<AllowedUids>,
    connections: Arc<Connections>,
}

impl PeerChecked {
    /// Wraps `listener`; the agent's own uid is always allowed, other users when `allowed`
    /// lists them at the time they connect.
    pub fn new(
        listener: UnixListener,
        allowed: Arc<AllowedUids>,
        connections: Arc<Connections>,
    ) -> PeerChecked {
        PeerChecked {
            listener,
            own_uid: rustix::process::getuid().as_raw(),
            allowed,
            connections,
        }
    }

    /// The connection, watched, when its peer is allowed and there is room for it; else it
    /// is refused (a 403 in the background, or closed at once) and counted.
    fn admit(&self, stream: UnixStream) -> Option<Watched<UnixStream>> {
        let cred = stream.peer_cred().ok();
        let peer = Peer {
            uid: cred.map(|c| c.uid()),
            pid: cred.and_then(|c| c.pid()),
        };
        let allowed = peer
            .uid
            .is_some_and(|uid| uid == self.own_uid || self.allowed.contains(uid));
        match self.connections.admit(peer, !allowed) {
            Ok(permit) if allowed => return Some(Watched::new(stream, permit, peer)),
            Ok(permit) => {
                tokio::spawn(refuse(stream, permit));
                self.connections.refused(Refusal::Uid, peer);
            }
            // Closed at once (dropped): nothing read, nothing written.
            Err(reason) => self.connections.refused(reason, peer),
        }
        None
    }
}

impl axum::serve::Listener for PeerChecked {
    type Io = Watched<UnixStream>;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, addr)) => {
                    if let Some(watched) = self.admit(stream) {
                        return (watched, addr);
                    }
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

/// Each request's route layer finds the connection's [`Activity`] here, to mark the request
/// in flight (no timeout runs meanwhile).
impl Connected<IncomingStream<'_, PeerChecked>> for Activity {
    fn connect_info(stream: IncomingStream<'_, PeerChecked>) -> Activity {
        stream.io().activity().clone()
    }
}

/// Answers a refused connection with the 403, then reads what the client sent until it closes:
/// a Unix socket closed with unread data resets the peer (ECONNRESET), and the client would
/// lose the 403 it is reading. Bounded in time and bytes, so a refused client costs little;
/// its place among the limits is held until then.
async fn refuse(mut stream: UnixStream, _permit: Permit) {
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
    use std::fs::Permissions;

    #[test]
    fn the_forbidden_answer_announces_its_exact_length() {
        let response = forbidden_response();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"], "forbidden");
    }

    #[test]
    fn the_default_directory_is_made_private_and_another_users_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let open = |mode| std::fs::set_permissions(dir.path(), Permissions::from_mode(mode));
        let mode = || std::fs::metadata(dir.path()).unwrap().mode() & 0o777;
        open(0o755).unwrap();
        prepare_dir(dir.path(), false).unwrap();
        assert_eq!(
            mode(),
            0o755,
            "a directory given with --socket is left as it is"
        );
        prepare_dir(dir.path(), true).unwrap();
        assert_eq!(mode(), 0o700, "the default directory is made private");

        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped the ownership check: needs root to chown");
            return;
        }
        std::os::unix::fs::chown(dir.path(), Some(65534), None).unwrap();
        let err = prepare_dir(dir.path(), true).unwrap_err();
        assert!(
            matches!(err, Error::SocketDirOwner { owner: 65534, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("--socket PATH"), "{err}");
    }

    #[test]
    fn links_and_directories_others_could_change_are_refused_on_the_way() {
        use std::os::unix::fs::symlink;
        let tmp = tempfile::tempdir().unwrap();
        let at = |name: &str| tmp.path().join(name);
        let make = |name: &str, mode| {
            std::fs::create_dir(at(name)).unwrap();
            std::fs::set_permissions(at(name), Permissions::from_mode(mode)).unwrap();
        };
        let unsafe_at = |dir: &Path| match prepare_dir(dir, false) {
            Err(Error::SocketPathUnsafe { path, reason, .. }) => Some((path, reason)),
            Err(e) => panic!("{}: {e}", dir.display()),
            Ok(_) => None,
        };
        make("group", 0o770);
        assert_eq!(
            unsafe_at(&at("group").join("s")),
            Some((at("group"), Unsafe::Writable(0o770)))
        );
        make("sticky", 0o1777);
        assert_eq!(unsafe_at(&at("sticky").join("s")), None);
        // A link of ours is followed, and its target's directories are checked too.
        make("real", 0o700);
        symlink(at("real"), at("to-real")).unwrap();
        assert_eq!(unsafe_at(&at("to-real").join("s")), None);
        assert!(at("real").join("s").is_dir());
        make("open", 0o777);
        std::fs::create_dir(at("open").join("inner")).unwrap();
        symlink(at("open").join("inner"), at("to-open")).unwrap();
        assert_eq!(
            unsafe_at(&at("to-open").join("s")),
            Some((at("open"), Unsafe::Writable(0o777)))
        );
        assert!(!at("open").join("inner").join("s").exists());

        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped the ownership checks: needs root to chown");
            return;
        }
        make("theirs", 0o755);
        std::os::unix::fs::chown(at("theirs"), Some(65534), None).unwrap();
        assert_eq!(
            unsafe_at(&at("theirs").join("s")),
            Some((at("theirs"), Unsafe::Owner(65534)))
        );
        symlink(at("real"), at("their-link")).unwrap();
        std::os::unix::fs::lchown(at("their-link"), Some(65534), None).unwrap();
        assert_eq!(
            unsafe_at(&at("their-link").join("s")),
            Some((at("their-link"), Unsafe::LinkOwner(65534)))
        );
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_a_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("a.sock");
        let (first, stale) = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap()).unwrap().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        assert!(matches!(bind(&path), Err(Error::AlreadyRunning(_))));
        drop(first); // the file stays behind, as after a crash
        assert!(path.exists());
        let (_second, second) = bind(&path).unwrap();
        stale.remove();
        assert!(path.exists(), "an older agent leaves a newer one's socket");
        second.remove();
        assert!(!path.exists());
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").unwrap();
        assert!(matches!(bind(&file), Err(Error::NotASocket(_))));
    }

    #[tokio::test]
    async fn allowing_other_uids_opens_the_socket_and_allowing_none_closes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("a.sock");
        let (_listener, bound) = bind(&path).unwrap();
        let allowed = AllowedUids::for_socket(Arc::new(bound));
        let modes = || {
            let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
            (mode(path.parent().unwrap()), mode(&path))
        };
        assert_eq!(modes(), (0o700, 0o600));
        allowed.set(&[], &[1001]);
        assert!(allowed.contains(1001));
        assert_eq!(modes(), (0o711, 0o666));
        allowed.set(&[], &[]);
        assert!(!allowed.contains(1001));
        assert_eq!(modes(), (0o700, 0o600));
    }
}
