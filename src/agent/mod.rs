//! `suitekey agent`: one process holds the token sessions, caches access tokens and serves them
//! to local programs over HTTP on a Unix socket — like ssh-agent, the PIN is entered once and
//! the key never leaves the token.
//!
//! | module | owns |
//! | --- | --- |
//! | `socket` | the socket's path, binding (0700 directory, 0600 socket, stale socket), peer uid check |
//! | [`profiles`] | the profiles served: opened from the config |
//! | `reload` | the config read again on SIGHUP and when its file changes |
//! | [`signers`] | one blocking worker per profile owning its PKCS#11 session; reopen and log in once |
//! | `cache` | per-profile token cache, single flight, renewal ahead of expiry |
//! | `api` | the HTTP routes and JSON errors |
//! | `connections` | how many connections are held (in all, per client process) and for how long |
//! | [`metrics`] | counters and their Prometheus text |
//! | [`rotations`] | `rotate-before-days`: each profile's certificate rotated before it expires |
//! | `client` | what `token` and `exec` use when `SUITEKEY_AUTH_SOCK` is set |
//! | [`handover`] | `suitekey rotate` waiting for a running agent to serve the new certificate |

pub(crate) mod api;
pub(crate) mod cache;
pub(crate) mod client;
pub(crate) mod connections;
pub mod handover;
pub mod logins;
pub mod metrics;
pub mod profiles;
pub(crate) mod reload;
pub mod rotations;
pub mod signers;
pub(crate) mod socket;

use std::future::IntoFuture as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::kind::{HasKind, Kind};

pub use profiles::Options;

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
    /// The socket's directory belongs to another user, who could replace the socket.
    #[error(
        "the socket directory '{}' belongs to uid {owner}, not to this user (uid {uid}); pass a --socket PATH in a directory you own"
    , .path.display())]
    SocketDirOwner {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The agent's uid.
        uid: u32,
    },
    /// The socket's directory is a symbolic link, which whoever owns it could repoint.
    #[error(
        "the socket directory '{}' is a symbolic link; the agent does not follow it (whoever can change the link could move the socket): pass a --socket PATH in a real directory you own"
    , .0.display())]
    SocketDirSymlink(PathBuf),
    /// A directory on the way to the socket could be changed by another user.
    #[error(
        "cannot put the socket in '{}': '{}' {reason}, so another user could replace the socket's directory; pass a --socket PATH under directories only you or root can change, e.g. under $XDG_RUNTIME_DIR"
    , .dir.display(), .path.display())]
    SocketPathUnsafe {
        /// The socket's directory.
        dir: PathBuf,
        /// The directory (or link) on its way that others could change.
        path: PathBuf,
        /// What is wrong with it.
        reason: socket::Unsafe,
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
    #[error(
        "cannot listen on '{}': {source}; check that its directory is yours and writable, or pass another --socket PATH", .path.display()
    )]
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
    #[error(
        "the agent stopped: {0}; check the system's limits (open files: ulimit -n; threads) and that its stdout is writable, then start it again"
    )]
    Io(#[source] std::io::Error),
}

impl HasKind for Error {
    /// A socket path or config to change is the user's input; socket and runtime failures are
    /// output failures.
    fn kind(&self) -> Kind {
        match self {
            Error::NoSocketPath | Error::NoConfig(_) | Error::Config(_) => Kind::Usage,
            Error::AlreadyRunning(_)
            | Error::NotASocket(_)
            | Error::SocketDirOwner { .. }
            | Error::SocketDirSymlink(_)
            | Error::SocketPathUnsafe { .. } => Kind::Usage,
            Error::SocketDir { .. } | Error::Bind { .. } | Error::Io(_) => Kind::Output,
        }
    }
}

/// Runs the agent in the foreground until SIGINT or SIGTERM: opens every profile of the
/// config (asking for PINs now, once), binds the socket, prints its path as stdout's only line,
/// and serves. SIGHUP, or a change of the config file, reloads the config.
pub fn run(options: Options, out: &mut dyn Write) -> Result<(), Error> {
    let socket_path = match &options.socket {
        Some(path) => path.clone(),
        None => socket::default_path().ok_or(Error::NoSocketPath)?,
    };
    // Looked at before it is read: a change after the read is reloaded.
    let seen = reload::config_path(&options)
        .as_deref()
        .and_then(reload::Stamp::of);
    let config = profiles::load_config(options.config.as_deref())?;
    harden();
    let open_files = connections::raise_open_file_limit();
    let runtime = new_runtime()?;
    let options = Arc::new(options);
    let entered = runtime.enter();
    // Before the socket exists: a signal during startup must not kill the agent and leave the
    // socket behind.
    let signals = Signals::register()?;
    // From now on a PIN prompt leaves SIGHUP, SIGINT and SIGTERM to these handlers.
    crate::pkcs11::leave_signals_to_caller();
    // Bound first, so that a second agent on the same socket stops before touching a token.
    let (listener, bound) = socket::bind(&socket_path)?;
    let bound = Arc::new(bound);
    let _remove = RemoveOnDrop(Arc::clone(&bound));
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
    // A stop at a PIN prompt ended that prompt before the signal task may have run.
    if signals.stopping() || crate::pkcs11::cancelled_by_signal() {
        tracing::info!("stopped during startup");
        drop(served);
        finish(runtime, logins);
        return Ok(());
    }
    let allowed = Arc::new(socket::AllowedUids::for_socket(bound));
    allowed.set(&options.allow_uids, config.allowed_uids());
    let limits = connections::Limits::for_open_files(open_files);
    let connections = Arc::new(connections::Connections::new(limits));
    let agent = Arc::new(api::Agent::new(served, allowed, connections));
    runtime.block_on(announce_and_serve(
        &agent,
        (&options, &logins),
        listener,
        &socket_path,
        out,
        (signals, seen),
    ))?;
    drop(agent);
    finish(runtime, logins);
    Ok(())
}

