//! README examples run as written: a line is taken from README.md, its placeholders filled in,
//! and run by `sh -c` under `strace -f`, which records every program started (`execve`, with
//! its whole argv) and what was written to pipes and sockets, so a test can tell both that
//! curl sent the bearer token and that no process was given it in its argv.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The line of README.md that starts with `prefix` (leading spaces ignored); panics naming the
/// prefix when there is none, so a README edit cannot silently drop a tested example.
pub fn readme_line(prefix: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let text = std::fs::read_to_string(&path).expect("README.md");
    text.lines()
        .map(str::trim_start)
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("README.md has no line starting with {prefix:?}"))
        .to_owned()
}

/// The lines of the first `count` fenced code blocks of README.md that follow the line starting
/// with `marker` (leading spaces ignored); panics naming the marker when there are fewer.
pub fn readme_blocks(marker: &str, count: usize) -> Vec<Vec<String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let text = std::fs::read_to_string(&path).expect("README.md");
    let mut lines = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with(marker));
    let mut blocks = Vec::new();
    while blocks.len() < count {
        let opening = lines.by_ref().find(|l| l.trim_start().starts_with("```"));
        assert!(
            opening.is_some(),
            "README.md has fewer than {count} code blocks after {marker:?}"
        );
        let block = lines
            .by_ref()
            .take_while(|l| !l.trim_start().starts_with("```"))
            .map(str::to_owned)
            .collect();
        blocks.push(block);
    }
    blocks
}

/// Puts the directory of the suitekey binary first on `cmd`'s PATH, as for a user who
/// installed it, and removes inherited `SUITEKEY_*` and `RUST_LOG` settings.
pub fn with_suitekey_on_path(cmd: &mut Command) -> &mut Command {
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_suitekey"))
        .parent()
        .expect("bin dir")
        .to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SUITEKEY_") || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    cmd.env("PATH", path)
}

/// A command line run under strace.
pub struct Traced {
    /// What the command line printed and its status.
    pub output: Output,
    /// strace's log: one line per system call.
    pub log: String,
}

/// Runs `line` with `sh -c` under `strace -f` (its log in `dir`), with the directory of the
/// suitekey binary first on PATH, no inherited `SUITEKEY_*` or `RUST_LOG`, and whatever
/// `cmd_env` sets.
pub fn run_traced(line: &str, dir: &Path, cmd_env: impl FnOnce(&mut Command)) -> Traced {
    let log = dir.join("strace.log");
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-e", "trace=execve,sendto,write", "-s", "65536", "-o"])
        .arg(&log)
        .args(["sh", "-c", line]);
    with_suitekey_on_path(&mut cmd);
    cmd_env(&mut cmd);
    let output = cmd
        .output()
        .expect("strace (scripts/install-deps.sh installs it)");
    let log = std::fs::read_to_string(&log).expect("strace log");
    Traced { output, log }
}

impl Traced {
    /// The bearer token curl sent over its connection (the `sendto` of its request).
    pub fn sent_bearer_token(&self) -> String {
        let marker = "Authorization: Bearer ";
        let line = self
            .log
            .lines()
            .find(|l| l.contains(" sendto(") && l.contains(marker))
            .unwrap_or_else(|| {
                panic!(
                    "no request carried a bearer token; stdout: {}, stderr: {}",
                    String::from_utf8_lossy(&self.output.stdout),
                    String::from_utf8_lossy(&self.output.stderr)
                )
            });
        let after = &line[line.find(marker).expect("marker") + marker.len()..];
        // strace shows the request's CR LF as `\r\n`; a token has no backslash.
        after.split(['\\', '"']).next().expect("token").to_owned()
    }

    /// Panics unless curl sent a real token and that token appears only in data written to
    /// pipes and sockets: in no program's argv (`execve`), which every local user can read in
    /// `/proc/PID/cmdline`. The token is never printed.
    pub fn assert_token_sent_but_in_no_argv(&self) {
        let token = self.sent_bearer_token();
        assert!(
            token.len() >= 32,
            "curl sent a bearer token of {} bytes, not an issued token; stderr: {}",
            token.len(),
            String::from_utf8_lossy(&self.output.stderr)
        );
        let execs: Vec<&str> = self.log.lines().filter(|l| l.contains("execve(")).collect();
        for program in ["/suitekey\"", "/curl\""] {
            assert!(
                execs.iter().any(|l| l.contains(program)),
                "{program} never started: {execs:#?}"
            );
        }
        for line in self.log.lines().filter(|l| l.contains(&token)) {
            let call = line.split_whitespace().nth(1).unwrap_or_default();
            assert!(
                call.starts_with("write(") || call.starts_with("sendto("),
                "the access token is in a system call other than a write: {}",
                line.replace(&token, "<TOKEN>")
            );
        }
    }
}
