//! `suitekey token`: an access token from NetSuite's token endpoint, for an assertion signed in
//! the token; also the first half of `exec`.

use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use crate::agent;
use crate::cli::{Cli, ProfileArgs, TokenArgs, TokenFormat};
use crate::config::Profile;
use crate::error::Error;
use crate::exchange::{AccessToken, TokenClient};
use crate::jose::SigningError;
use crate::netsuite::Lifetime;
use crate::pkcs11::uri::PinSource;

pub(super) fn run(cli: &Cli, args: &TokenArgs, out: &mut dyn Write) -> Result<(), Error> {
    let (token, _) = fetch(cli, &args.profile, args.no_agent, false)?;
    let secret = token.expose_secret();
    match args.format {
        TokenFormat::Raw => writeln!(out, "{secret}")?,
        TokenFormat::Header => writeln!(out, "Authorization: Bearer {secret}")?,
        TokenFormat::Env => writeln!(out, "NETSUITE_ACCESS_TOKEN={}", ShellQuoted(secret))?,
        TokenFormat::CurlConfig => writeln!(
            out,
            "header = \"Authorization: Bearer {}\"",
            CurlEscaped(secret)
        )?,
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

/// A word for a POSIX shell, single-quoted: `eval` of `NAME=<word>` assigns exactly the text
/// (no expansion, not even the `~` an unquoted assignment expands). An access token never
/// holds a quote (RFC 6750 syntax, checked on receipt); quoting anyway means no token can make
/// `eval "$(suitekey token --format env)"` run text of the server's choosing. Written
/// piecewise, so the token is not copied into another buffer.
struct ShellQuoted<'a>(&'a str);

impl std::fmt::Display for ShellQuoted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("'")?;
        for (i, part) in self.0.split('\'').enumerate() {
            if i > 0 {
                // Close the quotes, a quoted quote, open them again.
                f.write_str(r"'\''")?;
            }
            f.write_str(part)?;
        }
        f.write_str("'")
    }
}

/// Text for inside a double-quoted curl config value, where curl reads `\\` and `\"` as
/// escapes (and would end the value at a bare `"`). Written piecewise, like [`ShellQuoted`].
struct CurlEscaped<'a>(&'a str);

impl std::fmt::Display for CurlEscaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for piece in self.0.split_inclusive(['\\', '"']) {
            match piece.char_indices().last() {
                Some((i, c @ ('\\' | '"'))) => write!(f, "{}\\{c}", &piece[..i])?,
                _ => f.write_str(piece)?,
            }
        }
        Ok(())
    }
}

/// Signs a fresh assertion in the token for each attempt and exchanges it for an access token,
/// or asks the agent named by `SUITEKEY_AUTH_SOCK` (unless `no_agent`). With `want_pin_env`, also
/// returns the environment variable the profile's key URI takes its PIN from
/// (`pin-source=env:NAME`), if any: `exec` keeps it from the command on both paths. `token`
/// does not ask, so through the agent it reads no config file at all.
pub(super) fn fetch(
    cli: &Cli,
    flags: &ProfileArgs,
    no_agent: bool,
    want_pin_env: bool,
) -> Result<(AccessToken, Option<String>), Error> {
    let socket = std::env::var_os(agent::SOCKET_ENV).filter(|s| !s.is_empty() && !no_agent);
    if let Some(socket) = socket {
        let name = agent_profile(cli, flags)?;
        let token = from_agent(Path::new(&socket), name)?;
        let pin_env = want_pin_env
            .then(|| agent_profile_pin_env(cli, flags))
            .flatten();
        return Ok((token, pin_env));
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
            std::future::ready(
                request
                    .sign(&signer, SystemTime::now())
                    .map_err(SigningError::new),
            )
        }))
        .map_err(|e| Error::Exchange(Box::new(e)))?;
    tracing::info!(expires_at = %crate::cert::rfc3339(token.expires_at()), "access token received");
    Ok((token, pin_env(&profile)))
}

/// The variable `profile`'s key URI reads the PIN from, if it names one.
fn pin_env(profile: &Profile) -> Option<String> {
    match &profile.key.pin_source {
        Some(PinSource::Env(name)) => Some(name.clone()),
        _ => None,
    }
}

/// [`pin_env`] of a profile the agent serves, as the config file read here defines it: the
/// user who started the agent with `pin-source=env:NAME` likely has NAME set in this shell too.
/// The agent answers without this process reading any config, so a config that cannot be read
/// here only means that no such variable is known (`SUITEKEY_PIN` is dropped regardless).
fn agent_profile_pin_env(cli: &Cli, flags: &ProfileArgs) -> Option<String> {
    match super::profile(cli, flags) {
        Ok(profile) => pin_env(&profile),
        Err(e) => {
            tracing::debug!("no PIN variable known for the agent's profile: {e}");
            None
        }
    }
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
    if flags.changes_the_profile() {
        return Err(Error::Usage(format!(
            "the agent serves profile '{name}' as its config file defines it; drop the profile flags (and SUITEKEY_KEY, SUITEKEY_CLIENT_ID, … variables), or pass --no-agent to sign here"
        )));
    }
    Ok(name)
}

fn from_agent(socket: &Path, profile: &str) -> Result<AccessToken, Error> {
    // One connection and one request: no timer wheel beyond the client's timeout, no threads.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(Error::Runtime)?;
    let token = runtime.block_on(agent::client::fetch_token(socket, profile))?;
    tracing::info!(expires_at = %crate::cert::rfc3339(token.expires_at()), socket = %socket.display(), "access token from the agent");
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_output_is_one_shell_word_and_curl_config_values_are_escaped() {
        let shell = |s: &str| ShellQuoted(s).to_string();
        assert_eq!(shell("abc.DEF-_~+/=="), "'abc.DEF-_~+/=='");
        assert_eq!(shell("~root"), "'~root'");
        assert_eq!(shell("x;touch /tmp/p;"), "'x;touch /tmp/p;'");
        assert_eq!(shell("it's"), r"'it'\''s'");
        assert_eq!(shell(""), "''");
        // A real shell assigns exactly the text, whatever it holds.
        let hostile = r#"a'$(id)`x`\"~ b;c"#;
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("v={}; printf %s \"$v\"", shell(hostile)))
            .output()
            .expect("sh");
        assert_eq!(String::from_utf8_lossy(&out.stdout), hostile);

        let curl = |s: &str| CurlEscaped(s).to_string();
        assert_eq!(curl("abc.DEF-_~+/=="), "abc.DEF-_~+/==");
        assert_eq!(curl(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(curl(r#"\""#), r#"\\\""#);
    }
}
