//! Changing a profile in the config file, as `rotate` switches it to a new key: the values are
//! replaced in place (`toml_edit`), so the file keeps its comments, order and layout; the new
//! file is written beside the old one and renamed over it, so a reader (an agent reloading)
//! sees the old file or the new one, never half of either; and nothing is written if the file
//! changed on disk since it was read.

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use sha2::Digest as _;
use toml_edit::{DocumentMut, Item, Value};

use super::{Config, ConfigError, read_limited};
use crate::kind::{HasKind, Kind};

/// The config file as read for a change: its text, and its digest, to rewrite it only if it is
/// still that text.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    /// The path as named (`--config`, the default).
    path: PathBuf,
    /// The file itself: a symbolic link's target is rewritten, the link kept.
    real: PathBuf,
    text: String,
    digest: [u8; 32],
}

/// Why the profile could not be changed in the file; the file is then as it was.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// The file was changed by someone else after it was read.
    #[error(
        "config '{}' changed on disk while suitekey was using it, so it was not rewritten (that would undo the other change); run the command again to use the file as it is now", .0.display()
    )]
    Changed(PathBuf),
    /// The profile is not a table of the file (it may have been removed).
    #[error("config '{}' has no [profiles.{profile}] table to change", .path.display())]
    NoProfile {
        /// The file.
        path: PathBuf,
        /// The profile.
        profile: String,
    },
    /// The file is not TOML that can be edited.
    #[error("config '{}' cannot be edited: {reason}", .path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The edited text would not read back with the new values (not expected: it is checked
    /// so that a surprise never reaches the disk).
    #[error("config '{}' would not read back with the new values ({reason}); it was left as it was", .path.display())]
    Verify {
        /// The file.
        path: PathBuf,
        /// What did not read back.
        reason: String,
    },
    /// The new file could not be given the old one's owner and group.
    #[error("cannot keep the owner and group ({uid}:{gid}) of config '{}': {source}; it was left as it was (rewrite it as its owner, or as root)", .path.display())]
    Owner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// Its group.
        gid: u32,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the new file or renaming it over the old one failed.
    #[error("cannot write config '{}': {source}; it was left as it was (check that its directory is writable)", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file could not be read.
    #[error(transparent)]
    Read(#[from] ConfigError),
}

impl HasKind for RewriteError {
    /// A file that cannot be written is an output failure; the rest is the file's content,
    /// the user's input.
    fn kind(&self) -> Kind {
        match self {
            RewriteError::Write { .. } | RewriteError::Owner { .. } => Kind::Output,
            RewriteError::Read(e) => e.kind(),
            _ => Kind::Usage,
        }
    }
}

impl ConfigFile {
    /// Reads the file at `path` (within [`MAX_CONFIG_LEN`](super::MAX_CONFIG_LEN)).
    pub fn read(path: &Path) -> Result<ConfigFile, ConfigError> {
        let read_err = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let real = std::fs::canonicalize(path).map_err(read_err)?;
        let file = std::fs::File::open(&real).map_err(read_err)?;
        let text = read_limited(file, path)?;
        Ok(ConfigFile {
            path: path.to_owned(),
            real,
            digest: sha2::Sha256::digest(text.as_bytes()).into(),
            text,
        })
    }

    /// The path as named.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file itself: the path as named with symbolic links resolved.
    pub fn real_path(&self) -> &Path {
        &self.real
    }

    /// The text as read.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The file parsed as a config.
    pub fn parse(&self) -> Result<Config, ConfigError> {
        Config::parse(&self.path, &self.text)
    }

    /// Sets `values` (`(key, text)`, each a string) in the table of `profile`, keeping every
    /// comment and the layout, and replaces the file with the result: only if it still holds
    /// the text read, through a file written beside it (with the same mode) and renamed over
    /// it. Keys the profile lacks are added at its end.
    pub fn set_profile_values(
        &self,
        profile: &str,
        values: &[(&str, &str)],
    ) -> Result<(), RewriteError> {
        let text = self.edited(profile, values)?;
        self.verify(&text, profile, values)?;
        self.replace(&text)
    }

