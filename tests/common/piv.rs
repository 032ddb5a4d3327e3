//! The virtual PIV card (`scripts/tokens/piv.sh`, `scripts/tokens/piv-card/`) for tests: a card
//! in a temp dir of its own behind pcscd and vpcd, provisioned with Debian's `yubico-piv-tool`
//! as users do it, and reached through Yubico's ykcs11 or OpenSC's PKCS#11 module.
//!
//! Only one pcscd can run per machine: `piv.sh start` waits on a machine-wide lock for another
//! card to stop, and the cards of one test process take turns too (one at a time). Tests that
//! cannot run the card (its packages or its build missing, not root: pcscd writes /run/pcscd)
//! are skipped, saying why ([`card_can_run`]); under CI (`CI` set) that fails instead. PINs,
//! PUKs and management keys reach the tools through their standard input or environment, never
//! argv.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};

use super::texts;

/// The card's reader, as pcscd names it (slot 0 of the reader piv.sh configures).
pub const READER: &str = "Yubico YubiKey Virtual PIV 00 00";
/// The reader in a key URI's `slot-description`, which selects the card on both modules (the
/// token label does not: OpenSC names the token after the first certificate's common name).
pub const READER_IN_URI: &str = "slot-description=Yubico%20YubiKey%20Virtual%20PIV%2000%2000";
/// The token label ykcs11 gives every virtual card (they all have this serial number).
pub const YKCS11_TOKEN: &str = "YubiKey PIV #5437251";
/// The Debian packages the card needs.
const PACKAGES: [&str; 5] = [
    "opensc",
    "pcscd",
    "vsmartcard-vpcd",
    "ykcs11",
    "yubico-piv-tool",
];

/// The file a signature waits for while the card runs with [`Card::start_with_touch`]: creating
/// it is touching the key.
pub const TOUCH_FILE: &str = "touch";

/// One card at a time in this process (piv.sh's lock does it between processes).
static ONE_CARD: Mutex<()> = Mutex::new(());

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The cargo target directory, where piv.sh caches the card.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR has a parent")
        .to_path_buf()
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Why the card cannot run here, if it cannot.
fn missing() -> Option<String> {
    let not_installed: Vec<&str> = PACKAGES
        .into_iter()
        .filter(|p| {
            let out = Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output();
            !matches!(out, Ok(o) if o.stdout == b"install ok installed")
        })
        .collect();
    if !not_installed.is_empty() {
        return Some(format!(
            "Debian packages {} are missing: run scripts/tokens/piv.sh install",
            not_installed.join(" ")
        ));
    }
    if !target_dir().join("piv-card/piv-card").is_file() {
        return Some("the card is not built: run scripts/tokens/piv.sh install".into());
    }
    if !rustix::process::geteuid().is_root() {
        return Some("pcscd needs root (it writes /run/pcscd)".into());
    }
    None
}

/// True when the card can run; else says why the test is skipped (or fails it, under CI).
pub fn card_can_run(test: &str) -> bool {
    match missing() {
        None => true,
        Some(why) => {
            assert!(
                !ci(),
                "CI is set and the virtual PIV card cannot run: {why}"
            );
            eprintln!("skipping {test}: {why}");
            false
        }
    }
}

/// `bash scripts/tokens/piv.sh ARGS`, as the tests run it, with `env` added.
pub fn piv_sh(args: &[&std::ffi::OsStr], env: &[(&str, &str)]) -> Output {
    Command::new("bash")
        .arg(repo().join("scripts/tokens/piv.sh"))
        .args(args)
        .env("CARGO_TARGET_DIR", target_dir())
        // Everything stops with this process even if it is killed before Drop runs.
        .env("SUITEKEY_TOKEN_OWNER_PID", std::process::id().to_string())
        .envs(env.iter().copied())
        .output()
        .expect("run bash")
}

/// The machine-wide lock piv.sh takes, as it names it.
pub fn lock_file() -> PathBuf {
    std::env::var_os("SUITEKEY_PCSCD_LOCK")
        .map_or_else(|| "/tmp/suitekey-pcscd.lock".into(), PathBuf::from)
}

/// The path of piv.sh, for tests that run it in ways of their own.
pub fn script() -> PathBuf {
    repo().join("scripts/tokens/piv.sh")
}

/// The cargo target directory piv.sh is given (where the card is cached).
pub fn cargo_target_dir() -> PathBuf {
    target_dir()
}

/// This process's turn at the card: held by a [`Card`] for its life, or by a test that runs
/// pcscd itself.
pub fn turn() -> MutexGuard<'static, ()> {
    ONE_CARD.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running card in a temp dir of its own; stopped (by PID) when dropped.
