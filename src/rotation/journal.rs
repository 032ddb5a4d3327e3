//! The journal of a rotation: its plan and the steps it finished, kept in
//! `$XDG_STATE_HOME/suitekey/rotate/<profile>.json` (else `~/.local/state/…`) so that a
//! rotation interrupted at any moment continues where it stopped.
//!
//! It holds no secret: key URIs (never a `pin-value`), certificate ids, the new certificate
//! (public), role and entity ids, times. The directory is made 0700 and checked like the
//! agent's socket directory ([`crate::private_dir`]); files in it are opened through it
//! without following a link, written 0600 to a temporary file and renamed into place, so a
//! reader sees the old journal or the new one, whole. A lock file beside it keeps two
//! rotations of one profile from running at once.

use std::fs::File;
use std::io::{ErrorKind, Read as _, Write as _};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rustix::fs::{Mode, OFlags};
use serde::{Deserialize, Serialize};

use super::error::JournalError;
use super::plan::Plan;
use super::step::Step;
use crate::cert::rfc3339;
use crate::private_dir::{self, DirError, Unsafe};

/// The journal format's version; another is refused rather than misread.
pub const JOURNAL_VERSION: u32 = 1;

/// A journal is a few KiB; a larger file is not one.
const MAX_JOURNAL: u64 = 64 * 1024;

/// A rotation's journal: what it is doing (its plan) and how far it got.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Journal {
    /// [`JOURNAL_VERSION`].
    pub version: u32,
    /// The profile rotated.
    pub profile: String,
    /// The config file holding it (its real path).
    pub config: PathBuf,
    /// When the rotation began (RFC 3339).
    pub started: String,
    /// When the journal was last written.
    pub updated: String,
    /// Every step finished.
    pub complete: bool,
    /// What step 1 decided.
    pub plan: Plan,
    /// The new certificate (PEM; public), once step 2 made it.
    #[serde(default)]
    pub certificate: Option<String>,
    /// The steps finished, in order, each with when.
    pub done: Vec<Done>,
    /// The last failure, until a run gets past it.
    #[serde(default)]
    pub last_error: Option<LastError>,
}

/// A finished step.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Done {
    /// Its number.
    pub step: u8,
    /// What it did, as [`Step::name`] says.
    pub name: String,
    /// When it finished (RFC 3339).
    pub at: String,
}

/// The step a run failed at, and why.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LastError {
    /// Its number.
    pub step: u8,
    /// When (RFC 3339).
    pub at: String,
    /// The error, as printed.
    pub message: String,
}

impl Journal {
    /// A journal for a rotation of `profile` (in `config`) that has finished step 1 with
    /// `plan`.
    pub fn new(profile: &str, config: &Path, plan: Plan, now: SystemTime) -> Journal {
        let at = rfc3339(now);
        let mut journal = Journal {
            version: JOURNAL_VERSION,
            profile: profile.to_owned(),
            config: config.to_owned(),
            started: at.clone(),
            updated: at,
            complete: false,
            plan,
            certificate: None,
            done: Vec::new(),
            last_error: None,
        };
        journal.finish(Step::Preflight, now);
        journal
    }

    /// Whether `step` is finished.
    pub fn is_done(&self, step: Step) -> bool {
        self.done.iter().any(|d| d.step == step.number())
    }

    /// The first step not finished, if any.
    pub fn next_step(&self) -> Option<Step> {
        Step::ALL.into_iter().find(|s| !self.is_done(*s))
    }

    /// When `step` finished, if it did.
    pub fn finished_at(&self, step: Step) -> Option<&str> {
        self.done
            .iter()
            .find(|d| d.step == step.number())
            .map(|d| d.at.as_str())
    }

    /// Records `step` as finished at `now` (and the rotation complete after the last).
    pub(super) fn finish(&mut self, step: Step, now: SystemTime) {
        if !self.is_done(step) {
            self.done.push(Done {
                step: step.number(),
                name: step.name().to_owned(),
                at: rfc3339(now),
            });
        }
        self.last_error = None;
        self.complete = self.next_step().is_none();
        self.updated = rfc3339(now);
    }

