//! What each command does, given its parsed arguments. `main` only calls [`run`].

mod assertion;
mod list;

use std::io::Write;

use crate::cli::{Cli, Command, KeyArg};
use crate::error::Error;
use crate::pkcs11::Pkcs11Uri;

/// Runs the command, writing its result (and only its result) to `out`.
pub fn run(cli: &Cli, out: &mut dyn Write) -> Result<(), Error> {
    match &cli.command {
        Command::List(args) => list::run(args, out),
        Command::Assertion(args) => assertion::run(args, out),
    }
}

/// Parses a `--key` URI, refusing a `pin-value`: on a command line it would sit in the process
/// list and the shell history.
fn key_uri(arg: &KeyArg) -> Result<Pkcs11Uri, Error> {
    let uri: Pkcs11Uri = arg.0.parse()?;
    if uri.pin_value.is_some() {
        return Err(Error::Usage(
            "the key URI carries a pin-value, which exposes the PIN in the process list and shell history; \
             put the PIN in a file only you can read and use pin-source=file:PATH, or set SUITEKEY_PIN"
                .into(),
        ));
    }
    Ok(uri)
}
