//! `suitekey agent`: serve every profile of the config file on a Unix socket (see
//! [`crate::agent`]).

use std::io::Write;

use crate::agent::{self, Options};
use crate::cli::{AgentArgs, Cli};
use crate::error::Error;

pub(super) fn run(cli: &Cli, args: &AgentArgs, out: &mut dyn Write) -> Result<(), Error> {
    if let Some(name) = &cli.profile {
        return Err(Error::Usage(format!(
            "--profile '{name}' (or SUITEKEY_PROFILE) is for clients: the agent serves every profile of its config file"
        )));
    }
    let options = Options {
        config: cli.config.clone(),
        socket: args.socket.clone(),
        allow_uids: args.allow_uids.clone(),
        module: args.module.path.clone(),
        open: super::open_signer_with,
        drain_timeout: std::time::Duration::from_secs(args.drain_timeout),
        sign_timeout: std::time::Duration::from_secs(args.sign_timeout),
        rotation: agent::rotations::Settings {
            check_interval: std::time::Duration::from_secs(args.rotation_check_interval),
            retry: std::time::Duration::from_secs(args.rotation_retry),
        },
    };
    agent::run(options, out)?;
    Ok(())
}
