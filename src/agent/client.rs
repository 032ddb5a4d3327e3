//! The client side: `token` and `exec` ask the agent named by `SUITEKEY_AUTH_SOCK` for a
//! profile's access token instead of signing themselves.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use crate::error::{EXIT_AGENT, EXIT_EXCHANGE, EXIT_PIN, EXIT_TOKEN, EXIT_USAGE};
use crate::exchange::{self, AccessToken};

/// Longer than the agent's own worst case: three attempts at the token endpoint.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Why the agent gave no token.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers on the socket.
    #[error(
        "cannot reach the suitekey agent at '{}' (named by SUITEKEY_AUTH_SOCK): {reason}; start it with 'suitekey agent', correct SUITEKEY_AUTH_SOCK, or pass --no-agent to sign here",
        .socket.display()
    )]
    Unreachable {
        /// The socket path.
        socket: PathBuf,
        /// What the connection attempt said.
        reason: String,
    },
    /// The agent answered with an error.
    #[error("the agent at '{}' could not give a token: {message}", .socket.display())]
    Refused {
        /// The socket path.
        socket: PathBuf,
        /// The agent's `error` code.
        code: String,
        /// The agent's explanation.
        message: String,
    },
    /// The answer was not what an agent sends.
    #[error("the agent at '{}' sent an unusable answer: {reason}; is it a suitekey agent?", .socket.display())]
    Protocol {
        /// The socket path.
        socket: PathBuf,
        /// What is wrong with the answer (never its body: it may hold a token).
        reason: String,
    },
}

impl ClientError {
    /// The exit status: what the agent reported maps to the code the command would have
    /// used itself (PIN 4, token 3, endpoint 6, profile 2); an unreachable agent is 7.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Refused { code, .. } => match code.as_str() {
                "unknown_profile" | "profile_config" | "bad_request" => EXIT_USAGE,
                "pin" => EXIT_PIN,
                "token" => EXIT_TOKEN,
                "upstream" => EXIT_EXCHANGE,
                _ => EXIT_AGENT,
            },
            ClientError::Unreachable { .. } | ClientError::Protocol { .. } => EXIT_AGENT,
        }
    }
}

/// `GET /v1/profiles/{profile}/token` on the agent at `socket`.
pub async fn fetch_token(socket: &Path, profile: &str) -> Result<AccessToken, ClientError> {
    let protocol = |reason: String| ClientError::Protocol {
        socket: socket.to_owned(),
        reason,
    };
    let unreachable = |e: &reqwest::Error| ClientError::Unreachable {
        socket: socket.to_owned(),
        reason: crate::error::chain(e),
    };
    exchange::install_crypto_provider();
    let http = reqwest::Client::builder()
        .unix_socket(socket)
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| protocol(crate::error::chain(&e)))?;
    let url = format!(
        "http://localhost/v1/profiles/{}/token",
        utf8_percent_encode(profile, NON_ALPHANUMERIC)
    );
    let mut response = http.get(url).send().await.map_err(|e| unreachable(&e))?;
    let status = response.status();
    // Whatever answers on the socket is read no further than a token endpoint would be.
    let body = exchange::read_capped(&mut response)
        .await
        .map_err(|e| protocol(crate::error::chain(&e)))?;
    if status.is_success() {
        return exchange::parse_success(&body, SystemTime::now()).map_err(protocol);
    }
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
        message: String,
    }
    let refusal: ErrorBody = serde_json::from_slice(&body)
        .map_err(|_| protocol(format!("HTTP {status} without a JSON error")))?;
    Err(ClientError::Refused {
        socket: socket.to_owned(),
        code: refusal.error,
        message: printable(&refusal.message),
    })
}

/// The agent's message as it may reach a terminal: no control characters (escape sequences
/// could rewrite what the user sees) and at most [`MAX_MESSAGE`] characters.
fn printable(message: &str) -> String {
    let mut shown: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE)
        .collect();
    if message.chars().count() > MAX_MESSAGE {
        shown.push_str(" (cut)");
    }
    shown
}

/// The longest agent message passed on: the agent's own are a few hundred characters.
const MAX_MESSAGE: usize = 2000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_messages_lose_control_characters_and_are_cut() {
        assert_eq!(printable("no\x1b[2Jkey\nhere"), "no [2Jkey here");
        let long = "x".repeat(MAX_MESSAGE + 10);
        let shown = printable(&long);
        assert!(
            shown.ends_with(" (cut)") && shown.len() == MAX_MESSAGE + 6,
            "{}",
            shown.len()
        );
        assert_eq!(printable("the profile is fine"), "the profile is fine");
    }

    #[test]
    fn agent_errors_keep_the_exit_codes_of_the_commands() {
        let refused = |code: &str| ClientError::Refused {
            socket: "/s".into(),
            code: code.into(),
            message: String::new(),
        };
        assert_eq!(refused("pin").exit_code(), EXIT_PIN);
        assert_eq!(refused("upstream").exit_code(), EXIT_EXCHANGE);
        assert_eq!(refused("unknown_profile").exit_code(), EXIT_USAGE);
        assert_eq!(refused("forbidden").exit_code(), EXIT_AGENT);
        let gone = ClientError::Unreachable {
            socket: "/run/x.sock".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(gone.exit_code(), EXIT_AGENT);
        let text = gone.to_string();
        assert!(
            text.contains("/run/x.sock") && text.contains("--no-agent"),
            "{text}"
        );
    }
}
