//! What each command does, given its parsed arguments. `main` only calls [`run`].

mod assertion;
mod cert;
mod check;
mod emulate;
mod keygen;
mod list;
mod outfile;

use std::io::Write;

use crate::cli::{Cli, Command, ProfileArgs, RawArg};
use crate::error::Error;
use crate::jose::Alg;
use crate::pkcs11::{Key, KeySigner, Pkcs11Uri};

/// Runs the command, writing its result (and only its result) to `out`.
pub fn run(cli: &Cli, out: &mut dyn Write) -> Result<(), Error> {
    match &cli.command {
        Command::List(args) => list::run(args, out),
        Command::Assertion(args) => assertion::run(args, out),
        Command::Keygen(args) => keygen::run(args, cli.quiet, out),
        Command::Cert(args) => cert::run(args, cli.quiet, out),
        Command::Check(args) => check::run(args, cli.quiet, out),
        Command::Emulate(args) => emulate::run(args, out),
    }
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

/// Opens the profile's key and a signer for the requested algorithm, or for the key's own
/// default.
fn open_signer(profile: &ProfileArgs) -> Result<KeySigner, Error> {
    let uri = key_uri(&profile.key)?;
    let key = Key::open(&uri, profile.module.as_deref())?;
    signer_for(key, profile.alg)
}

/// A signer for `alg`, or for the key's own default; NetSuite's key rules are applied here,
/// before the token is asked to sign.
fn signer_for(key: Key, alg: Option<Alg>) -> Result<KeySigner, Error> {
    let kind = key.kind();
    let alg = match alg {
        Some(alg) => alg.check_key(&kind).map(|()| alg),
        None => Alg::default_for(&kind),
    }
    .map_err(|source| Error::KeyRefused {
        key: key.uri().to_owned(),
        source,
    })?;
    Ok(key.signer(alg)?)
}
