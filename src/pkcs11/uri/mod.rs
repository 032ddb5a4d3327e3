//! RFC 7512 PKCS#11 URIs: the `pkcs11:` strings that name a token and a key in it.
//!
//! A [`Pkcs11Uri`] is checked when it is parsed and formats back to one canonical string, so
//! the rest of the program can compare, log and print key references without checking them
//! again.
//!
//! # Decisions the RFC leaves to us
//!
//! * **Unknown path attributes.** RFC 7512 §2.3 allows vendor-specific path attributes and §2.5
//!   has a consumer treat a URI whose path carries an attribute it does not understand as
//!   matching nothing. We keep path attributes whose names start with `x-` in
//!   [`Pkcs11Uri::vendor_path`] (name and value, in order, written back unchanged) and refuse
//!   every other unknown path attribute when parsing: a constraint we cannot honour must not
//!   be dropped (that could select the wrong key), and an error names a typo such as `objetc=`
//!   where a URI matching nothing would only say "no key found". This refuses the last example
//!   of RFC 7512 §3, whose vendor attribute `vendor-aaa` has no `x-` prefix.
//! * **Unknown query attributes.** Query attributes (§2.4) say how to reach a token, not which
//!   key to use, the RFC lets a consumer ignore ones it does not know, and vendor query
//!   attributes may repeat. We keep every unknown query attribute, `x-` or not, in order in
//!   [`Pkcs11Uri::vendor_query`] so it round-trips; nothing acts on it. Two kinds are refused:
//!   a path attribute placed in the query (`?token=…` would silently drop a key selector) and
//!   an unknown name containing `pin` (a `pin_value=…` typo would otherwise be written back
//!   into logs by `Display`).
//! * **`pin-source`.** §2.4 leaves its interpretation to the consumer and shows `file:` URIs.
//!   We read `file:/abs/path`, `file:///abs/path` (and `file://localhost/abs/path`), a bare
//!   `/abs/path` as p11-kit writes it, `env:NAME` (our extension; `NAME` is
//!   `[A-Za-z_][A-Za-z0-9_]*`) and `credential:NAME` (our extension: the file `NAME` in
//!   systemd's `$CREDENTIALS_DIRECTORY`, as `LoadCredential=` provides it; `NAME` is a plain
//!   file name of letters, digits and `_ - . @ +`, not `.` or `..`). The value is percent-decoded once, as every query value is; the
//!   `file:` URI inside it is not decoded a second time.
//! * **`pin-value`** is read into a [`PinValue`] and is never written back: not by
//!   `Display` (URIs end up in logs and `list` output), not by `Debug`, not in errors.
//! * Attribute names and the `type` value are matched ignoring ASCII case (RFC 5234 quoted
//!   strings are case-insensitive), so `PIN-VALUE=` is held to the rules of `pin-value=`.
//! * Characters that RFC 7512 does not allow unencoded (space, `/` in the path, `;` in the
//!   query, non-ASCII, …) are refused with the escape to write instead, rather than guessed at.

mod error;
mod format;
mod key_ref;
mod parse;
mod pin_value;

use std::fmt;
use std::path::PathBuf;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

pub use error::UriError;
pub use format::escaped_path;
pub use key_ref::{KeyRef, KeyRefError};
use parse::check_library_version;
pub use pin_value::PinValue;

/// The longest URI string accepted; anything longer is refused before it is looked at.
pub const MAX_URI_LEN: usize = 8 * 1024;

const SCHEME: &str = "pkcs11:";
const PIN_VALUE: &str = "pin-value";

/// Bytes both components leave unencoded: RFC 3986 `unreserved` and RFC 7512 `pk11-res-avail`.
const PK11_ENCODE: AsciiSet = NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':')
    .remove(b'[')
    .remove(b']')
    .remove(b'@')
    .remove(b'!')
    .remove(b'$')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b'=');
/// What `pk11-pchar` does not allow unencoded (`pk11-path-res-avail` adds `&`).
const PATH_ENCODE: &AsciiSet = &PK11_ENCODE.remove(b'&');
/// What `pk11-qchar` does not allow unencoded (`pk11-query-res-avail` adds `/`, `?`, `|`).
const QUERY_ENCODE: &AsciiSet = &PK11_ENCODE.remove(b'/').remove(b'?').remove(b'|');
/// `id` is written byte by byte, as in the examples of RFC 7512 §3.
const EVERY_BYTE: &AsciiSet = &AsciiSet::EMPTY.complement();

