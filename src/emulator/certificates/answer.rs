//! The JSON the API answers with: a list entry (the fields a client tested against a live
//! account saw), an upload's answer (the fields of Oracle's example), and the list's shape,
//! which `--certificate-list-shape` varies so that a client's leniency can be tested.

use std::str::FromStr;

use serde_json::{Value, json};

use super::mapping::InternalId;
use super::store::Entry;
use crate::cert::rfc3339;
use crate::jose::PublicKey;

/// The unknown field `extra-field` adds, which clients must ignore.
pub const EXTRA_FIELD: &str = "x_emulator_unknown_field";

/// How the list is shaped. NetSuite's exact shape is not documented: a client should accept
/// each of these.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListShape {
    /// `object`: `{"items": [...], "count", "hasMore", "offset", "totalResults"}` instead of
    /// a bare array.
    pub object: bool,
    /// `string-ids`: ids as numeric strings (`"3"`, `"-5"`) instead of numbers.
    pub string_ids: bool,
    /// `extra-field`: an unknown field in each entry (and in the object).
    pub extra_field: bool,
    /// `newest-only`: only the certificate uploaded last, as a list cut short (paged) shows
    /// (`hasMore` true in the object shape when others were left out).
    pub newest_only: bool,
}

impl ListShape {
    /// The keywords `--certificate-list-shape` takes, for messages.
    pub const KEYWORDS: &str = "object, string-ids, extra-field, newest-only";

    /// Adds one keyword.
    fn set(&mut self, keyword: &str) -> Result<(), String> {
        match keyword.trim() {
            "object" => self.object = true,
            "string-ids" => self.string_ids = true,
            "extra-field" => self.extra_field = true,
            "newest-only" => self.newest_only = true,
            other => {
                return Err(format!(
                    "unknown shape {other:?}; the shapes are {}",
                    ListShape::KEYWORDS
                ));
            }
        }
        Ok(())
    }

    /// An id as this shape writes it.
    fn id(self, id: InternalId) -> Value {
        if self.string_ids {
            json!(id.to_string())
        } else {
            json!(id.get())
        }
    }

    /// Adds the unknown field when asked to.
    fn extra(self, mut value: Value) -> Value {
        if let (true, Some(map)) = (self.extra_field, value.as_object_mut()) {
            map.insert(
                EXTRA_FIELD.into(),
                json!({"note": "an unknown field, which clients must ignore"}),
            );
        }
        value
    }

    /// The list answer for these entries.
    pub fn list(self, entries: &[Entry<'_>]) -> Value {
        let shown = match (self.newest_only, entries.len()) {
            (true, n) if n > 1 => &entries[n - 1..],
            _ => entries,
        };
        let items: Vec<Value> = shown.iter().map(|e| self.entry(e)).collect();
        if !self.object {
            return Value::Array(items);
        }
        let (n, total) = (items.len(), entries.len());
        self.extra(json!({
            "items": items, "count": n, "hasMore": n < total, "offset": 0, "totalResults": total
        }))
    }

    /// One certificate as the list shows it.
    fn entry(self, e: &Entry<'_>) -> Value {
        let reg = e.registration;
        self.extra(json!({
            "certificate_id": reg.certificate_id.to_string(),
            "algorithm": algorithm(&reg.public_key),
            "valid_from": rfc3339(reg.valid_from),
            "valid_until": rfc3339(reg.valid_until),
            "created": rfc3339(reg.lifecycle.uploaded),
            "revoked": reg.lifecycle.revoked.is_some(),
            "application": {"id": self.id(e.application_id), "client_id": reg.client_id.to_string()},
            "entity": {"id": self.id(reg.mapping.entity)},
            "role": {"id": self.id(reg.mapping.role)},
        }))
    }

    /// The answer to an upload, shaped like Oracle's example.
    pub fn uploaded(self, e: &Entry<'_>) -> Value {
        let reg = e.registration;
        self.extra(json!({
            "certificate_id": reg.certificate_id.to_string(),
            "algorithm": algorithm(&reg.public_key),
            "valid_from": rfc3339(reg.valid_from),
            "valid_until": rfc3339(reg.valid_until),
            "created_at": rfc3339(reg.lifecycle.uploaded),
            "invalidated": reg.lifecycle.revoked.is_some(),
            "entity_role_id": self.id(e.mapping_id),
            "application_id": self.id(e.application_id),
        }))
    }
}

impl FromStr for ListShape {
    type Err = String;

    /// Comma-separated keywords; the empty string is the default (a bare array, number ids).
    fn from_str(text: &str) -> Result<ListShape, String> {
        let mut shape = ListShape::default();
        for keyword in text.split(',').filter(|k| !k.trim().is_empty()) {
            shape.set(keyword)?;
        }
        Ok(shape)
    }
}

/// The key family as the list names it.
pub fn algorithm(key: &PublicKey) -> &'static str {
    match key {
        PublicKey::Ec { .. } => "EC",
        PublicKey::Rsa { .. } => "RSA",
    }
}
