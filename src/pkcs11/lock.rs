//! Taking turns at a token across processes: an advisory lock file per token, and the
//! jittered pauses between tries.
//!
//! SoftHSM2 rewrites its `token.object` file at every successful login, and another process
//! reading the token at that moment (in `C_Initialize`, `C_GetTokenInfo`, `C_Login`, …) sees it
//! uninitialized or broken (`CKR_GENERAL_ERROR`). suitekey processes therefore hold a lock on
//! the token while they load the module, open a session, log in and sign. The lock is advisory
//! and bounded: one that cannot be taken in time, or whose directory is not safe, is gone
//! without (the caller's retries cover what still fails); it never blocks for good.
//!
//! The lock files live in `$XDG_RUNTIME_DIR/suitekey/locks/`, else in
//! `$TMPDIR/suitekey-UID/locks/`: directories made 0700, owned by this user, never followed
//! through a symlink; the files are made 0600 and opened with `O_NOFOLLOW`.

use std::fs::{DirBuilder, File, OpenOptions, TryLockError};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a process waits for another's turn at a token before going on without the lock.
/// Turns last milliseconds (a login, a signature); a PIN prompt never happens during one.
pub(crate) const LOCK_WAIT: Duration = Duration::from_secs(5);

/// The longest pause between two looks at a busy lock.
const POLL_MAX: Duration = Duration::from_millis(20);

/// The lock file of one token: every suitekey process naming the token the same way (module
/// path and the key URI's token attributes) uses the same file.
#[derive(Clone, Debug)]
pub(crate) struct TokenLock {
    /// `None` when no safe place for it was found: then every hold is a no-op.
    file: Option<PathBuf>,
}

/// A turn at the token, until dropped (closing the file releases the lock).
#[must_use = "the turn ends when this is dropped"]
pub(crate) struct Turn {
    _file: Option<File>,
}

impl TokenLock {
    /// The lock of the token `token` (the URI's token attributes) in the module at `module`,
    /// in the default lock directory.
    pub(crate) fn new(module: &Path, token: &str) -> TokenLock {
        match default_dir() {
            Some(dir) => TokenLock::in_dir(&dir, module, token),
            None => TokenLock { file: None },
        }
    }

    /// The lock of that token in `dir` (made 0700 when missing; refused when it is a symlink,
    /// another user's, or writable by others).
    pub(crate) fn in_dir(dir: &Path, module: &Path, token: &str) -> TokenLock {
        use sha2::Digest as _;
        let mut hasher = sha2::Sha256::new();
        hasher.update(module.as_os_str().as_encoded_bytes());
        hasher.update([0]);
        hasher.update(token.as_bytes());
        let digest = hasher.finalize();
        let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let file = match private_dir(dir) {
            Ok(()) => Some(dir.join(format!("token-{name}.lock"))),
            Err(why) => {
                tracing::warn!(dir = %dir.display(), "not using this lock directory: {why}; concurrent suitekey processes on one token rely on retries alone");
                None
            }
        };
        TokenLock { file }
    }

    /// Waits for this process's turn at the token, at most [`LOCK_WAIT`].
    pub(crate) fn hold(&self) -> Turn {
        self.hold_within(LOCK_WAIT)
    }

    /// Waits for this process's turn at the token, at most `wait`; after that (or when the
    /// lock file cannot be used) goes on without it.
    pub(crate) fn hold_within(&self, wait: Duration) -> Turn {
        let Some(path) = &self.file else {
            return Turn { _file: None };
        };
        let file = match open_lock_file(path) {
            Ok(file) => file,
            Err(why) => {
                tracing::debug!(lock = %path.display(), "going on without the token's lock: {why}");
                return Turn { _file: None };
            }
        };
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(1);
        loop {
            match file.try_lock() {
                Ok(()) => return Turn { _file: Some(file) },
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(jittered(pause));
                    pause = (pause * 2).min(POLL_MAX);
                }
                Err(TryLockError::WouldBlock) => {
                    tracing::info!(lock = %path.display(), "another process kept its turn at the token for {wait:?}; going on without the lock");
                    return Turn { _file: None };
                }
                Err(TryLockError::Error(e)) => {
                    tracing::debug!(lock = %path.display(), "going on without the token's lock: {e}");
                    return Turn { _file: None };
                }
            }
        }
    }
}

