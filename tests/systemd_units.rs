//! The system unit's sandbox, tried without a service manager: `MemoryDenyWriteExecute=yes`
//! (contrib/system/suitekey-agent.service) is the kernel's PR_SET_MDWE on systemd 254 and later
//! (a seccomp filter with the same effect before): no memory may become writable and
//! executable. A wrapper sets it and execs the agent, which must still open its SoftHSM2 key
//! (OpenSSL inside the module), sign in it, and serve a token. (`systemd-analyze verify` on the
//! packaged units runs in scripts/package.sh; here it checks README's drop-ins for the agent's
//! rotations with the units.)

mod common;

use common::agent::Agent;
use common::certified::CertifiedCopy;
use common::readme_examples::readme_blocks;

/// A command that turns on PR_SET_MDWE (PR_MDWE_REFUSE_EXEC_GAIN), checks it holds, and execs
/// the rest of its arguments in the same process (the setting is kept across execve).
const NO_WRITE_EXECUTE: &[&str] = &[
    "python3",
    "-c",
    "import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0 or libc.prctl(66, 0, 0, 0, 0) != 1:
    sys.exit('PR_SET_MDWE failed: errno %d' % ctypes.get_errno())
os.execv(sys.argv[1], sys.argv[1:])",
];

#[test]
fn the_agent_signs_and_serves_with_no_writable_executable_memory() {
    for label in ["p256", "rsa3072"] {
        let copy = CertifiedCopy::for_key(label);
        let emu = copy.emulator(&[]);
        let config = copy.config(&emu.token_url(), &[("prod", &copy.uri())]);
        let agent = Agent::start_under(NO_WRITE_EXECUTE, &copy.conf, &config, &[], &[]);
        let (status, body) = agent.get("/v1/profiles/prod/token");
        assert_eq!(status, 200, "{label}: {body}\n{}", agent.stderr());
        let token: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(token["token_type"], "Bearer", "{label}: {body}");
        assert!(
            token["access_token"]
                .as_str()
                .is_some_and(|t| t.len() >= 32),
            "{label}: no access token"
        );
        // The token came from a signature the emulator verified against the certificate.
        assert_eq!(emu.stats()["tokens_issued"], 1, "{label}: {}", emu.stats());
    }
}

#[test]
fn the_write_execute_wrapper_refuses_what_the_unit_refuses() {
    // The wrapper is what makes the test above able to fail: under it, a process that asks
    // for writable and executable memory is refused.
    let out = std::process::Command::new(NO_WRITE_EXECUTE[0])
        .args(&NO_WRITE_EXECUTE[1..])
        .args([
            "/usr/bin/python3",
            "-c",
            "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)",
        ])
        .output()
        .expect("python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "W+X memory was allowed");
    assert!(stderr.contains("PermissionError"), "{stderr}");
}

/// `systemd-analyze --SCOPE verify` on contrib/SCOPE's unit (its suitekey path made this
/// build's) with `drop_in` beside it: what it reported, or `Ok` when it said nothing.
fn verify_with_drop_in(scope: &str, drop_in: &str) -> Result<(), String> {
    let bin = env!("CARGO_BIN_EXE_suitekey");
    let dir = common::temp_dir();
    let units = dir.path().join("units");
    std::fs::create_dir_all(units.join("suitekey-agent.service.d")).unwrap();
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("contrib/{scope}/suitekey-agent.service")),
    )
    .unwrap()
    .replace("%h/.cargo/bin/suitekey", bin)
    .replace("/usr/bin/suitekey", bin);
    std::fs::write(units.join("suitekey-agent.service"), unit).unwrap();
    std::fs::write(
        units.join("suitekey-agent.service.d/rotation.conf"),
        drop_in.replace("/usr/bin/suitekey", bin),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("run")).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .args([&format!("--{scope}"), "--man=no", "verify"])
        .arg(units.join("suitekey-agent.service"))
        .env("XDG_RUNTIME_DIR", dir.path().join("run"))
        .output()
        .expect("systemd-analyze (scripts/install-deps.sh installs systemd)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match (out.status.success(), said.trim().is_empty()) {
        (true, true) => Ok(()),
        _ => Err(said),
    }
}

#[test]
fn the_readme_drop_ins_for_the_agents_rotations_verify_with_the_units() {
    let blocks = readme_blocks("**systemd**: step 5 writes", 2);
    for (scope, block) in [("system", &blocks[0]), ("user", &blocks[1])] {
        let drop_in = format!("{}\n", block.join("\n"));
        assert!(drop_in.starts_with("[Service]\n"), "{drop_in}");
        verify_with_drop_in(scope, &drop_in).unwrap_or_else(|e| panic!("{scope}: {e}"));
    }
    assert!(
        blocks[0]
            .iter()
            .any(|l| l == "Environment=XDG_STATE_HOME=%S")
    );
    // The check can fail: a second ExecStart without the reset is refused.
    let unreset = blocks[0].join("\n").replace("ExecStart=\n", "");
    let refused = verify_with_drop_in("system", &unreset).unwrap_err();
    assert!(refused.contains("more than one ExecStart"), "{refused}");
}