    /// Forgets that `steps` finished, so that they run again.
    pub(super) fn forget(&mut self, steps: &[Step], now: SystemTime) {
        self.done
            .retain(|d| !steps.iter().any(|s| s.number() == d.step));
        self.complete = self.next_step().is_none();
        self.updated = rfc3339(now);
    }

    /// Records that `step` failed at `now` with `message`.
    pub(super) fn failed(&mut self, step: Step, message: String, now: SystemTime) {
        self.last_error = Some(LastError {
            step: step.number(),
            at: rfc3339(now),
            message,
        });
        self.updated = rfc3339(now);
    }
}

/// The directory rotation journals are kept in, opened safely.
pub struct JournalStore {
    dir: PathBuf,
    fd: OwnedFd,
}

/// This process's hold on a profile's rotation, until dropped.
#[must_use = "the lock is released when this is dropped"]
pub struct RotationLock {
    _file: File,
}

impl JournalStore {
    /// `$XDG_STATE_HOME/suitekey/rotate`, else `$HOME/.local/state/suitekey/rotate` (relative
    /// values are ignored, as the XDG specification says).
    pub fn default_dir() -> Option<PathBuf> {
        let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
        let state = std::env::var_os("XDG_STATE_HOME")
            .and_then(absolute)
            .or_else(|| {
                std::env::var_os("HOME")
                    .and_then(absolute)
                    .map(|h| h.join(".local").join("state"))
            })?;
        Some(state.join("suitekey").join("rotate"))
    }