/// A parsed RFC 7512 PKCS#11 URI naming a token and optionally an object in it.
///
/// `Display` writes the canonical form (attributes in a fixed order, minimal percent-encoding,
/// `id` fully encoded) and **never writes `pin-value`**; `Debug` shows it as `<redacted>`
/// (see [`PinValue`]). Parsing what `Display` wrote gives back an equal value, except that
/// `pin_value` is gone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// `token`: the token label (`CK_TOKEN_INFO.label`).
    pub token: Option<String>,
    /// `manufacturer`: the token manufacturer (`CK_TOKEN_INFO.manufacturerID`).
    pub manufacturer: Option<String>,
    /// `serial`: the token serial number (`CK_TOKEN_INFO.serialNumber`).
    pub serial: Option<String>,
    /// `model`: the token model (`CK_TOKEN_INFO.model`).
    pub model: Option<String>,
    /// `library-manufacturer`: the module manufacturer (`CK_INFO.manufacturerID`).
    pub library_manufacturer: Option<String>,
    /// `library-description`: the module description (`CK_INFO.libraryDescription`).
    pub library_description: Option<String>,
    /// `library-version`: the module version, `MAJOR` or `MAJOR.MINOR` in decimal.
    pub library_version: Option<String>,
    /// `slot-description`: the slot description (`CK_SLOT_INFO.slotDescription`).
    pub slot_description: Option<String>,
    /// `slot-manufacturer`: the slot manufacturer (`CK_SLOT_INFO.manufacturerID`).
    pub slot_manufacturer: Option<String>,
    /// `slot-id`: the slot number; `SoftHSM2` changes it when a token is initialized.
    pub slot_id: Option<u64>,
    /// `object`: the object label (`CKA_LABEL`).
    pub object: Option<String>,
    /// `id`: the object id (`CKA_ID`), raw bytes.
    pub id: Option<Vec<u8>>,
    /// `type`: the object class.
    pub object_type: Option<ObjectType>,
    /// Vendor path attributes (names starting with `x-`), in the order given.
    pub vendor_path: Vec<(String, String)>,
    /// `module-path`: the absolute path of the PKCS#11 library to load.
    pub module_path: Option<PathBuf>,
    /// `module-name`: the PKCS#11 library by name, without directory or suffix.
    pub module_name: Option<String>,
    /// `pin-source`: where to read the user PIN from.
    pub pin_source: Option<PinSource>,
    /// `pin-value`: the user PIN itself; never formatted, logged or shown in errors.
    pub pin_value: Option<PinValue>,
    /// Query attributes this module does not interpret (`x-…` and other unknown names), in the
    /// order given; kept so that they round-trip.
    pub vendor_query: Vec<(String, String)>,
}

/// The object class named by the `type` path attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectType {
    /// `public`: a public key (`CKO_PUBLIC_KEY`).
    Public,
    /// `private`: a private key (`CKO_PRIVATE_KEY`).
    Private,
    /// `cert`: a certificate (`CKO_CERTIFICATE`).
    Cert,
    /// `secret-key`: a secret key (`CKO_SECRET_KEY`).
    SecretKey,
    /// `data`: a data object (`CKO_DATA`).
    Data,
}

/// Where the user PIN comes from, as named by the `pin-source` query attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinSource {
    /// Read the PIN from this file (an absolute path).
    File(PathBuf),
    /// Read the PIN from this environment variable.
    Env(String),
    /// Read the PIN from the file of this name in systemd's `$CREDENTIALS_DIRECTORY`
    /// (`LoadCredential=NAME:…` in the unit).
    Credential(String),
}

/// The part of a PKCS#11 URI an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriComponent {
    /// The `;`-separated attributes before `?`, which select the token and object.
    Path,
    /// The `&`-separated attributes after `?`, which say how to reach the token.
    Query,
}

impl UriComponent {
    fn separator(self) -> char {
        match self {
            Self::Path => ';',
            Self::Query => '&',
        }
    }

