//! A [`TokenClient`](super::TokenClient)'s settings: timeouts, the retry policy, the proxy,
//! and the roots an https endpoint's certificate may chain to.

use std::time::Duration;

use super::trust::CaFile;
use crate::netsuite::TokenUrl;

/// Timeouts and retry policy of a [`TokenClient`](super::TokenClient).
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Limit for establishing the TCP and TLS connection.
    pub connect_timeout: Duration,
    /// Limit for one attempt, from connecting to the last byte of the response.
    pub total_timeout: Duration,
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The wait before the second attempt; it doubles for each further one, with jitter.
    pub base_backoff: Duration,
    /// No computed wait exceeds this.
    pub max_backoff: Duration,
    /// A `Retry-After` up to this long is honoured; a longer one ends the retries.
    pub max_retry_after: Duration,
    /// Go through the `HTTPS_PROXY`/`HTTP_PROXY` of the environment (off for loopback http).
    pub use_proxy: bool,
    /// `--ca-file`: the only roots an https endpoint's certificate may chain to; without it,
    /// the operating system's roots.
    pub ca_file: Option<CaFile>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(30),
            max_attempts: 3,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
            use_proxy: true,
            max_retry_after: Duration::from_secs(60),
            ca_file: None,
        }
    }
}

impl ClientOptions {
    /// The defaults for requests to `token_url`: plain http is only ever loopback (`TokenUrl`
    /// refuses anything else), and loopback never goes through a proxy.
    pub fn for_endpoint(token_url: &TokenUrl) -> ClientOptions {
        ClientOptions {
            use_proxy: token_url.url().scheme() == "https",
            ..ClientOptions::default()
        }
    }
}
