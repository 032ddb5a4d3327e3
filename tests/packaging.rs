//! What a package ships beside the binary, as users meet it: the shell completions (`suitekey
//! completions SHELL`, each completing a command in the real shell where one is installed), the
//! man pages (`suitekey man DIR`, each rendered by `man`), `--version` naming the commit, and
//! README's completion lines run as written.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::cargo::cargo_bin;
use clap::CommandFactory as _;
use common::readme_examples::with_suitekey_on_path;

/// The commands a user can see (not the hidden `man`, not clap's `help`): the source of truth
/// is the clap definition the binary is built from.
fn visible_commands() -> Vec<String> {
    let names: Vec<String> = suitekey::cli::Cli::command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_owned())
        .collect();
    for known in ["list", "token", "agent", "completions"] {
        assert!(
            names.iter().any(|n| n == known),
            "{known} missing: {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n == "man"),
        "man is visible: {names:?}"
    );
    names
}

/// `suitekey ARGS`, which must succeed: its stdout.
fn suitekey(args: &[&str]) -> String {
    let out = Command::new(cargo_bin("suitekey"))
        .args(args)
        .output()
        .expect("suitekey");
    let (stdout, stderr) = common::texts(&out);
    assert!(out.status.success(), "suitekey {args:?}: {stderr}");
    assert!(
        stderr.is_empty(),
        "suitekey {args:?} wrote on stderr: {stderr}"
    );
    stdout
}

/// Whether `program` runs here (zsh and fish come from scripts/install-deps.sh).
fn installed(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok()
}

#[test]
fn completions_for_every_shell_name_every_command() {
    let commands = visible_commands();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = suitekey(&["completions", shell]);
        assert!(script.len() > 1000, "{shell}: {} bytes", script.len());
        for command in &commands {
            assert!(
                script.contains(command.as_str()),
                "the {shell} completions never mention {command}"
            );
        }
        // Flags of a command too.
        assert!(
            script.contains("curl-config"),
            "{shell}: no --format values"
        );
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error_naming_the_shells() {
    let out = Command::new(cargo_bin("suitekey"))
        .args(["completions", "tcsh"])
        .output()
        .expect("suitekey");
    let (stdout, stderr) = common::texts(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("bash, elvish, fish, powershell, zsh"),
        "{stderr}"
    );
}

/// What bash's programmable completion offers for `words` (the last one being completed),
/// with the script in `file` sourced, as bash-completion would.
fn bash_completes(file: &Path, words: &[&str]) -> Vec<String> {
    let script = format!(
        r#"source {file:?} || exit 9
COMP_WORDS=({words})
COMP_CWORD={cword}
COMP_LINE="${{COMP_WORDS[*]}}"
COMP_POINT=${{#COMP_LINE}}
_suitekey suitekey "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
        words = words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" "),
        cword = words.len() - 1,
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &script])
        .output()
        .expect("bash");
    let (stdout, stderr) = common::texts(&out);
    assert!(out.status.success(), "bash: {stderr}");
    stdout.lines().map(str::to_owned).collect()
}

/// Checks the bash completion script in `file` completes commands, flags and flag values.
fn assert_bash_completes(file: &Path) {
    assert_eq!(bash_completes(file, &["suitekey", "to"]), ["token"]);
    assert_eq!(
        bash_completes(file, &["suitekey", "token", "--for"]),
        ["--format"]
    );
    let formats = bash_completes(file, &["suitekey", "token", "--format", ""]);
    assert_eq!(formats, ["raw", "json", "header", "env", "curl-config"]);
}

/// Checks the fish completion script in `file` completes `suitekey to` to `token`, in fish.
fn assert_fish_completes(file: &Path) {
    let out = Command::new("fish")
        .args(["--no-config", "-c"])
        .arg(format!("source {file:?}; and complete -C'suitekey to'"))
        .output()
        .expect("fish");
    let (stdout, stderr) = common::texts(&out);
    assert!(out.status.success(), "fish: {stderr}");
    let offered: Vec<&str> = stdout
        .lines()
        .map(|l| l.split('\t').next().unwrap_or_default())
        .collect();
    assert_eq!(offered, ["token"], "{stdout}");
}

/// Checks zsh parses the completion script in `file` (`zsh -n`).
fn assert_zsh_parses(file: &Path) {
    let out = Command::new("zsh")
        .arg("-n")
        .arg(file)
        .output()
        .expect("zsh");
    assert!(out.status.success(), "zsh -n: {}", common::texts(&out).1);
}

/// Whether the shells beside bash must be present: under CI, where scripts/install-deps.sh
/// installs them, a missing one fails the test instead of skipping its part.
fn other_shell(program: &str) -> bool {
    let here = installed(program);
    assert!(
        here || std::env::var_os("CI").is_none(),
        "{program} is not installed (scripts/install-deps.sh installs it)"
    );
    if !here {
        eprintln!("{program} not installed: its completion is not tried");
    }
    here
}

#[test]
fn the_completion_scripts_complete_in_their_shells() {
    let dir = common::temp_dir();
    let write = |shell: &str| -> PathBuf {
        let path = dir.path().join(shell);
        std::fs::write(&path, suitekey(&["completions", shell])).expect("write");
        path
    };
    assert_bash_completes(&write("bash"));
    if other_shell("fish") {
        assert_fish_completes(&write("fish"));
    }
    if other_shell("zsh") {
        assert_zsh_parses(&write("zsh"));
    }
}

#[test]
fn readme_completion_lines_install_working_completions() {
    let home = common::temp_dir();
    for shell in ["bash", "zsh", "fish"] {
        let prefix = format!("suitekey completions {shell} > ~/");
        let line = readme_completion_line(&prefix);
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &line]).env("HOME", home.path());
        with_suitekey_on_path(&mut cmd);
        let out = cmd.output().expect("sh");
        assert!(out.status.success(), "{line}: {}", common::texts(&out).1);
    }
    let home = home.path();
    assert_bash_completes(&home.join(".local/share/bash-completion/completions/suitekey"));
    if other_shell("fish") {
        assert_fish_completes(&home.join(".config/fish/completions/suitekey.fish"));
    }
    if other_shell("zsh") {
        assert_zsh_parses(&home.join(".zfunc/_suitekey"));
    }
}

