//! The PKCS#11 modules the matrix runs on (SoftHSM2, tpm2-pkcs11 over swtpm, kryoptic, and
//! Yubico's ykcs11 and OpenSC over the virtual PIV card): what each is declared to support, and
//! a running token of each, set up by its `scripts/tokens/` script in a temp dir of its own
//! (the PIV card through `tests/common/piv.rs`); daemons are stopped by PID when the token is
//! dropped.
//!
//! `SUITEKEY_TEST_MODULES` (comma list; default: all) picks the modules a run covers; under CI
//! (`CI` set) leaving one out fails the run. A module whose set-up fails fails its test: nothing
//! is skipped silently.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::PIN;
use super::piv::{Card, READER_IN_URI};

/// The NetSuite algorithms, in the order of the matrix's columns.
pub const ALGS: [&str; 6] = ["ES256", "ES384", "ES512", "PS256", "PS384", "PS512"];

/// pkcs11-tool's `--key-type` for a key of each algorithm's kind (RSA: 3072 bits), in [`ALGS`]
/// order: for keys made outside suitekey.
pub const KEY_TYPES: [&str; 6] = [
    "EC:prime256v1",
    "EC:secp384r1",
    "EC:secp521r1",
    "rsa:3072",
    "rsa:3072",
    "rsa:3072",
];

/// yubico-piv-tool's `--algorithm` for a key of each algorithm's kind, in [`ALGS`] order, where
/// the card can hold one made by Debian 12's tools (no P-521; RSA 2048 at most), and the PIV
/// slot (and its key id) each algorithm's key goes to.
pub const PIV_KEYS: [(Option<&str>, &str, u8); 6] = [
    (Some("ECCP256"), "9a", 0x01),
    (Some("ECCP384"), "9c", 0x02),
    (None, "9d", 0x03),
    (Some("RSA2048"), "9e", 0x04),
    (Some("RSA2048"), "82", 0x05),
    (Some("RSA2048"), "83", 0x06),
];

/// The PIV slot (by key id) of the keys keygen is asked for and refuses: retired slot 8b on.
pub const PIV_REFUSED_ID: u8 = 0x10;

/// The user PIN of the matrix's PIV cards (PIV PINs have 6 to 8 characters); recognizable, so
/// that tests can assert it never appears in any output.
pub const PIV_PIN: &str = "50318274";

/// Where a module's declared version is checked against the module itself.
#[derive(Clone, Copy, Debug)]
pub enum VersionFrom {
    /// The library version `C_GetInfo` reports (in `suitekey list`'s first line).
    GetInfo,
    /// The same, which the module reports otherwise than its version (ykcs11 2.2 says 2.20).
    GetInfoReads(&'static str),
    /// The version of this crate in `scripts/tokens/kryoptic-module/Cargo.lock` (kryoptic's
    /// `C_GetInfo` says 0.0).
    KryopticLock(&'static str),
}

/// What a module must do in one cell of the matrix.
#[derive(Clone, Copy, Debug)]
pub enum Cell {
    /// It works, end to end.
    Works,
    /// suitekey refuses it (exit 3), with a message containing every one of these texts; `list
    /// --mechanisms` says "no" with the same texts.
    Refused(&'static [&'static str]),
    /// The module could sign it, but the only keys of this kind the card can hold (made with
    /// Debian 12's tools) are refused by NetSuite's rules: suitekey refuses them (exit 3) with
    /// these texts; `list --mechanisms` says "yes".
    KeyRefused(&'static [&'static str]),
}

/// How a module's tokens are run and their keys named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A token set up by its script in `scripts/tokens/`; keys labelled by algorithm, made
    /// outside suitekey with pkcs11-tool.
    Script(&'static str),
    /// The virtual PIV card (scripts/tokens/piv.sh) through Yubico's ykcs11; keys in the PIV
    /// slots of [`PIV_KEYS`], made outside suitekey with yubico-piv-tool.
    Ykcs11,
    /// The same card through OpenSC.
    OpenSc,
}

