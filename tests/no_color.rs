//! NO_COLOR (https://no-color.org): set to a non-empty value, suitekey writes no ANSI colour on a
//! terminal (util-linux `script` gives it a real pseudo-terminal) — not in its logs
//! (tracing-subscriber), its help or its usage errors (clap); unset, colour appears there. Logs
//! to a pipe are never coloured.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const ESC: char = '\u{1b}';

/// What NO_COLOR is set to for a run: unset, empty (which does not count), or "1".
#[derive(Clone, Copy, Debug)]
enum NoColor {
    Unset,
    Empty,
    Set,
}

/// A command with the environment colour decisions read, made the same on every machine: a
/// terminal type with colours, and none of the variables that force colour on or off.
fn colour_neutral(program: &str, no_color: NoColor) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("TERM", "xterm-256color")
        .env_remove("CLICOLOR")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG");
    match no_color {
        NoColor::Unset => {}
        NoColor::Empty => {
            cmd.env("NO_COLOR", "");
        }
        NoColor::Set => {
            cmd.env("NO_COLOR", "1");
        }
    }
    cmd
}

/// Runs the shell command `shell` on a pseudo-terminal; returns everything the terminal showed
/// (stdout and stderr both).
fn on_terminal(shell: &str, no_color: NoColor) -> String {
    // coreutils `timeout` bounds the test should the command hang.
    let mut child = colour_neutral("timeout", no_color)
        .args(["30", "script", "-qec", shell, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("coreutils timeout and util-linux script");
    let mut seen = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_end(&mut seen)
        .expect("read the terminal");
    drop(child.stdin.take());
    let status = child.wait().expect("script exits");
    let screen = String::from_utf8(seen).expect("UTF-8");
    assert_ne!(status.code(), Some(124), "timed out: {screen}");
    screen
}

fn suitekey() -> &'static str {
    env!("CARGO_BIN_EXE_suitekey")
}

/// A self-signed P-256 certificate (by the openssl CLI) for `emulate --register`.
fn certificate(dir: &Path) -> PathBuf {
    let cert = dir.join("cert.pem");
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=colour"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cert
}

/// `suitekey -v emulate` that logs at info level, prints its URL and stops at once (stdin at
/// end of file).
fn emulate_command(cert: &Path) -> String {
    format!(
        "'{}' -v emulate --exit-on-stdin-eof --register 'client-id=abc123,cert={}' </dev/null",
        suitekey(),
        cert.display()
    )
}

#[test]
fn no_color_turns_log_colours_off_on_a_terminal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let shell = emulate_command(&certificate(dir.path()));
    for (no_color, coloured) in [
        (NoColor::Unset, true),
        (NoColor::Empty, true),
        (NoColor::Set, false),
    ] {
        let screen = on_terminal(&shell, no_color);
        assert!(screen.contains("emulator listening"), "{screen}");
        assert_eq!(
            screen.contains(ESC),
            coloured,
            "NO_COLOR {no_color:?}: {screen:?}"
        );
    }
}

#[test]
fn no_color_turns_help_and_usage_error_colours_off_on_a_terminal() {
    for args in ["--help", "token --help", "--no-such-flag"] {
        let shell = format!("'{}' {args}", suitekey());
        for (no_color, coloured) in [
            (NoColor::Unset, true),
            (NoColor::Empty, true),
            (NoColor::Set, false),
        ] {
            let screen = on_terminal(&shell, no_color);
            assert!(screen.contains("suitekey"), "{screen}");
            assert_eq!(
                screen.contains(ESC),
                coloured,
                "{args}, NO_COLOR {no_color:?}: {screen:?}"
            );
        }
    }
}

#[test]
fn logs_to_a_pipe_are_never_coloured() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cert = certificate(dir.path());
    let out = colour_neutral(suitekey(), NoColor::Unset)
        .args(["-v", "emulate", "--exit-on-stdin-eof", "--register"])
        .arg(format!("client-id=abc123,cert={}", cert.display()))
        .stdin(Stdio::null())
        .output()
        .expect("run suitekey");
    let stderr = String::from_utf8(out.stderr).expect("UTF-8");
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("emulator listening"), "{stderr}");
    assert!(!stderr.contains(ESC), "{stderr:?}");
}
