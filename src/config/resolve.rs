//! Merging a profile: the file's table under flags and `SUITEKEY_*` variables, each value
//! checked, into one [`Profile`].

use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::schema::{
    ACCOUNT, ALG, CA_FILE, CERTIFICATE_ID, CLIENT_ID, Field, KEY, MODULE, SCOPE, TIMEOUT, TOKEN_URL,
};
use super::values::key_uri;
use super::{ConfigError, ProfileTable, RawArg, Refusal, Timeout};
use crate::exchange::{CaFile, ClientOptions, ExchangeContext};
use crate::jose::Alg;
use crate::netsuite::{
    self, AccountId, AssertionRequest, CertificateId, ClientId, Lifetime, Scopes, TokenUrl,
};
use crate::pkcs11::uri::KeyRef;

/// Values from flags and `SUITEKEY_*` variables (clap gives both); each one present wins over
/// the profile's.
#[derive(Clone, Debug, Default)]
pub struct ProfileOverrides {
    /// `--key` / `SUITEKEY_KEY`, as typed.
    pub key: Option<RawArg>,
    /// `--client-id` / `SUITEKEY_CLIENT_ID`.
    pub client_id: Option<ClientId>,
    /// `--certificate-id` / `SUITEKEY_CERTIFICATE_ID`.
    pub certificate_id: Option<CertificateId>,
    /// `--account` / `SUITEKEY_ACCOUNT`.
    pub account: Option<AccountId>,
    /// `--alg`.
    pub alg: Option<Alg>,
    /// `--scope`.
    pub scopes: Option<Scopes>,
    /// `--token-url` / `SUITEKEY_TOKEN_URL`, as typed.
    pub token_url: Option<RawArg>,
    /// `--module` / `SUITEKEY_MODULE`.
    pub module: Option<PathBuf>,
    /// `--ca-file` / `SUITEKEY_CA_FILE`.
    pub ca_file: Option<PathBuf>,
    /// `--timeout` / `SUITEKEY_TIMEOUT`.
    pub timeout: Option<Timeout>,
}

/// A complete, validated profile: everything a command needs to sign and exchange.
#[derive(Clone, Debug)]
pub struct Profile {
    /// The private key (never with a `pin-value`).
    pub key: KeyRef,
    /// The integration record's client id.
    pub client_id: ClientId,
    /// The certificate id NetSuite shows.
    pub certificate_id: CertificateId,
    /// The NetSuite account.
    pub account: AccountId,
    /// The algorithm, when given; otherwise the key's default.
    pub alg: Option<Alg>,
    /// The scopes to request (`restlets,rest_webservices` unless given).
    pub scopes: Scopes,
    /// An explicit token endpoint, when given.
    pub token_url: Option<TokenUrl>,
    /// The PKCS#11 module, when the key URI names none.
    pub module: Option<PathBuf>,
    /// The private CA the token endpoint's certificate must chain to, when given.
    pub ca_file: Option<CaFile>,
    /// The limit for one token request, when given.
    pub timeout: Option<Timeout>,
}

impl Profile {
    /// The token endpoint: the explicit one, else the account's.
    pub fn endpoint(&self) -> Result<TokenUrl, netsuite::Error> {
        match &self.token_url {
            Some(url) => Ok(url.clone()),
            None => self.account.token_url(),
        }
    }

    /// The client assertion this profile signs, sent to `token_url` and valid for `lifetime`.
    pub fn assertion_request(&self, token_url: TokenUrl, lifetime: Lifetime) -> AssertionRequest {
        AssertionRequest {
            client_id: self.client_id.clone(),
            certificate_id: self.certificate_id.clone(),
            token_url,
            scopes: self.scopes.clone(),
            lifetime,
        }
    }

    /// The HTTP client settings for this profile's endpoint: its CA file and timeout.
    pub fn client_options(&self, token_url: &TokenUrl) -> ClientOptions {
        let mut options = ClientOptions::for_endpoint(token_url);
        options.ca_file = self.ca_file.clone();
        if let Some(Timeout(limit)) = self.timeout {
            options.total_timeout = limit;
            options.connect_timeout = options.connect_timeout.min(limit);
        }
        options
    }