/// A module of the matrix and its declared capabilities; each cell is tested.
pub struct ModuleSpec {
    /// The name `SUITEKEY_TEST_MODULES` uses.
    pub name: &'static str,
    /// The name the README's table shows, with [`ModuleSpec::version`] in it.
    pub title: &'static str,
    /// The module's version (major.minor), as the title shows it.
    pub version: &'static str,
    /// Where that version is checked.
    pub version_from: VersionFrom,
    /// How its tokens are run.
    pub backend: Backend,
    /// `keygen` per algorithm, in [`ALGS`] order (RSA: 3072 bits).
    pub keygen: [Cell; 6],
    /// Signing per algorithm with a key of the right kind, in [`ALGS`] order.
    pub sign: [Cell; 6],
    /// `keygen --rsa-bits 4096`.
    pub rsa4096: Cell,
}

const W: Cell = Cell::Works;
const TPM2_P521: Cell = Cell::Refused(&["tpm2-pkcs11 (", "cannot use P-521 keys", "no ES512"]);
/// A PIV card has no P-521 (no ES512): both modules say so.
const PIV_P521: Cell = Cell::Refused(&["256 to 384 bits only, so not P-521"]);
/// ykcs11 2.2 makes and signs RSA keys of 2048 bits at most.
const YKCS11_RSA_KEYGEN: Cell = Cell::Refused(&["makes RSA keys of 1024 to 2048 bits only"]);
const YKCS11_RSA_SIGN: Cell = Cell::Refused(&["NetSuite refuses RSA keys below 3072 bits"]);
/// OpenSC makes no keys on a PIV card, and names the tools that do.
const OPENSC_KEYGEN: Cell = Cell::Refused(&[
    "OpenSC's PIV driver cannot make keys",
    "yubico-piv-tool -k -a generate",
    "ykman piv keys generate",
]);
/// OpenSC signs RSA 3072, but Debian 12's yubico-piv-tool makes RSA 2048 at most.
const RSA2048_REFUSED: Cell = Cell::KeyRefused(&["NetSuite refuses RSA keys below 3072 bits"]);

/// Every module of the matrix.
pub const MODULES: [ModuleSpec; 5] = [
    ModuleSpec {
        name: "softhsm2",
        title: "SoftHSM2 2.6",
        version: "2.6",
        version_from: VersionFrom::GetInfo,
        backend: Backend::Script("softhsm2.sh"),
        keygen: [W; 6],
        sign: [W; 6],
        rsa4096: W,
    },
    ModuleSpec {
        name: "tpm2",
        title: "tpm2-pkcs11 1.9 (swtpm)",
        version: "1.9",
        version_from: VersionFrom::GetInfo,
        backend: Backend::Script("tpm2.sh"),
        keygen: [W, W, TPM2_P521, W, W, W],
        sign: [W, W, TPM2_P521, W, W, W],
        rsa4096: Cell::Refused(&[
            "cannot generate RSA 4096 keys",
            "TPM2.0 Cryptoki",
            "makes RSA keys of 1024 to 3072 bits only; use --rsa-bits 3072 (the default) or another token",
        ]),
    },
    ModuleSpec {
        name: "kryoptic",
        title: "kryoptic 1.5",
        version: "1.5",
        version_from: VersionFrom::KryopticLock("kryoptic-lib"),
        backend: Backend::Script("kryoptic.sh"),
        keygen: [W; 6],
        sign: [W; 6],
        rsa4096: W,
    },
    ModuleSpec {
        name: "ykcs11",
        title: "Yubico ykcs11 2.2 (YubiKey PIV; virtual card)",
        version: "2.2",
        version_from: VersionFrom::GetInfoReads("2.20"),
        backend: Backend::Ykcs11,
        keygen: [
            W,
            W,
            PIV_P521,
            YKCS11_RSA_KEYGEN,
            YKCS11_RSA_KEYGEN,
            YKCS11_RSA_KEYGEN,
        ],
        sign: [
            W,
            W,
            PIV_P521,
            YKCS11_RSA_SIGN,
            YKCS11_RSA_SIGN,
            YKCS11_RSA_SIGN,
        ],
        rsa4096: YKCS11_RSA_KEYGEN,
    },
    ModuleSpec {
        name: "opensc",
        title: "OpenSC 0.23 (YubiKey PIV; virtual card)",
        version: "0.23",
        version_from: VersionFrom::GetInfo,
        backend: Backend::OpenSc,
        keygen: [OPENSC_KEYGEN; 6],
        sign: [
            W,
            W,
            PIV_P521,
            RSA2048_REFUSED,
            RSA2048_REFUSED,
            RSA2048_REFUSED,
        ],
        rsa4096: OPENSC_KEYGEN,
    },
];

