//! The client assertion: the validated request (client id, certificate id, token URL, scopes,
//! lifetime), its JWS header and claims, and signing it.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::Error;
use super::account::TokenUrl;
use super::certificate::CertificateId;
use super::scope::Scopes;
use crate::jose::{self, Alg, JwsError, Signer};
use crate::kind::{HasKind, Kind};

identifier!(
    /// The integration record's client id (consumer key), the assertion's `iss`.
    ClientId,
    ClientId,
    |b| b.is_ascii_alphanumeric()
);

/// How long an assertion is valid: 1 to 3600 seconds, 300 by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetime(u64);

impl Lifetime {
    /// NetSuite refuses `exp` more than this far after `iat`.
    pub const MAX_SECS: u64 = 3600;

    /// Seconds.
    pub fn secs(self) -> u64 {
        self.0
    }
}

impl Default for Lifetime {
    fn default() -> Self {
        Lifetime(300)
    }
}

impl FromStr for Lifetime {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        match s.parse::<u64>() {
            Ok(n) if digits && (1..=Self::MAX_SECS).contains(&n) => Ok(Lifetime(n)),
            _ => Err(Error::Lifetime(s.to_owned())),
        }
    }
}

/// Everything NetSuite needs in a client assertion, already validated.
#[derive(Clone, Debug)]
pub struct AssertionRequest {
    /// `iss`.
    pub client_id: ClientId,
    /// `kid`.
    pub certificate_id: CertificateId,
    /// `aud` and where the assertion is sent.
    pub token_url: TokenUrl,
    /// `scope`.
    pub scopes: Scopes,
    /// `exp - iat`.
    pub lifetime: Lifetime,
}

/// The JWS protected header of a client assertion.
#[derive(Serialize)]
struct Header<'a> {
    typ: &'static str,
    alg: Alg,
    kid: &'a str,
}

/// The claims of a client assertion, in the order NetSuite's examples use.
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a Scopes,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
}

/// A signed client assertion: the compact JWS posted as `client_assertion`.
pub struct ClientAssertion {
    /// The compact JWS.
    pub jws: String,
    /// Its `jti`, to tell retries apart.
    pub jti: String,
    /// Its `exp`, seconds since the epoch.
    pub expires_at: u64,
}

impl fmt::Debug for ClientAssertion {
    // A live assertion is a bearer credential for minutes: keep it out of debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAssertion")
            .field("jti", &self.jti)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Why an assertion could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AssertionError {
    /// The clock is before 1970, so `iat` cannot be written.
    #[error(
        "the system clock is before 1970; fix the clock (NetSuite refuses assertions from the future or the past)"
    )]
    Clock,
    /// No randomness for the `jti`.
    #[error("cannot get random bytes for the assertion's jti: {0}")]
    Random(String),
    /// Assembling or signing the JWS failed.
    #[error(transparent)]
    Jws(#[from] JwsError),
}

impl HasKind for AssertionError {
    /// The signer's kind when it failed; a clock or randomness failure is the machine's, told
    /// as the token's (as a failure to sign).
    fn kind(&self) -> Kind {
        match self {
            AssertionError::Jws(e) => e.kind(),
            AssertionError::Clock | AssertionError::Random(_) => Kind::Token,
        }
    }
}

impl AssertionRequest {
    /// Builds and signs a client assertion valid from `now` for the request's lifetime.
    pub fn sign<S: Signer>(
        &self,
        signer: &S,
        now: SystemTime,
    ) -> Result<ClientAssertion, AssertionError> {
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| AssertionError::Clock)?
            .as_secs();
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).map_err(|e| AssertionError::Random(e.to_string()))?;
        let jti = jose::b64url(&random);
        let claims = Claims {
            iss: &self.client_id.0,
            scope: &self.scopes,
            aud: self.token_url.as_str(),
            iat,
            exp: iat + self.lifetime.secs(),
            jti: jti.clone(),
        };
        let header = Header {
            typ: "JWT",
            alg: signer.alg(),
            kid: self.certificate_id.as_str(),
        };
        let jws = jose::compact_jws(&header, &claims, signer)?;
        Ok(ClientAssertion {
            jws,
            jti,
            expires_at: claims.exp,
        })
    }
}
