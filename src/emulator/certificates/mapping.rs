//! What an uploaded certificate maps to: NetSuite internal ids (a role, an entity), and what
//! the role may do with the integration's certificates.

use std::fmt;

use serde_json::Value;

/// A NetSuite internal id (of a role, an entity, an application…): an integer, negative for
/// some built-in records (the account's first administrator is `-5`). NetSuite's answers and
/// clients write it as a JSON number or as a numeric string; both are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InternalId(i64);

impl InternalId {
    /// NetSuite's Administrator role.
    pub const ADMINISTRATOR: InternalId = InternalId(3);
    /// The account's first administrator (the entity `-5` of every account).
    pub const FIRST_ADMINISTRATOR: InternalId = InternalId(-5);

    /// The id as a number.
    pub fn get(self) -> i64 {
        self.0
    }

    /// Reads a numeric string: an optional `-` and 1 to 18 ASCII digits, nothing else (no
    /// sign `+`, no spaces, no fractions), so every accepted text fits an `i64`.
    pub fn parse(text: &str) -> Option<InternalId> {
        let digits = text.strip_prefix('-').unwrap_or(text);
        let well_formed =
            (1..=18).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
        well_formed
            .then(|| text.parse().ok().map(InternalId))
            .flatten()
    }

    /// Reads a JSON id: an integer number, or a numeric string as [`InternalId::parse`] reads.
    pub fn from_json(value: &Value) -> Option<InternalId> {
        match value {
            Value::Number(n) => n.as_i64().map(InternalId),
            Value::String(s) => InternalId::parse(s),
            _ => None,
        }
    }
}

impl From<i64> for InternalId {
    fn from(id: i64) -> InternalId {
        InternalId(id)
    }
}

impl fmt::Display for InternalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The M2M mapping a certificate belongs to: the role and entity tokens made with it act as,
/// and whether that role has the permission "Manage own OAuth 2.0 Client Credentials
/// certificates".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The role.
    pub role: InternalId,
    /// The entity (an employee, a partner…).
    pub entity: InternalId,
    /// The role may list, upload and revoke the integration's certificates.
    pub manage_certificates: bool,
}

impl Default for Mapping {
    /// The Administrator role of the account's first administrator, without the permission:
    /// a registration that names no role and grants nothing.
    fn default() -> Mapping {
        Mapping {
            role: InternalId::ADMINISTRATOR,
            entity: InternalId::FIRST_ADMINISTRATOR,
            manage_certificates: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ids_are_integers_as_numbers_or_numeric_strings() {
        for (value, id) in [
            (json!(3), 3),
            (json!("3"), 3),
            (json!(-5), -5),
            (json!("-5"), -5),
            (json!("0"), 0),
            (json!("999999999999999999"), 999_999_999_999_999_999),
            (json!(i64::MIN), i64::MIN),
        ] {
            assert_eq!(
                InternalId::from_json(&value),
                Some(InternalId(id)),
                "{value}"
            );
        }
        for value in [
            json!(3.5),
            json!(1e3),
            json!(u64::MAX),
            json!("+3"),
            json!(" 3"),
            json!("3 "),
            json!("-"),
            json!(""),
            json!("0x10"),
            json!("1_000"),
            json!("9999999999999999999"),
            json!("٣"),
            json!(null),
            json!(true),
            json!([3]),
            json!({"id": 3}),
        ] {
            assert_eq!(InternalId::from_json(&value), None, "{value}");
        }
        assert_eq!(InternalId::parse("-5").unwrap().to_string(), "-5");
    }
}
