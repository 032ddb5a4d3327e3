//! What the steps talk to: the profile's token endpoint and certificates API (each call run to
//! completion on one small runtime of the rotation's own), and the keys of its token — the
//! old and the new one, each opened once per run and logged in with one credential, so a PIN
//! typed at a prompt is asked for once — with the access token each gets.

use std::sync::Arc;

use super::error::StepError;
use super::plan::Plan;
use crate::config::Profile;
use crate::exchange::{
    AccessToken, ApiError, CertificatesClient, ExchangeContext, ExchangeError, TokenClient,
};
use crate::jose::{Alg, Signer as _, SigningError};
use crate::netsuite::{
    self, CertificateId, Lifetime, ListedCertificate, Scope, Scopes, TokenUrl, Upload,
};
use crate::pkcs11::uri::KeyRef;
use crate::pkcs11::{Credential, Key, KeySigner, Token};

/// The rotation's connections to NetSuite and to the token.
pub(super) struct Context {
    /// The profile as resolved for this run.
    pub(super) profile: Profile,
    runtime: tokio::runtime::Runtime,
    tokens: TokenClient,
    api: CertificatesClient,
    token_url: TokenUrl,
    /// The profile's scopes and `rest_webservices`, which the certificates API needs.
    scopes: Scopes,
    /// The credential given, else the one the first key opened logged in with, for every
    /// other key.
    credential: Option<Arc<Credential>>,
    old: Option<(KeySigner, Option<AccessToken>)>,
    new: Option<(KeySigner, Option<AccessToken>)>,
}

/// Which of the two keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Which {
    /// The key the profile used.
    Old,
    /// The key the rotation made.
    New,
}

impl Context {
    /// Connections for `profile`: its token URL, its certificates API, its timeouts and trust;
    /// every key is opened with `credential` when given (see [`super::Request::credential`]).
    pub(super) fn new(
        profile: Profile,
        credential: Option<Arc<Credential>>,
    ) -> Result<Context, StepError> {
        let token_url = profile.endpoint()?;
        let options = profile.client_options(&token_url);
        let api = CertificatesClient::new(
            profile.certificates_endpoint()?,
            profile.client_id.clone(),
            options.clone(),
        )?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(StepError::Runtime)?;
        Ok(Context {
            scopes: profile.scopes.clone().with(Scope::RestWebservices),
            tokens: TokenClient::new(options)?,
            api,
            token_url,
            runtime,
            profile,
            credential,
            old: None,
            new: None,
        })
    }

    /// Where the certificates API is, for messages.
    pub(super) fn api_url(&self) -> String {
        self.api.base().to_string()
    }

    /// Opens the private key `key` and a signer for `alg` (else the key's own algorithm),
    /// logging in with the credential of the key opened before, if any.
    pub(super) fn open_key(
        &mut self,
        key: &KeyRef,
        alg: Option<Alg>,
    ) -> Result<KeySigner, StepError> {
        let shared = self.credential.clone();
        let credential_for = |token: &Token| match &shared {
            Some(credential) => Ok(Arc::clone(credential)),
            None => token.credential(key.uri()).map(Arc::new),
        };
        let opened = Key::open_with(key, self.profile.module.as_deref(), &credential_for)?;
        self.signer(opened, alg)
    }

    /// A signer for a key just opened or made: for `alg` (checked against NetSuite's rules
    /// and the key) or the key's own algorithm.
    pub(super) fn signer(&mut self, key: Key, alg: Option<Alg>) -> Result<KeySigner, StepError> {
        let kind = key.kind();
        let alg = match alg {
            Some(alg) => netsuite::check_alg(alg, &kind).map(|()| alg),
            None => netsuite::default_alg(&kind),
        }
        .map_err(|source| StepError::KeyRefused {
            key: key.uri().to_owned(),
            source,
        })?;
        let signer = key.signer(alg)?;
        self.credential
            .get_or_insert_with(|| signer.shared_credential());
        Ok(signer)
    }

    /// The credential for making a key in the token: the one a key was opened with.
    pub(super) fn credential(&self) -> Option<Arc<Credential>> {
        self.credential.clone()
    }

    /// Keeps `signer` (and an access token it got) as the `which` key of this run.
    pub(super) fn keep(&mut self, which: Which, signer: KeySigner, token: Option<AccessToken>) {
        *self.slot(which) = Some((signer, token));
    }

    /// The `which` key, opened as the plan names it when it is not yet.
    pub(super) fn key(&mut self, which: Which, plan: &Plan) -> Result<&KeySigner, StepError> {
        if self.slot(which).is_none() {
            let (key, alg) = match which {
                Which::Old => (plan.old_key_ref()?, plan.old_alg),
                Which::New => (plan.new_key_ref()?, Some(plan.alg)),
            };
            let signer = self.open_key(&key, alg)?;
            self.keep(which, signer, None);
        }
        match self.slot(which) {
            Some((signer, _)) => Ok(signer),
            None => Err(StepError::token("the key was not kept")),
        }
    }

