//! `suitekey exec`: run a command with `NETSUITE_ACCESS_TOKEN` in its environment.
//!
//! The token goes only into the child's environment, never its argv (which every local user can
//! read in the process list); the child's exit status becomes ours.

use std::os::unix::process::ExitStatusExt as _;
use std::process::Command;

use crate::cli::{Cli, ExecArgs};
use crate::error::Error;
use crate::pkcs11::pin;

/// The variable the command finds the access token in.
pub const TOKEN_VARIABLE: &str = "NETSUITE_ACCESS_TOKEN";

/// Runs the command with the token; its exit status, passed on as ours.
pub(super) fn run(cli: &Cli, args: &ExecArgs) -> Result<u8, Error> {
    let Some((program, rest)) = args.command.split_first() else {
        return Err(Error::Usage("exec needs a command after --".into()));
    };
    let (token, pin_env) = super::token::fetch(cli, &args.profile, args.no_agent, true)?;
    // Done with the key: the token is let go of before the command runs (a smart card's PIN
    // ends here, not with the command).
    crate::pkcs11::finalize_all();
    let mut command = Command::new(program);
    // The command gets the access token, never the PIN: drop every variable a PIN came from.
    command.env_remove(pin::PIN_ENV);
    if let Some(name) = pin_env {
        command.env_remove(name);
    }
    let status = command
        .args(rest)
        .env(TOKEN_VARIABLE, token.expose_secret())
        .status()
        .map_err(|source| Error::Spawn {
            program: program.to_string_lossy().into_owned(),
            source,
        })?;
    drop(token);
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        // A shell reports death by signal N as 128 + N.
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(1),
        (None, None) => 1,
    })
}