/// `$XDG_RUNTIME_DIR/suitekey/locks` (when it is an absolute path), else
/// `$TMPDIR/suitekey-UID/locks`; its parent made private here when missing.
fn default_dir() -> Option<PathBuf> {
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute() && d.is_dir());
    let parent = match runtime {
        Some(dir) => dir.join("suitekey"),
        None => {
            std::env::temp_dir().join(format!("suitekey-{}", rustix::process::geteuid().as_raw()))
        }
    };
    match private_dir(&parent) {
        Ok(()) => Some(parent.join("locks")),
        Err(why) => {
            tracing::warn!(dir = %parent.display(), "not using this lock directory: {why}; concurrent suitekey processes on one token rely on retries alone");
            None
        }
    }
}

/// Makes `dir` (0700) when missing, and checks that it is a directory of this user that no one
/// else can write to, not a symlink.
fn private_dir(dir: &Path) -> Result<(), String> {
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create it: {e}")),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("cannot read it: {e}"))?;
    let uid = rustix::process::geteuid().as_raw();
    if meta.file_type().is_symlink() {
        Err("it is a symlink".into())
    } else if !meta.is_dir() {
        Err("it is not a directory".into())
    } else if meta.uid() != uid {
        Err(format!("it belongs to uid {}, not {uid}", meta.uid()))
    } else if meta.mode() & 0o022 != 0 {
        Err(format!(
            "other users may write to it (mode {:o})",
            meta.mode() & 0o7777
        ))
    } else {
        Ok(())
    }
}

/// Opens (or makes, 0600) the lock file without following a symlink, and checks that it is a
/// plain file of this user.
fn open_lock_file(path: &Path) -> Result<File, String> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|e| format!("cannot open it: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read it: {e}"))?;
    let uid = rustix::process::geteuid().as_raw();
    if !meta.is_file() {
        Err("it is not a plain file".into())
    } else if meta.uid() != uid {
        Err(format!("it belongs to uid {}, not {uid}", meta.uid()))
    } else {
        Ok(file)
    }
}

/// `pause` scaled by a random factor in [0.5, 1.5): processes that failed together do not try
/// again together.
pub(crate) fn jittered(pause: Duration) -> Duration {
    // Without the OS's randomness, the process id still tells processes apart.
    let random =
        getrandom::u32().unwrap_or_else(|_| std::process::id().wrapping_mul(2_654_435_761));
    pause.mul_f64(0.5 + f64::from(random) / (f64::from(u32::MAX) + 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn module() -> &'static Path {
        Path::new("/usr/lib/softhsm/libsofthsm2.so")
    }

    #[test]
    fn a_turn_excludes_another_until_dropped_and_a_busy_lock_is_given_up_in_time() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("locks");
        let lock = TokenLock::in_dir(&dir, module(), "pkcs11:token=a");
        let first = lock.hold();
        assert!(first._file.is_some());
        // Another open file description of the same lock: another process, as flock sees it.
        let started = Instant::now();
        let second = lock.hold_within(Duration::from_millis(200));
        assert!(second._file.is_none(), "the busy lock was given up");
        assert!(started.elapsed() >= Duration::from_millis(200));
        drop(first);
        assert!(lock.hold_within(Duration::from_millis(200))._file.is_some());
        // Another token has its own lock.
        let other = TokenLock::in_dir(&dir, module(), "pkcs11:token=b");
        let _a = lock.hold();
        assert!(other.hold_within(Duration::ZERO)._file.is_some());
        let meta = std::fs::symlink_metadata(&dir).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700);
        let file = lock.file.clone().unwrap();
        assert_eq!(std::fs::metadata(file).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn symlinks_and_open_directories_are_never_used_for_locks() {
        let base = tempfile::tempdir().unwrap();
        // A symlink planted where the lock file goes: not followed, nothing made at its target.
        let dir = base.path().join("locks");
        let lock = TokenLock::in_dir(&dir, module(), "pkcs11:token=a");
        let target = base.path().join("target");
        std::os::unix::fs::symlink(&target, lock.file.as_ref().unwrap()).unwrap();
        assert!(lock.hold()._file.is_none());
        assert!(!target.exists(), "the symlink was followed");
        // A symlinked lock directory, and one others may write to: not used at all.
        let real = base.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let linked = base.path().join("linked");
        std::os::unix::fs::symlink(&real, &linked).unwrap();
        assert!(TokenLock::in_dir(&linked, module(), "t").file.is_none());
        let open = base.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(TokenLock::in_dir(&open, module(), "t").file.is_none());
        assert_eq!(std::fs::read_dir(&real).unwrap().count(), 0);
    }

    #[test]
    fn pauses_are_jittered_within_half_and_one_and_a_half_times() {
        let pause = Duration::from_millis(100);
        let seen: Vec<Duration> = (0..50).map(|_| jittered(pause)).collect();
        assert!(seen.iter().all(|p| *p >= pause / 2 && *p < pause * 3 / 2));
        assert!(seen.iter().any(|p| *p != seen[0]), "{seen:?}");
    }
}
