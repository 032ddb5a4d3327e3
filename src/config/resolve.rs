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
    let token_url_from_file = flags.token_url.is_none();
    let resolved = flags.resolve_each(&Merge { file });
    let foreign_url = file
        .filter(|_| token_url_from_file)
        .and_then(|table| foreign_url(&resolved, table));
    let mut refused = resolved.refused();
    refused.extend(foreign_url.is_some().then_some(FOREIGN_URL));
    let first = first_told(&refused);
    if let (Some(FOREIGN_URL), Some(e)) = (first, foreign_url) {
        return Err(e);
    }
    resolved.into_profile(first)
}

/// Why the token URL the file gives is refused: it is not on one of the account's hosts (nor
/// loopback). Whoever can edit the file must not be able to send assertions elsewhere
/// unnoticed; a flag (or `SUITEKEY_TOKEN_URL`) overrides this deliberately.
fn foreign_url(resolved: &Resolved<ConfigError>, table: &ProfileTable) -> Option<ConfigError> {
    let (Ok(Some(url)), Ok(account)) = (&resolved.token_url, &resolved.account) else {
        return None;
    };
    let e = account.check_token_url(url).err()?;
    Some(field_error(table, "token_url", Refused::Value(Box::new(e))))
}

/// A token URL from the file on another host than the account's, among the refused fields.
pub(super) const FOREIGN_URL: &str = "token URL host";

/// Which problem is told when a profile has several (the order suitekey always checked them
/// in); fields not listed come after, in the order declared.
pub(super) const REPORT_ORDER: [&str; 7] = [
    "key",
    "token_url",
    "account",
    FOREIGN_URL,
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