pub struct Card {
    dir: tempfile::TempDir,
    /// Yubico's module.
    pub ykcs11: PathBuf,
    /// OpenSC's module.
    pub opensc: PathBuf,
    /// A test CA's key and certificate, issuing the slots' certificates.
    ca_key: PathBuf,
    ca_cert: PathBuf,
    /// What the card process is started with (the touch knob).
    env: Vec<(String, String)>,
    _turn: MutexGuard<'static, ()>,
}

impl Card {
    /// A new card with the PIN, PUK and management key of piv.sh's files (random).
    pub fn start() -> Card {
        Card::start_in(&[], None)
    }

    /// A new card whose user PIN is `pin` (6 to 8 characters).
    pub fn start_with_pin(pin: &str) -> Card {
        Card::start_in(&[], Some(pin))
    }

    /// A new card as a new YubiKey comes: the factory PIN (123456), PUK (12345678) and
    /// management key (0102…0708); the directory's PIN files are not the card's.
    pub fn start_factory() -> Card {
        Card::start_in(&[("PIV_CARD_FACTORY", "1")], None)
    }

    /// A new card whose signatures wait for a touch, like a YubiKey key with touch policy
    /// "always": each one waits until the file [`Card::touch_file`] appears and takes it away
    /// (15 s at most, then the card refuses it).
    pub fn start_with_touch() -> Card {
        let dir = new_dir();
        let touch = dir.path().join(TOUCH_FILE);
        let env = [("PIV_CARD_TOUCH_FILE", touch.to_str().expect("UTF-8 path"))];
        Card::start_dir(dir, &env, None)
    }

    fn start_in(env: &[(&str, &str)], pin: Option<&str>) -> Card {
        Card::start_dir(new_dir(), env, pin)
    }

