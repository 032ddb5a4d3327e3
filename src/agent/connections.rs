//! The agent's connections: how many it holds at once (in all, and per client process), how
//! long one may sit idle or half-sent, and what is counted for `/metrics`.
//!
//! A flood of idle connections must neither starve other clients nor take the descriptors the
//! PKCS#11 module opens while signing. So the agent raises its soft open-file limit to the hard
//! one at start, keeps [`RESERVE`] descriptors beside its connections, holds at most
//! [`MAX_OPEN`] connections in all and [`MAX_PER_PROCESS`] from one client process (by its
//! `SO_PEERCRED` pid), and closes a connection beyond those at once, counting it and logging
//! such refusals at most once per [`LOG_EVERY`]. A request head must be complete within
//! [`HEADER_TIMEOUT`] of its first byte, a connection waiting for its next request is closed
//! after [`IDLE_TIMEOUT`], and when the agent stops a half-sent request is dropped at once.
//! [`MAX_OPEN`] also keeps the descriptors of a module that still uses `select()` below 1,024.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::metrics::{ConnectionMetrics, Refusal, Timeout};

/// The most connections the agent holds at once.
pub const MAX_OPEN: usize = 768;
/// The most connections one client process may hold at once (benchmarks use 64).
pub const MAX_PER_PROCESS: usize = 256;
/// The most connections being refused with a 403 at once; more from other users are closed
/// without an answer, so that users who are not allowed cannot take the agent's places.
pub const MAX_REFUSING: usize = 32;
/// Descriptors kept beside the connections: the PKCS#11 module, the runtime, the token
/// endpoint's connections, the log.
pub const RESERVE: u64 = 256;
/// How long a request head may take from its first byte.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may wait for its next request (or its first).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// At most one log line per kind of refusal this often; the rest are counted.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// How many connections the agent holds, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections in all.
    pub open: usize,
    /// Connections from one client process.
    pub per_process: usize,
    /// See [`HEADER_TIMEOUT`].
    pub header_timeout: Duration,
    /// See [`IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
}

impl Limits {
    /// The limits under an open-file limit of `files`: [`MAX_OPEN`] connections, fewer when
    /// `files` leaves less than [`RESERVE`] beside them (but never more than half of them).
    pub fn for_open_files(files: u64) -> Limits {
        let room = files.saturating_sub(RESERVE).max(files / 2);
        let open = usize::try_from(room).map_or(MAX_OPEN, |room| room.clamp(1, MAX_OPEN));
        Limits {
            open,
            per_process: open.min(MAX_PER_PROCESS),
            header_timeout: HEADER_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

/// Raises the soft open-file limit to the hard one, so that a flood of connections cannot
/// take the descriptors the PKCS#11 module needs; returns the soft limit now in force.
pub fn raise_open_file_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let (Some(current), Some(maximum)) = (limit.current, limit.maximum) else {
        return limit.current.unwrap_or(u64::MAX);
    };
    if current >= maximum {
        return current;
    }
    let raised = Rlimit {
        current: Some(maximum),
        maximum: Some(maximum),
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            tracing::debug!(from = current, to = maximum, "raised the open-file limit");
            maximum
        }
        Err(e) => {
            tracing::warn!(
                "cannot raise the open-file limit from {current} to {maximum} ({e}); the agent holds fewer connections"
            );
            current
        }
    }
}

/// Who is at the other end of a connection, as `SO_PEERCRED` says.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// Its uid, when known.
    pub uid: Option<u32>,
    /// Its process, when known.
    pub pid: Option<i32>,
}

/// The connections open now, and the refusals and timeouts so far.
pub struct Connections {
    limits: Limits,
    counts: Mutex<Counts>,
    metrics: ConnectionMetrics,
    stopping: AtomicBool,
    logs: Mutex<HashMap<Refusal, RateLimit>>,
}

#[derive(Default)]
struct Counts {
    open: usize,
    refusing: usize,
    /// By client process (`None`: its pid could not be read).
    per_process: HashMap<Option<i32>, usize>,
}