/// The module named `name`, if `SUITEKEY_TEST_MODULES` selects it (all are, by default).
/// Under CI a module left out is a failure, so that an inherited setting cannot shrink the
/// matrix unnoticed.
pub fn selected(name: &str) -> Option<&'static ModuleSpec> {
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    selected_from(
        name,
        std::env::var("SUITEKEY_TEST_MODULES").ok().as_deref(),
        ci,
    )
}

/// [`selected`], given `SUITEKEY_TEST_MODULES` and whether this is CI.
pub fn selected_from(name: &str, list: Option<&str>, ci: bool) -> Option<&'static ModuleSpec> {
    let spec = MODULES
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no module '{name}' in the matrix"));
    let Some(list) = list else {
        return Some(spec);
    };
    let names: Vec<&str> = list.split(',').map(str::trim).collect();
    for n in &names {
        assert!(
            MODULES.iter().any(|m| m.name == *n),
            "SUITEKEY_TEST_MODULES names '{n}', which is none of {}",
            MODULES.map(|m| m.name).join(", ")
        );
    }
    let chosen = names.contains(&name);
    assert!(
        chosen || !ci,
        "CI is set but SUITEKEY_TEST_MODULES={list} leaves out {name}: CI runs every module \
         (unset SUITEKEY_TEST_MODULES, or unset CI for a partial local run)"
    );
    chosen.then_some(spec)
}

/// The matrix as the README shows it, rendered from the declarations that the tests check.
pub fn render_table() -> String {
    let mark = |c: &Cell| match c {
        Cell::Works => "✓",
        Cell::Refused(_) | Cell::KeyRefused(_) => "refused",
    };
    let mut out = String::from("| module | ");
    out.push_str(&ALGS.map(|a| format!("{a} keygen / sign")).join(" | "));
    out.push_str(" | RSA-4096 keygen |\n|---|");
    out.push_str(&"---|".repeat(ALGS.len() + 1));
    out.push('\n');
    for m in &MODULES {
        out.push_str(&format!("| {} |", m.title));
        for (k, s) in m.keygen.iter().zip(&m.sign) {
            out.push_str(&format!(" {} / {} |", mark(k), mark(s)));
        }
        out.push_str(&format!(" {} |\n", mark(&m.rsa4096)));
    }
    out
}

/// The label of the matrix's tokens.
pub const LABEL: &str = "suitekey-matrix";

/// A running token of one module, with its environment; its daemons stop when it is dropped.
pub struct ModuleToken {
    /// What the module is declared to do.
    pub spec: &'static ModuleSpec,
    /// What runs the token; stops it when dropped.
    pub running: Running,
    /// The environment a client of the token needs (module variables, `SUITEKEY_MODULE`).
    pub env: Vec<(String, String)>,
    /// The module file.
    pub module: PathBuf,
    /// The user PIN's file.
    pub pin_file: PathBuf,
}

/// What runs a matrix token.
pub enum Running {
    /// Its script's daemons in a temp dir.
    Script(Daemons),
    /// The virtual PIV card.
    Card(Card),
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts/tokens")
        .join(name)
}

/// The cargo target directory, where kryoptic's module is cached.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR has a parent")
        .to_path_buf()
}

