//! Loading a PKCS#11 module once per process, and reinitializing it under its users when a
//! lost token must be looked for afresh; what the library says about itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::MechanismType;
use cryptoki::slot::Slot;

use super::Error;
use super::registry::{self, Exclusive, Generation, Hold, Loaded};
use super::rv::{ReturnValue, describe, rv_of};
use super::uri::{Pkcs11Uri, escaped_path};

/// Where `module-name=NAME` is looked for: p11-kit's module configs, then library folders.
const MODULE_CONFIG_DIRS: [&str; 2] = ["/etc/pkcs11/modules", "/usr/share/p11-kit/modules"];

const MODULE_LIB_DIRS: [&str; 4] = [
    "/usr/lib/x86_64-linux-gnu/pkcs11",
    "/usr/lib/aarch64-linux-gnu/pkcs11",
    "/usr/lib64/pkcs11",
    "/usr/lib/pkcs11",
];

/// The file name of p11-kit's proxy module, which serves every module registered with p11-kit.
pub const P11_KIT_PROXY: &str = "p11-kit-proxy.so";

/// Where [`P11_KIT_PROXY`] is looked for: the library folders of Debian's multiarch layout (any
/// `/usr/lib/*-linux-*`), Fedora's and Arch's.
const PROXY_DIRS: [&str; 5] = [
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
];

/// The Debian packages of the common modules, for messages about a module that is not there.
pub const MODULE_PACKAGES: &str = "softhsm2 (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so), opensc (smart cards, YubiKey PIV), ykcs11 (YubiKey), libtpm2-pkcs11-1 (TPM 2.0) or p11-kit-modules (p11-kit's proxy, the default)";

/// Decides which module file to load: the URI's `module-path` or `module-name`, else `fallback`
/// (from `--module` or `SUITEKEY_MODULE`), else p11-kit's proxy ([`default_module`]), as
/// step, cosign and OpenSSL's pkcs11-provider do.
pub fn resolve_module(uri: &Pkcs11Uri, fallback: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(path) = &uri.module_path {
        return Ok(path.clone());
    }
    if let Some(name) = &uri.module_name {
        return find_module_by_name(name);
    }
    match fallback {
        Some(path) => Ok(path.to_path_buf()),
        None => {
            let proxy = default_module().ok_or(Error::NoModule)?;
            tracing::info!(module = %escaped_path(&proxy), "no module given: using p11-kit's proxy");
            Ok(proxy)
        }
    }
}

/// The module used when none is named anywhere: p11-kit's proxy, if installed.
pub fn default_module() -> Option<PathBuf> {
    let multiarch = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|dir| {
            dir.file_name()
                .is_some_and(|n| n.to_string_lossy().contains("-linux-"))
        });
    find_proxy(PROXY_DIRS.iter().map(PathBuf::from).chain(multiarch))
}

/// The first of `dirs` that holds [`P11_KIT_PROXY`].
fn find_proxy(dirs: impl IntoIterator<Item = PathBuf>) -> Option<PathBuf> {
    dirs.into_iter()
        .map(|dir| dir.join(P11_KIT_PROXY))
        .find(|path| path.is_file())
}

fn find_module_by_name(name: &str) -> Result<PathBuf, Error> {
    // p11-kit resolves a relative `module:` against its module directory.
    let in_lib_dirs = |file: &str| {
        MODULE_LIB_DIRS
            .iter()
            .map(|dir| Path::new(dir).join(file))
            .find(|p| p.is_file())
    };
    let from_config = MODULE_CONFIG_DIRS.iter().find_map(|dir| {
        let text = std::fs::read_to_string(Path::new(dir).join(format!("{name}.module"))).ok()?;
        let module = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("module:"))?
            .trim();
        if Path::new(module).is_absolute() {
            Some(PathBuf::from(module))
        } else {
            in_lib_dirs(module)
        }
    });
    from_config
        .or_else(|| in_lib_dirs(&format!("{name}.so")))
        .or_else(|| in_lib_dirs(&format!("lib{name}.so")))
        .ok_or_else(|| {
            let name = escaped_path(Path::new(name));
            Error::ModuleName {
                looked: format!(
                    "{}/{name}.module and {}",
                    MODULE_CONFIG_DIRS.join(", "),
                    MODULE_LIB_DIRS.join(", ")
                ),
                name,
            }
        })
}

