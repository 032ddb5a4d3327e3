//! The steps in order: a new rotation runs step 1 and writes the journal, a rotation in
//! progress is taken up from its journal, and each remaining step is run, recorded, and told.

use std::io::Write as _;
use std::time::SystemTime;

use super::context::Context;
use super::error::{RotationError, StepError};
use super::journal::{Journal, JournalStore};
use super::step::Step;
use super::{Options, Outcome, Progress, Request, mapping, new_key, old_key, preflight, switch};
use crate::config::{self, ConfigFile, Profile, ProfileOverrides};

/// Test-only: `N` makes the process SIGKILL itself right after step N did its work, before the
/// journal records it; `Nj` right after the journal records it. The tests use it to show that
/// a rotation killed at any moment continues to the same end.
pub const STOP_AFTER_ENV: &str = "SUITEKEY_ROTATE_STOP_AFTER";

/// Rotates the profile `request` names, or continues the rotation its journal records; with
/// `dry_run`, does step 1 (or reads the journal) and returns the plan, changing nothing.
pub fn rotate(request: Request<'_>, progress: &mut dyn Progress) -> Result<Outcome, RotationError> {
    let name = request.profile;
    let before = |e: StepError| RotationError::before(name, e);
    refuse_mapping_flags(name, &request.flags).map_err(before)?;
    if request.options.dry_run {
        return dry_run(request, progress);
    }
    let store = JournalStore::open(request.state_dir).map_err(|e| before(e.into()))?;
    let _lock = store.lock(name).map_err(|e| before(e.into()))?;
    let file = ConfigFile::read(request.config).map_err(|e| before(e.into()))?;
    let profile = resolve(&file, name, request.flags).map_err(before)?;
    let in_progress = store
        .load(name)
        .map_err(|e| before(e.into()))?
        .filter(|j| !j.complete);
    let ctx = Context::new(profile, request.credential.clone()).map_err(before)?;
    let options = &request.options;
    let mut run = Run {
        name,
        store,
        file,
        ctx,
        progress,
    };
    let journal = match in_progress {
        Some(journal) => run.resume(journal, options)?,
        None => run.start(options)?,
    };
    run.finish(journal)
}

/// `--dry-run`: the plan of the rotation in progress, else step 1's; nothing is written, not
/// even the journal's directory or lock.
fn dry_run(request: Request<'_>, progress: &mut dyn Progress) -> Result<Outcome, RotationError> {
    let name = request.profile;
    let before = |e: StepError| RotationError::before(name, e);
    let in_progress = match JournalStore::open_existing(request.state_dir) {
        Ok(Some(store)) => store.load(name),
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    }
    .map_err(|e| before(e.into()))?
    .filter(|j| !j.complete);
    if let Some(journal) = in_progress {
        return Ok(Outcome::Planned {
            in_progress: journal.next_step(),
            plan: Box::new(journal.plan),
        });
    }
    let file = ConfigFile::read(request.config).map_err(|e| before(e.into()))?;
    let profile = resolve(&file, name, request.flags).map_err(before)?;
    let others = preflight::other_profiles(&file, name).map_err(before)?;
    let mut ctx = Context::new(profile, request.credential.clone()).map_err(before)?;
    let step = Step::Preflight;
    progress.step(step);
    let (plan, summary) =
        preflight::preflight(&mut ctx, &request.options, &others, SystemTime::now()).map_err(
            |source| RotationError {
                profile: name.to_owned(),
                step: Some(step),
                journal: None,
                source: Box::new(source),
            },
        )?;
    progress.done(step, &summary);
    Ok(Outcome::Planned {
        plan: Box::new(plan),
        in_progress: None,
    })
}

/// One run of a rotation.
struct Run<'a> {
    name: &'a str,
    store: JournalStore,
    /// The config file as this run read it (the profile came from it; step 5 rewrites it).
    file: ConfigFile,
    ctx: Context,
    progress: &'a mut dyn Progress,
}

