//! `suitekey doctor`: the checks a support engineer would run on a profile, in order, each with
//! what it found and, when it is not fine, the remedy. A check that needs one that failed is
//! shown as skipped, with why. No PIN is sent without `--login`; no assertion is ever sent.
//!
//! | file | checks |
//! | --- | --- |
//! | `key` | module, token, PIN source, login, key, the certificate stored with it, its id and expiry |
//! | `endpoint` | the token URL's host, TLS to it, the clock against its `Date` |
//! | `agent` | the agent named by `SUITEKEY_AUTH_SOCK`: its peer, and the profile's state there |

mod agent;
mod endpoint;
mod key;

use std::io::{IsTerminal as _, Write};

use serde::Serialize;

use crate::cli::{Cli, DoctorArgs, OutputFormat};
use crate::error::Error;
use crate::report::printable;

/// The checks, in the order they run and are shown (their names are the JSON's `name`s).
pub const CHECKS: [&str; 13] = [
    "profile",
    "module",
    "token",
    "pin_source",
    "login",
    "key",
    "certificate",
    "certificate_id",
    "expiry",
    "token_url",
    "tls",
    "clock",
    "agent",
];

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// Worth acting on; does not fail the doctor.
    Warning,
    /// Broken: tokens cannot be had this way.
    Failed,
    /// Not run: it needs a check that failed (or does not apply).
    Skipped,
}

/// One check's outcome.
#[derive(Debug, Serialize)]
pub struct Check {
    /// Which check (one of [`CHECKS`]).
    pub name: &'static str,
    /// How it came out.
    pub status: Status,
    /// What it found (or why it was skipped).
    pub detail: String,
    /// What to do, when it is not fine.
    pub remedy: Option<String>,
}

/// The checks made so far.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Each check, in order.
    pub checks: Vec<Check>,
    /// No check failed.
    pub ok: bool,
}

impl Report {
    fn push(&mut self, name: &'static str, status: Status, detail: String, remedy: Option<String>) {
        debug_assert!(CHECKS.contains(&name), "{name}");
        self.checks.push(Check {
            name,
            status,
            detail,
            remedy,
        });
    }

    fn ok(&mut self, name: &'static str, detail: impl Into<String>) {
        self.push(name, Status::Ok, detail.into(), None);
    }

    fn warn(&mut self, name: &'static str, detail: impl Into<String>, remedy: impl Into<String>) {
        self.push(name, Status::Warning, detail.into(), Some(remedy.into()));
    }

    fn fail(&mut self, name: &'static str, detail: impl Into<String>, remedy: impl Into<String>) {
        self.push(name, Status::Failed, detail.into(), Some(remedy.into()));
    }

    fn skip(&mut self, name: &'static str, why: impl Into<String>) {
        self.push(name, Status::Skipped, why.into(), None);
    }

    /// Skips every check from `first` up to (not including) `until`, with `why`.
    fn skip_from(&mut self, first: &'static str, until: &'static str, why: &str) {
        let at = |name| CHECKS.iter().position(|c| *c == name);
        let (Some(from), Some(to)) = (at(first), at(until)) else {
            return;
        };
        for name in &CHECKS[from..to] {
            self.skip(name, why);
        }
    }

    fn failed(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Failed)
            .count()
    }
}

pub(super) fn run(cli: &Cli, args: &DoctorArgs, out: &mut dyn Write) -> Result<(), Error> {
    let mut report = Report::default();
    examine(cli, args, &mut report);
    let failed = report.failed();
    report.ok = failed == 0;
    match args.format {
        OutputFormat::Text => write_text(&report, out)?,
        OutputFormat::Json => super::write_json(out, &report)?,
    }
    if failed > 0 {
        return Err(Error::DoctorFailed { count: failed });
    }
    Ok(())
}

/// Runs every check, in order.
fn examine(cli: &Cli, args: &DoctorArgs, report: &mut Report) {
    let profile = match super::profile(cli, &args.profile) {
        Ok(profile) => {
            let name = cli.profile.as_deref().map_or_else(
                || "given by flags and SUITEKEY_* variables".to_owned(),
                |n| format!("'{n}'"),
            );
            report.ok(
                "profile",
                format!(
                    "profile {name}: key {}, client {}, account {}, certificate id {}",
                    profile.key, profile.client_id, profile.account, profile.certificate_id
                ),
            );
            profile
        }
        Err(e) => {
            report.fail(
                "profile",
                crate::report::chain(&e),
                "fix the flag, variable or config file field named above",
            );
            report.skip_from("module", "agent", "needs the profile");
            agent::examine(cli, report);
            return;
        }
    };
    key::examine(&profile, args.login, report);
    endpoint::examine(&profile, report);
    agent::examine(cli, report);
}

/// One line per check: a mark, the name, what it found; the remedy under it.
fn write_text(report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    let symbols = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    for check in &report.checks {
        let mark = match (check.status, symbols) {
            (Status::Ok, true) => "✓",
            (Status::Warning, true) => "!",
            (Status::Failed, true) => "✗",
            (Status::Skipped, true) => "–",
            (Status::Ok, false) => "ok  ",
            (Status::Warning, false) => "warn",
            (Status::Failed, false) => "FAIL",
            (Status::Skipped, false) => "skip",
        };
        let detail = printable(&check.detail);
        match check.status {
            Status::Skipped => writeln!(out, "{mark} {:<14} skipped: {detail}", check.name)?,
            _ => writeln!(out, "{mark} {:<14} {detail}", check.name)?,
        }
        if let Some(remedy) = &check.remedy {
            writeln!(
                out,
                "{:>w$}remedy: {}",
                "",
                printable(remedy),
                w = mark.chars().count() + 16
            )?;
        }
    }
    let count = |status| report.checks.iter().filter(|c| c.status == status).count();
    let (failed, warnings) = (count(Status::Failed), count(Status::Warning));
    match (failed, warnings) {
        (0, 0) => writeln!(out, "all checks passed"),
        (0, w) => writeln!(out, "all checks passed, {w} warning(s)"),
        (f, w) => writeln!(out, "{f} check(s) failed, {w} warning(s)"),
    }
}
