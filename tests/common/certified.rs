//! The set-up most end-to-end tests share: a fresh copy of the fixture token with a certificate
//! for one of its keys stored beside the key and written to a file, an emulator that knows the
//! certificate, config files of profiles on that key, and an agent serving them.

use std::path::{Path, PathBuf};

use super::agent::Agent;
use super::emulator::Emulator;
use super::profile::{MANAGE_CERTIFICATES, Profile, registration, write_config};
use super::{fixture, make_cert, temp_dir};

/// A token copy whose key `label` has a certificate, and a temp dir for the test's files.
pub struct CertifiedCopy {
    /// `SOFTHSM2_CONF` of the token copy.
    pub conf: PathBuf,
    /// The key's label.
    pub label: String,
    /// The certificate, as a PEM file (`DIR/LABEL.pem`).
    pub pem: PathBuf,
    /// Its certificate id.
    pub kid: String,
    /// The test's own files.
    pub dir: tempfile::TempDir,
}

impl CertifiedCopy {
    /// A token copy with a certificate for the `p256` key.
    pub fn new() -> CertifiedCopy {
        CertifiedCopy::for_key("p256")
    }

    /// A token copy with a certificate for the fixture key `label`.
    pub fn for_key(label: &str) -> CertifiedCopy {
        let conf = fixture().token_copy(None);
        let dir = temp_dir();
        let pem = dir.path().join(format!("{label}.pem"));
        let kid = make_cert(&conf, &fixture().uri(label), &pem);
        CertifiedCopy {
            conf,
            label: label.to_owned(),
            pem,
            kid,
            dir,
        }
    }

    /// The key's URI (with the fixture's module and PIN file).
    pub fn uri(&self) -> String {
        fixture().uri(&self.label)
    }

    /// A profile of the key and its certificate id, for the standard client and account.
    pub fn profile(&self) -> Profile {
        Profile::new(self.uri(), &self.kid)
    }

    /// An emulator on a free loopback port that knows the certificate, with `flags`.
    pub fn emulator(&self, flags: &[&str]) -> Emulator {
        self.emulator_on("127.0.0.1:0", flags)
    }

    /// An emulator listening on `listen` that knows the certificate, with `flags`.
    pub fn emulator_on(&self, listen: &str, flags: &[&str]) -> Emulator {
        self.emulator_with_spec(listen, "", flags)
    }

    /// An emulator on a free loopback port that knows the certificate, mapped to role 3 and
    /// entity -5 with the permission the certificate API needs ([`MANAGE_CERTIFICATES`]), with
    /// `flags` (`--fail-certificates …`, `--certificate-propagation-ms …`, …).
    pub fn emulator_managing_certificates(&self, flags: &[&str]) -> Emulator {
        self.emulator_with_spec("127.0.0.1:0", MANAGE_CERTIFICATES, flags)
    }

    /// An emulator listening on `listen` that knows the certificate, its `--register` spec
    /// ending with `extra` (such as `,role=3,entity=-5`), with `flags`.
    pub fn emulator_with_spec(&self, listen: &str, extra: &str, flags: &[&str]) -> Emulator {
        let spec = format!("{}{extra}", registration(&self.pem));
        let mut args = vec!["--register", &spec];
        args.extend_from_slice(flags);
        Emulator::start_on(listen, &args)
    }

    /// Writes `DIR/config.toml` with these (profile, key URI) pairs, each with the certificate
    /// id and the token URL `url`.
    pub fn config(&self, url: &str, profiles: &[(&str, &str)]) -> PathBuf {
        let profiles: Vec<(&str, Profile)> = profiles
            .iter()
            .map(|(name, key)| (*name, Profile::new(*key, &self.kid).token_url(url)))
            .collect();
        let named: Vec<(&str, &Profile)> = profiles.iter().map(|(n, p)| (*n, p)).collect();
        write_config(&self.dir.path().join("config.toml"), &named)
    }

    /// An agent on the token copy serving profile `prod` (the key) against `emu`.
    pub fn agent_for(&self, emu: &Emulator) -> Agent {
        let config = self.config(&emu.token_url(), &[("prod", &self.uri())]);
        self.agent(&config, &[])
    }

    /// An agent on the token copy serving `config`, with `args`.
    pub fn agent(&self, config: &Path, args: &[&str]) -> Agent {
        Agent::start(&self.conf, config, args, &[])
    }
}
