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

/// A shell command line running on a pseudo-terminal (util-linux `script`, bounded by
/// coreutils `timeout`), its screen read by a thread, answered prompt by prompt as a person
/// would.
pub struct Terminal {
    child: std::process::Child,
    screen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    /// How much of the screen the prompts answered so far took.
    answered: usize,
}

impl Terminal {
    /// Runs `shell` (`sh -c`, on the terminal) with `cmd`'s program path, environment and
    /// working directory settings: build `cmd` as `Command::new("unused")` with them.
    pub fn start(shell: &str, cmd: &Command) -> Terminal {
        let mut run = Command::new("timeout");
        for (name, value) in cmd.get_envs() {
            match value {
                Some(value) => run.env(name, value),
                None => run.env_remove(name),
            };
        }
        let mut child = run
            .args(["120", "script", "-qec", shell, "/dev/null"])
            .current_dir(cmd.get_current_dir().unwrap_or(std::path::Path::new(".")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("coreutils timeout and util-linux script");
        let mut output = child.stdout.take().expect("stdout");
        let screen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&screen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while let Ok(n @ 1..) = output.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Terminal {
            child,
            screen,
            answered: 0,
        }
    }

    /// What the terminal showed so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    /// Waits (at most 30 s) until the terminal shows `what` after the prompts answered so far;
    /// returns where it ends.
    pub fn wait_for(&self, what: &str) -> usize {
        let start = std::time::Instant::now();
        loop {
            let text = self.text();
            if let Some(at) = text.get(self.answered..).and_then(|t| t.find(what)) {
                return self.answered + at + what.len();
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "no {what:?} on the terminal: {text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Waits for `prompt`, then types `answer` and Enter.
    pub fn answer(&mut self, prompt: &str, answer: &str) {
        self.answered = self.wait_for(prompt);
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin
            .write_all(format!("{answer}\n").as_bytes())
            .expect("type");
        stdin.flush().expect("type");
    }

    /// Waits for the command line to end: its status and what the terminal showed.
    pub fn finish(mut self) -> (ExitStatus, String) {
        drop(self.child.stdin.take());
        let status = self.child.wait().expect("script exits");
        // The reader thread may still be catching up with the last output.
        std::thread::sleep(std::time::Duration::from_millis(100));
        (status, self.text())
    }
}
