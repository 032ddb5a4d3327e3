//! The default module: with no module named anywhere, suitekey loads p11-kit's proxy, which
//! serves the modules registered with p11-kit. Here SoftHSM2 is registered in a private p11-kit
//! configuration (`~/.config/pkcs11/modules/` under a temp HOME, every system module disabled),
//! so the proxy finds the fixture token and nothing else. p11-kit ignores a user's configuration
//! for root, so as root the commands run as `nobody` (setpriv) on a token copy it owns.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{PIN, TOKEN, fixture, is_root, module_path};

const NOBODY: u32 = 65534;

/// A temp HOME whose p11-kit user configuration registers SoftHSM2 and disables every system
/// module, with a token copy and a PIN file readable by whoever runs the commands.
struct P11KitHome {
    dir: tempfile::TempDir,
    conf: PathBuf,
    pin: PathBuf,
}

impl P11KitHome {
    fn new() -> P11KitHome {
        let dir = common::temp_dir();
        let modules = dir.path().join(".config/pkcs11/modules");
        std::fs::create_dir_all(&modules).unwrap();
        for system in ["/usr/share/p11-kit/modules", "/etc/pkcs11/modules"] {
            for entry in std::fs::read_dir(system).into_iter().flatten().flatten() {
                // A program named so never runs: the module is loaded nowhere.
                std::fs::write(
                    modules.join(entry.file_name()),
                    "enable-in: suitekey-none\n",
                )
                .unwrap();
            }
        }
        std::fs::write(
            modules.join("suitekey-test.module"),
            format!("module: {}\n", module_path().display()),
        )
        .unwrap();
        let conf = fixture().token_copy(None);
        let pin = dir.path().join("user.pin");
        std::fs::write(&pin, format!("{PIN}\n")).unwrap();
        if is_root() {
            for path in [dir.path(), conf.parent().unwrap()] {
                chown_tree(path);
            }
        }
        P11KitHome { dir, conf, pin }
    }

    /// `suitekey ARGS` with this HOME, the token copy and no module named anywhere.
    fn suitekey(&self, args: &[&str]) -> Output {
        let bin = env!("CARGO_BIN_EXE_suitekey");
        let mut cmd = if is_root() {
            let mut cmd = Command::new("setpriv");
            cmd.args([
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
                bin,
            ]);
            cmd
        } else {
            Command::new(bin)
        };
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SUITEKEY_") || name == "RUST_LOG" {
                cmd.env_remove(name);
            }
        }
        cmd.args(args)
            .env("HOME", self.dir.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_RUNTIME_DIR")
            .env("SOFTHSM2_CONF", &self.conf)
            .output()
            .expect("run suitekey (setpriv, as root)")
    }
}

fn chown_tree(path: &Path) {
    let status = Command::new("chown")
        .args(["-R", &format!("{NOBODY}:{NOBODY}")])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

fn proxy() -> PathBuf {
    suitekey::pkcs11::default_module().expect(
        "p11-kit's proxy (Debian package p11-kit-modules; scripts/install-deps.sh installs it)",
    )
}

#[test]
fn list_without_a_module_uses_p11_kits_proxy_and_says_so() {
    let home = P11KitHome::new();
    let out = home.suitekey(&["list"]);
    let (stdout, stderr) = common::texts(&out);
    assert!(out.status.success(), "{stderr}");
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("module {}", proxy().display()))
            && first.contains("p11-kit's proxy, the default")
            && first.contains("--module PATH"),
        "{first}"
    );
    assert!(stdout.contains(&format!("token '{TOKEN}'")), "{stdout}");
    // The URIs it prints name the proxy, so that they work as pasted.
    assert!(
        stdout.contains(&format!(
            "pkcs11:token={TOKEN};object=p256;id=%01;type=private?module-path={}",
            proxy().display()
        )),
        "{stdout}"
    );
}

#[test]
fn a_key_uri_without_a_module_signs_through_the_proxy() {
    let home = P11KitHome::new();
    let key = format!(
        "pkcs11:token={TOKEN};object=p256?pin-source=file:{}",
        home.pin.display()
    );
    let out = home.suitekey(&[
        "assertion",
        "--key",
        &key,
        "--client-id",
        "c",
        "--certificate-id",
        "kid-1",
        "--account",
        "1234567",
    ]);
    let (stdout, stderr) = common::texts(&out);
    assert!(out.status.success(), "{stderr}");
    let jws = common::decode_jws(&stdout);
    common::verify(&jws, &fixture().public_key(0x01)).expect("signed with the p256 key");
}

#[test]
fn a_module_that_is_not_there_names_the_packages_of_common_modules() {
    let out = fixture()
        .suitekey()
        .args(["list", "--module", "/nonexistent/module.so"])
        .output()
        .unwrap();
    let (stdout, stderr) = common::texts(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stdout.is_empty());
    for package in [
        "softhsm2",
        "opensc",
        "ykcs11",
        "libtpm2-pkcs11-1",
        "p11-kit-modules",
    ] {
        assert!(stderr.contains(package), "{package}: {stderr}");
    }
}
