//! A PIV card's management key: what Yubico's ykcs11 takes as the security officer's PIN to
//! make keys and store certificates. It comes from a file or an environment variable
//! (`--management-key-source file:PATH|env:NAME`), never from argv; it is checked to be hex of
//! a management key's length before it reaches the card, kept in a [`SecretString`] (zeroized
//! on drop, redacted in `Debug`) and never shown.

use std::path::PathBuf;

use secrecy::{ExposeSecret as _, SecretString};
use zeroize::Zeroizing;

use super::pin::{self, FileProblem, PinOrigin};
use super::uri::escaped_path;

/// Where the management key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManagementKeySource {
    /// A file holding the key in hex (and at most one line ending).
    File(PathBuf),
    /// An environment variable holding it.
    Env(String),
}

impl ManagementKeySource {
    /// `file:PATH` or `env:NAME`. A refused value is never echoed: it may be the key itself.
    pub fn parse(text: &str) -> Result<ManagementKeySource, ManagementKeyError> {
        if let Some(path) = text.strip_prefix("file:").filter(|p| !p.is_empty()) {
            return Ok(ManagementKeySource::File(PathBuf::from(path)));
        }
        if let Some(name) = text.strip_prefix("env:") {
            let mut chars = name.chars();
            let valid = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if valid {
                return Ok(ManagementKeySource::Env(name.to_owned()));
            }
        }
        Err(ManagementKeyError::Source)
    }
}

