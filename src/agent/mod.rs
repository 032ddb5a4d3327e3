//! `suitekey agent`: one process holds the token sessions, caches access tokens and serves them
//! to local programs over HTTP on a Unix socket — like ssh-agent, the PIN is entered once and
//! the key never leaves the token.
//!
//! | module | owns |
//! | --- | --- |
//! | [`socket`] | the socket's path, binding (0700 directory, 0600 socket, stale socket), peer uid check |
//! | [`profiles`] | the profiles served: opened from the config, reloaded on SIGHUP |
//! | [`signers`] | one blocking worker per profile owning its PKCS#11 session; reopen and log in once |
//! | [`cache`] | per-profile token cache, single flight, renewal ahead of expiry |
//! | [`api`] | the HTTP routes and JSON errors |
//! | [`metrics`] | counters and their Prometheus text |
//! | [`client`] | what `token` and `exec` use when `SUITEKEY_AUTH_SOCK` is set |

pub mod api;
pub mod cache;
pub mod client;
pub mod logins;
pub mod metrics;
pub mod profiles;
pub mod signers;
pub mod socket;

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{EXIT_IO, EXIT_USAGE};

pub use profiles::{Opener, Options};

/// The environment variable that names the agent's socket for clients.
pub const SOCKET_ENV: &str = "SUITEKEY_AUTH_SOCK";

/// Why the agent cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No socket path given and no `XDG_RUNTIME_DIR` to put the default in.
    #[error(
        "no socket path: XDG_RUNTIME_DIR is not set (or not absolute); pass --socket PATH, e.g. --socket ~/.suitekey/agent.sock"
    )]
    NoSocketPath,
    /// The socket's directory cannot be made or read.
    #[error("cannot prepare the socket directory '{}': {source}", .path.display())]
    SocketDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another agent answers on the socket.
    #[error(
        "an agent is already running on '{}'; stop it first, or pass another --socket PATH", .0.display()
    )]
    AlreadyRunning(PathBuf),
    /// Something other than a socket is at the path; it is never removed.
    #[error(
        "'{}' exists and is not a socket; remove it or pass another --socket PATH", .0.display()
    )]
    NotASocket(PathBuf),
    /// The socket cannot be bound.
    #[error("cannot listen on '{}': {source}", .path.display())]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The agent needs a config file with profiles.
    #[error(
        "the agent serves the profiles of a config file, and there is none at {0}; create it with [profiles.NAME] tables or pass --config FILE"
    )]
    NoConfig(String),
    /// The config file cannot be read.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The runtime or the server failed.
    #[error("the agent stopped: {0}")]
    Io(#[source] std::io::Error),
}

impl Error {
    /// The process exit status: 2 for bad input, 5 for socket and runtime failures.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::NoSocketPath | Error::NoConfig(_) | Error::Config(_) => EXIT_USAGE,
            Error::AlreadyRunning(_) | Error::NotASocket(_) => EXIT_USAGE,
            Error::SocketDir { .. } | Error::Bind { .. } | Error::Io(_) => EXIT_IO,
        }
    }
}

/// Runs the agent in the foreground until SIGINT or SIGTERM: opens every profile of the
/// config (asking for PINs now, once), binds the socket, prints its path as stdout's only line,
/// and serves. SIGHUP reloads the config.
pub fn run(options: Options, out: &mut dyn Write) -> Result<(), Error> {
    let socket_path = match &options.socket {
        Some(path) => path.clone(),
        None => socket::default_path().ok_or(Error::NoSocketPath)?,
    };
    let config = profiles::load_config(options.config.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::Io)?;
    let options = Arc::new(options);
    let entered = runtime.enter();
    let shutdown = shutdown_signal()?;
    // Bound first, so that a second agent on the same socket stops before touching a token.
    let listener = socket::bind(&socket_path)?;
    let _remove = RemoveOnDrop(&socket_path);
    // Opened before serving, outside any task: PIN prompts come here, one per token.
    let logins = Arc::new(logins::Logins::default());
    let served = profiles::open_all(
        &config,
        &Default::default(),
        &options,
        &logins,
        runtime.handle(),
    );
    drop(entered);
    let allowed = Arc::new(socket::AllowedUids::default());
    allowed.set(&options.allow_uids, config.allowed_uids());
    let agent = Arc::new(api::Agent::new(served, allowed));
    runtime.block_on(announce_and_serve(
        &agent,
        (&options, &logins),
        listener,
        &socket_path,
        out,
        shutdown,
    ))?;
    // Workers end when their handles go; renewal tasks with the runtime.
    drop(agent);
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(())
}

/// Removes the socket file however the agent ends: it must not outlive the agent.
struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

async fn announce_and_serve(
    agent: &Arc<api::Agent>,
    (options, logins): (&Arc<Options>, &Arc<logins::Logins>),
    listener: tokio::net::UnixListener,
    socket_path: &Path,
    out: &mut dyn Write,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    writeln!(out, "{}", socket_path.display()).map_err(Error::Io)?;
    out.flush().map_err(Error::Io)?;
    tracing::info!(socket = %socket_path.display(), profiles = agent.profile_count(), "agent listening");
    spawn_reloader(Arc::clone(agent), Arc::clone(options), Arc::clone(logins))?;
    let listener = socket::PeerChecked::new(listener, Arc::clone(agent.allowed()));
    axum::serve(listener, api::router(Arc::clone(agent)))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Io)?;
    tracing::info!("agent stopped");
    Ok(())
}

/// Registers for SIGINT and SIGTERM now (before the socket is announced) and returns a
/// future that completes on either.
fn shutdown_signal() -> Result<impl Future<Output = ()> + Send + 'static, Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).map_err(Error::Io)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(Error::Io)?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::info!("signal received: finishing the requests in flight");
    })
}

/// On SIGHUP, reads the config again: new profiles are opened, changed ones reopened, removed
/// ones dropped; unchanged ones keep their session and cached token; the allowed uids are
/// replaced. A config that cannot be
/// read leaves everything as it was.
fn spawn_reloader(
    agent: Arc<api::Agent>,
    options: Arc<Options>,
    logins: Arc<logins::Logins>,
) -> Result<(), Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup()).map_err(Error::Io)?;
    let handle = tokio::runtime::Handle::current();
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the config");
            let (agent, options, logins, handle) = (
                Arc::clone(&agent),
                Arc::clone(&options),
                Arc::clone(&logins),
                handle.clone(),
            );
            let reloaded = tokio::task::spawn_blocking(move || {
                let config = profiles::load_config(options.config.as_deref())?;
                let served =
                    profiles::open_all(&config, &agent.profiles(), &options, &logins, &handle);
                agent.replace(served);
                agent
                    .allowed()
                    .set(&options.allow_uids, config.allowed_uids());
                Ok::<_, Error>(())
            })
            .await;
            match reloaded {
                Ok(Ok(())) => tracing::info!("config reloaded"),
                Ok(Err(e)) => tracing::error!(
                    "reload failed, keeping the profiles as they were: {}",
                    crate::error::chain(&e)
                ),
                Err(e) => tracing::error!("reload failed: {e}"),
            }
        }
    });
    Ok(())
}
