//! The profiles the agent serves: every `[profiles.NAME]` of the config file, each opened once
//! (key found, PIN read and logged in) with a signing worker and a token cache. A profile that
//! cannot be opened is served as failed, with its error, and the others work normally.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::Error;
use super::cache::{Failure, Fetcher, TokenCache};
use super::logins::Logins;
use super::metrics::ProfileMetrics;
use super::signers::{Opener, SignerHandle};
use crate::cert::{Certificate, Finding, Severity, StoredWithKey};
use crate::config::{self, Config, Profile, ProfileOverrides, ProfileTable, RotateBeforeDays};
use crate::exchange::TokenClient;
use crate::jose::Alg;
use crate::kind::{HasKind, Kind};
use crate::netsuite::{CertificateId, Lifetime};
use crate::report::chain;

/// How the agent was started.
pub struct Options {
    /// `--config`, else the default config file.
    pub config: Option<PathBuf>,
    /// `--socket`, else `$XDG_RUNTIME_DIR/suitekey/agent.sock`.
    pub socket: Option<PathBuf>,
    /// Other users allowed to connect (`--allow-uid`; the config's `[agent] allowed-uids` adds to them).
    pub allow_uids: Vec<u32>,
    /// `--module` / `SUITEKEY_MODULE`, for key URIs that name no module.
    pub module: Option<PathBuf>,
    /// How a profile's key is opened.
    pub open: Opener,
    /// How long SIGINT/SIGTERM waits for the requests in flight before the agent exits anyway.
    pub drain_timeout: std::time::Duration,
    /// How long a request waits for its signature (a key waiting for a touch).
    pub sign_timeout: std::time::Duration,
    /// When the certificates of `rotate-before-days` profiles are checked, and how a failed
    /// rotation is retried.
    pub rotation: super::rotations::Settings,
}

/// The profiles being served, by name.
pub type ProfileMap = BTreeMap<String, Arc<Served>>;

/// A profile in service (or failed, with the reason).
pub struct Served {
    /// The profile's name.
    pub name: String,
    table: ProfileTable,
    /// Its counters.
    pub metrics: Arc<ProfileMetrics>,
    /// The key URI, without secrets, once the profile resolved.
    pub key: Option<String>,
    /// The algorithm it signs with, once known.
    pub alg: Option<Alg>,
    /// The certificate id it sends as `kid`.
    pub certificate_id: Option<CertificateId>,
    /// The certificate with that id, when the token holds it (for its expiry).
    pub certificate: Option<Certificate>,
    /// `rotate-before-days`, once the profile resolved: the agent rotates its certificate.
    pub rotate_before_days: Option<RotateBeforeDays>,
    /// The certificates stored with the key, checked against the certificate id.
    stored: StoredWithKey,
    /// Its token cache, or why it has none.
    pub state: Result<Active, Failure>,
}

/// How a profile is doing, as `/v1/profiles` and `/v1/health` report it.
#[derive(Clone, Debug)]
pub struct Status {
    /// `ok`, `warning` or `failed`.
    pub status: &'static str,
    /// Why it failed: an `error` code and the explanation.
    pub error: Option<(&'static str, String)>,
    /// What needs attention, though tokens may still be had.
    pub warnings: Vec<String>,
}

impl Served {
    /// The profile's table in the config file, as it was when the profile was opened.
    pub fn table(&self) -> &ProfileTable {
        &self.table
    }

    /// Why the profile gives no (new) tokens: it could not be opened, a refused PIN stopped
    /// its signer since, or its key is lost (until it is found again).
    pub fn failure(&self) -> Option<Failure> {
        match &self.state {
            Err(f) => Some(f.clone()),
            Ok(active) => active
                .cache
                .stopped()
                .or_else(|| active.cache.token_failure())
                .or_else(|| active.cache.refusal()),
        }
    }

    /// Whether a reload must open the profile again: it could not be opened, a refused PIN
    /// stopped it, or its token failed (then it is kept should the new open fail too: its
    /// signer keeps looking for a lost key by itself).
    fn needs_reopen(&self) -> bool {
        match &self.state {
            Err(_) => true,
            Ok(active) => {
                active.cache.stopped().is_some() || active.cache.token_failure().is_some()
            }
        }
    }

    /// Whether the profile still serves, though its token failed: worth keeping when a reload
    /// cannot open it anew.
    fn token_failed_only(&self) -> bool {
        matches!(&self.state, Ok(active) if active.cache.stopped().is_none() && active.cache.token_failure().is_some())
    }

