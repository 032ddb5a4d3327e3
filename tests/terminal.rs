//! The PIN prompt on a real pseudo-terminal (util-linux `script`), as a person meets it.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use common::{PIN, TOKEN, decode_jws, fixture, verify};

const PROMPT: &str = "PIN for token 'suitekey-test': ";

/// Runs `suitekey assertion` for the p384 key (no PIN source) on a pseudo-terminal, then
/// `stty -a` on the same terminal; `keys` are typed once the prompt is up, as a person would.
/// Returns the exit status of the whole session and everything the terminal showed.
fn on_terminal(keys: &[u8]) -> (i32, String) {
    let f = fixture();
    let key = format!(
        "pkcs11:token={TOKEN};object=p384?module-path={}",
        common::module_path().display()
    );
    let cmd = f.suitekey();
    let suitekey = cmd.get_program().to_string_lossy().into_owned();
    // `trap '' INT` keeps the shell alive past a Ctrl-C so that `stty -a` shows what the
    // terminal was left with; suitekey installs its own handler for the prompt.
    let shell = format!(
        "trap '' INT; '{suitekey}' assertion --key '{key}' --client-id abc --certificate-id kid --account 1; echo \"exit=$?\"; stty -a"
    );
    // coreutils `timeout` bounds the test should the prompt never come.
    let mut child = Command::new("timeout")
        .args(["30", "script", "-qec", &shell, "/dev/null"])
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env_remove("SUITEKEY_PIN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("coreutils timeout and util-linux script");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains(PROMPT) {
        let n = stdout.read(&mut buf).expect("read the terminal");
        assert!(
            n > 0,
            "no prompt before EOF: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(keys).expect("type");
    stdout.read_to_end(&mut seen).expect("read the terminal");
    drop(stdin);
    let status = child.wait().expect("script exits");
    (
        status.code().unwrap_or(-1),
        String::from_utf8(seen).expect("utf-8"),
    )
}

/// The exit status `echo "exit=$?"` printed for suitekey.
fn suitekey_exit(screen: &str) -> &str {
    screen
        .split("exit=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("none")
}

fn echo_restored(screen: &str) -> bool {
    screen.split_whitespace().any(|w| w == "echo")
        && !screen.split_whitespace().any(|w| w == "-echo")
}

#[test]
fn the_pin_is_prompted_for_without_echo_and_the_terminal_is_restored() {
    let (status, screen) = on_terminal(format!("{PIN}\n").as_bytes());
    assert_eq!(status, 0, "{screen}");
    assert_eq!(suitekey_exit(&screen), "0", "{screen}");
    assert!(!screen.contains(PIN), "the PIN was echoed:\n{screen}");
    let jws = screen
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("eyJ"))
        .expect("a JWS on the terminal");
    verify(&decode_jws(jws), &fixture().public_key(0x02)).expect("verifies");
    assert!(
        echo_restored(&screen),
        "echo is still off afterwards:\n{screen}"
    );
}

#[test]
fn ctrl_c_at_the_prompt_ends_suitekey_and_restores_echo() {
    let (_, screen) = on_terminal(b"12\x03");
    assert_eq!(suitekey_exit(&screen), "130", "killed by SIGINT:\n{screen}");
    assert!(echo_restored(&screen), "Ctrl-C left echo off:\n{screen}");
}

#[test]
fn enter_as_carriage_return_ends_the_pin() {
    // A terminal left in raw mode sends CR for Enter; the prompt must still end the line.
    let (_, screen) = on_terminal(format!("{PIN}\r").as_bytes());
    assert_eq!(suitekey_exit(&screen), "0", "{screen}");
}
