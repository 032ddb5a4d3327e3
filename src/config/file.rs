//! Finding and reading the config file: where it is, how much of it is read, and a warning
//! when others may write it.

use std::path::{Path, PathBuf};

use super::{Config, ConfigError};

/// The largest config file read: a profile is a few hundred bytes, so even thousands of them
/// fit. A bigger file (a log or a device given to `--config` by mistake) is refused before
/// it is read whole.
pub const MAX_CONFIG_LEN: u64 = 1024 * 1024;

impl Config {
    /// `$XDG_CONFIG_HOME/suitekey/config.toml`, else `$HOME/.config/suitekey/config.toml`;
    /// `None` when neither variable gives an absolute directory.
    pub fn default_path() -> Option<PathBuf> {
        default_path_from(
            std::env::var_os("XDG_CONFIG_HOME"),
            std::env::var_os("HOME"),
        )
    }

    /// The config named by `--config`, which must exist; without one, the default file if it
    /// exists (`Ok(None)` when it does not: flags may supply everything).
    pub fn open(explicit: Option<&Path>) -> Result<Option<Config>, ConfigError> {
        open_with_default(explicit, Config::default_path())
    }

    /// Reads and parses the file at `path`; one over [`MAX_CONFIG_LEN`] is refused.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let read_err = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let text = read_limited(file, path)?;
        warn_if_world_writable(path);
        Config::parse(path, &text)
    }
}

/// Reads at most [`MAX_CONFIG_LEN`] bytes of `source` (the file at `path`) as text. The size
/// is found by reading, not from metadata: a FIFO or a growing file has no reliable length.
pub fn read_limited(source: impl std::io::Read, path: &Path) -> Result<String, ConfigError> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    source
        .take(MAX_CONFIG_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
    if bytes.len() as u64 > MAX_CONFIG_LEN {
        return Err(ConfigError::TooLarge {
            path: path.to_owned(),
            max: MAX_CONFIG_LEN,
        });
    }
    String::from_utf8(bytes).map_err(|_| ConfigError::NotUtf8 {
        path: path.to_owned(),
    })
}

pub(super) fn default_path_from(
    xdg: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    // The XDG spec says relative values are to be ignored.
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    let base = xdg
        .and_then(absolute)
        .or_else(|| home.and_then(absolute).map(|h| h.join(".config")))?;
    Some(base.join("suitekey").join("config.toml"))
}

pub(super) fn open_with_default(
    explicit: Option<&Path>,
    default: Option<PathBuf>,
) -> Result<Option<Config>, ConfigError> {
    if let Some(path) = explicit {
        return Config::load(path).map(Some);
    }
    let Some(path) = default else {
        return Ok(None);
    };
    match Config::load(&path) {
        Err(ConfigError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        other => other.map(Some),
    }
}

/// Anyone able to write the file can redirect suitekey to another key or token URL.
fn warn_if_world_writable(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o002 != 0
        {
            tracing::warn!(
                "config '{}' is writable by every user of this machine, who could point suitekey at another key or token URL; run chmod o-w on it",
                path.display()
            );
        }
    }
}