    /// Days until the profile's certificate expires, when the token holds it.
    pub fn certificate_days_left(&self, now: SystemTime) -> Option<i64> {
        self.certificate.as_ref().map(|c| c.days_left(now))
    }

    /// What is wrong at `now` with the certificate stored with the key, for this profile's
    /// certificate id (see [`StoredWithKey::check`]).
    pub fn certificate_findings(&self, now: SystemTime) -> Vec<Finding> {
        self.certificate_id
            .as_ref()
            .map_or_else(Vec::new, |id| self.stored.check(id, now))
    }

    /// The profile's status at `now`: failed when it gives no (new) tokens, or when NetSuite
    /// will refuse its certificate (error `certificate`); warning when the certificate needs
    /// attention; else ok.
    pub fn status(&self, now: SystemTime) -> Status {
        let mut error = self.failure().map(|f| (f.kind.name(), f.message));
        let mut warnings = Vec::new();
        for finding in self.certificate_findings(now) {
            match finding.severity {
                Severity::Failed if error.is_none() => {
                    error = Some((Kind::Unfit.name(), finding.message));
                }
                _ => warnings.push(finding.message),
            }
        }
        let status = match (&error, warnings.is_empty()) {
            (Some(_), _) => "failed",
            (None, false) => "warning",
            (None, true) => "ok",
        };
        Status {
            status,
            error,
            warnings,
        }
    }
}

/// A working profile: its cache, and the renewal task that is stopped with it.
pub struct Active {
    /// The token cache.
    pub cache: Arc<TokenCache>,
    renewal: tokio::task::AbortHandle,
}

impl Drop for Active {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

/// The config file the agent serves: `--config`, else the default one, which must exist.
pub fn load_config(path: Option<&Path>) -> Result<Config, Error> {
    Config::open(path)?.ok_or_else(|| {
        Error::NoConfig(Config::default_path().map_or_else(
            || "~/.config/suitekey/config.toml".into(),
            |p| p.display().to_string(),
        ))
    })
}

/// Opens every profile of `config`, reusing those of `previous` that are unchanged and working
/// (their sessions and cached tokens survive a reload). Blocking: PINs may be prompted for.
///
/// Failed profiles are opened again, which reads their PIN source again: a PIN the token
/// refused is not sent to it again (the PKCS#11 layer remembers it), so a profile stopped by a
/// wrong PIN stays failed until its source gives another PIN.
pub fn open_all(
    config: &Config,
    previous: &ProfileMap,
    options: &Options,
    logins: &Arc<Logins>,
    runtime: &tokio::runtime::Handle,
) -> ProfileMap {
    let mut tables = Vec::new();
    for name in config.profile_names() {
        match config.profile(name) {
            Ok(table) => tables.push((name, table)),
            Err(e) => tracing::error!(profile = name, "profile skipped: {}", chain(&e)),
        }
    }
    let kept: Vec<(&str, &Arc<Served>)> = tables
        .iter()
        .filter_map(|(name, table)| {
            let prev = previous.get(*name)?;
            let working = !prev.needs_reopen() && !logins.refused(name);
            (prev.table == **table && working).then_some((*name, prev))
        })
        .collect();
    let fallback = |name: &str, table: &ProfileTable| {
        previous.get(name).filter(|prev| {
            prev.table == *table && prev.token_failed_only() && !logins.refused(name)
        })
    };
    logins.keep_only(|name| {
        kept.iter().any(|(n, _)| *n == name)
            || tables
                .iter()
                .any(|(n, t)| *n == name && fallback(n, t).is_some())
    });
    let mut served = ProfileMap::new();
    for (name, table) in tables {
        let entry = match kept.iter().find(|(n, _)| *n == name) {
            Some((_, prev)) => {
                // A reload is how a user says "fixed, try again": a refusal's long wait ends.
                if let Ok(active) = &prev.state {
                    active.cache.retry_now();
                }
                Arc::clone(prev)
            }
            None => {
                let opened = open_one(name, table, Arc::default(), options, logins, runtime);
                match fallback(name, table) {
                    Some(prev) if opened.state.is_err() => Arc::clone(prev),
                    _ => Arc::new(opened),
                }
            }
        };
        served.insert(name.to_owned(), entry);
    }
    served
}

/// Waits, at most `limit`, for the first access token of `served` (just opened): what a
/// profile opened anew needs before it takes the place of one that serves. Why it has none.
pub async fn first_token(served: &Served, limit: std::time::Duration) -> Result<(), String> {
    let active = served.state.as_ref().map_err(|f| f.message.clone())?;
    match tokio::time::timeout(limit, active.cache.get()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(unavailable)) => Err(unavailable.failure.message.clone()),
        Err(_) => Err(format!("no access token within {} s", limit.as_secs())),
    }
}

/// Opens profile `name` anew from `table`, as a reload does for a changed profile, keeping the
/// counters of `previous` (the same profile, before a rotation switched its key) and logging
/// in with the credential its token's profiles share (no PIN source is read again while one of
/// them holds it). Blocking.
pub fn reopen(
    name: &str,
    table: &ProfileTable,
    previous: &Served,
    options: &Options,
    (logins, runtime): (&Arc<Logins>, &tokio::runtime::Handle),
) -> Served {
    let metrics = Arc::clone(&previous.metrics);
    open_one(name, table, metrics, options, logins, runtime)
}

fn open_one(
    name: &str,
    table: &ProfileTable,
    metrics: Arc<ProfileMetrics>,
    options: &Options,
    logins: &Arc<Logins>,
    runtime: &tokio::runtime::Handle,
) -> Served {
    let mut served = Served {
        name: name.to_owned(),
        table: table.clone(),
        metrics,
        key: None,
        alg: None,
        certificate_id: None,
        certificate: None,
        rotate_before_days: None,
        stored: StoredWithKey::default(),
        state: Err(Failure {
            kind: Kind::Usage,
            message: "not opened yet".into(),
        }),
    };
    let overrides = ProfileOverrides {
        module: options.module.clone(),
        ..ProfileOverrides::default()
    };
    served.state = config::resolve(Some(table), overrides)
        .map_err(|e| failure(&e))
        .and_then(|profile| activate(&mut served, &profile, options, logins, runtime));
    match &served.state {
        Ok(_) => tracing::info!(profile = name, "profile ready"),
        Err(f) => tracing::error!(profile = name, "profile not served: {}", f.message),
    }
    served
}

fn failure(e: &(impl std::error::Error + HasKind)) -> Failure {
    Failure {
        kind: e.kind(),
        message: chain(e),
    }
}

fn activate(
    served: &mut Served,
    profile: &Profile,
    options: &Options,
    logins: &Arc<Logins>,
    runtime: &tokio::runtime::Handle,
) -> Result<Active, Failure> {
    served.key = Some(profile.key.redacted());
    served.certificate_id = Some(profile.certificate_id.clone());
    served.rotate_before_days = profile.rotate_before_days;
    served.alg = profile.alg;
    let context = profile.exchange_context().map_err(|e| failure(&e))?;
    let (logins, name, uri) = (Arc::clone(logins), served.name.clone(), profile.key.clone());
    let login = Box::new(move |token: &crate::pkcs11::Token| logins.credential(&name, &uri, token));
    let (signer, opened) = SignerHandle::spawn(
        &served.name,
        profile.clone(),
        (options.open, login),
        Arc::clone(&served.metrics),
    )
    .map_err(|e| match failure(&e) {
        // A key that cannot be opened is its PIN's or its config's fault, else its token's.
        f @ Failure {
            kind: Kind::Pin | Kind::Usage,
            ..
        } => f,
        f => Failure {
            kind: Kind::Token,
            ..f
        },
    })?;
    let signer = signer.answer_within(options.sign_timeout);
    served.alg = Some(opened.alg);
    served.certificate = opened.certificate;
    served.stored = opened.stored;
    for finding in served.certificate_findings(SystemTime::now()) {
        match finding.severity {
            Severity::Failed => tracing::error!(profile = %served.name, "{}", finding.message),
            Severity::Warning => tracing::warn!(profile = %served.name, "{}", finding.message),
        }
    }
    let client =
        TokenClient::new(profile.client_options(&context.token_url)).map_err(|e| failure(&e))?;
    let request = profile.assertion_request(context.token_url.clone(), Lifetime::default());
    let cache = Arc::new(TokenCache::new(Fetcher {
        name: served.name.clone(),
        client,
        context,
        request,
        signer,
        metrics: Arc::clone(&served.metrics),
    }));
    let renewal = runtime
        .spawn(Arc::clone(&cache).keep_fresh())
        .abort_handle();
    Ok(Active { cache, renewal })
}