/// The agent's runtime: two workers, enough for socket I/O (signing has threads of its own).
fn new_runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::Io)
}

/// How long the agent waits at exit for its signing workers to drop their PINs.
const WORKERS_EXIT: Duration = Duration::from_secs(2);

/// Ends the renewal tasks with the runtime (the last handles of the signing workers go with
/// them), then waits, bounded, for each worker to end: a worker drops its session and its
/// credential (the PIN, wiped on drop) when it notices, on its own thread, that its channel
/// closed, and that must happen before the process exits, not merely soon.
fn finish(runtime: tokio::runtime::Runtime, logins: Arc<logins::Logins>) {
    runtime.shutdown_timeout(Duration::from_secs(1));
    drop(logins);
    let running = signers::wait_for_workers(WORKERS_EXIT);
    if running > 0 {
        tracing::warn!(
            running,
            "signing workers still busy in the token after {} s; exiting without them",
            WORKERS_EXIT.as_secs()
        );
    } else {
        // Let go of the tokens: a smart card's PIN ends with the agent.
        crate::pkcs11::finalize_all();
    }
}

/// Keeps other processes of the same user from reading the agent's memory (PINs, tokens)
/// through ptrace or /proc/PID/mem, and the kernel from writing it to a core dump.
fn harden() {
    use rustix::process::{DumpableBehavior, set_dumpable_behavior};
    if let Err(e) = set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        tracing::warn!(
            "cannot make the agent non-dumpable ({e}): processes of the same user could read its memory; run it under the systemd unit (LimitCORE=0)"
        );
    }
}

/// Removes the socket file however the agent ends, unless another agent's socket has
/// replaced it meanwhile.
struct RemoveOnDrop(Arc<socket::Bound>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        self.0.remove();
    }
}

/// The signals the agent handles, registered before the socket is bound so that none of
/// them kills it during startup (the default action of SIGHUP, SIGTERM and SIGINT).
struct Signals {
    /// Becomes true on SIGINT or SIGTERM.
    stop: watch::Receiver<bool>,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Registers for the signals (inside a runtime context).
    fn register() -> Result<Signals, Error> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).map_err(Error::Io)?;
        let mut interrupt = signal(SignalKind::interrupt()).map_err(Error::Io)?;
        let hangup = signal(SignalKind::hangup()).map_err(Error::Io)?;
        let (sender, stop) = watch::channel(false);
        tokio::spawn(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
            tracing::info!("signal received: finishing the requests in flight");
            sender.send_replace(true);
            // Kept alive, so that the receivers do not see a closed channel as a stop.
            std::future::pending::<()>().await;
        });
        Ok(Signals { stop, hangup })
    }

    /// Whether SIGINT or SIGTERM came.
    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }
}

/// Completes on SIGINT or SIGTERM.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

async fn announce_and_serve(
    agent: &Arc<api::Agent>,
    (options, logins): (&Arc<Options>, &Arc<logins::Logins>),
    listener: tokio::net::UnixListener,
    socket_path: &Path,
    out: &mut dyn Write,
    (signals, seen): (Signals, Option<reload::Stamp>),
) -> Result<(), Error> {
    writeln!(out, "{}", socket_path.display()).map_err(Error::Io)?;
    out.flush().map_err(Error::Io)?;
    let limits = agent.connections().limits();
    tracing::info!(
        socket = %socket_path.display(),
        profiles = agent.profile_count(),
        max_connections = limits.open,
        max_per_process = limits.per_process,
        "agent listening"
    );
    reload::spawn(
        Arc::clone(agent),
        (Arc::clone(options), Arc::clone(logins)),
        signals.hangup,
        seen,
    );
    rotations::spawn(Arc::clone(agent), Arc::clone(options), Arc::clone(logins));
    let connections = Arc::clone(agent.connections());
    let listener = socket::PeerChecked::new(
        listener,
        Arc::clone(agent.allowed()),
        Arc::clone(&connections),
    );
    let routes = api::router(Arc::clone(agent))
        .into_make_service_with_connect_info::<connections::Activity>();
    let stop = signals.stop.clone();
    let server = axum::serve(listener, routes)
        .with_graceful_shutdown(async move {
            stopped(stop).await;
            // Before the connections are told: a half-sent request then ends at once.
            connections.stop();
        })
        .into_future();
    let limit = options.drain_timeout;
    let drain_limit = async {
        stopped(signals.stop).await;
        tokio::time::sleep(limit).await;
    };
    tokio::select! {
        served = server => served.map_err(Error::Io)?,
        () = drain_limit => tracing::warn!(
            limit_s = limit.as_secs(),
            "requests still in flight after the drain timeout; stopping anyway (raise --drain-timeout to wait longer)"
        ),
    }
    tracing::info!("agent stopped");
    Ok(())
}