impl ModuleSpec {
    /// The user PIN of this module's tokens.
    pub fn pin(&self) -> &'static str {
        match self.backend {
            Backend::Script(_) => PIN,
            Backend::Ykcs11 | Backend::OpenSc => PIV_PIN,
        }
    }

    /// Whether this is a PIV module over the virtual card.
    pub fn is_piv(&self) -> bool {
        !matches!(self.backend, Backend::Script(_))
    }

    /// Sets up a token of this module (panics, naming the module, when that fails).
    pub fn start(&'static self) -> ModuleToken {
        let Backend::Script(script) = self.backend else {
            return self.start_card();
        };
        // Under /tmp, not the target dir: tpm2's socket paths must stay short.
        let dir = tempfile::Builder::new()
            .prefix("sk-")
            .tempdir()
            .expect("temp dir");
        // Before the script runs: whatever it started stops, even if a later step panics.
        let daemons = Daemons {
            script,
            name: self.name,
            dir,
        };
        let dir = daemons.dir.path();
        let pin_file = dir.join("user.pin");
        write_private(&pin_file, PIN);
        write_private(&dir.join("so.pin"), "matrix-SO-PIN-8812");
        let (env, module) = self.start_in(dir);
        ModuleToken {
            spec: self,
            running: Running::Script(daemons),
            env,
            module,
            pin_file,
        }
    }

    /// A virtual PIV card with the matrix's PIN, reached through this module.
    fn start_card(&'static self) -> ModuleToken {
        let card = Card::start_with_pin(PIV_PIN);
        let module = match self.backend {
            Backend::OpenSc => card.opensc.clone(),
            _ => card.ykcs11.clone(),
        };
        ModuleToken {
            spec: self,
            env: vec![("SUITEKEY_MODULE".into(), module.display().to_string())],
            module,
            pin_file: card.pin_file(),
            running: Running::Card(card),
        }
    }

    /// `start DIR LABEL` (panics, naming the module, when it fails): the environment it printed
    /// and the module file.
    fn start_in(&self, dir: &Path) -> (Vec<(String, String)>, PathBuf) {
        let out = self.run_script(&["start".as_ref(), dir.as_os_str(), LABEL.as_ref()]);
        let (stdout, stderr) = super::texts(&out);
        assert!(
            out.status.success(),
            "setting up a {} token with scripts/tokens/{:?} failed ({}):\n{stderr}",
            self.name,
            self.backend,
            out.status
        );
        let env = parse_exports(&stdout);
        let module = env
            .iter()
            .find(|(k, _)| k == "SUITEKEY_MODULE")
            .map(|(_, v)| PathBuf::from(v))
            .unwrap_or_else(|| panic!("{:?} printed no SUITEKEY_MODULE:\n{stdout}", self.backend));
        (env, module)
    }

    /// `bash scripts/tokens/SCRIPT ARGS`, as the tests run it (a module with a script).
    pub fn run_script(&self, args: &[&std::ffi::OsStr]) -> std::process::Output {
        let Backend::Script(name) = self.backend else {
            panic!(
                "{} has no script of its own (tests/common/piv.rs runs piv.sh)",
                self.name
            );
        };
        Command::new("bash")
            .arg(script(name))
            .args(args)
            .env("CARGO_TARGET_DIR", target_dir())
            // Daemons stop with this process even if it is killed before Drop runs.
            .env("SUITEKEY_TOKEN_OWNER_PID", std::process::id().to_string())
            .env_remove("SUITEKEY_MODULE")
            .output()
            .expect("run bash")
    }
}

fn write_private(path: &Path, text: &str) {
    fs::write(path, format!("{text}\n")).expect("write PIN file");
    fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod PIN file");
}

