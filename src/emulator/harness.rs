//! An emulator in a thread of the test process, for unit tests that talk HTTP to it.

use std::net::SocketAddr;
use std::sync::Arc;

use super::state::{Shared, Stats};
use super::{Config, Error, base_url, bind, serve_shared};

/// An emulator on `127.0.0.1:<free port>` in a thread of its own, for tests (sync or async);
/// it stops when dropped.
pub struct Emulator {
    base_url: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), Error>>>,
}

impl Emulator {
    /// Binds and starts serving; returns once the port is bound.
    pub fn start(config: Config) -> Result<Emulator, Error> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(Error::Io)?;
            runtime.block_on(async move {
                let bound = bind(SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)))
                    .await
                    .and_then(|l| Ok((l.local_addr().map_err(Error::Io)?, l)));
                let (addr, listener) = match bound {
                    Ok(bound) => bound,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return Ok(());
                    }
                };
                let shared = Shared::new(config, addr);
                let _ = ready_tx.send(Ok((addr, Arc::clone(&shared))));
                serve_shared(listener, shared, async {
                    let _ = stopped.await;
                })
                .await
            })
        });
        let gone = || {
            Error::Io(std::io::Error::other(
                "the emulator thread ended before binding",
            ))
        };
        let (addr, shared) = ready_rx.recv().map_err(|_| gone())??;
        Ok(Emulator {
            base_url: base_url(addr),
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The emulator's token URL (a valid `aud`).
    pub fn token_url(&self) -> &str {
        &self.shared.token_url
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        self.shared.lock().stats.clone()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