/// A loaded and initialized PKCS#11 module: a handle on the one copy this process shares,
/// kept in the process-wide registry.
#[derive(Clone)]
pub struct Module {
    loaded: Arc<Loaded>,
}

/// The padding of PKCS#11's fixed-width text fields: spaces by the standard, NULs in some
/// modules (tpm2-pkcs11 pads the token model with them).
pub(super) fn padding(c: char) -> bool {
    c.is_whitespace() || c == '\0'
}

/// `C_GetInfo`'s answer, trimmed. Displays as `manufacturer description version (Cryptoki x.y)`.
#[derive(Clone, Debug)]
pub(crate) struct LibraryInfo {
    /// The library's manufacturer.
    pub manufacturer: String,
    /// The library's description.
    pub description: String,
    /// The library's version.
    pub version: String,
    /// The Cryptoki version it implements.
    pub cryptoki: String,
}

impl std::fmt::Display for LibraryInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} (Cryptoki {})",
            self.manufacturer, self.description, self.version, self.cryptoki
        )
    }
}

impl Module {
    /// Loads and initializes the module at `path`, or returns the one this process already has.
    pub fn load(path: &Path) -> Result<Module, Error> {
        let loaded = registry::module(path, || initialize(path))?;
        Ok(Module { loaded })
    }

