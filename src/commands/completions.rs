//! `suitekey completions SHELL`: the shell's completion script, generated from the clap
//! definitions in [`crate::cli`], so it always knows every command and flag.

use std::io::Write;

use clap::CommandFactory as _;

use crate::cli::{Cli, CompletionsArgs};
use crate::error::Error;

/// Writes the completion script for `args.shell` to `out`.
pub(super) fn run(args: &CompletionsArgs, out: &mut dyn Write) -> Result<(), Error> {
    // clap_complete writes with `write_all(..).expect(..)`: render into memory, where writing
    // cannot fail, then hand the script to `out`, whose failure (a closed pipe) is an error.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "suitekey", &mut script);
    out.write_all(&script)?;
    out.flush()?;
    Ok(())
}
