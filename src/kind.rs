//! What kind of failure an error is: the one list from which the process's exit code, the
//! agent's HTTP status and its `error` name (and, in a client, the way back from that name) are
//! derived. Every layer's error says its kind ([`HasKind`]); nothing else maps errors to codes.
//!
//! This module is the bottom of the crate: it names nothing of it, so every layer can use it.

use http::StatusCode;

/// What kind of failure stopped a command, or a profile of the agent. Each kind is one row of
/// README's "Exit codes" table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A certificate is not fit for NetSuite (`check`'s findings; the agent's expired or
    /// mismatched certificate), or a `doctor` check failed.
    Unfit,
    /// Bad input: flags, URI, account id, scope, lifetime, token URL, algorithm name, no
    /// module named, config file or profile.
    Usage,
    /// The module, token or key cannot do what was asked.
    Token,
    /// No usable PIN, or the token refused it (never worth an automatic retry).
    Pin,
    /// Writing the output (stdout, an `--out` file, a socket) failed.
    Output,
    /// The token endpoint refused the assertion, failed, or could not be reached.
    Endpoint,
    /// The agent named by `SUITEKEY_AUTH_SOCK` cannot be reached, is not trusted, or
    /// misbehaved.
    Agent,
    /// `exec` could not start its command.
    NotStarted,
}

impl Kind {
    /// Every kind, for tests and for reading a name back.
    pub const ALL: [Kind; 8] = [
        Kind::Unfit,
        Kind::Usage,
        Kind::Token,
        Kind::Pin,
        Kind::Output,
        Kind::Endpoint,
        Kind::Agent,
        Kind::NotStarted,
    ];

    /// The process exit status (README's "Exit codes"; scripts rely on these numbers).
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Unfit => 1,
            Kind::Usage => 2,
            Kind::Token => 3,
            Kind::Pin => 4,
            Kind::Output => 5,
            Kind::Endpoint => 6,
            Kind::Agent => 7,
            // As shells report a command that cannot be run.
            Kind::NotStarted => 127,
        }
    }

    /// The status of the agent's answer when a profile cannot give a token for this reason:
    /// 502 when the token endpoint failed it, else 503 (the profile cannot serve for now).
    pub fn http_status(self) -> StatusCode {
        match self {
            Kind::Endpoint => StatusCode::BAD_GATEWAY,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `error` name of the agent's JSON answers (README's agent API table), which clients
    /// read back with [`Kind::from_name`].
    pub fn name(self) -> &'static str {
        match self {
            Kind::Unfit => "certificate",
            Kind::Usage => "profile_config",
            Kind::Token => "token",
            Kind::Pin => "pin",
            Kind::Output => "output",
            Kind::Endpoint => "upstream",
            Kind::Agent => "agent",
            Kind::NotStarted => "not_started",
        }
    }

    /// The kind an agent's `error` name stands for; `None` for a name of no kind (the agent's
    /// refusals of the request itself, or a name this version does not know).
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// An error that knows what kind of failure it is. Each layer's error implements it, saying
/// its own variants' kinds and asking the errors it wraps for theirs.
pub trait HasKind {
    /// What kind of failure this is.
    fn kind(&self) -> Kind;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_keeps_its_documented_exit_code_status_and_name() {
        let table: Vec<(Kind, u8, u16, &str)> = Kind::ALL
            .into_iter()
            .map(|k| (k, k.exit_code(), k.http_status().as_u16(), k.name()))
            .collect();
        assert_eq!(
            table,
            [
                (Kind::Unfit, 1, 503, "certificate"),
                (Kind::Usage, 2, 503, "profile_config"),
                (Kind::Token, 3, 503, "token"),
                (Kind::Pin, 4, 503, "pin"),
                (Kind::Output, 5, 503, "output"),
                (Kind::Endpoint, 6, 502, "upstream"),
                (Kind::Agent, 7, 503, "agent"),
                (Kind::NotStarted, 127, 503, "not_started"),
            ]
        );
    }

    #[test]
    fn every_name_reads_back_as_its_kind_and_no_other_name_does() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_name(kind.name()), Some(kind));
        }
        for other in [
            "",
            "forbidden",
            "unknown_profile",
            "bad_request",
            "PIN",
            "pin ",
        ] {
            assert_eq!(Kind::from_name(other), None, "{other:?}");
        }
    }

    #[test]
    fn kinds_have_distinct_exit_codes_and_names() {
        let mut codes: Vec<u8> = Kind::ALL.iter().map(|k| k.exit_code()).collect();
        let mut names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
        codes.sort_unstable();
        codes.dedup();
        names.sort_unstable();
        names.dedup();
        assert_eq!(
            (codes.len(), names.len()),
            (Kind::ALL.len(), Kind::ALL.len())
        );
    }
}