/// `export NAME=VALUE` lines (values without shell quoting: plain paths and words).
fn parse_exports(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .map(|line| {
            let (name, value) = line
                .strip_prefix("export ")
                .and_then(|l| l.split_once('='))
                .unwrap_or_else(|| panic!("not an export line: {line:?}"));
            assert!(
                !value.contains(['\'', '"', '\\', '$']),
                "quoted value in {line:?}"
            );
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

impl ModuleToken {
    /// The token's directory.
    pub fn dir(&self) -> &Path {
        match &self.running {
            Running::Script(daemons) => daemons.dir.path(),
            Running::Card(card) => card.path(),
        }
    }

    /// Runs the script's `start` again on the same directory, as a user would after a reboot.
    pub fn restart(&mut self) {
        let (env, module) = self.spec.start_in(self.dir());
        self.env = env;
        self.module = module;
    }

    /// The `suitekey` binary with this token's environment and no inherited SUITEKEY_* settings.
    pub fn suitekey(&self) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::cargo_bin("suitekey").expect("suitekey binary");
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SUITEKEY_") || name == "RUST_LOG" {
                cmd.env_remove(name);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// The URI of key `object` in this token, with the module path and the PIN file.
    pub fn uri(&self, object: &str) -> String {
        format!(
            "pkcs11:token={LABEL};object={object}?module-path={}&pin-source=file:{}",
            self.module.display(),
            self.pin_file.display()
        )
    }

    /// The URI of the key with CKA_ID `id` (a PIV slot) on the card, chosen by its reader.
    pub fn id_uri(&self, id: u8) -> String {
        format!(
            "pkcs11:{READER_IN_URI};id=%{id:02X}?module-path={}&pin-source=file:{}",
            self.module.display(),
            self.pin_file.display()
        )
    }

    /// The URI of the matrix's key for `ALGS[i]`: labelled by the algorithm, or on the PIV card
    /// in its slot.
    pub fn key_uri(&self, i: usize) -> String {
        if self.spec.is_piv() {
            self.id_uri(PIV_KEYS[i].2)
        } else {
            self.uri(ALGS[i])
        }
    }

    /// `keygen`'s extra flags on this token: ykcs11 makes keys with the card's management key.
    pub fn keygen_flags(&self) -> Vec<String> {
        match (&self.running, self.spec.backend) {
            (Running::Card(card), Backend::Ykcs11) => vec![
                "--management-key-source".into(),
                format!("file:{}", card.management_key_file().display()),
            ],
            _ => Vec::new(),
        }
    }

    /// `list`'s flags naming this token.
    pub fn list_flags(&self) -> Vec<&'static str> {
        if self.spec.is_piv() {
            Vec::new()
        } else {
            vec!["--token", LABEL]
        }
    }

    /// A key of `ALGS[i]`'s kind made outside suitekey, where the token can hold one: on the
    /// PIV card by yubico-piv-tool in the algorithm's slot, with a certificate from a test CA
    /// beside it; elsewhere by pkcs11-tool, labelled `outside-ALG` with id 5e. Its URI, and the
    /// certificate's file where there is one.
    pub fn key_made_outside(&self, i: usize) -> Option<(String, Option<PathBuf>)> {
        match &self.running {
            Running::Card(card) => {
                let (algorithm, slot, id) = PIV_KEYS[i];
                let cert = card.provision(slot, algorithm?);
                Some((self.id_uri(id), Some(cert)))
            }
            Running::Script(_) => {
                let label = format!("outside-{}", ALGS[i]);
                self.keypairgen_outside(&label, "5e", KEY_TYPES[i]);
                Some((self.uri(&label), None))
            }
        }
    }

    /// Makes an EC key pair with OpenSC's pkcs11-tool, not suitekey (for kinds suitekey refuses
    /// to make, so that its refusal to sign with them can be tested).
    pub fn keypairgen_outside(&self, label: &str, id: &str, key_type: &str) {
        let out = Command::new("pkcs11-tool")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("MATRIX_PIN", PIN)
            .arg("--module")
            .arg(&self.module)
            .args(["--token-label", LABEL, "--login", "--pin", "env:MATRIX_PIN"])
            .args(["--keypairgen", "--key-type", key_type, "--label", label])
            .args(["--id", id, "--usage-sign", "--sensitive"])
            .output()
            .expect("run pkcs11-tool");
        let (_, stderr) = super::texts(&out);
        assert!(
            out.status.success(),
            "pkcs11-tool --keypairgen {key_type} on {}: {stderr}",
            self.spec.name
        );
    }
}

/// A token's temp directory, whose daemons (if any) its script stops when this is dropped,
/// before the directory goes.
pub struct Daemons {
    script: &'static str,
    name: &'static str,
    /// The directory (state, sockets, PID files, PIN files).
    pub dir: tempfile::TempDir,
}

impl Drop for Daemons {
    fn drop(&mut self) {
        // By the PIDs in the token's directory, never by name: other runs use the same programs.
        let status = Command::new("bash")
            .arg(script(self.script))
            .arg("stop")
            .arg(self.dir.path())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!(
                "stopping the {} daemons in {} failed: {status:?}",
                self.name,
                self.dir.path().display()
            );
        }
    }
}