    /// An access token of the `which` key with certificate id `kid`: the one kept, else a
    /// new one (see [`Context::renew_token`]).
    pub(super) fn token(
        &mut self,
        which: Which,
        plan: &Plan,
        kid: &CertificateId,
    ) -> Result<&AccessToken, StepError> {
        if !matches!(self.slot(which), Some((_, Some(_)))) {
            self.renew_token(which, plan, kid)?;
        }
        match self.slot(which) {
            Some((_, Some(token))) => Ok(token),
            _ => Err(StepError::token("the access token was not kept")),
        }
    }

    /// Gets a new access token for the `which` key with certificate id `kid`, and keeps it
    /// in place of any kept before.
    pub(super) fn renew_token(
        &mut self,
        which: Which,
        plan: &Plan,
        kid: &CertificateId,
    ) -> Result<(), StepError> {
        self.key(which, plan)?;
        let Some((signer, _)) = self.slot(which).take() else {
            return Err(StepError::token("the key was not kept"));
        };
        let (token, outcome) = match self.fetch_with(&signer, kid) {
            Ok(token) => (Some(token), Ok(())),
            Err(e) => (None, Err(StepError::from(e))),
        };
        *self.slot(which) = Some((signer, token));
        outcome
    }

    /// A fresh access token for `signer` with certificate id `kid`, asking for the profile's
    /// scopes and `rest_webservices`; the token client retries what may pass.
    pub(super) fn fetch_with(
        &self,
        signer: &KeySigner,
        kid: &CertificateId,
    ) -> Result<AccessToken, ExchangeError> {
        let context = ExchangeContext {
            certificate_id: kid.clone(),
            client_id: self.profile.client_id.clone(),
            account: Some(self.profile.account.clone()),
            scopes: self.scopes.clone(),
            token_url: self.token_url.clone(),
        };
        let mut request = self
            .profile
            .assertion_request(self.token_url.clone(), Lifetime::default());
        request.certificate_id = kid.clone();
        request.scopes = self.scopes.clone();
        tracing::debug!(key = signer.uri(), alg = %signer.alg(), %kid, "requesting an access token");
        self.runtime.block_on(self.tokens.fetch(&context, || {
            std::future::ready(
                request
                    .sign(signer, std::time::SystemTime::now())
                    .map_err(SigningError::new),
            )
        }))
    }

    /// The integration's certificates, listed with `token`.
    pub(super) fn list(&self, token: &AccessToken) -> Result<Vec<ListedCertificate>, StepError> {
        Ok(self.runtime.block_on(self.api.list(token))?)
    }

    /// Runs `call` with the `which` key's access token (see [`Context::token`]).
    fn with_token<T>(
        &mut self,
        which: Which,
        plan: &Plan,
        kid: &CertificateId,
        call: impl FnOnce(&Context, &AccessToken) -> T,
    ) -> Result<T, StepError> {
        self.token(which, plan, kid)?;
        let Some((signer, Some(token))) = self.slot(which).take() else {
            return Err(StepError::token("the access token was not kept"));
        };
        let out = call(self, &token);
        *self.slot(which) = Some((signer, Some(token)));
        Ok(out)
    }

    /// The integration's certificates, listed with the `which` key's token.
    pub(super) fn list_as(
        &mut self,
        which: Which,
        plan: &Plan,
        kid: &CertificateId,
    ) -> Result<Vec<ListedCertificate>, StepError> {
        self.with_token(which, plan, kid, |ctx, token| ctx.list(token))?
    }

    /// Uploads a certificate with the `which` key's token.
    pub(super) fn upload_as(
        &mut self,
        which: Which,
        plan: &Plan,
        kid: &CertificateId,
        upload: &Upload<'_>,
    ) -> Result<Result<Option<CertificateId>, ApiError>, StepError> {
        self.with_token(which, plan, kid, |ctx, token| {
            ctx.runtime.block_on(ctx.api.upload(token, upload))
        })
    }

    /// Revokes the certificate `id` with the `which` key's token.
    pub(super) fn revoke_as(
        &mut self,
        which: Which,
        plan: &Plan,
        kid: &CertificateId,
        id: &CertificateId,
    ) -> Result<Result<(), ApiError>, StepError> {
        self.with_token(which, plan, kid, |ctx, token| {
            ctx.runtime.block_on(ctx.api.revoke(token, id))
        })
    }

    fn slot(&mut self, which: Which) -> &mut Option<(KeySigner, Option<AccessToken>)> {
        match which {
            Which::Old => &mut self.old,
            Which::New => &mut self.new,
        }
    }
}