impl Connections {
    /// No connections yet, under `limits`.
    pub fn new(limits: Limits) -> Connections {
        Connections {
            limits,
            counts: Mutex::default(),
            metrics: ConnectionMetrics::default(),
            stopping: AtomicBool::new(false),
            logs: Mutex::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The refusals and timeouts so far.
    pub fn metrics(&self) -> &ConnectionMetrics {
        &self.metrics
    }

    /// How many connections are open (being served or being refused).
    pub fn open(&self) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .open
    }

    /// From now on, half-sent requests are dropped at once (the agent is stopping).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// A place for a connection from `peer`, held until the [`Permit`] drops; `refusing`
    /// when the connection is only to be answered with a 403. Beyond the limits: why not.
    pub fn admit(self: &Arc<Self>, peer: Peer, refusing: bool) -> Result<Permit, Refusal> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let of_process = counts.per_process.get(&peer.pid).copied().unwrap_or(0);
        if refusing && counts.refusing >= MAX_REFUSING {
            return Err(Refusal::Uid);
        }
        if counts.open >= self.limits.open {
            return Err(Refusal::AgentLimit);
        }
        if of_process >= self.limits.per_process {
            return Err(Refusal::ProcessLimit);
        }
        counts.open += 1;
        counts.refusing += usize::from(refusing);
        *counts.per_process.entry(peer.pid).or_default() += 1;
        Ok(Permit {
            connections: Arc::clone(self),
            pid: peer.pid,
            refusing,
        })
    }

    /// Counts a connection refused for `reason`, and logs it unless one like it was logged
    /// within [`LOG_EVERY`] (the next line says how many were not).
    pub fn refused(&self, reason: Refusal, peer: Peer) {
        self.metrics.refused(reason);
        let since_last = {
            let mut logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
            match logs.entry(reason).or_default().due() {
                Some(unlogged) => unlogged,
                None => return,
            }
        };
        let limits = self.limits;
        let (uid, pid) = (peer.uid, peer.pid);
        match reason {
            Refusal::Uid => tracing::warn!(
                ?uid,
                ?pid,
                unlogged = since_last,
                "refused a connection from another user (403); allow it with --allow-uid or [agent] allowed-uids if intended"
            ),
            Refusal::ProcessLimit => tracing::warn!(
                ?uid,
                ?pid,
                unlogged = since_last,
                "refused a connection: that process already holds {} connections, the most one process may; closed at once (refusals are logged at most every {} s and counted in /metrics)",
                limits.per_process,
                LOG_EVERY.as_secs()
            ),
            Refusal::AgentLimit => tracing::warn!(
                ?uid,
                ?pid,
                unlogged = since_last,
                "refused a connection: the agent already holds {} connections, its limit; closed at once (refusals are logged at most every {} s and counted in /metrics)",
                limits.open,
                LOG_EVERY.as_secs()
            ),
        }
    }
}

/// One kind of log line, written at most once per [`LOG_EVERY`].
#[derive(Default)]
struct RateLimit {
    last: Option<std::time::Instant>,
    unlogged: u64,
}

