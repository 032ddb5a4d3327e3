//! A `suitekey emulate` child process for tests: started on a free loopback port, killed by
//! PID when dropped, and gone with the test process even if that is killed outright (it exits
//! when the pipe on its stdin closes).

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use super::http::{Response, http};

/// NetSuite's token path, which the emulator serves too.
pub const TOKEN_PATH: &str = "/services/rest/auth/oauth2/v1/token";

/// A running `suitekey emulate`; killed by PID when dropped.
pub struct Emulator {
    /// The emulator process.
    pub child: Child,
    _stdout: BufReader<ChildStdout>,
    /// Held open for the emulator's life: it exits when this closes.
    pub stdin: Option<ChildStdin>,
    /// The base URL it printed.
    pub base: String,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Emulator {
    /// Starts `suitekey emulate ARGS` on 127.0.0.1:0 and reads its base URL.
    pub fn start(args: &[&str]) -> Emulator {
        Emulator::start_on("127.0.0.1:0", args)
    }

    /// Starts `suitekey emulate ARGS` listening on `listen` and reads its base URL.
    pub fn start_on(listen: &str, args: &[&str]) -> Emulator {
        Emulator::start_with_env(listen, args, &[])
    }

    /// Starts `suitekey emulate ARGS` listening on `listen`, with `env` added to its
    /// environment (e.g. libfaketime's), and reads its base URL.
    pub fn start_with_env(listen: &str, args: &[&str], env: &[(&str, &str)]) -> Emulator {
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("stderr.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_suitekey"))
            .arg("emulate")
            .arg("--exit-on-stdin-eof")
            .args(["--listen", listen])
            .args(args)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        if line.is_empty() {
            let _ = child.wait();
            panic!(
                "emulator did not start: {}",
                std::fs::read_to_string(&stderr).unwrap()
            );
        }
        let base = line.trim_end().to_owned();
        assert!(base.starts_with("http://127.0.0.1:"), "{base}");
        Emulator {
            child,
            _stdout: stdout,
            stdin,
            base,
            stderr,
            _dir: dir,
        }
    }

    /// Its token URL.
    pub fn token_url(&self) -> String {
        format!("{}{TOKEN_PATH}", self.base)
    }

    /// What it logged so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap()
    }

    /// Its counters (`/_emulator/stats`).
    pub fn stats(&self) -> serde_json::Value {
        stats_at(&self.base)
    }

    /// Its certificates and the certificate API's calls (`/_emulator/certificates`).
    pub fn certificates(&self) -> serde_json::Value {
        certificates_at(&self.base)
    }

    /// The certificates of `client` (each as `/_emulator/certificates` shows it).
    pub fn client_certificates(&self, client: &str) -> Vec<serde_json::Value> {
        let state = self.certificates();
        state["certificates"]
            .as_array()
            .expect("the emulator's certificates")
            .iter()
            .filter(|c| c["client_id"] == client)
            .cloned()
            .collect()
    }

    /// `METHOD path` with these headers and body (see [`http`]).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Response {
        http(&self.base, method, path, headers, body)
    }
}

/// The certificate API's list and upload path for `client`.
pub fn certificates_path(client: &str) -> String {
    format!("/services/rest/auth/oauth2/v1/clients/{client}/certificates")
}

/// The certificate API's revoke path for `client`'s certificate `id`.
pub fn revoke_path(client: &str, id: &str) -> String {
    format!("{}/{id}/revoke", certificates_path(client))
}

/// The counters (`/_emulator/stats`) of the emulator at `base`, fetched with curl (which fails
/// on an HTTP error status).
pub fn stats_at(base: &str) -> serde_json::Value {
    inspect(base, "/_emulator/stats")
}

/// The certificates and certificate API calls (`/_emulator/certificates`) of the emulator at
/// `base`: `{"calls": {"list","upload","revoke"}, "certificates": [{client_id,
/// certificate_id, algorithm, role, entity, manage_certificates, mapping_id, application_id,
/// valid_from, valid_until, uploaded, active_from, revoked}]}`.
pub fn certificates_at(base: &str) -> serde_json::Value {
    inspect(base, "/_emulator/certificates")
}

fn inspect(base: &str, path: &str) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-sf", &format!("{base}{path}")])
        .output()
        .expect("curl");
    assert!(out.status.success(), "GET {path}: {:?}", out.status);
    serde_json::from_slice(&out.stdout).expect("JSON")
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