    /// What a token request made with this profile uses, for [`crate::exchange`]'s messages.
    pub fn exchange_context(&self) -> Result<ExchangeContext, netsuite::Error> {
        Ok(ExchangeContext {
            certificate_id: self.certificate_id.clone(),
            client_id: self.client_id.clone(),
            account: Some(self.account.clone()),
            scopes: self.scopes.clone(),
            token_url: self.endpoint()?,
        })
    }
}

/// Merges a profile from the file (if any) with flags and environment, which win, and
/// validates the result. Errors name the file, profile and field, or the flag.
pub fn resolve(
    file: Option<&ProfileTable>,
    flags: ProfileOverrides,
) -> Result<Profile, ConfigError> {
    let merge = Merge { file };
    let key = match flags.key {
        Some(raw) => key_uri(raw.as_str()).map_err(|e| flag_error(&KEY, e))?,
        None => merge.required(&KEY, key_uri)?,
    };
    let key = KeyRef::new(key).map_err(ConfigError::Key)?;
    let token_url_from_file = flags.token_url.is_none();
    let token_url: Option<TokenUrl> = match flags.token_url {
        Some(raw) => Some(parse(raw.as_str()).map_err(|e| flag_error(&TOKEN_URL, e))?),
        None => merge.optional(&TOKEN_URL, parse)?,
    };
    let account: AccountId = or_else(flags.account, || merge.required(&ACCOUNT, parse))?;
    if let (true, Some(url), Some(table)) = (token_url_from_file, &token_url, file) {
        account
            .check_token_url(url)
            .map_err(|e| merge.field_error(table, &TOKEN_URL, e))?;
    }
    let ca_file = match flags.ca_file {
        Some(path) => Some(CaFile::load(&path).map_err(|e| flag_error(&CA_FILE, e))?),
        None => merge.optional(&CA_FILE, |s| CaFile::load(&merge.relative_to_file(s)))?,
    };
    Ok(Profile {
        key,
        client_id: or_else(flags.client_id, || merge.required(&CLIENT_ID, parse))?,
        certificate_id: or_else(flags.certificate_id, || {
            merge.required(&CERTIFICATE_ID, parse)
        })?,
        account,
        alg: or_else(flags.alg.map(Some), || merge.optional(&ALG, parse))?,
        scopes: or_else(flags.scopes, || {
            merge.optional(&SCOPE, parse).map(Option::unwrap_or_default)
        })?,
        token_url,
        module: or_else(flags.module.map(Some), || {
            merge.optional(&MODULE, |s| Ok::<_, Refusal>(PathBuf::from(s)))
        })?,
        ca_file,
        timeout: or_else(flags.timeout.map(Some), || merge.optional(&TIMEOUT, parse))?,
    })
}

fn or_else<T>(
    flag: Option<T>,
    file: impl FnOnce() -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    match flag {
        Some(value) => Ok(value),
        None => file(),
    }
}

fn parse<T: FromStr>(s: &str) -> Result<T, T::Err> {
    s.parse()
}

fn flag_error<E: std::error::Error + Send + Sync + 'static>(field: &Field, e: E) -> ConfigError {
    ConfigError::Flag {
        flag: field.flag,
        source: Box::new(e),
    }
}

/// Reads fields from the profile table, if there is one.
struct Merge<'a> {
    file: Option<&'a ProfileTable>,
}

impl Merge<'_> {
    fn optional<T, E>(
        &self,
        field: &Field,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, ConfigError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let Some(table) = self.file else {
            return Ok(None);
        };
        let Some(text) = table.get(field) else {
            return Ok(None);
        };
        parse(text)
            .map(Some)
            .map_err(|e| self.field_error(table, field, e))
    }

    fn field_error<E>(&self, table: &ProfileTable, field: &Field, e: E) -> ConfigError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        ConfigError::Field {
            origin: table.origin.clone(),
            field: field.key,
            source: Box::new(e),
        }
    }

    /// A path from the file, relative to the file's directory unless absolute.
    fn relative_to_file(&self, path: &str) -> PathBuf {
        let dir = self
            .file
            .and_then(|t| t.origin.path.parent().map(Path::to_owned));
        match dir {
            Some(dir) => dir.join(path),
            None => PathBuf::from(path),
        }
    }

    fn required<T, E>(
        &self,
        field: &Field,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<T, ConfigError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        self.optional(field, parse)?
            .ok_or_else(|| ConfigError::Missing {
                origin: self.file.map(|t| t.origin.clone()),
                field: field.key,
                flag: field.flag,
                env: field.env,
            })
    }
}
