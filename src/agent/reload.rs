//! Reading the config again while serving: on SIGHUP, and when the config file changes on
//! disk (its identity, size and times are looked at every [`WATCH_INTERVAL`]; a rewrite by
//! `suitekey rotate` replaces the file, which changes its inode). Both reload the same way:
//! new profiles are opened, removed ones dropped, unchanged ones keep their session and cached
//! token, and a changed one is opened anew while the old one keeps answering, and swapped in
//! only once it has its first access token (see [`profiles::first_token`]); one that gets none
//! within [`FIRST_TOKEN_LIMIT`] leaves the old one serving (a changed profile never takes the
//! place of one that gives tokens before it can give them itself). Then the certificates are
//! checked for rotation. A config that cannot be read leaves everything as it was.
//!
//! While the agent rotates a certificate itself, a change of the file waits: the rotation takes
//! up the new key on its own, and the reload comes after it.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::Error;
use super::api::Agent;
use super::logins::Logins;
use super::profiles::{self, Options, ProfileMap};
use crate::config::Config;

/// How often the config file is looked at.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// How long a changed profile may take to get its first access token before the old one
/// stops answering; without one by then, the old one keeps serving.
pub const FIRST_TOKEN_LIMIT: Duration = Duration::from_secs(15);

/// What makes the agent read its config again.
#[derive(Clone, Copy, Debug)]
enum Cause {
    Hangup,
    FileChanged,
}

/// Reloads the agent's config: what SIGHUP and the file watcher share.
#[derive(Clone)]
struct Reloader {
    agent: Arc<Agent>,
    options: Arc<Options>,
    logins: Arc<Logins>,
    handle: tokio::runtime::Handle,
    /// The config file's path, when the agent knows it.
    path: Option<PathBuf>,
    /// How the file looked when it was last read.
    seen: Arc<Mutex<Option<Stamp>>>,
}

/// What tells that a file changed: where it is (device, inode), its size and its times. The
/// content is not read for this: it may hold a `pin-value`, and every look would copy it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp([i64; 8]);

impl Stamp {
    /// How the file at `path` looks now (through a symbolic link, and the link itself);
    /// `None` when it cannot be looked at.
    pub fn of(path: &Path) -> Option<Stamp> {
        let link = std::fs::symlink_metadata(path).ok()?;
        let file = std::fs::metadata(path).ok()?;
        #[allow(clippy::cast_possible_wrap)]
        Some(Stamp([
            file.dev() as i64,
            file.ino() as i64,
            file.size() as i64,
            file.mtime(),
            file.mtime_nsec(),
            file.ctime(),
            file.ctime_nsec(),
            link.ino() as i64 ^ link.ctime_nsec(),
        ]))
    }
}

/// The config file the agent reads: `--config`, else the default path.
pub fn config_path(options: &Options) -> Option<PathBuf> {
    options.config.clone().or_else(Config::default_path)
}

/// Starts the reloads: on SIGHUP (`hangup`), and when the config file no longer looks like
/// `seen` (how it looked before the agent first read it). Call inside the runtime.
pub fn spawn(
    agent: Arc<Agent>,
    (options, logins): (Arc<Options>, Arc<Logins>),
    mut hangup: tokio::signal::unix::Signal,
    seen: Option<Stamp>,
) {
    let reloader = Reloader {
        path: config_path(&options),
        agent,
        options,
        logins,
        handle: tokio::runtime::Handle::current(),
        seen: Arc::new(Mutex::new(seen)),
    };
    let on_signal = reloader.clone();
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the config");
            on_signal.reload(Cause::Hangup).await;
        }
    });
    tokio::spawn(async move {
        let Some(path) = reloader.path.clone() else {
            return;
        };
        loop {
            tokio::time::sleep(WATCH_INTERVAL).await;
            let now = Stamp::of(&path);
            let seen = *reloader.seen.lock().unwrap_or_else(PoisonError::into_inner);
            // A file that cannot be looked at (being replaced) is looked at again next time.
            if now.is_none() || now == seen || reloader.agent.rotations().busy() {
                continue;
            }
            tracing::info!(config = %path.display(), "the config file changed: reloading it");
            reloader.reload(Cause::FileChanged).await;
        }
    });
}

