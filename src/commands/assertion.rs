//! `suitekey assertion`: sign one client assertion in the token and print it.

use std::io::Write;
use std::time::SystemTime;

use crate::cli::AssertionArgs;
use crate::error::Error;
use crate::netsuite::AssertionRequest;
use crate::pkcs11::KeySigner;

pub(super) fn run(args: &AssertionArgs, out: &mut dyn Write) -> Result<(), Error> {
    let profile = &args.profile;
    let uri = super::key_uri(&profile.key)?;
    let request = AssertionRequest {
        client_id: profile.client_id.clone(),
        certificate_id: profile.certificate_id.clone(),
        token_url: profile
            .token_url
            .clone()
            .unwrap_or_else(|| profile.account.token_url()),
        scopes: profile.scope.clone(),
        lifetime: args.lifetime,
    };
    let signer = KeySigner::open(&uri, profile.module.as_deref(), profile.alg)?;
    let assertion = request.sign(&signer, SystemTime::now())?;
    tracing::info!(jti = %assertion.jti, exp = assertion.expires_at, aud = %request.token_url, "client assertion signed");
    writeln!(out, "{}", assertion.jws)?;
    Ok(())
}