    fn start_dir(dir: tempfile::TempDir, env: &[(&str, &str)], pin: Option<&str>) -> Card {
        let turn = turn();
        if let Some(pin) = pin {
            write_private(&dir.path().join("user.pin"), pin);
        }
        let mut card = Card {
            ykcs11: PathBuf::new(),
            opensc: PathBuf::new(),
            ca_key: dir.path().join("ca.key"),
            ca_cert: dir.path().join("ca.pem"),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            dir,
            _turn: turn,
        };
        card.start_again();
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            card.ca_key.to_str().unwrap(),
        ]);
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            card.ca_key.to_str().unwrap(),
            "-subj",
            "/CN=suitekey test CA",
            "-days",
            "365",
            "-out",
            card.ca_cert.to_str().unwrap(),
        ]);
        card
    }

    /// The card's directory (state, PID files, PIN, PUK and management key files).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `piv.sh start DIR`: the card of DIR, kept if there (a card re-inserted).
    pub fn start_again(&mut self) {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let out = piv_sh(&["start".as_ref(), self.path().as_os_str()], &env);
        let (stdout, stderr) = texts(&out);
        assert!(out.status.success(), "piv.sh start: {stderr}");
        let var = |name: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .map(PathBuf::from)
                .unwrap_or_else(|| panic!("piv.sh start printed no {name}:\n{stdout}"))
        };
        self.ykcs11 = var("SUITEKEY_YKCS11_MODULE");
        self.opensc = var("SUITEKEY_OPENSC_MODULE");
        assert_eq!(var("SUITEKEY_MODULE"), self.ykcs11);
    }

    /// `piv.sh stop DIR` (a card removed; pcscd stops with it).
    pub fn stop(&self) {
        let out = piv_sh(&["stop".as_ref(), self.path().as_os_str()], &[]);
        assert!(out.status.success(), "piv.sh stop: {}", texts(&out).1);
    }

    /// The first line of one of the card's secret files.
    pub fn secret(&self, file: &str) -> String {
        std::fs::read_to_string(self.path().join(file))
            .unwrap()
            .trim_end()
            .to_owned()
    }

    /// The user PIN.
    pub fn pin(&self) -> String {
        self.secret("user.pin")
    }

    /// The file holding the user PIN (mode 0600).
    pub fn pin_file(&self) -> PathBuf {
        self.path().join("user.pin")
    }

    /// The file holding the management key (48 hex digits, 3DES; mode 0600).
    pub fn management_key_file(&self) -> PathBuf {
        self.path().join("management.key")
    }

    /// The file whose appearance is a touch, for a card started with
    /// [`Card::start_with_touch`].
    pub fn touch_file(&self) -> PathBuf {
        self.path().join(TOUCH_FILE)
    }

    /// Touches the key: the next signature waiting (or to come) goes ahead.
    pub fn touch(&self) {
        std::fs::write(self.touch_file(), b"").expect("touch");
    }

    /// A key URI of the card's key `id` (01 = 9a, 02 = 9c, 03 = 9d, 04 = 9e) through `module`,
    /// the card chosen by its reader, the PIN from its file.
    pub fn uri(&self, module: &Path, id: u8) -> String {
        format!(
            "pkcs11:{READER_IN_URI};id=%{id:02X};type=private?module-path={}&pin-source=file:{}",
            module.display(),
            self.pin_file().display()
        )
    }

    /// yubico-piv-tool on the card's reader, `input` on its standard input and no terminal (it
    /// then reads PINs and keys there instead of from /dev/tty).
    pub fn piv_tool(&self, input: &str, args: &[&str]) -> Output {
        let mut child = Command::new("setsid")
            .arg("yubico-piv-tool")
            .arg(format!("--reader={READER}"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run yubico-piv-tool");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Like [`Card::piv_tool`], failing the test if it fails.
    pub fn piv_tool_ok(&self, input: &str, args: &[&str]) -> String {
        let out = self.piv_tool(input, args);
        let (stdout, stderr) = texts(&out);
        assert!(
            out.status.success(),
            "yubico-piv-tool {args:?}: {stdout}{stderr}"
        );
        format!("{stdout}\n{stderr}")
    }

    /// A key generated in `slot` by yubico-piv-tool (with the card's management key), and a
    /// certificate for it issued by the test CA and imported next to it, as a user with a CA
    /// does. (Debian 12's yubico-piv-tool 2.2 cannot self-sign: its selfsign-certificate and
    /// request-certificate fail before reaching the card, on OpenSSL 3.) Returns the
    /// certificate's file.
    pub fn provision(&self, slot: &str, algorithm: &str) -> PathBuf {
        let key = self.secret("management.key");
        let public = self.path().join(format!("{slot}.pub.pem"));
        let cert = self.path().join(format!("{slot}.cert.pem"));
        self.piv_tool_ok(
            &format!("{key}\n"),
            &[
                "--key",
                "--action=generate",
                &format!("--slot={slot}"),
                &format!("--algorithm={algorithm}"),
                &format!("--output={}", public.display()),
            ],
        );
        openssl(&[
            "x509",
            "-new",
            "-subj",
            &format!("/CN=suitekey test {slot}"),
            "-force_pubkey",
            public.to_str().unwrap(),
            "-CA",
            self.ca_cert.to_str().unwrap(),
            "-CAkey",
            self.ca_key.to_str().unwrap(),
            "-days",
            "365",
            "-out",
            cert.to_str().unwrap(),
        ]);
        self.piv_tool_ok(
            &format!("{key}\n"),
            &[
                "--key",
                "--action=import-certificate",
                &format!("--slot={slot}"),
                &format!("--input={}", cert.display()),
            ],
        );
        cert
    }

    /// pkcs11-tool on `module`'s slot for the card, `pin` (if any) through its environment.
    pub fn pkcs11_tool(&self, module: &Path, pin: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = Command::new("pkcs11-tool");
        cmd.arg("--module").arg(module);
        cmd.args(["--slot-description", READER]);
        if let Some(pin) = pin {
            cmd.env("PIV_TEST_PIN", pin)
                .args(["--login", "--pin", "env:PIV_TEST_PIN"]);
        }
        cmd.args(args).output().expect("run pkcs11-tool")
    }

    /// Whether the card's PIN is verified now, for whoever sends it a command (VERIFY without
    /// data answers 9000 instead of the tries left, which yubico-piv-tool shows as -1).
    pub fn pin_verified(&self) -> bool {
        let status = self.piv_tool_ok("", &["--action=status"]);
        status
            .lines()
            .find_map(|l| l.strip_prefix("PIN tries left:"))
            .is_some_and(|n| n.trim() == "-1")
    }

    /// yubico-piv-tool's count of PIN tries left (VERIFY without data: 63Cx). The card must not
    /// be held by another client with the PIN verified (it then answers 9000, and the count is
    /// -1).
    pub fn tries_left(&self) -> u32 {
        let status = self.piv_tool_ok("", &["--action=status"]);
        status
            .lines()
            .find_map(|l| l.strip_prefix("PIN tries left:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no count of PIN tries in:\n{status}"))
    }
}

impl Drop for Card {
    fn drop(&mut self) {
        let out = piv_sh(&["stop".as_ref(), self.path().as_os_str()], &[]);
        if !out.status.success() {
            eprintln!("piv.sh stop {}: {}", self.path().display(), texts(&out).1);
        }
    }
}

/// A card's directory: under /tmp, a short plain path, as piv.sh wants.
fn new_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("sk-piv-")
        .tempdir()
        .unwrap()
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, format!("{text}\n")).expect("write a PIN file");
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod a PIN file");
}

/// `openssl ARGS`, failing the test if it fails.
pub fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", texts(&out).1);
}
