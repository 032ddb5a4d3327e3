//! Writing a certificate file: checked before any key is made, written whole or not at all.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// The extensions NetSuite's upload form accepts.
const EXTENSIONS: [&str; 3] = ["pem", "cer", "crt"];

/// A checked output path: right extension, a directory that exists, and no file to clobber
/// (unless forced).
#[derive(Debug)]
pub(super) struct OutFile {
    path: PathBuf,
    force: bool,
}

impl OutFile {
    /// Checks `path` before anything irreversible happens (like making a key).
    pub(super) fn check(path: &Path, force: bool) -> Result<OutFile, Error> {
        let shown = path.display();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if !ext.as_deref().is_some_and(|e| EXTENSIONS.contains(&e)) {
            return Err(Error::Usage(format!(
                "--out '{shown}' must end in .pem, .cer or .crt, the extensions NetSuite's certificate upload accepts"
            )));
        }
        if path.exists() && !force {
            return Err(Error::Usage(format!(
                "--out '{shown}' already exists; choose another file or pass --force to overwrite it"
            )));
        }
        if path.is_dir() {
            return Err(Error::Usage(format!("--out '{shown}' is a directory")));
        }
        let dir = parent(path);
        if !dir.is_dir() {
            return Err(Error::Usage(format!(
                "--out '{shown}': directory '{}' does not exist",
                dir.display()
            )));
        }
        // A directory the file cannot be made in fails now, not after a key was made. The probe
        // is the same kind of temporary file `write` makes, removed at once.
        temp_in(dir).map_err(|e| Error::OutputFile {
            path: path.display().to_string(),
            reason: format!(
                "cannot create a file in '{}' ({e}); choose a writable directory",
                dir.display()
            ),
        })?;
        Ok(OutFile {
            path: path.to_owned(),
            force,
        })
    }

    /// The path, for messages.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to a temporary file beside the target, mode 0644, synced, then renames
    /// it into place: a full disk or a crash leaves the old file or none, never half a file.
    pub(super) fn write(&self, contents: &[u8]) -> Result<(), Error> {
        let fail = |reason: String| Error::OutputFile {
            path: self.path.display().to_string(),
            reason,
        };
        let mut tmp = temp_in(parent(&self.path)).map_err(|e| fail(e.to_string()))?;
        tmp.write_all(contents).map_err(|e| fail(e.to_string()))?;
        let file = tmp.as_file();
        file.set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| fail(e.to_string()))?;
        file.sync_all().map_err(|e| fail(e.to_string()))?;
        let persisted = if self.force {
            tmp.persist(&self.path)
        } else {
            tmp.persist_noclobber(&self.path)
        };
        persisted.map_err(|e| fail(e.error.to_string()))?;
        Ok(())
    }
}

/// A temporary file in `dir`, removed when dropped unless persisted.
fn temp_in(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(".suitekey-")
        .suffix(".tmp")
        .tempfile_in(dir)
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}
