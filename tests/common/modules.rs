//! The PKCS#11 modules the matrix runs on (SoftHSM2, tpm2-pkcs11 over swtpm, kryoptic): what each
//! is declared to support, and a running token of each, set up by its `scripts/tokens/` script in
//! a temp dir of its own; daemons are stopped by PID when the token is dropped.
//!
//! `SUITEKEY_TEST_MODULES` (comma list; default: all) picks the modules a run covers; under CI
//! (`CI` set) leaving one out fails the run. A module whose set-up fails fails its test: nothing
//! is skipped silently.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::PIN;

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

/// Where a module's declared version is checked against the module itself.
#[derive(Clone, Copy, Debug)]
pub enum VersionFrom {
    /// The library version `C_GetInfo` reports (in `suitekey list`'s first line).
    GetInfo,
    /// The version of this crate in `scripts/tokens/kryoptic-module/Cargo.lock` (kryoptic's
    /// `C_GetInfo` says 0.0).
    KryopticLock(&'static str),
}

/// What a module must do in one cell of the matrix.
#[derive(Clone, Copy, Debug)]
pub enum Cell {
    /// It works, end to end.
    Works,
    /// suitekey refuses it (exit 3), with a message containing every one of these texts.
    Refused(&'static [&'static str]),
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
    /// Its script in `scripts/tokens/`.
    script: &'static str,
    /// `keygen` per algorithm, in [`ALGS`] order (RSA: 3072 bits).
    pub keygen: [Cell; 6],
    /// Signing per algorithm with a key of the right kind, in [`ALGS`] order.
    pub sign: [Cell; 6],
    /// `keygen --rsa-bits 4096`.
    pub rsa4096: Cell,
}

const W: Cell = Cell::Works;
const TPM2_P521: Cell = Cell::Refused(&["tpm2-pkcs11 (", "cannot use P-521 keys", "no ES512"]);

/// Every module of the matrix.
pub const MODULES: [ModuleSpec; 3] = [
    ModuleSpec {
        name: "softhsm2",
        title: "SoftHSM2 2.6",
        version: "2.6",
        version_from: VersionFrom::GetInfo,
        script: "softhsm2.sh",
        keygen: [W; 6],
        sign: [W; 6],
        rsa4096: W,
    },
    ModuleSpec {
        name: "tpm2",
        title: "tpm2-pkcs11 1.9 (swtpm)",
        version: "1.9",
        version_from: VersionFrom::GetInfo,
        script: "tpm2.sh",
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
        script: "kryoptic.sh",
        keygen: [W; 6],
        sign: [W; 6],
        rsa4096: W,
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
            "SUITEKEY_TEST_MODULES names '{n}', which is none of softhsm2, tpm2, kryoptic"
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
        Cell::Refused(_) => "refused",
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
    /// The token's directory; stops its daemons when dropped.
    pub daemons: Daemons,
    /// The environment a client of the token needs (module variables, `SUITEKEY_MODULE`).
    pub env: Vec<(String, String)>,
    /// The module file.
    pub module: PathBuf,
    /// The user PIN's file.
    pub pin_file: PathBuf,
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
    /// Sets up a token of this module (panics, naming the module, when that fails).
    pub fn start(&'static self) -> ModuleToken {
        // Under /tmp, not the target dir: tpm2's socket paths must stay short.
        let dir = tempfile::Builder::new()
            .prefix("sk-")
            .tempdir()
            .expect("temp dir");
        // Before the script runs: whatever it started stops, even if a later step panics.
        let daemons = Daemons {
            script: self.script,
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
            daemons,
            env,
            module,
            pin_file,
        }
    }

    /// `start DIR LABEL` (panics, naming the module, when it fails): the environment it printed
    /// and the module file.
    fn start_in(&self, dir: &Path) -> (Vec<(String, String)>, PathBuf) {
        let out = self.run_script(&["start".as_ref(), dir.as_os_str(), LABEL.as_ref()]);
        let (stdout, stderr) = super::texts(&out);
        assert!(
            out.status.success(),
            "setting up a {} token with scripts/tokens/{} failed ({}):\n{stderr}",
            self.name,
            self.script,
            out.status
        );
        let env = parse_exports(&stdout);
        let module = env
            .iter()
            .find(|(k, _)| k == "SUITEKEY_MODULE")
            .map(|(_, v)| PathBuf::from(v))
            .unwrap_or_else(|| panic!("{} printed no SUITEKEY_MODULE:\n{stdout}", self.script));
        (env, module)
    }

    /// `bash scripts/tokens/SCRIPT ARGS`, as the tests run it.
    pub fn run_script(&self, args: &[&std::ffi::OsStr]) -> std::process::Output {
        Command::new("bash")
            .arg(script(self.script))
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
    /// Runs the script's `start` again on the same directory, as a user would after a reboot.
    pub fn restart(&mut self) {
        let (env, module) = self.spec.start_in(self.daemons.dir.path());
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
