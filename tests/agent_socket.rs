//! The agent's socket against other local users and floods of connections: where it may be
//! put (no symlinked or shared-writable directory on the way), who may reach it (`--allow-uid`
//! opens the modes itself), and how many idle or half-sent connections it holds.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::agent::{Agent, socket_dir};
use common::texts;

/// A config with one profile whose key does not exist: the agent starts and serves it as
/// failed, which is all the socket tests need.
fn keyless_config(dir: &Path) -> PathBuf {
    let config = dir.join("config.toml");
    std::fs::write(&config, "[profiles.p]\nkey = \"pkcs11:object=none\"\n").unwrap();
    config
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// Runs `suitekey agent ARGS` with `env`, expecting it to refuse to start: its output. A
/// coreutils `timeout` ends an agent that starts anyway (exit 124).
fn refused_agent(config: &Path, args: &[&str], env: &[(&str, &Path)]) -> (i32, String) {
    let mut cmd = Command::new("timeout");
    cmd.args(["10", env!("CARGO_BIN_EXE_suitekey"), "--config"])
        .arg(config)
        .arg("agent")
        .args(args)
        .env("RUST_LOG", "warn");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SUITEKEY_") {
            cmd.env_remove(name);
        }
    }
    for (name, value) in env {
        cmd.env(name, value);
    }
    let out = cmd.output().expect("timeout suitekey agent");
    let (stdout, stderr) = texts(&out);
    assert!(stdout.is_empty(), "no socket announced: {stdout}");
    (out.status.code().unwrap_or(-1), stderr)
}

#[test]
fn a_symlinked_socket_directory_is_refused_and_its_target_left_as_it_was() {
    let tmp = socket_dir();
    let config = keyless_config(tmp.path());
    let target = tmp.path().join("target");
    std::fs::create_dir(&target).unwrap();
    chmod(&target, 0o755);

    // A link planted where the default directory goes ($XDG_RUNTIME_DIR/suitekey).
    let runtime = tmp.path().join("xdg");
    std::fs::create_dir(&runtime).unwrap();
    chmod(&runtime, 0o700);
    std::os::unix::fs::symlink(&target, runtime.join("suitekey")).unwrap();
    let (code, stderr) = refused_agent(&config, &[], &[("XDG_RUNTIME_DIR", &runtime)]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert!(stderr.contains("--socket PATH"), "{stderr}");

    // The same through --socket.
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let socket = link.join("agent.sock");
    let (code, stderr) = refused_agent(&config, &["--socket", socket.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("symbolic link"), "{stderr}");

    assert_eq!(mode(&target), 0o755, "the link's target was not chmodded");
    assert_eq!(
        std::fs::read_dir(&target).unwrap().count(),
        0,
        "nothing was bound in the link's target"
    );
}

#[test]
fn a_socket_directory_in_a_world_writable_parent_is_refused_unless_it_is_sticky() {
    let tmp = socket_dir();
    let config = keyless_config(tmp.path());
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    chmod(&shared, 0o777);
    let socket = shared.join("sub").join("agent.sock");
    let (code, stderr) = refused_agent(&config, &["--socket", socket.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("writable by other users"), "{stderr}");
    assert!(stderr.contains(&shared.display().to_string()), "{stderr}");
    assert!(!shared.join("sub").exists(), "nothing created in it");

    // /tmp-like: world-writable and sticky, so others cannot replace what is ours in it.
    chmod(&shared, 0o1777);
    let mut agent = Agent::start_at(Some(&socket), Path::new("/nonexistent"), &config, &[], &[]);
    assert_eq!(agent.json("/v1/health")["status"], "ok");
    assert_eq!(mode(&shared.join("sub")), 0o700);
    agent.signal("TERM");
    assert!(
        agent
            .wait_exit(std::time::Duration::from_secs(10))
            .success()
    );
}