    /// Opens the journal directory `dir` (the default one when `None`), creating it 0700 and
    /// making it 0700 when it is wider; refused when it is a symbolic link, another user's,
    /// or under a directory others could change.
    pub fn open(dir: Option<&Path>) -> Result<JournalStore, JournalError> {
        let dir = match dir {
            Some(dir) => dir.to_owned(),
            None => JournalStore::default_dir().ok_or(JournalError::NoStateDir)?,
        };
        let io = |source| JournalError::Io {
            path: dir.clone(),
            source,
        };
        let dir = std::path::absolute(&dir).map_err(io)?;
        let uid = rustix::process::geteuid().as_raw();
        let (fd, mode) = private_dir::prepare(&dir, uid).map_err(|e| dir_error(&dir, e))?;
        if mode & 0o077 != 0 {
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700)).map_err(|e| JournalError::Io {
                path: dir.clone(),
                source: e.into(),
            })?;
        }
        Ok(JournalStore { dir, fd })
    }

    /// The journal directory `dir` (the default one when `None`) if it exists, checked as
    /// [`JournalStore::open`] does but neither created nor chmodded: for reading only.
    pub fn open_existing(dir: Option<&Path>) -> Result<Option<JournalStore>, JournalError> {
        let dir = match dir {
            Some(dir) => dir.to_owned(),
            None => JournalStore::default_dir().ok_or(JournalError::NoStateDir)?,
        };
        match std::fs::symlink_metadata(&dir) {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(JournalError::Io { path: dir, source }),
            Ok(_) => {}
        }
        let dir = std::path::absolute(&dir).map_err(|source| JournalError::Io {
            path: dir.clone(),
            source,
        })?;
        let uid = rustix::process::geteuid().as_raw();
        let (fd, _) = private_dir::prepare(&dir, uid).map_err(|e| dir_error(&dir, e))?;
        Ok(Some(JournalStore { dir, fd }))
    }

    /// The journal file of `profile`.
    pub fn path(&self, profile: &str) -> PathBuf {
        self.dir.join(file_name(profile, "json"))
    }

    /// Takes the rotation lock of `profile`; refused while another process holds it.
    pub fn lock(&self, profile: &str) -> Result<RotationLock, JournalError> {
        let name = file_name(profile, "lock");
        let path = self.dir.join(&name);
        let flags = OFlags::RDWR | OFlags::CREATE;
        let file = self.open_file(&name, flags)?;
        match file.try_lock() {
            Ok(()) => Ok(RotationLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(JournalError::Busy {
                profile: profile.to_owned(),
                path,
            }),
            Err(std::fs::TryLockError::Error(source)) => Err(JournalError::Io { path, source }),
        }
    }

    /// The journal of `profile`, if there is one.
    pub fn load(&self, profile: &str) -> Result<Option<Journal>, JournalError> {
        let name = file_name(profile, "json");
        let path = self.dir.join(&name);
        let file = match self.open_file(&name, OFlags::RDONLY) {
            Ok(file) => file,
            Err(JournalError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let mut bytes = Vec::new();
        file.take(MAX_JOURNAL + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| JournalError::Io {
                path: path.clone(),
                source,
            })?;
        let malformed = |reason: String| JournalError::Malformed {
            path: path.clone(),
            reason,
        };
        if bytes.len() as u64 > MAX_JOURNAL {
            return Err(malformed(format!("it is larger than {MAX_JOURNAL} bytes")));
        }
        let journal: Journal =
            serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?;
        if journal.version != JOURNAL_VERSION {
            return Err(malformed(format!(
                "it is of version {}, this suitekey writes version {JOURNAL_VERSION}",
                journal.version
            )));
        }
        if journal.profile != profile {
            return Err(malformed(format!("it is profile '{}''s", journal.profile)));
        }
        Ok(Some(journal))
    }

    /// Writes `journal`: to a temporary 0600 file in the directory, flushed, then renamed over
    /// the journal, and the directory flushed.
    pub fn save(&self, journal: &Journal) -> Result<(), JournalError> {
        let name = file_name(&journal.profile, "json");
        let path = self.dir.join(&name);
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        let mut text = serde_json::to_vec_pretty(journal).map_err(|e| io(e.into()))?;
        text.push(b'\n');
        let temporary = format!(".{name}.{}.tmp", std::process::id());
        let mut file =
            self.open_file(&temporary, OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC)?;
        file.write_all(&text).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        rustix::fs::renameat(&self.fd, temporary.as_str(), &self.fd, name.as_str())
            .map_err(|e| io(e.into()))?;
        rustix::fs::fsync(&self.fd).map_err(|e| io(e.into()))
    }

    /// Opens `name` in the directory with `flags`, never through a symbolic link, created
    /// 0600; it must be a plain file of this user.
    fn open_file(&self, name: &str, flags: OFlags) -> Result<File, JournalError> {
        let path = self.dir.join(name);
        let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd =
            rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(0o600)).map_err(|e| {
                match e {
                    rustix::io::Errno::LOOP => JournalError::NotAFile {
                        path: path.clone(),
                        what: "a symbolic link".into(),
                    },
                    e => JournalError::Io {
                        path: path.clone(),
                        source: e.into(),
                    },
                }
            })?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| JournalError::Io {
            path: path.clone(),
            source: e.into(),
        })?;
        let uid = rustix::process::geteuid().as_raw();
        let what = if rustix::fs::FileType::from_raw_mode(stat.st_mode)
            != rustix::fs::FileType::RegularFile
        {
            Some("not a plain file".to_owned())
        } else if stat.st_uid != uid {
            Some(format!("owned by uid {}", stat.st_uid))
        } else {
            None
        };
        match what {
            Some(what) => Err(JournalError::NotAFile { path, what }),
            None => Ok(File::from(fd)),
        }
    }
}

/// The journal's error for a directory that is not safe.
fn dir_error(dir: &Path, e: DirError) -> JournalError {
    match e {
        DirError::Unsafe { path, reason } => JournalError::Unsafe {
            dir: dir.to_owned(),
            path,
            reason,
        },
        DirError::Symlink(path) => JournalError::Symlink(path),
        DirError::Owner { path, owner, .. } => JournalError::Unsafe {
            dir: dir.to_owned(),
            path,
            reason: Unsafe::Owner(owner),
        },
        DirError::Io { path, source } => JournalError::Io { path, source },
    }
}

/// The file name of `profile`'s `extension` file: the name with every byte other than ASCII
/// letters, digits, `-` and `_` percent-encoded, so no profile name can reach another
/// directory or a hidden file (an empty name is `%`).
fn file_name(profile: &str, extension: &str) -> String {
    let mut name = String::new();
    if profile.is_empty() {
        name.push('%');
    }
    for b in profile.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            name.push(char::from(b));
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{name}.{extension}")
}

#[cfg(test)]
pub(super) mod tests;