    fn encode_set(self) -> &'static AsciiSet {
        match self {
            Self::Path => PATH_ENCODE,
            Self::Query => QUERY_ENCODE,
        }
    }
}

impl fmt::Display for UriComponent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Path => "path",
            Self::Query => "query",
        })
    }
}

impl ObjectType {
    const ALL: [Self; 5] = [
        Self::Public,
        Self::Private,
        Self::Cert,
        Self::SecretKey,
        Self::Data,
    ];

    /// The spelling used in URIs (`public`, `private`, `cert`, `secret-key`, `data`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::Cert => "cert",
            Self::SecretKey => "secret-key",
            Self::Data => "data",
        }
    }
}

impl fmt::Display for ObjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one standard path attribute is stored in a [`Pkcs11Uri`].
#[derive(Clone, Copy)]
enum PathField {
    Text {
        get: fn(&Pkcs11Uri) -> Option<&str>,
        slot: fn(&mut Pkcs11Uri) -> &mut Option<String>,
        check: fn(&str) -> Result<(), UriError>,
    },
    SlotId,
    Id,
    Type,
}

struct PathAttr {
    name: &'static str,
    field: PathField,
}

macro_rules! text_attr {
    ($name:literal, $field:ident) => {
        text_attr!($name, $field, |_| Ok(()))
    };
    ($name:literal, $field:ident, $check:expr) => {
        PathAttr {
            name: $name,
            field: PathField::Text {
                get: |uri| uri.$field.as_deref(),
                slot: |uri| &mut uri.$field,
                check: $check,
            },
        }
    };
}

/// The RFC 7512 path attributes, in the order `Display` writes them.
const PATH_ATTRS: [PathAttr; 13] = [
    text_attr!("token", token),
    text_attr!("manufacturer", manufacturer),
    text_attr!("serial", serial),
    text_attr!("model", model),
    text_attr!("library-manufacturer", library_manufacturer),
    text_attr!("library-description", library_description),
    text_attr!("library-version", library_version, check_library_version),
    text_attr!("slot-description", slot_description),
    text_attr!("slot-manufacturer", slot_manufacturer),
    PathAttr {
        name: "slot-id",
        field: PathField::SlotId,
    },
    text_attr!("object", object),
    PathAttr {
        name: "id",
        field: PathField::Id,
    },
    PathAttr {
        name: "type",
        field: PathField::Type,
    },
];

fn find_path_attr(name: &str) -> Option<&'static PathAttr> {
    PATH_ATTRS
        .iter()
        .find(|attr| attr.name.eq_ignore_ascii_case(name))
}

fn known_path_names() -> String {
    let names: Vec<&str> = PATH_ATTRS.iter().map(|attr| attr.name).collect();
    names.join(", ")
}

/// The RFC 7512 query attributes this module interprets.
#[derive(Clone, Copy)]
enum QueryAttr {
    ModuleName,
    ModulePath,
    PinSource,
    PinValue,
}

impl QueryAttr {
    const ALL: [(&'static str, Self); 4] = [
        ("module-name", Self::ModuleName),
        ("module-path", Self::ModulePath),
        ("pin-source", Self::PinSource),
        (PIN_VALUE, Self::PinValue),
    ];

    fn find(name: &str) -> Option<(&'static str, Self)> {
        Self::ALL
            .into_iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
    }
}

impl Pkcs11Uri {
    /// The URI for messages and logs: never the `pin-value` (as with `Display`), without
    /// unknown query attributes, and with vendor path attributes' values emptied: those could
    /// be anything a user pasted.
    #[must_use]
    pub fn redacted(&self) -> String {
        let shown = Pkcs11Uri {
            pin_value: None,
            vendor_query: Vec::new(),
            ..self.clone()
        };
        shown.to_string()
    }

    /// Whether the URI narrows down the token (by label, manufacturer, serial, model or slot),
    /// rather than leaving the choice to whichever token is present.
    #[must_use]
    pub fn has_token_selector(&self) -> bool {
        self.token.is_some()
            || self.manufacturer.is_some()
            || self.serial.is_some()
            || self.model.is_some()
            || self.slot_id.is_some()
            || self.slot_description.is_some()
            || self.slot_manufacturer.is_some()
    }
}

#[cfg(test)]
mod tests;
