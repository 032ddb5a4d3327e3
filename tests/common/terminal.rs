//! A command run on a pseudo-terminal (util-linux `script`), with keys typed once it prompts.

use std::io::{Read as _, Write as _};
use std::process::{Command, ExitStatus, Stdio};

/// Runs `shell` (`sh -c`) on a pseudo-terminal with `cmd`'s environment plus `env` and without
/// `SUITEKEY_PIN`; once the terminal shows `prompt`, types `keys` as a person would. Returns how
/// the session ended and everything the terminal showed. coreutils `timeout` bounds the run
/// should the prompt never come.
pub fn type_at_prompt(
    cmd: &assert_cmd::Command,
    shell: &str,
    env: &[(&str, &str)],
    prompt: &str,
    keys: &[u8],
) -> (ExitStatus, Vec<u8>) {
    let mut child = Command::new("timeout")
        .args(["30", "script", "-qec", shell, "/dev/null"])
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .envs(env.iter().copied())
        .env_remove("SUITEKEY_PIN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("coreutils timeout and util-linux script");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains(prompt) {
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
    (status, seen)
}
