//! A directory only this user (and root) can change, for files another user must not be able
//! to replace or redirect: the agent's socket, the rotation journal.
//!
//! Every existing directory above it must belong to this user or root and be writable by
//! others only when sticky (like `/tmp`); a symbolic link on the way must belong to this user or
//! root, and the directories it leads to are checked the same way. Missing directories are
//! created 0700, top down. The directory itself is opened without following a link (a
//! symbolic link there is refused, never followed or chmodded) and must belong to this user;
//! what its mode may be is the caller's decision, made through the descriptor.
//!
//! Like `kind`, this module names nothing else of the crate: every layer can use it.

use std::io::ErrorKind;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

/// Why a directory (or link) on the way is not safe: another user could change it, and with
/// it what the directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsafe {
    /// A symbolic link owned by another user, who could repoint it.
    LinkOwner(u32),
    /// A directory owned by another user (not root).
    Owner(u32),
    /// A directory writable by group or others without the sticky bit (its mode).
    Writable(u32),
}

impl std::fmt::Display for Unsafe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unsafe::LinkOwner(uid) => write!(f, "is a symbolic link owned by uid {uid}"),
            Unsafe::Owner(uid) => write!(f, "belongs to uid {uid}"),
            Unsafe::Writable(mode) => write!(
                f,
                "is writable by other users (mode {mode:04o}) without the sticky bit"
            ),
        }
    }
}

/// Why a private directory cannot be had; each caller words it for its own file.
#[derive(Debug)]
pub enum DirError {
    /// A directory (or link) above it that others could change.
    Unsafe {
        /// That directory or link.
        path: PathBuf,
        /// What is wrong with it.
        reason: Unsafe,
    },
    /// The directory itself is a symbolic link.
    Symlink(PathBuf),
    /// The directory belongs to another user.
    Owner {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// This process's uid.
        uid: u32,
    },
    /// It could not be read, created or opened.
    Io {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Checks the directories above `dir` (absolute), creates what is missing of it (0700), and
/// opens it without following a link; it must belong to `own_uid`. Returns it opened, with its
/// mode (permission bits and sticky bit).
pub fn prepare(dir: &Path, own_uid: u32) -> Result<(OwnedFd, u32), DirError> {
    use rustix::fs::{Mode, OFlags};
    check_ancestors(dir, own_uid)?;
    create_missing(dir)?;
    let io = |source: std::io::Error| DirError::Io {
        path: dir.to_owned(),
        source,
    };
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rustix::fs::open(dir, flags, Mode::empty()) {
        Ok(fd) => fd,
        // With O_DIRECTORY, Linux answers ENOTDIR rather than ELOOP for a link.
        Err(_) if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) => {
            return Err(DirError::Symlink(dir.to_owned()));
        }
        Err(e) => return Err(io(e.into())),
    };
    let stat = rustix::fs::fstat(&fd).map_err(|e| io(e.into()))?;
    if stat.st_uid != own_uid {
        return Err(DirError::Owner {
            path: dir.to_owned(),
            owner: stat.st_uid,
            uid: own_uid,
        });
    }
    Ok((fd, stat.st_mode & 0o7777))
}

/// Whether a directory with this owner and mode can be changed only by `own_uid` and root.
fn unsafe_dir(meta: &std::fs::Metadata, own_uid: u32) -> Option<Unsafe> {
    let mode = meta.mode() & 0o7777;
    if meta.uid() != own_uid && meta.uid() != 0 {
        Some(Unsafe::Owner(meta.uid()))
    } else if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        Some(Unsafe::Writable(mode))
    } else {
        None
    }
}

/// Checks every existing directory above `dir` (absolute): each must be root's or this user's,
/// and writable by others only when sticky. A symbolic link on the way must be root's or this
/// user's too; then the directories it leads to are checked as well.
fn check_ancestors(dir: &Path, own_uid: u32) -> Result<(), DirError> {
    let refuse = |path: &Path, reason| DirError::Unsafe {
        path: path.to_owned(),
        reason,
    };
    let io_err = |path: &Path, source| DirError::Io {
        path: path.to_owned(),
        source,
    };
    let mut nearest = None;
    let mut through_link = false;
    for path in dir.ancestors().skip(1) {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(path, e)),
        };
        nearest.get_or_insert(path);
        let meta = if meta.file_type().is_symlink() {
            if meta.uid() != own_uid && meta.uid() != 0 {
                return Err(refuse(path, Unsafe::LinkOwner(meta.uid())));
            }
            through_link = true;
            std::fs::metadata(path).map_err(|e| io_err(path, e))?
        } else {
            meta
        };
        if let Some(reason) = unsafe_dir(&meta, own_uid) {
            return Err(refuse(path, reason));
        }
    }
    // The links' targets may lie under other directories: check those too.
    if let (true, Some(nearest)) = (through_link, nearest) {
        let real = std::fs::canonicalize(nearest).map_err(|e| io_err(nearest, e))?;
        for path in real.ancestors() {
            let meta = std::fs::metadata(path).map_err(|e| io_err(path, e))?;
            if let Some(reason) = unsafe_dir(&meta, own_uid) {
                return Err(refuse(path, reason));
            }
        }
    }
    Ok(())
}

/// Creates the missing directories of `dir`, top down, each 0700 (`mkdir` never follows a
/// link in the last component: a link planted meanwhile makes it fail, and is refused later).
fn create_missing(dir: &Path) -> Result<(), DirError> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|path| {
            matches!(std::fs::symlink_metadata(path), Err(e) if e.kind() == ErrorKind::NotFound)
        })
        .collect();
    for path in missing.into_iter().rev() {
        match std::fs::DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(DirError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        }
    }
    Ok(())
}
