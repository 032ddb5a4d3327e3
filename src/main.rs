//! The `suitekey` binary: parse, run, print the error chain, exit with its code.
// No panicking shortcuts outside tests: every failure is an error a user can act on.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser as _;
use std::io::Write as _;
use suitekey::cli::{Cli, Command, LogFormat};
use suitekey::kind::HasKind as _;
use suitekey::report::{chain, printable};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let mut stdout = std::io::stdout().lock();
    match suitekey::commands::run(&cli, &mut stdout) {
        // 0, or `exec`'s command's own status: it has spoken for itself, add nothing.
        Ok(status) => ExitCode::from(status),
        // `suitekey list | head`, `suitekey completions bash | head`: the reader has all it
        // wanted. Not so for a credential that was never delivered: that stays an error.
        Err(suitekey::Error::Output(e))
            if e.kind() == std::io::ErrorKind::BrokenPipe
                && matches!(cli.command, Command::List(_) | Command::Completions(_)) =>
        {
            ExitCode::SUCCESS
        }
        Err(err) => {
            // stderr may be closed too; `eprintln!` would panic then.
            // Printable: a message may quote a device's label or a file name.
            let message = printable(&chain(&err));
            let _ = writeln!(std::io::stderr(), "error: {message}");
            ExitCode::from(err.kind().exit_code())
        }
    }
}

fn init_logging(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    // cryptoki logs every vendor mechanism it has no name for as an error, and rustls's
    // verifier logs each refused certificate as one: noise for users, since suitekey reports a
    // TLS failure itself with what to do. RUST_LOG brings them back.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{level},cryptoki=off,rustls=off,rustls_platform_verifier=off"
        ))
    });
    let json = matches!(&cli.command, Command::Agent(args) if args.log_format == LogFormat::Json);
    if json {
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(colour_logs())
            .with_target(false)
            .init();
    }
}

/// Colour in the logs only on a terminal, and never when NO_COLOR is set to a non-empty value
/// (https://no-color.org): an explicit `with_ansi` overrides tracing-subscriber's own NO_COLOR
/// check. clap (help, usage errors) and indicatif (keygen's spinner, which has no colours
/// anyway) check NO_COLOR themselves.
fn colour_logs() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
