//! Merging a profile: the file's table under flags and `SUITEKEY_*` variables (which win),
//! each value checked, into one [`Profile`].

use super::fields::{FieldSource, Resolved, names};
use super::values::{Refused, Setting};
use super::{ConfigError, Profile, ProfileOverrides, ProfileTable};

/// Merges a profile from the file (if any) with flags and environment, which win, and
/// validates the result. Errors name the file, profile and field, or the flag; of several,
/// the one suitekey always checked first is told.
pub fn resolve(
    file: Option<&ProfileTable>,
    flags: ProfileOverrides,
) -> Result<Profile, ConfigError> {
    let from_file = (flags.token_url.is_none(), flags.certificates_url.is_none());
    let resolved = flags.resolve_each(&Merge { file });
    let foreign = file.map_or_else(Vec::new, |table| foreign_urls(&resolved, table, from_file));
    let mut refused = resolved.refused();
    refused.extend(foreign.iter().map(|(name, _)| *name));
    let first = first_told(&refused);
    if let Some((_, e)) = foreign.into_iter().find(|(name, _)| Some(*name) == first) {
        return Err(e);
    }
    resolved.into_profile(first)
}

/// Why the URLs the file gives are refused (the token URL's, then the certificates API's,
/// each when it came from the file): not on one of the account's hosts (nor loopback).
/// Whoever can edit the file must not be able to send assertions or access tokens elsewhere
/// unnoticed; a flag (or its variable) overrides this deliberately.
fn foreign_urls(
    resolved: &Resolved<ConfigError>,
    table: &ProfileTable,
    (token_url_from_file, certificates_url_from_file): (bool, bool),
) -> Vec<(&'static str, ConfigError)> {
    let Ok(account) = &resolved.account else {
        return Vec::new();
    };
    let refused = |field, e| field_error(table, field, Refused::Value(Box::new(e)));
    let mut foreign = Vec::new();
    if let (true, Ok(Some(url))) = (token_url_from_file, &resolved.token_url)
        && let Err(e) = account.check_token_url(url)
    {
        foreign.push((FOREIGN_URL, refused("token_url", e)));
    }
    if let (true, Ok(Some(url))) = (certificates_url_from_file, &resolved.certificates_url)
        && let Err(e) = account.check_certificates_url(url)
    {
        foreign.push((FOREIGN_CERTIFICATES_URL, refused("certificates_url", e)));
    }
    foreign
}

/// A token URL from the file on another host than the account's, among the refused fields.
pub(super) const FOREIGN_URL: &str = "token URL host";

/// A certificates API URL from the file on another host than the account's.
pub(super) const FOREIGN_CERTIFICATES_URL: &str = "certificates API URL host";

/// Which problem is told when a profile has several (the order suitekey always checked them
/// in); fields not listed come after, in the order declared.
pub(super) const REPORT_ORDER: [&str; 9] = [
    "key",
    "token_url",
    "account",
    FOREIGN_URL,
    "certificates_url",
    FOREIGN_CERTIFICATES_URL,
    "ca_file",
    "client_id",
    "certificate_id",
];

/// The problem told of those `refused` (fields in the order declared).
fn first_told(refused: &[&'static str]) -> Option<&'static str> {
    let rank = |field: &&str| {
        REPORT_ORDER
            .iter()
            .position(|f| f == field)
            .unwrap_or(REPORT_ORDER.len())
    };
    // `min_by_key` keeps the first of equals: unlisted fields keep their order.
    refused.iter().copied().min_by_key(rank)
}

/// Takes the fields the flags leave out from the profile table, if there is one.
struct Merge<'a> {
    file: Option<&'a ProfileTable>,
}

impl FieldSource for Merge<'_> {
    type Error = ConfigError;

    fn required<T: Setting<G>, G>(
        &self,
        field: &'static str,
        given: Option<G>,
    ) -> Result<T, ConfigError> {
        self.optional(field, given)?.ok_or_else(|| {
            let names = names(field);
            ConfigError::Missing {
                origin: self.file.map(|t| t.origin.clone()),
                field: names.key,
                flag: names.flag,
                env: names.env,
            }
        })
    }

    fn optional<T: Setting<G>, G>(
        &self,
        field: &'static str,
        given: Option<G>,
    ) -> Result<Option<T>, ConfigError> {
        if let Some(given) = given {
            return T::from_flag(given)
                .map(Some)
                .map_err(|refused| match refused {
                    Refused::Value(source) => ConfigError::Flag {
                        flag: names(field).flag,
                        source,
                    },
                    Refused::Key(e) => ConfigError::Key(e),
                });
        }
        let Some(table) = self.file else {
            return Ok(None);
        };
        let Some(text) = table.get(names(field).key) else {
            return Ok(None);
        };
        T::from_file(text, &table.origin.path)
            .map(Some)
            .map_err(|refused| field_error(table, field, refused))
    }
}

fn field_error(table: &ProfileTable, field: &'static str, refused: Refused) -> ConfigError {
    match refused {
        Refused::Value(source) => ConfigError::Field {
            origin: table.origin.clone(),
            field: names(field).key,
            source,
        },
        Refused::Key(e) => ConfigError::Key(e),
    }
}