    /// A shared hold on the module, with its generation: sessions opened in another
    /// generation are void.
    pub(crate) fn hold(&self) -> Hold<'_> {
        self.loaded.lifecycle.hold()
    }

    /// Reinitializes the module (`C_Finalize`, `C_Initialize`) unless that already happened
    /// since generation `seen` (then `Ok(true)`: look again) or the module's budget is spent
    /// (`Ok(false)`: the last one was too recent), waiting for the calls in flight. Every
    /// session and login of this process on the module's tokens ends: their signers open new
    /// ones and log in again with the credential they kept (a refused PIN is still never sent
    /// again). The budget allows one at once, then one per wait, the wait doubling from 10 s
    /// to 10 min until [`Module::token_found`].
    pub(crate) fn reinitialize(&self, seen: Generation) -> Result<bool, Error> {
        self.restart_since(seen, || {
            let due = self.loaded.lifecycle.take_budget();
            if due {
                tracing::warn!(module = %self.shown_path(), "reinitializing the module to look for its lost tokens again");
            }
            due
        })
    }

    /// Looks at the module's tokens afresh (`C_Finalize` + `C_Initialize`) before another try
    /// at opening a key, unless that already happened since generation `seen` (`Ok(true)`:
    /// look again). Only when nothing else in this process holds the module (a command, or an
    /// agent's first profile on it): a reinitialization ends every other signer's session and
    /// login, which only a lost key's recovery may cost them, rationed ([`Module::reinitialize`]).
    pub(crate) fn refresh_tokens(&self, seen: Generation) -> Result<bool, Error> {
        // This handle is the only one: no other user of the module in this process.
        if registry::users(&self.loaded) > 1 {
            return Ok(false);
        }
        self.restart_since(seen, || {
            tracing::debug!(module = %self.shown_path(), "reinitializing the module to see its tokens afresh");
            true
        })
    }

    /// Waits for the calls in flight to end, then: `Ok(true)` at once when the module was
    /// restarted since generation `seen` (look again); else a restart if `due()` says so
    /// (`Ok(true)`), or nothing (`Ok(false)`).
    fn restart_since(&self, seen: Generation, due: impl FnOnce() -> bool) -> Result<bool, Error> {
        let calls = self.loaded.lifecycle.exclusive();
        if calls.generation != seen {
            return Ok(true);
        }
        if !due() {
            return Ok(false);
        }
        self.restart(&calls).map(|()| true)
    }

    /// `C_Finalize` + `C_Initialize` in a new generation, under the exclusive hold `calls`:
    /// every session of the module is void from here on, whatever `C_Finalize` answers.
    fn restart(&self, calls: &Exclusive<'_>) -> Result<(), Error> {
        self.loaded.lifecycle.next_generation(calls);
        match self.loaded.ctx.clone().finalize() {
            Err(e) if rv_of(&e) != Some(RvError::CryptokiNotInitialized) => {
                tracing::warn!(module = %self.shown_path(), "C_Finalize returned {}", describe(&e));
            }
            _ => {}
        }
        match self
            .loaded
            .ctx
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        {
            Err(e) if rv_of(&e) != Some(RvError::CryptokiAlreadyInitialized) => {
                Err(self.call_err("C_Initialize", &e))
            }
            _ => Ok(()),
        }
    }

    /// A lost token was found again: the next loss may reinitialize the module at once.
    pub(crate) fn token_found(&self) {
        self.loaded.lifecycle.reset_budget();
    }

    /// The module's file.
    pub fn path(&self) -> &Path {
        &self.loaded.path
    }

    /// The module's file for messages and logs, escaped (see [`escaped_path`]).
    pub fn shown_path(&self) -> String {
        escaped_path(self.path())
    }

    /// `manufacturer description version (Cryptoki x.y)`, for `list`.
    pub fn description(&self) -> Result<String, Error> {
        Ok(self.library()?.to_string())
    }

    /// What `C_GetInfo` says of the library: what identifies the implementation behind the
    /// file.
    pub(crate) fn library(&self) -> Result<LibraryInfo, Error> {
        let info = self
            .ctx()
            .get_library_info()
            .map_err(|e| self.call_err("C_GetInfo", &e))?;
        Ok(LibraryInfo {
            manufacturer: info.manufacturer_id().trim_end_matches(padding).to_owned(),
            description: info
                .library_description()
                .trim_end_matches(padding)
                .to_owned(),
            version: info.library_version().to_string(),
            cryptoki: info.cryptoki_version().to_string(),
        })
    }

    /// The module's functions, for the calls the other parts of this layer wrap.
    pub(super) fn ctx(&self) -> &Pkcs11 {
        &self.loaded.ctx
    }

    /// Whether this is SoftHSM2, by its file name or its own description.
    pub(super) fn is_softhsm2(&self) -> bool {
        let named = self
            .path()
            .file_name()
            .is_some_and(|n| n.to_string_lossy().to_lowercase().contains("softhsm"));
        named
            || self
                .library()
                .is_ok_and(|l| l.manufacturer.contains("SoftHSM"))
    }

    /// The error of `call`, which failed in this module with `err`.
    pub(crate) fn call_err(&self, call: &str, err: &CkError) -> Error {
        Error::Call {
            call: call.to_owned(),
            module: self.shown_path(),
            rv: ReturnValue::of(err),
        }
    }

    /// The mechanisms the token in `slot` offers.
    pub(crate) fn mechanisms(&self, slot: Slot) -> Result<Vec<MechanismType>, Error> {
        self.ctx()
            .get_mechanism_list(slot)
            .map_err(|e| self.call_err("C_GetMechanismList", &e))
    }

    /// The smallest and largest key the token in `slot` makes with `mech`, in the module's
    /// units (bits, by the standard).
    pub(crate) fn key_sizes(
        &self,
        slot: Slot,
        mech: MechanismType,
    ) -> Result<(usize, usize), Error> {
        let info = self
            .ctx()
            .get_mechanism_info(slot, mech)
            .map_err(|e| self.call_err("C_GetMechanismInfo", &e))?;
        Ok((info.min_key_size(), info.max_key_size()))
    }
}

/// Ends this process's use of every module it loaded (`C_Finalize`, once the calls in flight
/// are done), when a command is done with its keys. A smart card's module then lets go of the
/// card, which ends its verified PIN: a PIV card (a YubiKey) left as it is would sign with a
/// PIN-once key (slot 9a) for any local process, without the PIN, until something reset it.
/// Every session and handle of this process on those modules is void afterwards.
pub fn finalize_all() {
    for loaded in registry::modules() {
        let calls = loaded.lifecycle.exclusive();
        loaded.lifecycle.next_generation(&calls);
        if let Err(e) = loaded.ctx.clone().finalize() {
            tracing::debug!(module = %escaped_path(&loaded.path), "C_Finalize returned {}", describe(&e));
        }
    }
}