/// README's line that makes the completion directory and writes `prefix…` into it.
fn readme_completion_line(prefix: &str) -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    text.lines()
        .map(str::trim_start)
        .find(|l| l.starts_with("mkdir -p ~/") && l.contains(prefix))
        .unwrap_or_else(|| panic!("README.md has no `mkdir -p ~/… && {prefix}…` line"))
        .to_owned()
}

#[test]
fn man_pages_exist_for_every_command_and_render() {
    let dir = common::temp_dir();
    let listed = suitekey(&["man", dir.path().to_str().expect("utf-8")]);
    let mut expected: Vec<String> = visible_commands()
        .iter()
        .map(|c| format!("suitekey-{c}.1"))
        .collect();
    expected.push("suitekey.1".into());
    expected.sort();
    let mut written: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(written, expected);
    assert_eq!(listed.lines().count(), expected.len(), "{listed}");
    for page in &expected {
        let name = page.trim_end_matches(".1");
        let text = render(&dir.path().join(page));
        assert!(text.contains("NAME"), "{page}: {text}");
        let name_line = regex::Regex::new(&format!(r"\n +{name} +- +[A-Z]")).expect("regex");
        assert!(name_line.is_match(&text), "{page}: {text}");
        assert!(text.contains("SYNOPSIS"), "{page}: {text}");
        let footer = concat!("suitekey ", env!("CARGO_PKG_VERSION"), " ");
        assert!(text.contains(footer), "{page}: {text}");
    }
    let top = render(&dir.path().join("suitekey.1"));
    assert!(top.contains("suitekey-token(1)"), "{top}");
    assert!(top.contains(suitekey::cli::VERSION), "{top}");
    let token = render(&dir.path().join("suitekey-token.1"));
    assert!(token.contains("--format"), "{token}");
}

/// The page as `man -l` shows it (plain text, 80 columns); troff's warnings fail the test but
/// for a line it cannot justify (a long unbreakable word, cosmetic).
fn render(page: &Path) -> String {
    let out = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(page)
        .env("MANWIDTH", "80")
        .env("MAN_KEEP_FORMATTING", "")
        .env_remove("MANPAGER")
        .env_remove("PAGER")
        .output()
        .expect("man (scripts/install-deps.sh installs man-db)");
    let (stdout, stderr) = common::texts(&out);
    assert!(out.status.success(), "man -l {}: {stderr}", page.display());
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.ends_with("cannot adjust line"))
        .collect();
    assert!(warnings.is_empty(), "{}: {warnings:#?}", page.display());
    stdout
}

#[test]
fn version_names_the_commit_of_the_checkout() {
    let version = suitekey(&["--version"]);
    let re = regex::Regex::new(
        r"^suitekey (\d+\.\d+\.\d+) \(commit ([0-9a-f]{7,40}(-dirty)?|unknown)\)\n$",
    )
    .expect("regex");
    let caps = re
        .captures(&version)
        .unwrap_or_else(|| panic!("{version:?}"));
    assert_eq!(&caps[1], env!("CARGO_PKG_VERSION"));
    let root = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let expected = match git(&["rev-parse", "--short", "HEAD"]) {
        None => "unknown".to_owned(),
        Some(head) => {
            let changes = git(&[
                "status",
                "--porcelain",
                "--",
                "src",
                "build.rs",
                "Cargo.toml",
                "Cargo.lock",
            ])
            .expect("git status");
            if changes.is_empty() {
                head
            } else {
                format!("{head}-dirty")
            }
        }
    };
    assert_eq!(&caps[2], expected, "{version}");
}

#[test]
fn completions_into_a_closed_pipe_exit_quietly_like_list() {
    // `suitekey completions bash | head -n1`: the reader stopped early, which is no error.
    let mut child = Command::new(cargo_bin("suitekey"))
        .args(["completions", "bash"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("suitekey");
    // Close the reading end before suitekey (still starting) writes its script, so its write
    // fails with EPIPE.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let (_, stderr) = common::texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}
