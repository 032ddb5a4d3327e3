//! The agent named by `SUITEKEY_AUTH_SOCK`, when set: who answers on the socket (the client's
//! peer check), and the profile's state there.

use std::path::Path;

use super::Report;
use crate::agent::{self, client};
use crate::cli::Cli;
use crate::report::chain;

pub(super) fn examine(cli: &Cli, report: &mut Report) {
    let Some(socket) = std::env::var_os(agent::SOCKET_ENV).filter(|s| !s.is_empty()) else {
        return report.skip(
            "agent",
            "SUITEKEY_AUTH_SOCK is not set: token and exec sign in their own process",
        );
    };
    let socket = Path::new(&socket);
    let answer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|runtime| {
            runtime
                .block_on(client::fetch_profiles(socket))
                .map_err(|e| chain(&e))
        });
    let profiles = match answer {
        Ok(profiles) => profiles,
        Err(detail) => {
            return report.fail(
                "agent",
                detail,
                "start the agent (suitekey agent, or systemctl --user start suitekey-agent), or unset SUITEKEY_AUTH_SOCK",
            );
        }
    };
    let shown = socket.display();
    let Some(name) = cli.profile.as_deref() else {
        return report.warn(
            "agent",
            format!("an agent answers on {shown}, but it serves named profiles"),
            "pass --profile NAME to check the one clients will ask for",
        );
    };
    let list = profiles["profiles"].as_array().cloned().unwrap_or_default();
    let Some(entry) = list.iter().find(|p| p["name"] == name) else {
        let known: Vec<&str> = list.iter().filter_map(|p| p["name"].as_str()).collect();
        return report.fail(
            "agent",
            format!(
                "the agent on {shown} does not serve profile '{name}' (it serves: {})",
                known.join(", ")
            ),
            format!("add [profiles.{name}] to the agent's config file and reload it (SIGHUP)"),
        );
    };
    let status = entry["status"].as_str().unwrap_or("unknown");
    let detail = format!("the agent on {shown} (its uid checked) serves '{name}': {status}");
    match status {
        "ok" => report.ok("agent", detail),
        "warning" => {
            let warnings: Vec<&str> = entry["warnings"]
                .as_array()
                .map(|w| w.iter().filter_map(|m| m.as_str()).collect())
                .unwrap_or_default();
            report.warn(
                "agent",
                format!("{detail}: {}", warnings.join("; ")),
                "see the warnings; the agent still serves tokens",
            )
        }
        _ => {
            let message = entry["error"]["message"]
                .as_str()
                .unwrap_or("no reason given");
            report.fail(
                "agent",
                format!("{detail}: {message}"),
                "fix what the message names, then reload the agent (SIGHUP)",
            )
        }
    }
}
