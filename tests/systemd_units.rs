//! The system unit's sandbox, tried without a service manager: `MemoryDenyWriteExecute=yes`
//! (contrib/system/suitekey-agent.service) is the kernel's PR_SET_MDWE on systemd 254 and later
//! (a seccomp filter with the same effect before): no memory may become writable and
//! executable. A wrapper sets it and execs the agent, which must still open its SoftHSM2 key
//! (OpenSSL inside the module), sign in it, and serve a token. (`systemd-analyze verify` on the
//! packaged units runs in scripts/package.sh.)

mod common;

use common::agent::Agent;
use common::certified::CertifiedCopy;

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
