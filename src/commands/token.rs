//! `suitekey token`: an access token from NetSuite's token endpoint, for an assertion signed in
//! the token; also the first half of `exec`.

use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use crate::agent;
use crate::cli::{Cli, ProfileArgs, TokenArgs, TokenFormat};
use crate::error::Error;
use crate::exchange::{AccessToken, TokenClient};
use crate::netsuite::Lifetime;
use crate::pkcs11::uri::PinSource;

pub(super) fn run(cli: &Cli, args: &TokenArgs, out: &mut dyn Write) -> Result<(), Error> {
    let (token, _) = fetch(cli, &args.profile, args.no_agent)?;
    let secret = token.expose_secret();
    match args.format {
        TokenFormat::Raw => writeln!(out, "{secret}")?,
        TokenFormat::Header => writeln!(out, "Authorization: Bearer {secret}")?,
        TokenFormat::Env => writeln!(out, "NETSUITE_ACCESS_TOKEN={secret}")?,
        TokenFormat::Json => {
            let json = serde_json::json!({
                "access_token": secret,
                "token_type": token.token_type(),
                "expires_at": crate::cert::rfc3339(token.expires_at()),
                "expires_in": token.remaining().as_secs(),
            });
            writeln!(out, "{json}")?;
        }
    }
    Ok(())
}

/// Signs a fresh assertion in the token for each attempt and exchanges it for an access token,
/// or asks the agent named by `SUITEKEY_AUTH_SOCK` (unless `no_agent`). Also returns the
/// environment variable the key URI's PIN came from, if any.
pub(super) fn fetch(
    cli: &Cli,
    flags: &ProfileArgs,
    no_agent: bool,
) -> Result<(AccessToken, Option<String>), Error> {
    let socket = std::env::var_os(agent::SOCKET_ENV).filter(|s| !s.is_empty() && !no_agent);
    if let Some(socket) = socket {
        let name = agent_profile(cli, flags)?;
        return Ok((from_agent(Path::new(&socket), name)?, None));
    }
    let profile = super::profile(cli, flags)?;
    let context = profile.exchange_context()?;
    let request = profile.assertion_request(context.token_url.clone(), Lifetime::default());
    let signer = super::open_signer(&profile)?;
    super::warn_about_certificate(&signer, &profile);
    let client = TokenClient::new(profile.client_options(&context.token_url))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let token = runtime
        .block_on(client.fetch(&context, || {
            std::future::ready(request.sign(&signer, SystemTime::now()))
        }))
        .map_err(|e| Error::Exchange(Box::new(e)))?;
    tracing::info!(expires_at = %crate::cert::rfc3339(token.expires_at()), "access token received");
    let pin_env = match &profile.key.pin_source {
        Some(PinSource::Env(name)) => Some(name.clone()),
        _ => None,
    };
    Ok((token, pin_env))
}

/// The profile to ask the agent for: it serves profiles as its config defines them, so one
/// must be named and none of its fields overridden (`--module` aside: the agent has its own).
fn agent_profile<'a>(cli: &'a Cli, flags: &ProfileArgs) -> Result<&'a str, Error> {
    let Some(name) = cli.profile.as_deref() else {
        return Err(Error::Usage(format!(
            "{} is set, so the agent is asked, and it serves named profiles: pass --profile NAME, or --no-agent to sign here",
            agent::SOCKET_ENV
        )));
    };
    let overridden = flags.key.is_some()
        || flags.client_id.is_some()
        || flags.certificate_id.is_some()
        || flags.account.is_some()
        || flags.alg.is_some()
        || flags.scope.is_some()
        || flags.token_url.is_some()
        || flags.ca_file.is_some()
        || flags.timeout.is_some();
    if overridden {
        return Err(Error::Usage(format!(
            "the agent serves profile '{name}' as its config file defines it; drop the profile flags (and SUITEKEY_KEY, SUITEKEY_CLIENT_ID, … variables), or pass --no-agent to sign here"
        )));
    }
    Ok(name)
}

fn from_agent(socket: &Path, profile: &str) -> Result<AccessToken, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let token = runtime.block_on(agent::client::fetch_token(socket, profile))?;
    tracing::info!(expires_at = %crate::cert::rfc3339(token.expires_at()), socket = %socket.display(), "access token from the agent");
    Ok(token)
}
