//! What each command does, given its parsed arguments. `main` only calls [`run`].

mod agent;
mod assertion;
mod cert;
mod check;
mod completions;
mod doctor;
mod emulate;
mod exec;
mod keygen;
mod list;
mod man;
mod outfile;
mod rotate;
mod token;

use std::io::Write;
use std::sync::Arc;
use std::time::SystemTime;

use crate::agent::signers::OpenError;
use crate::cert::StoredWithKey;
use crate::cli::{Cli, Command, ProfileArgs, RawArg};
use crate::config::{self, Config, Profile};
use crate::error::Error;
use crate::jose::{Alg, Signer as _};
use crate::netsuite;
use crate::pkcs11::{Key, KeySigner, ManagementKey, ManagementKeySource, Pkcs11Uri};

/// Runs the command, writing its result (and only its result) to `out`. Done, it gives the
/// process's exit status: 0, or for `exec` its command's own (not an error of ours).
pub fn run(cli: &Cli, out: &mut dyn Write) -> Result<u8, Error> {
    if cli.final_pin_try {
        crate::pkcs11::allow_final_pin_try();
    }
    let done = match &cli.command {
        Command::Exec(args) => return exec::run(cli, args),
        Command::List(args) => list::run(args, out),
        Command::Assertion(args) => assertion::run(cli, args, out),
        Command::Token(args) => token::run(cli, args, out),
        Command::Keygen(args) => keygen::run(args, cli.quiet, out),
        Command::Cert(args) => cert::run(args, cli.quiet, out),
        Command::Check(args) => check::run(args, cli.quiet, out),
        Command::Emulate(args) => emulate::run(args, cli.quiet, out),
        Command::Agent(args) => agent::run(cli, args, out),
        Command::Rotate(args) => rotate::run(cli, args, out),
        Command::Completions(args) => completions::run(args, out),
        Command::Man(args) => man::run(args, out),
        Command::Doctor(args) => doctor::run(cli, args, out),
    };
    // The keys are dropped: let go of the tokens (a smart card's PIN ends with the command).
    crate::pkcs11::finalize_all();
    done.map(|()| 0)
}

/// Writes `value` as pretty JSON and a newline: the `--format json` of `list`, `check` and
/// `doctor`.
fn write_json(out: &mut dyn Write, value: &impl serde::Serialize) -> Result<(), Error> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

/// Parses a `--key` URI, refusing a `pin-value`: on a command line it would sit in the process
/// list and the shell history.
fn key_uri(arg: &RawArg) -> Result<Pkcs11Uri, Error> {
    let uri: Pkcs11Uri = arg.as_str().parse()?;
    if uri.pin_value.is_some() {
        return Err(Error::Usage(
            "the key URI carries a pin-value, which exposes the PIN in the process list and shell history; \
             put the PIN in a file only you can read and use pin-source=file:PATH, or set SUITEKEY_PIN"
                .into(),
        ));
    }
    Ok(uri)
}

/// The PIV management key `--management-key-source` names, read and checked now, before any
/// token is touched.
fn management_key(source: Option<&RawArg>) -> Result<Option<Arc<ManagementKey>>, Error> {
    let read = |arg: &RawArg| {
        let source =
            ManagementKeySource::parse(arg.as_str()).map_err(|e| Error::Usage(e.to_string()))?;
        ManagementKey::read(&source)
            .map(Arc::new)
            .map_err(|e| Error::Pkcs11(e.into()))
    };
    source.map(read).transpose()
}

/// The profile: the config file's `--profile` table (if named) under the flags and
/// `SUITEKEY_*` variables, validated.
fn profile(cli: &Cli, flags: &ProfileArgs) -> Result<Profile, Error> {
    // The default file is read only when a profile is asked for: a broken file must not
    // break commands given entirely by flags.
    let config = match (&cli.config, &cli.profile) {
        (None, None) => None,
        _ => Config::open(cli.config.as_deref())?,
    };
    let table = match (&cli.profile, &config) {
        (None, _) => None,
        (Some(name), Some(config)) => Some(config.profile(name)?),
        (Some(name), None) => {
            return Err(Error::Usage(format!(
                "--profile '{name}' needs a config file, and there is none at {}; create it with a [profiles.{name}] table or pass --config FILE",
                Config::default_path().map_or_else(
                    || "~/.config/suitekey/config.toml".into(),
                    |p| p.display().to_string()
                )
            )));
        }
    };
    Ok(config::resolve(table, flags.overrides())?)
}

/// Opens the profile's key and a signer for its algorithm, or for the key's own default,
/// logging in with the PIN the key URI's source gives (or a prompt).
fn open_signer(profile: &Profile) -> Result<KeySigner, Error> {
    open_key_signer(profile, &|token| {
        token.credential(&profile.key).map(std::sync::Arc::new)
    })
}

/// `open_signer` logging in with the credential `credential_for` gives for the key's token
/// (the agent's: one per token): the agent's [`Opener`](crate::agent::signers::Opener), whose
/// error carries this layer's with its kind.
pub fn open_signer_with(
    profile: &Profile,
    credential_for: crate::pkcs11::CredentialFor<'_>,
) -> Result<KeySigner, OpenError> {
    open_key_signer(profile, credential_for).map_err(OpenError::new)
}

/// Opens the profile's key, logging in with the credential `credential_for` gives for its
/// token, and a signer for it.
fn open_key_signer(
    profile: &Profile,
    credential_for: crate::pkcs11::CredentialFor<'_>,
) -> Result<KeySigner, Error> {
    let key = Key::open_with(&profile.key, profile.module.as_deref(), credential_for)?;
    signer_for(key, profile.alg)
}

/// Warns on stderr about the certificate stored with the key: expired, not yet valid, within
/// NetSuite's 14-day notice, holding another key, or not the one the profile's certificate id
/// names (see [`StoredWithKey::check`]). Never stops the command: NetSuite has the last word.
fn warn_about_certificate(signer: &KeySigner, profile: &Profile) {
    let stored = StoredWithKey::read(signer.stored_certificates(), signer.public_key().ok());
    for finding in stored.check(&profile.certificate_id, SystemTime::now()) {
        tracing::warn!("{}", finding.message);
    }
}

/// A signer for `alg`, or for the key's own default; NetSuite's key rules are applied here,
/// before the token is asked to sign.
fn signer_for(key: Key, alg: Option<Alg>) -> Result<KeySigner, Error> {
    let kind = key.kind();
    let alg = match alg {
        Some(alg) => netsuite::check_alg(alg, &kind).map(|()| alg),
        None => netsuite::default_alg(&kind),
    }
    .map_err(|source| Error::KeyRefused {
        key: key.uri().to_owned(),
        source,
    })?;
    Ok(key.signer(alg)?)
}
