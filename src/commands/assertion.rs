//! `suitekey assertion`: sign one client assertion in the token and print it.

use std::io::Write;
use std::time::SystemTime;

use crate::cli::{AssertionArgs, Cli};
use crate::error::Error;

pub(super) fn run(cli: &Cli, args: &AssertionArgs, out: &mut dyn Write) -> Result<(), Error> {
    let profile = super::profile(cli, &args.profile)?;
    let request = profile.assertion_request(profile.endpoint()?, args.lifetime);
    let signer = super::open_signer(&profile)?;
    super::warn_about_certificate(&signer, &profile);
    let assertion = request.sign(&signer, SystemTime::now())?;
    tracing::info!(jti = %assertion.jti, exp = assertion.expires_at, aud = %request.token_url, "client assertion signed");
    writeln!(out, "{}", assertion.jws)?;
    Ok(())
}
