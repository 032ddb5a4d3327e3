//! The file's layout: `[profiles.NAME]` tables of known keys, and the `[agent]` table. Values
//! are kept as written; they are checked when a profile is resolved.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::fields::keys;
use super::values::Refusal;
use super::{ConfigError, Origin};

/// One profile table as written in the file: present keys only, not yet validated. Two are
/// equal when they come from the same file and profile with the same values (the agent keeps
/// an unchanged profile's session across a reload).
#[derive(Clone, PartialEq, Eq)]
pub struct ProfileTable {
    pub(super) origin: Origin,
    values: BTreeMap<&'static str, Zeroizing<String>>,
}

impl fmt::Debug for ProfileTable {
    // The key URI and token URL might carry secrets; only the names of the fields are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProfileTable")
            .field("origin", &self.origin)
            .field("keys", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ProfileTable {
    /// The file and profile name this table comes from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The value written for `key` (its name in the file, e.g. `certificate-id`), if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|v| v.as_str())
    }

    /// Reads a `[profiles.NAME]` table, refusing unknown keys and values of the wrong type
    /// (a string, but a number of seconds for `timeout`, a number (or numeric string) for
    /// `role`, `entity` and `rotate-before-days`, and a list for `scope`).
    fn from_toml(origin: Origin, table: &toml::Table) -> Result<ProfileTable, ConfigError> {
        let mut values = BTreeMap::new();
        for (key, value) in table {
            let Some(&known) = keys().iter().find(|k| **k == key.as_str()) else {
                return Err(ConfigError::UnknownKey {
                    origin,
                    key: key.clone(),
                    known: keys(),
                });
            };
            let text = match (known, value) {
                (_, toml::Value::String(s)) => s.clone(),
                ("timeout" | "role" | "entity" | "rotate-before-days", toml::Value::Integer(n)) => {
                    n.to_string()
                }
                ("scope", toml::Value::Array(items)) => scope_list(items)
                    .ok_or_else(|| field_error(&origin, "scope", "expected a list of strings"))?,
                (_, other) => {
                    let expected = match known {
                        "scope" => "expected a string or a list of strings",
                        "role" | "entity" => "expected a number (an internal id)",
                        "rotate-before-days" => "expected a number of days",
                        _ => "expected a string",
                    };
                    let reason = format!("{expected}, found {}", other.type_str());
                    return Err(field_error(&origin, known, &reason));
                }
            };
            values.insert(known, Zeroizing::new(text));
        }
        Ok(ProfileTable { origin, values })
    }
}

fn field_error(origin: &Origin, field: &'static str, reason: &str) -> ConfigError {
    ConfigError::Field {
        origin: origin.clone(),
        field,
        source: Box::new(Refusal(reason.to_owned())),
    }
}

/// `["restlets", "rest_webservices"]` as `restlets,rest_webservices`, if all are strings.
fn scope_list(items: &[toml::Value]) -> Option<String> {
    let names: Option<Vec<&str>> = items.iter().map(toml::Value::as_str).collect();
    names.map(|n| n.join(","))
}

/// The keys an `[agent]` table may have (`allowed_uids` is accepted as spelled in the agent's
/// issue; the file's other keys use hyphens).
const AGENT_KEYS: &[&str] = &["allowed-uids", "allowed_uids"];

/// A loaded config file: its profiles by name, and the agent's settings.
#[derive(Clone, Debug)]
pub struct Config {
    path: PathBuf,
    profiles: BTreeMap<String, ProfileTable>,
    allowed_uids: Vec<u32>,
}

impl Config {
    /// Parses `text` as the contents of the file at `path` (named in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let document: toml::Table =
            toml::from_str(text).map_err(|e| syntax_error(path, text, &e))?;
        let layout = |problem: String| ConfigError::Layout {
            path: path.to_owned(),
            problem,
        };
        let mut profiles = BTreeMap::new();
        let mut allowed_uids = Vec::new();
        for (key, value) in &document {
            if key == "agent" {
                allowed_uids = agent_table(value).map_err(layout)?;
                continue;
            }
            let Some(tables) = value.as_table().filter(|_| key == "profiles") else {
                return Err(layout(format!(
                    "unexpected top-level key '{key}'; profiles go in [profiles.NAME] tables, the agent's settings in [agent]"
                )));
            };
            for (name, table) in tables {
                let table = table.as_table().ok_or_else(|| {
                    layout(format!(
                        "'profiles.{name}' must be a table: [profiles.{name}]"
                    ))
                })?;
                let origin = Origin {
                    path: path.to_owned(),
                    profile: name.clone(),
                };
                profiles.insert(name.clone(), ProfileTable::from_toml(origin, table)?);
            }
        }
        Ok(Config {
            path: path.to_owned(),
            profiles,
            allowed_uids,
        })
    }

    /// Other users' uids the `[agent]` table allows on the agent's socket (`allowed-uids`).
    pub fn allowed_uids(&self) -> &[u32] {
        &self.allowed_uids
    }

    /// The file this config was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The profile names, sorted.
    pub fn profile_names(&self) -> impl Iterator<Item = &str> {
        self.profiles.keys().map(String::as_str)
    }

    /// The profile `name`; the error lists the profiles there are.
    pub fn profile(&self, name: &str) -> Result<&ProfileTable, ConfigError> {
        self.profiles
            .get(name)
            .ok_or_else(|| ConfigError::UnknownProfile {
                path: self.path.clone(),
                name: name.to_owned(),
                known: self.profiles.keys().cloned().collect(),
            })
    }
}

/// Reads the `[agent]` table: its `allowed-uids`, each a uid (a whole number up to 2^32 − 1).
fn agent_table(value: &toml::Value) -> Result<Vec<u32>, String> {
    let table = value
        .as_table()
        .ok_or("'agent' must be a table: [agent] with allowed-uids = [UID, …]")?;
    let mut uids = Vec::new();
    for (key, value) in table {
        if !AGENT_KEYS.contains(&key.as_str()) {
            return Err(format!(
                "[agent]: unknown key '{key}' (known: allowed-uids)"
            ));
        }
        let items = value
            .as_array()
            .ok_or("[agent]: allowed-uids must be a list of uids, e.g. allowed-uids = [1001]")?;
        for item in items {
            let uid = item
                .as_integer()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    format!("[agent]: allowed-uids has '{item}', which is not a uid (a whole number from 0 to 4294967295)")
                })?;
            uids.push(uid);
        }
    }
    Ok(uids)
}

fn syntax_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let offset = e.span().map_or(0, |s| s.start).min(text.len());
    let before = text.get(..offset).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    ConfigError::Syntax {
        path: path.to_owned(),
        line,
        column,
        message: e.message().trim_end().to_owned(),
    }
}