impl RateLimit {
    /// `Some(how many were not logged since the last line)` when a line is due now.
    fn due(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        if self.last.is_some_and(|last| now - last < LOG_EVERY) {
            self.unlogged += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// A connection's place among the [`Limits`]; given back when dropped.
pub struct Permit {
    connections: Arc<Connections>,
    pid: Option<i32>,
    refusing: bool,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self
            .connections
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        counts.open -= 1;
        counts.refusing -= usize::from(self.refusing);
        if let Some(n) = counts.per_process.get_mut(&self.pid) {
            *n -= 1;
            if *n == 0 {
                counts.per_process.remove(&self.pid);
            }
        }
    }
}

/// What a connection is doing, shared by its I/O ([`Watched`], which enforces the timeouts)
/// and the routes (which mark a request in flight, see [`Activity::request`]).
#[derive(Clone)]
pub struct Activity {
    state: Arc<Mutex<ActivityState>>,
    peer: Peer,
}

struct ActivityState {
    /// Since when the connection waits for a request: accepted, or its last one answered.
    waiting_since: Instant,
    /// When the first byte of a request not yet handled came.
    partial_since: Option<Instant>,
    /// A request is being handled: no timeout runs.
    in_flight: bool,
}

impl Activity {
    fn new(peer: Peer) -> Activity {
        Activity {
            state: Arc::new(Mutex::new(ActivityState {
                waiting_since: Instant::now(),
                partial_since: None,
                in_flight: false,
            })),
            peer,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Who is at the other end of the connection (`SO_PEERCRED`, read when it was accepted).
    pub fn peer(&self) -> Peer {
        self.peer
    }

    /// Marks a request as being handled until the guard drops.
    pub fn request(&self) -> InFlight {
        let mut state = self.state();
        state.in_flight = true;
        state.partial_since = None;
        InFlight(self.clone())
    }

    fn bytes_arrived(&self) {
        self.state().partial_since.get_or_insert_with(Instant::now);
    }

    /// When the connection is to be closed, and why; `None` while a request is handled.
    fn deadline(&self, limits: &Limits, stopping: bool) -> Option<(Instant, Timeout)> {
        let state = self.state();
        match (state.in_flight, state.partial_since) {
            (true, _) => None,
            (false, Some(_)) if stopping => Some((Instant::now(), Timeout::Header)),
            (false, Some(since)) => Some((since + limits.header_timeout, Timeout::Header)),
            (false, None) => Some((state.waiting_since + limits.idle_timeout, Timeout::Idle)),
        }
    }
}

/// A request being handled (see [`Activity::request`]).
pub struct InFlight(Activity);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.in_flight = false;
        state.waiting_since = Instant::now();
    }
}

/// A connection's stream with its [`Permit`] and its timeouts: a read that would wait past
/// the connection's deadline fails with `TimedOut` instead, which ends the connection.
pub struct Watched<S> {
    inner: S,
    activity: Activity,
    timer: Pin<Box<Sleep>>,
    permit: Permit,
}

impl<S> Watched<S> {
    /// `inner`, a connection from `peer`, holding `permit` until it is dropped.
    pub fn new(inner: S, permit: Permit, peer: Peer) -> Watched<S> {
        Watched {
            inner,
            activity: Activity::new(peer),
            timer: Box::pin(tokio::time::sleep_until(Instant::now())),
            permit,
        }
    }

    /// What the connection is doing.
    pub fn activity(&self) -> &Activity {
        &self.activity
    }

    /// `Ready` with the error that ends the connection once its deadline passed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let connections = &self.permit.connections;
        let stopping = connections.stopping.load(Ordering::SeqCst);
        let Some((at, timeout)) = self.activity.deadline(&connections.limits, stopping) else {
            return Poll::Pending;
        };
        if at > Instant::now() {
            if self.timer.deadline() != at {
                self.timer.as_mut().reset(at);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        connections.metrics.timed_out(timeout);
        Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, timeout.message()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                this.activity.bytes_arrived();
                Poll::Ready(Ok(()))
            }
            Poll::Ready(done) => Poll::Ready(done),
            Poll::Pending => this.poll_deadline(cx).map(Err),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    fn peer(pid: i32) -> Peer {
        Peer {
            uid: Some(1000),
            pid: Some(pid),
        }
    }

    #[test]
    fn the_limits_leave_room_for_the_module_under_any_open_file_limit() {
        let limits = |files| {
            let l = Limits::for_open_files(files);
            (l.open, l.per_process)
        };
        assert_eq!(limits(1024), (768, 256));
        assert_eq!(limits(1_048_576), (768, 256));
        assert_eq!(limits(512), (256, 256));
        assert_eq!(
            limits(300),
            (150, 150),
            "never more than half the descriptors"
        );
        assert_eq!(limits(0), (1, 1));
    }

    #[test]
    fn connections_are_admitted_up_to_the_limits_and_give_their_place_back() {
        let limits = Limits {
            open: 4,
            per_process: 2,
            ..Limits::for_open_files(1024)
        };
        let connections = Arc::new(Connections::new(limits));
        let first = connections.admit(peer(1), false).unwrap();
        let _second = connections.admit(peer(1), false).unwrap();
        assert_eq!(
            connections.admit(peer(1), false).err(),
            Some(Refusal::ProcessLimit)
        );
        let _others = [
            connections.admit(peer(2), false).unwrap(),
            connections.admit(peer(2), true).unwrap(),
        ];
        assert_eq!(connections.open(), 4);
        assert_eq!(
            connections.admit(peer(3), false).err(),
            Some(Refusal::AgentLimit)
        );
        drop(first);
        assert!(connections.admit(peer(3), false).is_ok());
        assert!(connections.admit(peer(1), false).is_ok());

        // Connections being refused with a 403 have a small quota of their own.
        let wide = Limits {
            open: 1000,
            per_process: 1000,
            ..limits
        };
        let connections = Arc::new(Connections::new(wide));
        let refusing: Vec<Permit> = (0..MAX_REFUSING)
            .map(|i| connections.admit(peer(i as i32), true).unwrap())
            .collect();
        assert_eq!(connections.admit(peer(99), true).err(), Some(Refusal::Uid));
        assert!(connections.admit(peer(99), false).is_ok());
        drop(refusing);
        assert_eq!(connections.open(), 0);
    }

    #[test]
    fn refusals_are_logged_at_most_once_per_period_and_say_how_many_were_not() {
        let mut log = RateLimit::default();
        assert_eq!(log.due(), Some(0));
        assert_eq!(log.due(), None);
        assert_eq!(log.due(), None);
        log.last = log.last.map(|t| t - LOG_EVERY);
        assert_eq!(log.due(), Some(2));
        assert_eq!(log.due(), None);
    }

    /// A watched connection under short timeouts (so the test takes a second), and the
    /// client's end.
    fn watched(
        connections: &Arc<Connections>,
    ) -> (Watched<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
        let (client, server) = tokio::io::duplex(1024);
        let permit = connections.admit(peer(1), false).unwrap();
        (Watched::new(server, permit, peer(1)), client)
    }

    fn short_timeouts() -> Arc<Connections> {
        Arc::new(Connections::new(Limits {
            header_timeout: Duration::from_millis(200),
            idle_timeout: Duration::from_millis(400),
            ..Limits::for_open_files(1024)
        }))
    }

    /// Reads until an error; the error's kind and how long it took. Bounded: a hang fails.
    async fn read_until_error(
        conn: &mut Watched<tokio::io::DuplexStream>,
    ) -> (io::ErrorKind, Duration) {
        let start = Instant::now();
        let mut buf = [0u8; 64];
        let outcome = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Err(e) = conn.read(&mut buf).await {
                    return e.kind();
                }
            }
        });
        (outcome.await.expect("closed within 10 s"), start.elapsed())
    }

