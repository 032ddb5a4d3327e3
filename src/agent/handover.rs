//! A rotation run by hand (`suitekey rotate`) while an agent serves the profile: before step 6
//! revokes the old certificate, it waits until the agent serves the new one. The agent takes
//! the switch up by itself (it reloads its config file when the file changes, and swaps a
//! changed profile in once it has its first token); revoking earlier would leave the agent
//! signing with a revoked certificate.
//!
//! The agent is the one `SUITEKEY_AUTH_SOCK` names, else the one on the default socket if
//! that exists; it is asked through the agent client (`client`), which checks who answers before
//! reading anything. No agent there, or an agent that does not serve the profile with the old
//! certificate: nothing to wait for.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::client::{self, ClientError};

/// How long the rotation waits for the agent to serve the new certificate.
pub const WAIT: Duration = Duration::from_secs(30);

/// How often the agent is asked meanwhile.
const POLL: Duration = Duration::from_millis(500);

/// The certificates of the rotation: the old one (about to be revoked) and the new one.
pub struct Certificates<'a> {
    /// The old certificate id.
    pub old: &'a str,
    /// The new certificate id.
    pub new: &'a str,
}

/// The agent's socket to ask: `SUITEKEY_AUTH_SOCK` if set, else the default socket if it
/// exists; `None` when there is none.
fn socket() -> Option<(PathBuf, bool)> {
    if let Some(named) = std::env::var_os(super::SOCKET_ENV).filter(|v| !v.is_empty()) {
        return Some((PathBuf::from(named), true));
    }
    super::socket::default_path()
        .filter(|p| p.exists())
        .map(|p| (p, false))
}

/// Waits (at most [`WAIT`]) until the agent, if one serves `profile` with the `old`
/// certificate, serves it with the `new` one; `say` tells what happens. An error when it does
/// not in time: then the old certificate must not be revoked yet.
pub fn wait_for_agent(
    profile: &str,
    certificates: &Certificates<'_>,
    say: &mut dyn FnMut(&str),
) -> Result<(), String> {
    let Some((socket, named)) = socket() else {
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime to ask the agent: {e}"))?;
    let shown = socket.display();
    let deadline = Instant::now() + WAIT;
    let mut waiting = false;
    loop {
        let served = runtime.block_on(client::served_certificate(&socket, profile));
        match served {
            Ok(Some(id)) if id == certificates.new => {
                if waiting {
                    say(&format!(
                        "the agent at '{shown}' serves profile '{profile}' with the new certificate now"
                    ));
                }
                return Ok(());
            }
            Ok(Some(id)) if id == certificates.old => {}
            Ok(_) => return Ok(()),
            Err(e) => {
                if named || waiting {
                    say(&not_asked(&e));
                }
                return Ok(());
            }
        }
        if !waiting {
            say(&format!(
                "the agent at '{shown}' serves profile '{profile}' with the old certificate: waiting (at most {} s) until it serves the new one, which it picks up from the rewritten config by itself",
                WAIT.as_secs()
            ));
            waiting = true;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the agent at '{shown}' still serves profile '{profile}' with the old certificate {} after {} s, so the old certificate is not revoked (the agent would go on signing with it): reload the agent (systemctl --user reload suitekey-agent, or kill -HUP its process), check its log for why it did not take up the new key, then run this rotate again: it continues at step 6",
                certificates.old,
                WAIT.as_secs()
            ));
        }
        std::thread::sleep(POLL);
    }
}

/// Why the agent was not asked (or no longer answers): the rotation carries on.
fn not_asked(e: &ClientError) -> String {
    format!(
        "not waiting for an agent: {}",
        crate::report::chain(e).lines().next().unwrap_or_default()
    )
}
