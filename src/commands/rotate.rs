//! `suitekey rotate`: the profile's key and certificate replaced through NetSuite's certificate
//! API ([`crate::rotation`]), with progress on stderr and only the new certificate id on
//! stdout; `--dry-run` prints the plan, `--status` the journal.

use std::io::Write;

use crate::agent::handover;
use crate::cli::{Cli, RotateArgs};
use crate::config::Config;
use crate::error::Error;
use crate::rotation::{self, Journal, JournalStore, Options, Outcome, Progress, Request, Step};

pub(super) fn run(cli: &Cli, args: &RotateArgs, out: &mut dyn Write) -> Result<(), Error> {
    let Some(name) = cli.profile.as_deref() else {
        return Err(Error::Usage(
            "rotate changes a profile of the config file: pass --profile NAME (or set SUITEKEY_PROFILE)".into(),
        ));
    };
    if args.status {
        return status(name, out);
    }
    let config = config_path(cli)?;
    let mut flags = args.profile.overrides();
    let options = Options {
        alg: flags.alg.take(),
        rsa_bits: args.rsa_bits,
        days: args.days,
        subject: args.subject.clone(),
        new_label: args.new_label.clone(),
        delete_old_key: args.delete_old_key,
        dry_run: args.dry_run,
    };
    let request = Request {
        config: &config,
        profile: name,
        flags,
        options,
        state_dir: None,
        credential: None,
    };
    let mut progress = Stderr {
        quiet: cli.quiet,
        profile: name,
    };
    let outcome =
        rotation::rotate(request, &mut progress).map_err(|e| Error::Rotation(Box::new(e)))?;
    match outcome {
        Outcome::Rotated {
            certificate_id,
            key,
        } => {
            progress.say(&format!(
                "rotated profile '{name}': it now uses key {key} and certificate id {certificate_id}"
            ));
            writeln!(out, "{certificate_id}")?;
        }
        Outcome::Planned { plan, in_progress } => {
            let heading = match in_progress {
                None => "dry run, nothing was changed; rotate would:".to_owned(),
                Some(step) => format!(
                    "dry run, nothing was changed; a rotation is in progress and rotate would continue it from {step}, with this plan:"
                ),
            };
            writeln!(out, "{heading}")?;
            for line in plan.to_string().lines() {
                writeln!(out, "  {line}")?;
            }
        }
    }
    Ok(())
}

/// The config file rotate rewrites: `--config`, else the default path.
fn config_path(cli: &Cli) -> Result<std::path::PathBuf, Error> {
    cli.config
        .clone()
        .or_else(Config::default_path)
        .ok_or_else(|| {
            Error::Usage(
                "no config file: pass --config FILE (XDG_CONFIG_HOME and HOME are unset)".into(),
            )
        })
}

/// `--status`: the journal of the profile's latest rotation, on stdout.
fn status(name: &str, out: &mut dyn Write) -> Result<(), Error> {
    let none = |out: &mut dyn Write| writeln!(out, "profile '{name}': no rotation recorded");
    let Some(store) = JournalStore::open_existing(None)? else {
        none(out)?;
        return Ok(());
    };
    let path = store.path(name);
    let Some(journal) = store.load(name)? else {
        none(out)?;
        return Ok(());
    };
    write!(out, "{}", describe(&journal, &path))?;
    Ok(())
}

/// A journal as `--status` shows it.
fn describe(journal: &Journal, path: &std::path::Path) -> String {
    let plan = &journal.plan;
    let state = match journal.next_step() {
        None => format!("rotation complete ({})", journal.updated),
        Some(step) => format!("rotation in progress, next {step}"),
    };
    let new_id = plan
        .new_certificate_id
        .as_ref()
        .map_or_else(|| "(not made yet)".to_owned(), ToString::to_string);
    let mut text = format!(
        "profile '{}': {state}\n  journal      {}\n  config       {}\n  started      {}\n  old          certificate {}, key {}\n  new          certificate {new_id}, key {}\n",
        journal.profile,
        path.display(),
        journal.config.display(),
        journal.started,
        plan.old_certificate_id,
        plan.old_key,
        plan.new_key,
    );
    for done in &journal.done {
        text.push_str(&format!(
            "  done         step {} ({}) at {}\n",
            done.step, done.name, done.at
        ));
    }
    if let Some(error) = &journal.last_error {
        let step =
            Step::from_number(error.step).map_or_else(|| error.step.to_string(), |s| s.to_string());
        let first = error.message.lines().next().unwrap_or_default();
        text.push_str(&format!("  last error   {step} at {}: {first}\n", error.at));
    }
    text
}

/// Progress on stderr, one line per step and one per finding (nothing with `-q`); before the
/// revoke, a running agent serving the profile is waited for.
struct Stderr<'a> {
    quiet: bool,
    profile: &'a str,
}

impl Stderr<'_> {
    fn say(&mut self, text: &str) {
        if !self.quiet {
            let _ = writeln!(std::io::stderr(), "{}", crate::report::printable(text));
        }
    }
}

impl Progress for Stderr<'_> {
    fn step(&mut self, step: Step) {
        self.say(&format!("[{}/7] {}…", step.number(), step.name()));
    }

    fn done(&mut self, _: Step, what: &str) {
        self.say(&format!("      {what}"));
    }

    fn note(&mut self, text: &str) {
        self.say(&format!("      {text}"));
    }

    /// An agent that serves the profile with the old certificate must serve the new one
    /// before the old is revoked (see [`crate::agent::handover`]).
    fn before_revoke(&mut self) -> Result<(), String> {
        let journal = rotation::status(None, self.profile)
            .map_err(|e| crate::report::chain(&e))?
            .ok_or_else(|| {
                format!(
                    "the journal of profile '{}''s rotation is gone, so the old certificate is not revoked",
                    self.profile
                )
            })?;
        let plan = &journal.plan;
        let (old, new) = (
            plan.old_certificate_id.to_string(),
            plan.new_certificate_id
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        );
        let certificates = handover::Certificates {
            old: &old,
            new: &new,
        };
        let profile = self.profile;
        handover::wait_for_agent(profile, &certificates, &mut |text| self.note(text))
    }
}
