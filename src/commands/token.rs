//! `suitekey token`: an access token from NetSuite's token endpoint, for an assertion signed in
//! the token; also the first half of `exec`.

use std::io::Write;
use std::time::SystemTime;

use crate::cli::{Cli, ProfileArgs, TokenArgs, TokenFormat};
use crate::error::Error;
use crate::exchange::{AccessToken, ClientOptions, TokenClient};
use crate::netsuite::{AssertionRequest, Lifetime};
use crate::pkcs11::uri::PinSource;

pub(super) fn run(cli: &Cli, args: &TokenArgs, out: &mut dyn Write) -> Result<(), Error> {
    let (token, _) = fetch(cli, &args.profile)?;
    let now = SystemTime::now();
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
                "expires_in": token.expires_in(now).as_secs(),
            });
            writeln!(out, "{json}")?;
        }
    }
    Ok(())
}

/// Signs a fresh assertion in the token for each attempt and exchanges it for an access token.
/// Also returns the environment variable the key URI's PIN came from, if any.
pub(super) fn fetch(
    cli: &Cli,
    flags: &ProfileArgs,
) -> Result<(AccessToken, Option<String>), Error> {
    let profile = super::profile(cli, flags)?;
    let context = profile.exchange_context()?;
    let request = AssertionRequest {
        client_id: profile.client_id.clone(),
        certificate_id: profile.certificate_id.clone(),
        token_url: context.token_url.clone(),
        scopes: profile.scopes.clone(),
        lifetime: Lifetime::default(),
    };
    let signer = super::open_signer(&profile)?;
    let client = TokenClient::new(ClientOptions {
        // Plain http is only ever loopback (TokenUrl refuses anything else): never via a proxy.
        use_proxy: context.token_url.url().scheme() == "https",
        ..ClientOptions::default()
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let token = runtime
        .block_on(client.fetch(&context, || request.sign(&signer, SystemTime::now())))
        .map_err(|e| Error::Exchange(Box::new(e)))?;
    tracing::info!(expires_at = %crate::cert::rfc3339(token.expires_at()), "access token received");
    let pin_env = match &profile.key.pin_source {
        Some(PinSource::Env(name)) => Some(name.clone()),
        _ => None,
    };
    Ok((token, pin_env))
}