    /// The text with `values` set in `profile`'s table.
    fn edited(&self, profile: &str, values: &[(&str, &str)]) -> Result<String, RewriteError> {
        let mut doc: DocumentMut =
            self.text
                .parse()
                .map_err(|e: toml_edit::TomlError| RewriteError::Unreadable {
                    path: self.path.clone(),
                    reason: e.message().to_owned(),
                })?;
        let table = doc
            .get_mut("profiles")
            .and_then(Item::as_table_like_mut)
            .and_then(|profiles| profiles.get_mut(profile))
            .and_then(Item::as_table_like_mut)
            .ok_or_else(|| RewriteError::NoProfile {
                path: self.path.clone(),
                profile: profile.to_owned(),
            })?;
        for (key, text) in values {
            let mut value = Value::from(*text);
            match table.get_mut(key) {
                Some(Item::Value(old)) => {
                    // The spaces around it and a comment after it stay.
                    *value.decor_mut() = old.decor().clone();
                    *old = value;
                }
                _ => {
                    table.insert(key, Item::Value(value));
                }
            }
        }
        Ok(doc.to_string())
    }

    /// Checks that `text` reads as a config whose `profile` has `values`.
    fn verify(
        &self,
        text: &str,
        profile: &str,
        values: &[(&str, &str)],
    ) -> Result<(), RewriteError> {
        let failed = |reason: String| RewriteError::Verify {
            path: self.path.clone(),
            reason,
        };
        let config = Config::parse(&self.path, text).map_err(|e| failed(e.to_string()))?;
        let table = config.profile(profile).map_err(|e| failed(e.to_string()))?;
        for (key, value) in values {
            if table.get(key) != Some(*value) {
                return Err(failed(format!("'{key}' does not read back")));
            }
        }
        Ok(())
    }

    /// Replaces the file with `text` if it still holds the text read: written to a temporary
    /// file in the same directory (same mode, owner and group, flushed to disk), then renamed
    /// over it, all under an exclusive lock of the file so that two suitekey processes (the
    /// agent and `rotate`, or two rotations of different profiles) never both pass the check
    /// and one undo the other's change.
    fn replace(&self, text: &str) -> Result<(), RewriteError> {
        let write_err = |source| RewriteError::Write {
            path: self.path.clone(),
            source,
        };
        let dir = self.real.parent().unwrap_or(Path::new("."));
        let old = self.lock_current()?;
        let meta = old.metadata().map_err(write_err)?;
        let mut new = tempfile::Builder::new()
            .prefix(".suitekey-config-")
            .tempfile_in(dir)
            .map_err(write_err)?;
        new.as_file()
            .set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(write_err)?;
        keep_owner(new.as_file(), &meta).map_err(|source| RewriteError::Owner {
            path: self.path.clone(),
            uid: meta.uid(),
            gid: meta.gid(),
            source,
        })?;
        new.write_all(text.as_bytes()).map_err(write_err)?;
        new.as_file().sync_all().map_err(write_err)?;
        new.persist(&self.real).map_err(|e| write_err(e.error))?;
        drop(old);
        // The rename itself reaches the disk with the directory.
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

impl ConfigFile {
    /// Opens the file at its path, locks it exclusively (waiting for another suitekey process
    /// rewriting it) and checks, under the lock, that it is still the file read: same inode at
    /// the path and the same text. The lock lasts as long as the returned file is open.
    fn lock_current(&self) -> Result<std::fs::File, RewriteError> {
        let write_err = |source| RewriteError::Write {
            path: self.path.clone(),
            source,
        };
        let file = std::fs::File::open(&self.real).map_err(write_err)?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| write_err(e.into()))?;
        // Renamed over while this process waited: the path holds another file now.
        let locked = file.metadata().map_err(write_err)?;
        let at_path = std::fs::metadata(&self.real).map_err(write_err)?;
        if (locked.dev(), locked.ino()) != (at_path.dev(), at_path.ino()) {
            return Err(RewriteError::Changed(self.path.clone()));
        }
        // The last look before the rename: a change made since the read is never undone.
        let now = std::fs::read(&self.real).map_err(write_err)?;
        if <[u8; 32]>::from(sha2::Sha256::digest(&now)) != self.digest {
            return Err(RewriteError::Changed(self.path.clone()));
        }
        Ok(file)
    }
}

/// Gives `file` the owner and group of the file it replaces, where they differ from what it
/// got (root rewriting a file of another user; a file of a group of yours).
fn keep_owner(file: &std::fs::File, old: &std::fs::Metadata) -> std::io::Result<()> {
    let made = file.metadata()?;
    if (made.uid(), made.gid()) == (old.uid(), old.gid()) {
        return Ok(());
    }
    std::os::unix::fs::fchown(file, Some(old.uid()), Some(old.gid()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# my profiles
[profiles.prod]   # production
key = "pkcs11:token=acc;object=old"   # the HSM key
client-id = "abc123"
certificate-id = "OLD-id"
account = "1234567"

# staging follows
[profiles.dev]
key = "pkcs11:token=acc;object=dev"
client-id = "abc123"
certificate-id = "DEV-id"
account = "1234567"
"#;

    fn file_with(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let path = dir.join("config.toml");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn values_are_replaced_in_place_and_everything_else_kept_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(dir.path(), TEXT, 0o640);
        let file = ConfigFile::read(&path).unwrap();
        let values = [
            ("key", "pkcs11:token=acc;object=new;id=%01"),
            ("certificate-id", "NEW-id"),
            ("alg", "ES384"),
        ];
        file.set_profile_values("prod", &values).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let expected = TEXT
            .replace(
                r#"key = "pkcs11:token=acc;object=old"   # the HSM key"#,
                r#"key = "pkcs11:token=acc;object=new;id=%01"   # the HSM key"#,
            )
            .replace(
                "certificate-id = \"OLD-id\"\naccount = \"1234567\"\n",
                "certificate-id = \"NEW-id\"\naccount = \"1234567\"\nalg = \"ES384\"\n",
            );
        assert_eq!(text, expected);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640, "the mode is kept");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left");
        // It reads back, and the other profile is untouched.
        let config = ConfigFile::read(&path).unwrap().parse().unwrap();
        assert_eq!(
            config.profile("dev").unwrap().get("key"),
            Some("pkcs11:token=acc;object=dev")
        );
    }

    #[test]
    fn a_file_changed_since_it_was_read_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(dir.path(), TEXT, 0o600);
        let file = ConfigFile::read(&path).unwrap();
        let edited = TEXT.replace("# staging follows", "# someone's edit");
        std::fs::write(&path, &edited).unwrap();
        let err = file
            .set_profile_values("prod", &[("certificate-id", "NEW-id")])
            .unwrap_err();
        assert!(matches!(err, RewriteError::Changed(_)), "{err}");
        assert_eq!(err.kind(), Kind::Usage);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), edited);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_file_replaced_while_waiting_for_the_lock_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(dir.path(), TEXT, 0o600);
        let file = ConfigFile::read(&path).unwrap();
        // Another suitekey process holds the file's lock while it replaces the file.
        let held = std::fs::File::open(&path).unwrap();
        rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
        let waiting = std::thread::spawn(move || {
            file.set_profile_values("prod", &[("certificate-id", "NEW-id")])
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        let theirs = TEXT.replace("DEV-id", "DEV-2-id");
        std::fs::write(dir.path().join("theirs"), &theirs).unwrap();
        std::fs::rename(dir.path().join("theirs"), &path).unwrap();
        drop(held);
        // Whether it waited on the old file or opened the new one, the change is kept.
        let err = waiting.join().unwrap().unwrap_err();
        assert!(matches!(err, RewriteError::Changed(_)), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), theirs);
    }