impl Reloader {
    /// Reloads the config (on a blocking thread: PINs may be read, keys opened) and asks for
    /// a rotation check.
    async fn reload(&self, cause: Cause) {
        let this = self.clone();
        let reloaded = tokio::task::spawn_blocking(move || this.reload_blocking()).await;
        // The certificates are checked again (rotate-before-days may have changed).
        self.agent.rotations().wake();
        let done = match cause {
            Cause::Hangup => "config reloaded",
            Cause::FileChanged => "reloaded the changed config file",
        };
        match reloaded {
            Ok(Ok(())) => tracing::info!("{done}"),
            Ok(Err(e)) => tracing::error!(
                "reload failed, keeping the profiles as they were: {}",
                crate::report::chain(&e)
            ),
            Err(e) => tracing::error!("reload failed: {e}"),
        }
    }

    fn reload_blocking(&self) -> Result<(), Error> {
        let agent = &self.agent;
        let _changing = agent.changing_profiles();
        // Looked at before it is read: a change after the read is seen by the next look.
        if let Some(path) = &self.path {
            *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = Stamp::of(path);
        }
        let config = profiles::load_config(self.options.config.as_deref())?;
        let previous = agent.profiles();
        let mut served = profiles::open_all(
            &config,
            &previous,
            &self.options,
            &self.logins,
            &self.handle,
        );
        self.keep_serving_until_ready(&mut served, &previous);
        agent.replace(served);
        agent
            .allowed()
            .set(&self.options.allow_uids, config.allowed_uids());
        Ok(())
    }

    /// Waits (together, at most [`FIRST_TOKEN_LIMIT`]) for the first access token of each
    /// profile of `served` opened anew in place of one of `previous` that gives tokens; one
    /// that gets none is replaced by the previous one, which keeps serving.
    fn keep_serving_until_ready(&self, served: &mut ProfileMap, previous: &ProfileMap) {
        let changed: Vec<_> = served
            .iter()
            .filter_map(|(name, new)| {
                let old = previous.get(name)?;
                let working = old.state.is_ok() && old.failure().is_none();
                (working && !Arc::ptr_eq(old, new)).then(|| (name.clone(), Arc::clone(new)))
            })
            .collect();
        if changed.is_empty() {
            return;
        }
        let waits = changed.into_iter().map(|(name, new)| async move {
            let ready = profiles::first_token(&new, FIRST_TOKEN_LIMIT).await;
            (name, ready)
        });
        let outcomes = self.handle.block_on(join_all(waits));
        for (name, ready) in outcomes {
            let Err(why) = ready else { continue };
            if let Some(old) = previous.get(&name) {
                served.insert(name.clone(), Arc::clone(old));
            }
            tracing::error!(
                profile = %name,
                "profile '{name}' changed in the config, but with its new settings it gives no access token ({why}); it keeps serving with the settings it had: fix the profile, then reload the agent (SIGHUP), or save the config file again"
            );
        }
    }
}

/// Runs `futures` together; their outputs in order.
async fn join_all<T: Send + 'static>(
    futures: impl IntoIterator<Item = impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        if let Ok(value) = handle.await {
            out.push(value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewrite_in_place_or_by_rename_changes_the_stamp_and_a_look_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        assert_eq!(Stamp::of(&path), None, "no file, no stamp");
        std::fs::write(&path, "a = 1\n").unwrap();
        let first = Stamp::of(&path).unwrap();
        let _ = std::fs::read(&path).unwrap();
        assert_eq!(Stamp::of(&path), Some(first), "reading it changes nothing");
        // Written in place (the inode stays; the size and times change).
        std::fs::write(&path, "a = 22\n").unwrap();
        let second = Stamp::of(&path).unwrap();
        assert_ne!(second, first);
        // Replaced by a rename, as `suitekey rotate` rewrites it (another inode).
        let next = dir.path().join("config.toml.new");
        std::fs::write(&next, "a = 22\n").unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert_ne!(Stamp::of(&path).unwrap(), second);
    }
}