impl Run<'_> {
    /// Step 1 of a new rotation, then its journal.
    fn start(&mut self, options: &Options) -> Result<Journal, RotationError> {
        let step = Step::Preflight;
        self.progress.step(step);
        let others = preflight::other_profiles(&self.file, self.name)
            .map_err(|e| self.error(step, None, e))?;
        let (plan, summary) =
            preflight::preflight(&mut self.ctx, options, &others, SystemTime::now())
                .map_err(|source| self.error(step, None, source))?;
        self.progress.done(step, &summary);
        stop_if_asked(step, false);
        let journal = Journal::new(self.name, self.file.real_path(), plan, SystemTime::now());
        self.store
            .save(&journal)
            .map_err(|e| self.error(step, None, e.into()))?;
        stop_if_asked(step, true);
        Ok(journal)
    }

    /// Takes up the rotation `journal` records, if this run may: the same config file, no
    /// flag that would change its plan, and a profile that still names its old or new
    /// certificate.
    fn resume(
        &mut self,
        mut journal: Journal,
        options: &Options,
    ) -> Result<Journal, RotationError> {
        let next = journal.next_step().unwrap_or(Step::OldKey);
        let refuse =
            |run: &Run, message: String| run.error(next, Some(&journal), StepError::usage(message));
        if journal.config != self.file.real_path() {
            return Err(refuse(
                self,
                format!(
                    "the rotation of profile '{}' in progress belongs to config '{}'; run it with --config '{}', or remove '{}' to abandon it",
                    self.name,
                    journal.config.display(),
                    journal.config.display(),
                    self.store.path(self.name).display()
                ),
            ));
        }
        if let Some(flag) = conflicting_flag(&journal, options) {
            return Err(refuse(
                self,
                format!(
                    "a rotation of profile '{}' is in progress (begun {}) with another plan than {flag} asks for; run rotate without it to continue (rotate --status shows the plan), or remove '{}' to abandon it (a key it made stays on the token)",
                    self.name,
                    journal.started,
                    self.store.path(self.name).display()
                ),
            ));
        }
        let configured = &self.ctx.profile.certificate_id;
        let plan = &journal.plan;
        if *configured != plan.old_certificate_id
            && plan.new_certificate_id.as_ref() != Some(configured)
        {
            return Err(refuse(
                self,
                format!(
                    "profile '{}' has certificate-id '{configured}', neither the old '{}' nor the new certificate of the rotation in progress: it was changed since; set it back to continue, or remove '{}' to abandon the rotation",
                    self.name,
                    plan.old_certificate_id,
                    self.store.path(self.name).display()
                ),
            ));
        }
        self.switch_again_if_switched_back(&mut journal);
        let next = journal.next_step().unwrap_or(Step::OldKey);
        journal.plan.delete_old_key |= options.delete_old_key;
        self.progress.note(&format!(
            "continuing the rotation begun {} from {next}",
            journal.started
        ));
        Ok(journal)
    }

    /// A profile switched back since step 5 (by hand, a restored backup) names the old key or
    /// certificate again, which are never revoked or retired while it does: the new key is
    /// proven again (steps 4 and 5 are forgotten), then the profile switched to it again,
    /// before step 6.
    fn switch_again_if_switched_back(&mut self, journal: &mut Journal) {
        if !journal.is_done(Step::Switch)
            || switch::profile_names_new(&self.ctx.profile, &journal.plan)
        {
            return;
        }
        self.progress.note(&format!(
            "profile '{}' no longer names the new key and certificate that {} switched it to (it has certificate-id '{}'): proving the new key again and switching the profile back to it before {}",
            self.name,
            Step::Switch,
            self.ctx.profile.certificate_id,
            Step::Revoke
        ));
        journal.forget(&[Step::Prove, Step::Switch], SystemTime::now());
    }

    /// Runs the steps the journal has not recorded, recording each.
    fn finish(mut self, mut journal: Journal) -> Result<Outcome, RotationError> {
        while let Some(step) = journal.next_step() {
            self.progress.step(step);
            let summary = match self.run_step(step, &mut journal) {
                Ok(summary) => summary,
                Err(source) => return Err(self.failed(step, &mut journal, source)),
            };
            stop_if_asked(step, false);
            journal.finish(step, SystemTime::now());
            self.store
                .save(&journal)
                .map_err(|e| self.error(step, Some(&journal), e.into()))?;
            stop_if_asked(step, true);
            self.progress.done(step, &summary);
        }
        let plan = journal.plan;
        match plan.new_certificate_id {
            Some(certificate_id) => Ok(Outcome::Rotated {
                certificate_id,
                key: plan.new_key.to_string(),
            }),
            None => Err(self.error(
                Step::OldKey,
                None,
                StepError::usage(
                    "the journal holds no new certificate id; remove it and rotate again",
                ),
            )),
        }
    }

    fn run_step(&mut self, step: Step, journal: &mut Journal) -> Result<String, StepError> {
        match step {
            Step::Preflight => Ok("done by an earlier run".to_owned()),
            Step::NewKey => new_key::make_new_key(&mut self.ctx, journal, SystemTime::now()),
            Step::Upload => mapping::upload(&mut self.ctx, journal),
            Step::Prove => mapping::prove(&mut self.ctx, journal, self.progress),
            Step::Switch => switch::switch(&self.file, self.name, journal),
            Step::Revoke => {
                let confirm =
                    || switch::confirm_switched(self.file.path(), self.name, &journal.plan);
                confirm()?;
                self.progress.before_revoke().map_err(StepError::token)?;
                mapping::revoke(&mut self.ctx, journal, &confirm)
            }
            Step::OldKey => {
                switch::confirm_switched(self.file.path(), self.name, &journal.plan)?;
                old_key::retire(&mut self.ctx, journal)
            }
        }
    }

    /// Records that `step` failed (in the journal, if it can be written) and says so.
    fn failed(&self, step: Step, journal: &mut Journal, source: StepError) -> RotationError {
        journal.failed(step, source.to_string(), SystemTime::now());
        if let Err(e) = self.store.save(journal) {
            tracing::warn!("the failure could not be recorded in the journal: {e}");
        }
        self.error(step, Some(journal), source)
    }

    /// The error for `step`, naming the journal when there is one.
    fn error(&self, step: Step, journal: Option<&Journal>, source: StepError) -> RotationError {
        RotationError {
            profile: self.name.to_owned(),
            step: Some(step),
            journal: journal.map(|_| self.store.path(self.name)),
            source: Box::new(source),
        }
    }
}