    #[test]
    fn the_owner_and_group_are_kept() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("not root: a file of another owner cannot be made here; not run");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(dir.path(), TEXT, 0o640);
        std::os::unix::fs::chown(&path, Some(4321), Some(8765)).unwrap();
        let file = ConfigFile::read(&path).unwrap();
        file.set_profile_values("prod", &[("certificate-id", "NEW-id")])
            .unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (4321, 8765, 0o640)
        );
        assert!(std::fs::read_to_string(&path).unwrap().contains("NEW-id"));
    }

    #[test]
    fn a_symlinked_config_has_its_target_rewritten_and_the_link_kept() {
        let dir = tempfile::tempdir().unwrap();
        let real_dir = dir.path().join("dotfiles");
        std::fs::create_dir(&real_dir).unwrap();
        let real = file_with(&real_dir, TEXT, 0o600);
        let link = dir.path().join("config.toml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let file = ConfigFile::read(&link).unwrap();
        file.set_profile_values("dev", &[("certificate-id", "NEW-id")])
            .unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(
            std::fs::read_to_string(&real)
                .unwrap()
                .contains("certificate-id = \"NEW-id\"")
        );
    }

    #[test]
    fn inline_and_dotted_profiles_are_edited_too_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let text = "profiles.prod.key = \"k\"\nprofiles.prod.certificate-id = \"OLD\"\n\n[profiles.other]\nkey = \"o\"\n";
        let path = file_with(dir.path(), text, 0o600);
        let file = ConfigFile::read(&path).unwrap();
        file.set_profile_values("prod", &[("certificate-id", "NEW")])
            .unwrap();
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(
            after
                .starts_with("profiles.prod.key = \"k\"\nprofiles.prod.certificate-id = \"NEW\"\n"),
            "{after}"
        );
        let file = ConfigFile::read(&path).unwrap();
        let err = file
            .set_profile_values("gone", &[("key", "x")])
            .unwrap_err();
        assert!(
            err.to_string().contains("no [profiles.gone] table"),
            "{err}"
        );
    }
}