/// Loads the module file at `path` and initializes it.
fn initialize(path: &Path) -> Result<Pkcs11, Error> {
    let load_err = |reason: String| Error::Load {
        path: escaped_path(path),
        reason,
    };
    if path.is_dir() {
        return Err(load_err(
            "it is a directory; name the module's .so file in it".into(),
        ));
    }
    if !path.is_file() {
        return Err(load_err(format!(
            "no such file; the common modules come in the Debian packages {MODULE_PACKAGES}"
        )));
    }
    let ctx = Pkcs11::new(path).map_err(|e| load_err(describe(&e)))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        // Another part of this process (a plugin, a test harness) got there first.
        Err(e) if rv_of(&e) == Some(RvError::CryptokiAlreadyInitialized) => {}
        Err(e) => {
            let hint = softhsm2_conf_unset(path, std::env::var_os(SOFTHSM2_CONF).as_deref());
            return Err(load_err(format!(
                "C_Initialize returned {}{hint}",
                describe(&e)
            )));
        }
        Ok(()) => {}
    }
    Ok(ctx)
}

/// The variable that names SoftHSM2's configuration file, and so its token directory.
pub(super) const SOFTHSM2_CONF: &str = "SOFTHSM2_CONF";

/// The hint for a SoftHSM2 module at `path` whose `C_Initialize` failed while `conf` (the value
/// of `SOFTHSM2_CONF`) is unset: it then reads a default configuration, which may be missing.
pub(super) fn softhsm2_conf_unset(path: &Path, conf: Option<&std::ffi::OsStr>) -> &'static str {
    let softhsm2 = path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().to_lowercase().contains("softhsm"));
    if softhsm2 && conf.is_none_or(|c| c.is_empty()) {
        "; SOFTHSM2_CONF is not set, so SoftHSM2 looked for its default configuration: export SOFTHSM2_CONF=DIR/softhsm2.conf for your token's directory (the line softhsm/setup-token.sh DIR prints)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_path_in_the_uri_wins_and_a_missing_module_is_explained() {
        let uri: Pkcs11Uri = "pkcs11:token=a?module-path=/x/y.so".parse().unwrap();
        assert_eq!(
            resolve_module(&uri, Some(Path::new("/other.so"))).unwrap(),
            PathBuf::from("/x/y.so")
        );
        let bare: Pkcs11Uri = "pkcs11:token=a".parse().unwrap();
        assert_eq!(
            resolve_module(&bare, Some(Path::new("/other.so"))).unwrap(),
            PathBuf::from("/other.so")
        );
        let err = Error::NoModule.to_string();
        assert!(
            err.contains("SUITEKEY_MODULE")
                && err.contains("--module")
                && err.contains("p11-kit-modules")
                && err.contains("softhsm2")
                && err.contains("ykcs11"),
            "{err}"
        );
        // Without --module, the proxy when it is installed.
        if let Some(proxy) = default_module() {
            assert_eq!(resolve_module(&bare, None).unwrap(), proxy);
        } else {
            assert!(matches!(resolve_module(&bare, None), Err(Error::NoModule)));
        }
        let named: Pkcs11Uri = "pkcs11:token=a?module-name=surely-not-a-module"
            .parse()
            .unwrap();
        assert!(
            resolve_module(&named, None)
                .unwrap_err()
                .to_string()
                .contains("surely-not-a-module")
        );
    }

    #[test]
    fn the_proxy_is_found_in_the_first_library_folder_holding_it() {
        let (empty, with) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(with.path().join(P11_KIT_PROXY), b"").unwrap();
        let dirs = || [empty.path().to_owned(), with.path().to_owned()];
        assert_eq!(find_proxy(dirs()), Some(with.path().join(P11_KIT_PROXY)));
        assert_eq!(find_proxy([empty.path().to_owned()]), None);
    }

    #[test]
    fn loading_a_file_that_is_not_a_module_says_so() {
        let err = Module::load(Path::new("/etc/hostname"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("/etc/hostname") && err.contains("PKCS#11 library"),
            "{err}"
        );
    }
}
