//! Keys and self-signed certificates made with the `openssl` CLI, and assertions signed with
//! it: an implementation independent of suitekey's (RustCrypto and the token).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;
use suitekey::jose::{Curve, b64url, ecdsa_to_raw};

/// `openssl ARGS` with `stdin`; its stdout (panics, with its stderr, when it fails).
pub fn openssl(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    run_openssl(&[], args, stdin)
}

/// `openssl ARGS`, behind the `wrapper` command (e.g. `faketime -f -40d`) when one is given.
pub fn run_openssl(wrapper: &[&str], args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let (program, wrapper_args) = match wrapper {
        [program, rest @ ..] => (*program, rest),
        [] => ("openssl", &[][..]),
    };
    let mut command = Command::new(program);
    command.args(wrapper_args);
    if !wrapper.is_empty() {
        command.arg("openssl");
    }
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} (scripts/install-deps.sh installs it): {e}"));
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A private key and a self-signed certificate for it, in a temp dir.
pub struct Keys {
    _dir: tempfile::TempDir,
    /// The private key (PEM).
    pub key: PathBuf,
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Whether the key is RSA.
    pub rsa: bool,
}

/// `openssl genpkey` options for a P-256 key.
pub const P256: &[&str] = &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];

impl Keys {
    /// A P-256 key with a 30-day certificate.
    pub fn p256() -> Keys {
        Keys::new(
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            false,
        )
    }

    /// An RSA key of `bits` with a 30-day certificate.
    pub fn rsa(bits: u32) -> Keys {
        let bits = format!("rsa_keygen_bits:{bits}");
        Keys::new(&["-algorithm", "RSA", "-pkeyopt", &bits], true)
    }

    /// A P-256 key with a 30-day certificate made with the clock moved by `offset`
    /// (libfaketime's syntax, e.g. "-40d"): an expired or a not-yet-valid certificate.
    pub fn p256_made_at(offset: &str) -> Keys {
        Keys::made_at(P256, false, Some(offset), 30)
    }

    /// A P-256 key with a certificate valid for `days` days from now.
    pub fn p256_for_days(days: u32) -> Keys {
        Keys::made_at(P256, false, None, days)
    }

    /// A key made with these `openssl genpkey` options, with a 30-day certificate.
    pub fn new(genpkey: &[&str], rsa: bool) -> Keys {
        Keys::made_at(genpkey, rsa, None, 30)
    }

    /// A key made with these `openssl genpkey` options, with a certificate valid for `days`
    /// days made with the clock moved by `offset`, when given.
    pub fn made_at(genpkey: &[&str], rsa: bool, offset: Option<&str>, days: u32) -> Keys {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        let mut args = vec!["genpkey", "-out", key.to_str().unwrap()];
        args.extend_from_slice(genpkey);
        openssl(&args, b"");
        let faketime = offset.map_or_else(Vec::new, |offset| vec!["faketime", "-f", offset]);
        let days = days.to_string();
        run_openssl(
            &faketime,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                key.to_str().unwrap(),
                "-subj",
                "/CN=suitekey-emulator-test",
                "-days",
                &days,
                "-out",
                cert.to_str().unwrap(),
            ],
            b"",
        );
        Keys {
            _dir: dir,
            key,
            cert,
            rsa,
        }
    }

    /// The certificate id NetSuite would show (computed independently: SHA-256 of the DER).
    pub fn kid(&self) -> String {
        let der = openssl(
            &[
                "x509",
                "-in",
                self.cert.to_str().unwrap(),
                "-outform",
                "DER",
            ],
            b"",
        );
        b64url(&openssl(&["dgst", "-sha256", "-binary"], &der))
    }

    /// The certificate's path.
    pub fn cert(&self) -> &str {
        self.cert.to_str().unwrap()
    }

    /// The certificate's PEM text.
    pub fn pem(&self) -> String {
        std::fs::read_to_string(&self.cert).unwrap()
    }

    /// Signs `header.claims` with openssl: ES256 (DER converted to r||s), PS256 or RS256.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let key = self.key.to_str().unwrap();
        let mut args = vec!["dgst", "-sha256", "-sign", key];
        if header["alg"] == "PS256" {
            args.extend([
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:digest",
            ]);
        }
        let sig = openssl(&args, input.as_bytes());
        let sig = if self.rsa {
            sig
        } else {
            ecdsa_to_raw(&sig, Curve::P256).unwrap()
        };
        format!("{input}.{}", b64url(&sig))
    }
}