    #[tokio::test]
    async fn half_sent_and_idle_connections_time_out_but_not_while_a_request_is_handled() {
        let connections = short_timeouts();
        let timed_out = |text: &str| {
            let mut out = String::new();
            super::super::metrics::render_connections(&mut out, connections.metrics(), 0);
            out.contains(text)
        };

        let (mut idle, _client) = watched(&connections);
        let (kind, took) = read_until_error(&mut idle).await;
        assert_eq!(kind, io::ErrorKind::TimedOut);
        assert!(took >= Duration::from_millis(400), "{took:?}");
        assert!(timed_out("{timeout=\"idle\"} 1"));

        let (mut half, mut client) = watched(&connections);
        client.write_all(b"GET / HT").await.unwrap();
        let (kind, took) = read_until_error(&mut half).await;
        assert_eq!(kind, io::ErrorKind::TimedOut);
        assert!(took >= Duration::from_millis(200), "{took:?}");
        assert!(timed_out("{timeout=\"header\"} 1"));

        // A request being handled (an exchange may be slow): no timeout meanwhile.
        let (mut busy, mut client) = watched(&connections);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        assert!(busy.read(&mut buf).await.unwrap() > 0);
        let handling = busy.activity().request();
        let waited = tokio::time::timeout(Duration::from_secs(1), busy.read(&mut buf)).await;
        assert!(waited.is_err(), "no timeout while in flight: {waited:?}");
        drop(handling);
        let (kind, _) = read_until_error(&mut busy).await;
        assert_eq!(kind, io::ErrorKind::TimedOut);
        assert!(timed_out("{timeout=\"idle\"} 2"));
    }

    #[tokio::test]
    async fn a_half_sent_request_ends_at_once_when_the_agent_stops() {
        let connections = Arc::new(Connections::new(Limits::for_open_files(1024)));
        let (mut half, mut client) = watched(&connections);
        let (mut idle, _idle_client) = watched(&connections);
        client.write_all(b"GET / HT").await.unwrap();
        let mut buf = [0u8; 64];
        assert!(half.read(&mut buf).await.unwrap() > 0);
        connections.stop();
        let (kind, took) = read_until_error(&mut half).await;
        assert_eq!(kind, io::ErrorKind::TimedOut);
        assert!(took < HEADER_TIMEOUT, "{took:?}");
        // An idle one is left to hyper, which closes idle connections itself when stopping.
        let waited = tokio::time::timeout(Duration::from_millis(300), idle.read(&mut buf)).await;
        assert!(waited.is_err(), "{waited:?}");
    }
}