/// Refuses profile flags that would name another mapping than the file's: rotate rewrites the
/// profile's key and certificate id, so they must be what the file says.
fn refuse_mapping_flags(name: &str, flags: &ProfileOverrides) -> Result<(), StepError> {
    let given: Vec<&str> = [
        ("--key (SUITEKEY_KEY)", flags.key.is_some()),
        (
            "--client-id (SUITEKEY_CLIENT_ID)",
            flags.client_id.is_some(),
        ),
        (
            "--certificate-id (SUITEKEY_CERTIFICATE_ID)",
            flags.certificate_id.is_some(),
        ),
        ("--account (SUITEKEY_ACCOUNT)", flags.account.is_some()),
    ]
    .into_iter()
    .filter_map(|(flag, given)| given.then_some(flag))
    .collect();
    if given.is_empty() {
        return Ok(());
    }
    Err(StepError::usage(format!(
        "rotate changes profile '{name}' as the config file defines it (it rewrites the profile's key and certificate-id), so it takes no {}; drop them",
        given.join(", ")
    )))
}

/// The profile `name` of `file`, with `flags` over it.
fn resolve(file: &ConfigFile, name: &str, flags: ProfileOverrides) -> Result<Profile, StepError> {
    let config = file.parse()?;
    Ok(config::resolve(Some(config.profile(name)?), flags)?)
}

/// The first flag given that would change the plan of the rotation in progress.
fn conflicting_flag(journal: &Journal, options: &Options) -> Option<&'static str> {
    let plan = &journal.plan;
    let differs = |given: Option<String>, planned: String| given.is_some_and(|g| g != planned);
    [
        (
            "--alg",
            differs(options.alg.map(|a| a.to_string()), plan.alg.to_string()),
        ),
        (
            "--rsa-bits",
            options.rsa_bits.is_some() && options.rsa_bits != plan.rsa_bits,
        ),
        (
            "--days",
            differs(
                options.days.map(|d| d.days().to_string()),
                plan.days.to_string(),
            ),
        ),
        (
            "--subject",
            differs(options.subject.clone(), plan.subject.clone()),
        ),
        (
            "--new-label",
            differs(options.new_label.clone(), plan.new_label.clone()),
        ),
    ]
    .into_iter()
    .find_map(|(flag, differs)| differs.then_some(flag))
}

/// The test hook of [`STOP_AFTER_ENV`].
fn stop_if_asked(step: Step, recorded: bool) {
    let Some(asked) = std::env::var_os(STOP_AFTER_ENV) else {
        return;
    };
    let moment = format!("{}{}", step.number(), if recorded { "j" } else { "" });
    if asked.to_str().map(str::trim) == Some(moment.as_str()) {
        let _ = writeln!(
            std::io::stderr(),
            "{STOP_AFTER_ENV}={moment}: killing this process (test hook)"
        );
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}
