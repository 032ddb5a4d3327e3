//! The access token: its secret (never formatted), the lifetime the server granted, and when
//! it expires, by the wall clock for display and by the monotonic clock for decisions.

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use secrecy::{ExposeSecret as _, SecretString};

/// An OAuth 2.0 access token. The secret is never formatted: there is no `Display`, and `Debug`
/// shows only the type and expiry. Its text is always in RFC 6750's bearer token syntax
/// (checked where it is received), so it is safe in a header, a shell word or a curl config.
pub struct AccessToken {
    secret: SecretString,
    token_type: String,
    expires_at: SystemTime,
    /// The `expires_in` the server granted.
    lifetime: Duration,
    /// When it expires by the monotonic clock, which a step of the wall clock does not move.
    deadline: Instant,
}

impl AccessToken {
    /// A bearer token that lives `lifetime` from now: from `now` by the wall clock (for
    /// display) and from this instant by the monotonic clock (for decisions). `None` when its
    /// expiry is beyond what either clock can represent.
    pub(super) fn new(
        secret: SecretString,
        lifetime: Duration,
        now: SystemTime,
    ) -> Option<AccessToken> {
        Some(AccessToken {
            secret,
            token_type: "Bearer".into(),
            expires_at: now.checked_add(lifetime)?,
            lifetime,
            deadline: Instant::now().checked_add(lifetime)?,
        })
    }

    /// The token itself, for an `Authorization: Bearer` header; do not log it.
    pub fn expose_secret(&self) -> &str {
        self.secret.expose_secret()
    }

    /// The token type, always `Bearer` (NetSuite's spelling, whatever case the server used).
    pub fn token_type(&self) -> &str {
        &self.token_type
    }

    /// When the token stops working, by the local clock at the time it was received: for
    /// display only, since the wall clock may be stepped afterwards (see [`Self::remaining`]).
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }

    /// How long the token remains valid, by the monotonic clock (zero once expired): what
    /// decisions about the token use.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The lifetime the server granted (`expires_in` when it was received).
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// How long the token remains valid after `now` by the wall clock (zero once expired).
    pub fn expires_in(&self, now: SystemTime) -> Duration {
        self.expires_at
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token_type", &self.token_type)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}