/// Why no management key could be had.
#[derive(Debug, thiserror::Error)]
pub enum ManagementKeyError {
    /// The source is not `file:PATH` or `env:NAME`.
    #[error(
        "--management-key-source takes file:PATH or env:NAME, naming where the management key is (the value given is not shown: the key itself never goes on the command line, where every local user can read it)"
    )]
    Source,
    /// The file could not be read.
    #[error("cannot read the management key file '{}': {source}; check --management-key-source file:…", escaped_path(.path))]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a small file, or gave nothing in time.
    #[error(
        "the management key file '{}' {problem}; it must hold only the key, in hex",
        escaped_path(.path)
    )]
    FileUnfit {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The environment variable is not set.
    #[error("environment variable {0} (named by --management-key-source env:{0}) is not set")]
    EnvMissing(String),
    /// The key is not hex of a management key's length.
    #[error(
        "the management key from {origin} {problem}, so it was not sent to the card: a PIV management key is hex, 48 digits for 3DES (the YubiKey default before firmware 5.7) or AES-192, 32 for AES-128, 64 for AES-256, followed by at most one line ending"
    )]
    Malformed {
        /// Where it came from (never the key).
        origin: PinOrigin,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// A PIV card's management key, in hex. Cannot be printed; zeroized when dropped.
#[derive(Debug)]
pub struct ManagementKey {
    hex: SecretString,
    origin: PinOrigin,
}

impl ManagementKey {
    /// Reads the key from `source` and checks its form.
    pub fn read(source: &ManagementKeySource) -> Result<ManagementKey, ManagementKeyError> {
        match source {
            ManagementKeySource::File(path) => {
                let bytes = pin::read_secret_file(path, "management key", pin::Readers::Warn)
                    .map_err(|problem| {
                        let unfit = |problem: String| ManagementKeyError::FileUnfit {
                            path: path.clone(),
                            problem,
                        };
                        match problem {
                            FileProblem::Io(source) => ManagementKeyError::File {
                                path: path.clone(),
                                source,
                            },
                            FileProblem::TooLarge => unfit("is larger than 4 KiB".into()),
                            FileProblem::Timeout(kind) => unfit(format!(
                                "gave nothing within {} s: it is {kind} that nothing wrote to",
                                pin::PIN_FILE_TIMEOUT.as_secs()
                            )),
                        }
                    })?;
                ManagementKey::from_bytes(&bytes, PinOrigin::File(path.clone()))
            }
            ManagementKeySource::Env(name) => {
                let raw = std::env::var_os(name)
                    .ok_or_else(|| ManagementKeyError::EnvMissing(name.clone()))?;
                let raw = Zeroizing::new(raw.into_encoded_bytes());
                ManagementKey::from_bytes(&raw, PinOrigin::Env(name.clone()))
            }
        }
    }

    /// The key in `bytes` (one trailing line ending allowed), from `origin`.
    fn from_bytes(bytes: &[u8], origin: PinOrigin) -> Result<ManagementKey, ManagementKeyError> {
        let malformed = |problem| ManagementKeyError::Malformed {
            origin: origin.clone(),
            problem,
        };
        let text = std::str::from_utf8(bytes).map_err(|_| malformed("is not text"))?;
        let hex = pin::strip_line_ending(text);
        if hex.is_empty() {
            return Err(malformed("is empty"));
        }
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed("holds characters other than hex digits"));
        }
        if ![32, 48, 64].contains(&hex.len()) {
            return Err(malformed("is not 32, 48 or 64 hex digits long"));
        }
        Ok(ManagementKey {
            hex: SecretString::from(hex),
            origin,
        })
    }

    /// The key in hex, as ykcs11 takes it for the security officer's PIN.
    pub(super) fn hex(&self) -> &str {
        self.hex.expose_secret()
    }

    /// Where it came from, for messages.
    pub fn origin(&self) -> &PinOrigin {
        &self.origin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT_3DES: &str = "010203040506070801020304050607080102030405060708";

    fn key(text: &str) -> Result<ManagementKey, ManagementKeyError> {
        ManagementKey::from_bytes(text.as_bytes(), PinOrigin::Env("K".into()))
    }

    #[test]
    fn management_keys_are_hex_of_3des_or_aes_length() {
        for good in [
            DEFAULT_3DES.to_owned(),
            format!("{DEFAULT_3DES}\n"),
            format!("{DEFAULT_3DES}\r\n"),
            "00112233445566778899AABBCCDDEEFF".to_owned(),
            "ab".repeat(32),
        ] {
            assert_eq!(key(&good).unwrap().hex(), good.trim_end(), "{good:?}");
        }
    }

    #[test]
    fn a_malformed_management_key_is_refused_without_being_shown() {
        let secret = "0102030405060708010203040506070801020304050607";
        for (bad, problem) in [
            ("", "is empty"),
            ("\n", "is empty"),
            (secret, "is not 32, 48 or 64"),
            (
                "01:02:03:04:05:06:07:08:01:02:03:04:05:06:07:08",
                "other than hex",
            ),
            (&format!("{DEFAULT_3DES}\n\n"), "other than hex"),
            (&format!(" {DEFAULT_3DES}"), "other than hex"),
            (&"ab".repeat(40), "is not 32, 48 or 64"),
        ] {
            let err = key(bad).unwrap_err().to_string();
            assert!(err.contains(problem), "{bad:?}: {err}");
            assert!(err.contains("environment variable K"), "{err}");
            assert!(
                !err.contains(secret) && !err.contains("0102030405"),
                "{err}"
            );
        }
        let not_text = ManagementKey::from_bytes(&[0xff, 0xfe], PinOrigin::Env("K".into()));
        assert!(not_text.unwrap_err().to_string().contains("is not text"));
    }

    #[test]
    fn the_source_is_a_file_or_a_variable_and_a_key_given_instead_is_not_echoed() {
        assert_eq!(
            ManagementKeySource::parse("file:/run/key").unwrap(),
            ManagementKeySource::File("/run/key".into())
        );
        assert_eq!(
            ManagementKeySource::parse("file:rel/key").unwrap(),
            ManagementKeySource::File("rel/key".into())
        );
        assert_eq!(
            ManagementKeySource::parse("env:YK_MGMT").unwrap(),
            ManagementKeySource::Env("YK_MGMT".into())
        );
        for bad in [
            DEFAULT_3DES,
            "file:",
            "env:",
            "env:1X",
            "env:A-B",
            "/run/key",
        ] {
            let err = ManagementKeySource::parse(bad).unwrap_err().to_string();
            assert!(err.contains("file:PATH or env:NAME"), "{err}");
            assert!(!err.contains("01020304"), "{err}");
        }
    }

    #[test]
    fn the_key_is_never_in_debug_output() {
        let debug = format!("{:?}", key(DEFAULT_3DES).unwrap());
        assert!(!debug.contains("0102030405"), "{debug}");
    }
}
