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
//!   `/abs/path` as p11-kit writes it, and `env:NAME` (our extension; `NAME` is
//!   `[A-Za-z_][A-Za-z0-9_]*`). The value is percent-decoded once, as every query value is; the
//!   `file:` URI inside it is not decoded a second time.
//! * **`pin-value`** is read into a [`SecretString`] and is never written back: not by
//!   `Display` (URIs end up in logs and `list` output), not by `Debug`, not in errors.
//! * Attribute names and the `type` value are matched ignoring ASCII case (RFC 5234 quoted
//!   strings are case-insensitive), so `PIN-VALUE=` is held to the rules of `pin-value=`.
//! * Characters that RFC 7512 does not allow unencoded (space, `/` in the path, `;` in the
//!   query, non-ASCII, …) are refused with the escape to write instead, rather than guessed at.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use percent_encoding::{
    AsciiSet, NON_ALPHANUMERIC, percent_decode_str, percent_encode, utf8_percent_encode,
};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroize;

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
/// `id` fully encoded) and **never writes `pin-value`**; `Debug` shows it as `<redacted>`.
/// Parsing what `Display` wrote gives back an equal value, except that `pin_value` is gone.
#[derive(Clone, Default)]
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
    pub pin_value: Option<SecretString>,
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
}

/// The part of a PKCS#11 URI an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriComponent {
    /// The `;`-separated attributes before `?`, which select the token and object.
    Path,
    /// The `&`-separated attributes after `?`, which say how to reach the token.
    Query,
}

/// Why a string is not a PKCS#11 URI this program accepts. Messages never contain a PIN.
#[derive(Debug, thiserror::Error)]
pub enum UriError {
    /// The input is longer than [`MAX_URI_LEN`].
    #[error(
        "the PKCS#11 URI is {len} bytes long, more than the {max} accepted; \
         name the key with fewer or shorter attributes"
    )]
    TooLong {
        /// Length of the input in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The input does not start with `pkcs11:`.
    #[error(
        "not a PKCS#11 URI: it must start with 'pkcs11:', as in pkcs11:token=my-token;object=my-key"
    )]
    MissingScheme,
    /// The input contains `#`.
    #[error("a PKCS#11 URI has no fragment: write a '#' inside a value as %23")]
    Fragment,
    /// A `;` or `&` separated part has nothing before its `=`.
    #[error(
        "the PKCS#11 URI {component} has an empty attribute name (a doubled '{}' or a value \
         without 'name='); remove the stray separator",
        .component.separator()
    )]
    EmptyAttributeName {
        /// Path or query.
        component: UriComponent,
    },
    /// An attribute has no `=`.
    #[error("the PKCS#11 URI {component} attribute {name} has no '='; write it as name=value")]
    MissingValue {
        /// Path or query.
        component: UriComponent,
        /// The attribute as written, quoted (withheld if it mentions "pin").
        name: String,
    },
    /// An attribute name has characters other than letters, digits, `-` and `_`.
    #[error(
        "the PKCS#11 URI {component} attribute name {name} is not valid: names are letters, \
         digits, '-' and '_'; look for a missing '{}' or a character that must be percent-encoded",
        .component.separator()
    )]
    InvalidAttributeName {
        /// Path or query.
        component: UriComponent,
        /// The name as written, quoted (withheld if it mentions "pin").
        name: String,
    },
    /// A path attribute this module does not know and that is not an `x-` vendor attribute.
    #[error(
        "unknown PKCS#11 URI path attribute '{name}'; known ones are {}, and vendor attributes \
         whose names start with 'x-' (a constraint that is not understood cannot be honoured, \
         so the URI is refused rather than risk selecting the wrong key)",
        known_path_names()
    )]
    UnknownPathAttribute {
        /// The attribute name.
        name: String,
    },
    /// A query attribute (such as `module-path`) written before `?`.
    #[error("'{name}' is a PKCS#11 URI query attribute but is in the path; move it after '?'")]
    QueryAttributeInPath {
        /// The attribute name.
        name: String,
    },
    /// A path attribute (such as `token`) written after `?`, where it would select nothing.
    #[error(
        "'{name}' is a PKCS#11 URI path attribute but is in the query, where it would select \
         nothing; move it before '?'"
    )]
    PathAttributeInQuery {
        /// The attribute name.
        name: String,
    },
    /// An unknown attribute whose name suggests it carries a PIN.
    #[error(
        "unknown PKCS#11 URI attribute '{name}' looks like it carries a PIN, and unknown \
         attributes are written back when the URI is printed; use pin-source=file:/path or \
         pin-source=env:NAME instead"
    )]
    PinLikeQueryAttribute {
        /// The attribute name.
        name: String,
    },
    /// A path attribute, or a known query attribute, given twice.
    #[error("the PKCS#11 URI {component} attribute '{name}' is given twice; keep one")]
    DuplicateAttribute {
        /// Path or query.
        component: UriComponent,
        /// The attribute name.
        name: String,
    },
    /// A `%` not followed by two hex digits.
    #[error(
        "the PKCS#11 URI {component} attribute '{name}' has an invalid percent escape {found}; \
         '%' must be followed by two hex digits (write a literal '%' as %25)"
    )]
    InvalidPercentEscape {
        /// Path or query.
        component: UriComponent,
        /// The attribute name.
        name: String,
        /// The bad escape, quoted, or a note that the value is secret.
        found: String,
    },
    /// A character that RFC 7512 allows only percent-encoded.
    #[error(
        "the PKCS#11 URI {component} attribute '{name}' contains {found}, which must be \
         percent-encoded"
    )]
    UnencodedCharacter {
        /// Path or query.
        component: UriComponent,
        /// The attribute name.
        name: String,
        /// The character and its escape, or a note that the value is secret.
        found: String,
    },
    /// A text value that is not UTF-8 after percent-decoding.
    #[error(
        "the PKCS#11 URI {component} attribute '{name}' is not UTF-8 once percent-decoded; \
         encode text as UTF-8 bytes (only 'id' takes arbitrary bytes)"
    )]
    InvalidUtf8 {
        /// Path or query.
        component: UriComponent,
        /// The attribute name.
        name: String,
    },
    /// A text value holding a NUL once percent-decoded (`object=Test%00Label`): modules read
    /// these values as C strings, so it would select something else than was written.
    #[error(
        "the PKCS#11 URI {component} attribute '{name}' holds a NUL character (%00) once \
         percent-decoded; PKCS#11 text values cannot contain one (a module would read only the \
         part before it): remove the %00"
    )]
    NulCharacter {
        /// Path or query.
        component: UriComponent,
        /// The attribute name.
        name: String,
    },
    /// `slot-id` that is not a decimal `u64`.
    #[error(
        "slot-id {value:?} is not a decimal number from 0 to {}; write digits only, or select \
         the token by token= or serial=, which survive re-initialization",
        u64::MAX
    )]
    InvalidSlotId {
        /// The decoded value.
        value: String,
    },
    /// `library-version` that is not `MAJOR` or `MAJOR.MINOR`, each part a byte.
    #[error(
        "library-version {value:?} is not MAJOR or MAJOR.MINOR, each a decimal number from 0 to \
         255 (a PKCS#11 CK_VERSION byte), such as 2 or 2.20"
    )]
    InvalidLibraryVersion {
        /// The decoded value.
        value: String,
    },
    /// `type` that is not one of the RFC 7512 object types.
    #[error(
        "type {value:?} is not a PKCS#11 URI object type; use one of public, private, cert, secret-key, data"
    )]
    InvalidType {
        /// The decoded value.
        value: String,
    },
    /// `pin-source` in a form this program does not read.
    #[error(
        "pin-source {value} {reason}; the accepted forms are file:/absolute/path, \
         file:///absolute/path, /absolute/path and env:NAME"
    )]
    InvalidPinSource {
        /// The value's form (`file:`, `env:`) and never the rest: it may be a PIN.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `pin-value=` written inside another query attribute's value, where it would be kept
    /// (and printed) as part of that value.
    #[error(
        "a PKCS#11 URI query value contains 'pin-value=': separate query attributes with '&', \
         not a second '?' (the value is not shown: it may hold the PIN)"
    )]
    PinValueInValue,
    /// Both `pin-source` and `pin-value`.
    #[error(
        "the PKCS#11 URI has both pin-source and pin-value; keep one (pin-source keeps the PIN \
         out of configuration files and process listings)"
    )]
    PinSourceAndValue,
    /// Both `module-path` and `module-name`.
    #[error(
        "the PKCS#11 URI has both module-path and module-name; keep one (module-path names the exact library)"
    )]
    ModulePathAndName,
    /// `module-path` that is not absolute.
    #[error(
        "module-path {value:?} is not an absolute path; give the full path of the PKCS#11 \
         library, such as /usr/lib/softhsm/libsofthsm2.so"
    )]
    RelativeModulePath {
        /// The decoded value.
        value: String,
    },
    /// `module-name` that is empty or contains a path separator.
    #[error(
        "module-name {value:?} is empty or contains a path separator; give a bare library name \
         such as softhsm2, or use module-path for a path"
    )]
    InvalidModuleName {
        /// The decoded value.
        value: String,
    },
}

impl crate::kind::HasKind for UriError {
    /// A key URI is the user's input.
    fn kind(&self) -> crate::kind::Kind {
        crate::kind::Kind::Usage
    }
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

impl FromStr for ObjectType {
    type Err = UriError;

    fn from_str(value: &str) -> Result<Self, UriError> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(value))
            .ok_or_else(|| UriError::InvalidType {
                value: value.to_owned(),
            })
    }
}

/// Reads a decoded `pin-source` value; see the module documentation for the accepted forms.
impl FromStr for PinSource {
    type Err = UriError;

    fn from_str(value: &str) -> Result<Self, UriError> {
        // A refused value is never echoed, only its form: a PIN pasted as `env:493817` or
        // `file:493817` would otherwise land on stderr and in logs.
        let shown = ["file:", "env:"]
            .iter()
            .find(|p| strip_prefix_ignore_case(value, p).is_some())
            .map_or_else(
                || "(not shown: it may be a PIN)".to_owned(),
                |p| format!("{p}… (the rest is not shown: it may be a PIN)"),
            );
        let refuse = |reason| UriError::InvalidPinSource {
            value: shown.clone(),
            reason,
        };
        if let Some(rest) = strip_prefix_ignore_case(value, "file:") {
            return file_uri_path(rest)
                .map(Self::File)
                .ok_or_else(|| refuse("is a file: URI without an absolute path on this machine"));
        }
        if let Some(name) = strip_prefix_ignore_case(value, "env:") {
            return if is_env_name(name) {
                Ok(Self::Env(name.to_owned()))
            } else {
                Err(refuse(
                    "names an environment variable that is not letters, digits and '_' \
                     starting with a letter or '_'",
                ))
            };
        }
        if value.starts_with('/') {
            return Ok(Self::File(PathBuf::from(value)));
        }
        Err(refuse("is not a form suitekey reads"))
    }
}

impl PinSource {
    /// The percent-encoded query value; `file://` is kept when the path itself starts with
    /// `//`, which `file:` alone would turn into a host name.
    fn uri_value(&self) -> String {
        match self {
            Self::File(path) => {
                let bytes = path.as_os_str().as_encoded_bytes();
                let authority = if bytes.starts_with(b"//") { "//" } else { "" };
                format!("file:{authority}{}", escaped_path(path))
            }
            Self::Env(name) => format!("env:{}", utf8_percent_encode(name, QUERY_ENCODE)),
        }
    }
}

/// The path of a `file:` URI after its scheme, if it is absolute and on this machine.
fn file_uri_path(rest: &str) -> Option<PathBuf> {
    let path = match rest.strip_prefix("//") {
        None => rest,
        Some(after) if after.starts_with('/') => after,
        Some(after) => strip_prefix_ignore_case(after, "localhost")?,
    };
    path.starts_with('/').then(|| PathBuf::from(path))
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| text.get(prefix.len()..))
        .flatten()
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

fn check_library_version(value: &str) -> Result<(), UriError> {
    // `CK_VERSION`'s parts are bytes; `u8::from_str` alone would also take a leading '+'.
    let is_number = |part: &str| {
        !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) && part.parse::<u8>().is_ok()
    };
    let valid = match value.split_once('.') {
        None => is_number(value),
        Some((major, minor)) => is_number(major) && is_number(minor),
    };
    valid
        .then_some(())
        .ok_or_else(|| UriError::InvalidLibraryVersion {
            value: value.to_owned(),
        })
}

fn parse_slot_id(value: &str) -> Result<u64, UriError> {
    // `u64::from_str` alone would also take a leading '+'.
    value
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| value.parse().ok())
        .flatten()
        .ok_or_else(|| UriError::InvalidSlotId {
            value: value.to_owned(),
        })
}

fn parse_module_path(value: String) -> Result<PathBuf, UriError> {
    // A relative path would load a different library depending on the working directory.
    let path = PathBuf::from(&value);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(UriError::RelativeModulePath { value })
    }
}

fn parse_module_name(value: String) -> Result<String, UriError> {
    // A separator would let a "name" reach outside the module directories.
    if value.is_empty() || value.contains(['/', '\\']) {
        Err(UriError::InvalidModuleName { value })
    } else {
        Ok(value)
    }
}

/// Names are echoed in errors, but one mentioning "pin" may be a mistyped `pin-value=…`
/// whose PIN ended up in the name.
fn shown_name(name: &str) -> String {
    if mentions_pin(name) {
        "(not shown: it mentions 'pin')".to_owned()
    } else {
        format!("{name:?}")
    }
}

fn mentions_pin(name: &str) -> bool {
    name.to_ascii_lowercase().contains("pin")
}

fn is_vendor_name(name: &str) -> bool {
    strip_prefix_ignore_case(name, "x-").is_some()
}

/// The attribute a value belongs to, for decoding it and naming it in errors.
#[derive(Clone, Copy)]
struct Attr<'a> {
    component: UriComponent,
    name: &'a str,
}

impl Attr<'_> {
    fn is_secret(self) -> bool {
        self.component == UriComponent::Query && self.name.eq_ignore_ascii_case(PIN_VALUE)
    }

    /// Describes part of the value for an error, unless the value is a PIN.
    fn excerpt(self, text: String) -> String {
        if self.is_secret() {
            "(not shown: the value is secret)".to_owned()
        } else {
            text
        }
    }

    fn duplicate(self) -> UriError {
        UriError::DuplicateAttribute {
            component: self.component,
            name: self.name.to_owned(),
        }
    }

    fn put<T>(self, slot: &mut Option<T>, value: T) -> Result<(), UriError> {
        if slot.is_some() {
            return Err(self.duplicate());
        }
        *slot = Some(value);
        Ok(())
    }

    /// Refuses malformed escapes and characters the component allows only encoded.
    fn check_encoding(self, raw: &str) -> Result<(), UriError> {
        let mut chars = raw.char_indices();
        while let Some((at, c)) = chars.next() {
            if c == '%' {
                let escape = raw.get(at..at + 3).filter(|e| is_hex_escape(e));
                if escape.is_none() {
                    let bad: String = raw.get(at..).unwrap_or_default().chars().take(3).collect();
                    return Err(UriError::InvalidPercentEscape {
                        component: self.component,
                        name: self.name.to_owned(),
                        found: self.excerpt(format!("{bad:?}")),
                    });
                }
                chars.nth(1);
            } else if !is_literal(c, self.component.encode_set()) {
                return Err(self.unencoded(c));
            }
        }
        Ok(())
    }

    fn unencoded(self, c: char) -> UriError {
        let mut buf = [0; 4];
        let escape = utf8_percent_encode(c.encode_utf8(&mut buf), EVERY_BYTE).to_string();
        UriError::UnencodedCharacter {
            component: self.component,
            name: self.name.to_owned(),
            found: self.excerpt(format!("{c:?} (write it as {escape})")),
        }
    }

    fn decode_bytes(self, raw: &str) -> Result<Vec<u8>, UriError> {
        self.check_encoding(raw)?;
        // Decoding only shrinks, so this never reallocates and leaves no stray copies of a PIN.
        let mut bytes = Vec::with_capacity(raw.len());
        bytes.extend(percent_decode_str(raw));
        Ok(bytes)
    }

    /// A text value: UTF-8 without NUL (only `id` takes arbitrary bytes).
    fn decode_text(self, raw: &str) -> Result<String, UriError> {
        let mut bytes = self.decode_bytes(raw)?;
        if bytes.contains(&0) {
            bytes.zeroize();
            return Err(UriError::NulCharacter {
                component: self.component,
                name: self.name.to_owned(),
            });
        }
        String::from_utf8(bytes).map_err(|err| {
            err.into_bytes().zeroize();
            UriError::InvalidUtf8 {
                component: self.component,
                name: self.name.to_owned(),
            }
        })
    }

    fn decode_secret(self, raw: &str) -> Result<SecretString, UriError> {
        let mut text = self.decode_text(raw)?;
        let secret = SecretString::from(text.as_str());
        text.zeroize();
        Ok(secret)
    }
}

fn is_hex_escape(escape: &str) -> bool {
    escape.bytes().skip(1).all(|b| b.is_ascii_hexdigit())
}

fn is_literal(c: char, set: &'static AsciiSet) -> bool {
    let mut buf = [0; 4];
    let text = c.encode_utf8(&mut buf);
    utf8_percent_encode(text, set).next() == Some(text)
}

/// The `;` or `&` separated parts of a component; an empty component has none.
fn segments(text: &str, component: UriComponent) -> impl Iterator<Item = &str> {
    (!text.is_empty())
        .then(|| text.split(component.separator()))
        .into_iter()
        .flatten()
}

fn split_attribute(segment: &str, component: UriComponent) -> Result<(&str, &str), UriError> {
    let Some((name, raw)) = segment.split_once('=') else {
        return Err(if segment.is_empty() {
            UriError::EmptyAttributeName { component }
        } else {
            UriError::MissingValue {
                component,
                name: shown_name(segment),
            }
        });
    };
    if name.is_empty() {
        return Err(UriError::EmptyAttributeName { component });
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(UriError::InvalidAttributeName {
            component,
            name: shown_name(name),
        });
    }
    Ok((name, raw))
}

impl FromStr for Pkcs11Uri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, UriError> {
        if s.len() > MAX_URI_LEN {
            return Err(UriError::TooLong {
                len: s.len(),
                max: MAX_URI_LEN,
            });
        }
        let rest = strip_prefix_ignore_case(s, SCHEME).ok_or(UriError::MissingScheme)?;
        if rest.contains('#') {
            return Err(UriError::Fragment);
        }
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut uri = Self::default();
        for segment in segments(path, UriComponent::Path) {
            let (name, raw) = split_attribute(segment, UriComponent::Path)?;
            uri.set_path_attribute(name, raw)?;
        }
        for segment in segments(query, UriComponent::Query) {
            let (name, raw) = split_attribute(segment, UriComponent::Query)?;
            // `?` is allowed in query values, so `…?pin-source=env:A?pin-value=1234` would keep
            // the PIN inside pin-source's value, to be echoed in errors and printed.
            if raw.to_ascii_lowercase().contains("pin-value=") {
                return Err(UriError::PinValueInValue);
            }
            uri.set_query_attribute(name, raw)?;
        }
        uri.check_combinations()?;
        Ok(uri)
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

    fn set_path_attribute(&mut self, name: &str, raw: &str) -> Result<(), UriError> {
        let Some(known) = find_path_attr(name) else {
            return self.set_vendor_path_attribute(name, raw);
        };
        let attr = Attr {
            component: UriComponent::Path,
            name: known.name,
        };
        match known.field {
            PathField::Text { slot, check, .. } => {
                let value = attr.decode_text(raw)?;
                check(&value)?;
                attr.put(slot(self), value)
            }
            PathField::SlotId => {
                let value = parse_slot_id(&attr.decode_text(raw)?)?;
                attr.put(&mut self.slot_id, value)
            }
            PathField::Id => attr.put(&mut self.id, attr.decode_bytes(raw)?),
            PathField::Type => attr.put(&mut self.object_type, attr.decode_text(raw)?.parse()?),
        }
    }

    fn set_vendor_path_attribute(&mut self, name: &str, raw: &str) -> Result<(), UriError> {
        if mentions_pin(name) {
            return Err(UriError::PinLikeQueryAttribute {
                name: name.to_owned(),
            });
        }
        if !is_vendor_name(name) {
            let name = name.to_owned();
            return Err(match QueryAttr::find(&name) {
                Some(_) => UriError::QueryAttributeInPath { name },
                None => UriError::UnknownPathAttribute { name },
            });
        }
        let attr = Attr {
            component: UriComponent::Path,
            name,
        };
        if self
            .vendor_path
            .iter()
            .any(|(seen, _)| seen.eq_ignore_ascii_case(name))
        {
            return Err(attr.duplicate());
        }
        let value = attr.decode_text(raw)?;
        self.vendor_path.push((name.to_owned(), value));
        Ok(())
    }

    fn set_query_attribute(&mut self, name: &str, raw: &str) -> Result<(), UriError> {
        let Some((name, known)) = QueryAttr::find(name) else {
            return self.set_other_query_attribute(name, raw);
        };
        let attr = Attr {
            component: UriComponent::Query,
            name,
        };
        match known {
            QueryAttr::ModuleName => {
                let value = parse_module_name(attr.decode_text(raw)?)?;
                attr.put(&mut self.module_name, value)
            }
            QueryAttr::ModulePath => {
                let value = parse_module_path(attr.decode_text(raw)?)?;
                attr.put(&mut self.module_path, value)
            }
            QueryAttr::PinSource => attr.put(&mut self.pin_source, attr.decode_text(raw)?.parse()?),
            QueryAttr::PinValue => attr.put(&mut self.pin_value, attr.decode_secret(raw)?),
        }
    }

    fn set_other_query_attribute(&mut self, name: &str, raw: &str) -> Result<(), UriError> {
        let name = name.to_owned();
        if find_path_attr(&name).is_some() {
            return Err(UriError::PathAttributeInQuery { name });
        }
        if mentions_pin(&name) {
            return Err(UriError::PinLikeQueryAttribute { name });
        }
        let attr = Attr {
            component: UriComponent::Query,
            name: &name,
        };
        let value = attr.decode_text(raw)?;
        self.vendor_query.push((name, value));
        Ok(())
    }

    fn check_combinations(&self) -> Result<(), UriError> {
        if self.pin_source.is_some() && self.pin_value.is_some() {
            return Err(UriError::PinSourceAndValue);
        }
        if self.module_path.is_some() && self.module_name.is_some() {
            return Err(UriError::ModulePathAndName);
        }
        Ok(())
    }

    fn path_value(&self, field: PathField) -> Option<String> {
        match field {
            PathField::Text { get, .. } => get(self).map(|v| encode_text(v, PATH_ENCODE)),
            PathField::SlotId => self.slot_id.map(|n| n.to_string()),
            PathField::Id => self
                .id
                .as_deref()
                .map(|bytes| percent_encode(bytes, EVERY_BYTE).to_string()),
            PathField::Type => self.object_type.map(|t| t.to_string()),
        }
    }

    fn path_attributes(&self) -> Vec<(&str, String)> {
        let standard = PATH_ATTRS
            .iter()
            .filter_map(|attr| Some((attr.name, self.path_value(attr.field)?)));
        let vendor = self
            .vendor_path
            .iter()
            .map(|(name, value)| (name.as_str(), encode_text(value, PATH_ENCODE)));
        standard.chain(vendor).collect()
    }

    /// The query in canonical order. `pin_value` is left out on purpose: see the type docs.
    fn query_attributes(&self) -> Vec<(&str, String)> {
        let module_name = self
            .module_name
            .as_deref()
            .map(|name| ("module-name", encode_text(name, QUERY_ENCODE)));
        let module_path = self
            .module_path
            .as_ref()
            .map(|path| ("module-path", escaped_path(path)));
        let pin_source = self
            .pin_source
            .as_ref()
            .map(|source| ("pin-source", source.uri_value()));
        let vendor = self
            .vendor_query
            .iter()
            .map(|(name, value)| (name.as_str(), encode_text(value, QUERY_ENCODE)));
        module_name
            .into_iter()
            .chain(module_path)
            .chain(pin_source)
            .chain(vendor)
            .collect()
    }
}

/// A path as a URI's query writes it (`module-path=`, `pin-source=file:`), percent-encoded like
/// every label in a URI: every message and log line that names a module or PIN file shows it
/// so, and no control character or escape sequence in a file name reaches a terminal or a log.
#[must_use]
pub fn escaped_path(path: &Path) -> String {
    percent_encode(path.as_os_str().as_encoded_bytes(), QUERY_ENCODE).to_string()
}

fn encode_text(value: &str, set: &'static AsciiSet) -> String {
    utf8_percent_encode(value, set).to_string()
}

fn write_attributes(
    f: &mut fmt::Formatter<'_>,
    attributes: &[(&str, String)],
    separator: char,
) -> fmt::Result {
    for (index, (name, value)) in attributes.iter().enumerate() {
        if index > 0 {
            f.write_char(separator)?;
        }
        write!(f, "{name}={value}")?;
    }
    Ok(())
}

/// The canonical URI; never includes `pin-value`.
impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SCHEME)?;
        write_attributes(f, &self.path_attributes(), UriComponent::Path.separator())?;
        let query = self.query_attributes();
        if !query.is_empty() {
            f.write_char('?')?;
            write_attributes(f, &query, UriComponent::Query.separator())?;
        }
        Ok(())
    }
}

struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// All fields, with `pin_value` shown as `<redacted>`.
impl fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Destructured so that a new field cannot be forgotten here.
        let Self {
            token,
            manufacturer,
            serial,
            model,
            library_manufacturer,
            library_description,
            library_version,
            slot_description,
            slot_manufacturer,
            slot_id,
            object,
            id,
            object_type,
            vendor_path,
            module_path,
            module_name,
            pin_source,
            pin_value,
            vendor_query,
        } = self;
        f.debug_struct("Pkcs11Uri")
            .field("token", token)
            .field("manufacturer", manufacturer)
            .field("serial", serial)
            .field("model", model)
            .field("library_manufacturer", library_manufacturer)
            .field("library_description", library_description)
            .field("library_version", library_version)
            .field("slot_description", slot_description)
            .field("slot_manufacturer", slot_manufacturer)
            .field("slot_id", slot_id)
            .field("object", object)
            .field("id", id)
            .field("object_type", object_type)
            .field("vendor_path", vendor_path)
            .field("module_path", module_path)
            .field("module_name", module_name)
            .field("pin_source", pin_source)
            .field("pin_value", &pin_value.as_ref().map(|_| Redacted))
            .field("vendor_query", vendor_query)
            .finish()
    }
}

/// Field by field; PINs are compared by their exposed text.
impl PartialEq for Pkcs11Uri {
    fn eq(&self, other: &Self) -> bool {
        // Destructured so that a new field cannot be forgotten here.
        let Self {
            token,
            manufacturer,
            serial,
            model,
            library_manufacturer,
            library_description,
            library_version,
            slot_description,
            slot_manufacturer,
            slot_id,
            object,
            id,
            object_type,
            vendor_path,
            module_path,
            module_name,
            pin_source,
            pin_value,
            vendor_query,
        } = self;
        *token == other.token
            && *manufacturer == other.manufacturer
            && *serial == other.serial
            && *model == other.model
            && *library_manufacturer == other.library_manufacturer
            && *library_description == other.library_description
            && *library_version == other.library_version
            && *slot_description == other.slot_description
            && *slot_manufacturer == other.slot_manufacturer
            && *slot_id == other.slot_id
            && *object == other.object
            && *id == other.id
            && *object_type == other.object_type
            && *vendor_path == other.vendor_path
            && *module_path == other.module_path
            && *module_name == other.module_name
            && *pin_source == other.pin_source
            && exposed(pin_value.as_ref()) == exposed(other.pin_value.as_ref())
            && *vendor_query == other.vendor_query
    }
}

impl Eq for Pkcs11Uri {}

fn exposed(pin: Option<&SecretString>) -> Option<&str> {
    pin.map(ExposeSecret::expose_secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_pasted_into_pin_source_is_not_echoed() {
        let err = "pkcs11:token=a?pin-source=493817"
            .parse::<Pkcs11Uri>()
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("493817") && err.contains("file:/absolute/path"),
            "{err}"
        );
        for pasted in ["file:493817", "env:493817", "FILE:493817"] {
            let err = format!("pkcs11:token=a?pin-source={pasted}")
                .parse::<Pkcs11Uri>()
                .unwrap_err()
                .to_string();
            assert!(!err.contains("493817"), "{err}");
            assert!(
                err.to_lowercase()
                    .contains(&pasted[..pasted.find(':').unwrap() + 1].to_lowercase()),
                "the form is named: {err}"
            );
        }
    }

    #[test]
    fn vendor_path_names_that_mention_a_pin_are_refused() {
        let err = "pkcs11:token=a;x-pin=4938"
            .parse::<Pkcs11Uri>()
            .unwrap_err()
            .to_string();
        assert!(!err.contains("4938"), "{err}");
    }

    #[test]
    fn redacted_form_drops_unknown_query_values_and_the_pin_value() {
        let uri: Pkcs11Uri = "pkcs11:token=a;object=k?password=hunter2&x-v=1"
            .parse()
            .unwrap();
        assert!(
            uri.to_string().contains("hunter2"),
            "Display round-trips everything but pin-value"
        );
        assert_eq!(uri.redacted(), "pkcs11:token=a;object=k");
        let with_pin: Pkcs11Uri = "pkcs11:token=a?pin-value=s3cr3t".parse().unwrap();
        assert!(!with_pin.redacted().contains("s3cr3t"));
    }
    use proptest::prelude::*;

    fn parse(text: &str) -> Pkcs11Uri {
        text.parse()
            .unwrap_or_else(|err| panic!("{text} should parse: {err}"))
    }

    fn refusal(text: &str) -> String {
        match text.parse::<Pkcs11Uri>() {
            Ok(uri) => panic!("{text} should be refused, got {uri:?}"),
            Err(err) => err.to_string(),
        }
    }

    fn assert_refused(text: &str, expected: &[&str]) {
        let message = refusal(text);
        for part in expected {
            assert!(message.contains(part), "{text}: {message:?} lacks {part:?}");
        }
    }

    // RFC 7512 §3 examples, in the order the RFC gives them.

    #[test]
    fn rfc_empty_uri() {
        assert_eq!(parse("pkcs11:"), Pkcs11Uri::default());
        assert_eq!(Pkcs11Uri::default().to_string(), "pkcs11:");
    }

    #[test]
    fn rfc_object_and_type() {
        let uri = parse("pkcs11:object=my-pubkey;type=public");
        assert_eq!(uri.object.as_deref(), Some("my-pubkey"));
        assert_eq!(uri.object_type, Some(ObjectType::Public));
        assert!(!uri.has_token_selector());
    }

    #[test]
    fn rfc_pin_source_file() {
        let uri = parse("pkcs11:object=my-key;type=private?pin-source=file:/etc/token");
        assert_eq!(uri.object_type, Some(ObjectType::Private));
        assert_eq!(uri.pin_source, Some(PinSource::File("/etc/token".into())));
    }

    #[test]
    fn rfc_full_token_description_formats_canonically() {
        let uri = parse(
            "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;\
             manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;type=cert;\
             id=%69%95%3E%5C%F4%BD%EC%91;serial=?pin-source=file:/etc/token_pin",
        );
        assert_eq!(uri.token.as_deref(), Some("The Software PKCS#11 Softtoken"));
        assert_eq!(uri.manufacturer.as_deref(), Some("Snake Oil, Inc."));
        assert_eq!(uri.model.as_deref(), Some("1.0"));
        assert_eq!(uri.serial.as_deref(), Some(""));
        assert_eq!(uri.object.as_deref(), Some("my-certificate"));
        assert_eq!(uri.object_type, Some(ObjectType::Cert));
        assert_eq!(
            uri.id.as_deref(),
            Some(&[0x69, 0x95, 0x3E, 0x5C, 0xF4, 0xBD, 0xEC, 0x91][..])
        );
        assert_eq!(
            uri.pin_source,
            Some(PinSource::File("/etc/token_pin".into()))
        );
        assert_eq!(
            uri.to_string(),
            "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;\
             manufacturer=Snake%20Oil,%20Inc.;serial=;model=1.0;object=my-certificate;\
             id=%69%95%3E%5C%F4%BD%EC%91;type=cert?pin-source=file:/etc/token_pin"
        );
    }

    #[test]
    fn rfc_module_name() {
        let uri = parse("pkcs11:object=my-sign-key;type=private?module-name=mypkcs11");
        assert_eq!(uri.module_name.as_deref(), Some("mypkcs11"));
    }

    #[test]
    fn rfc_module_path() {
        let uri = parse("pkcs11:object=my-sign-key;type=private?module-path=/mnt/libmypkcs11.so.1");
        assert_eq!(
            uri.module_path,
            Some(PathBuf::from("/mnt/libmypkcs11.so.1"))
        );
    }

    #[test]
    fn rfc_pin_value_is_read_but_not_written() {
        let uri = parse(
            "pkcs11:token=Software%20PKCS%2311%20softtoken;\
             manufacturer=Snake%20Oil,%20Inc.?pin-value=the-pin",
        );
        assert_eq!(uri.token.as_deref(), Some("Software PKCS#11 softtoken"));
        assert_eq!(exposed(uri.pin_value.as_ref()), Some("the-pin"));
        assert_eq!(
            uri.to_string(),
            "pkcs11:token=Software%20PKCS%2311%20softtoken;manufacturer=Snake%20Oil,%20Inc."
        );
    }

    #[test]
    fn rfc_slot_description() {
        let uri = parse("pkcs11:slot-description=Sun%20Metaslot");
        assert_eq!(uri.slot_description.as_deref(), Some("Sun Metaslot"));
        assert!(uri.has_token_selector());
    }

    #[test]
    fn rfc_library_attributes() {
        let uri = parse(
            "pkcs11:library-manufacturer=Snake%20Oil,%20Inc.;\
             library-description=Soft%20Token%20Library;library-version=1.23",
        );
        assert_eq!(uri.library_manufacturer.as_deref(), Some("Snake Oil, Inc."));
        assert_eq!(
            uri.library_description.as_deref(),
            Some("Soft Token Library")
        );
        assert_eq!(uri.library_version.as_deref(), Some("1.23"));
        assert!(!uri.has_token_selector());
    }

    #[test]
    fn rfc_mixed_case_id_escapes() {
        let uri = parse(
            "pkcs11:token=My%20token%25%20created%20by%20Joe;library-version=3;\
             id=%01%02%03%Ba%dd%Ca%fe%04%05%06",
        );
        assert_eq!(uri.token.as_deref(), Some("My token% created by Joe"));
        assert_eq!(uri.library_version.as_deref(), Some("3"));
        assert_eq!(
            uri.id.as_deref(),
            Some(&[1, 2, 3, 0xBA, 0xDD, 0xCA, 0xFE, 4, 5, 6][..])
        );
        assert!(
            uri.to_string()
                .ends_with("id=%01%02%03%BA%DD%CA%FE%04%05%06")
        );
    }

    #[test]
    fn rfc_escaped_separator_in_label() {
        let uri = parse(
            "pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=my-certificate;type=cert",
        );
        assert_eq!(uri.token.as_deref(), Some("A name with a substring %;"));
    }

    #[test]
    fn rfc_utf8_label() {
        let uri = parse(
            "pkcs11:token=Name%20with%20a%20small%20A%20with%20acute:%20%C3%A1;\
             object=my-certificate;type=cert",
        );
        assert_eq!(
            uri.token.as_deref(),
            Some("Name with a small A with acute: \u{e1}")
        );
    }

    /// The RFC's vendor path attribute `vendor-aaa` has no `x-` prefix, so this design cannot
    /// tell it from a misspelled standard attribute; a path constraint we do not understand
    /// is refused rather than ignored (RFC 7512 §2.5: such a URI matches nothing).
    #[test]
    fn rfc_unprefixed_vendor_path_attribute_is_refused() {
        assert_refused(
            "pkcs11:token=my-token;object=my-certificate;type=cert;vendor-aaa=value-a\
             ?pin-source=file:/etc/token_pin&vendor-bbb=value-b",
            &["unknown PKCS#11 URI path attribute 'vendor-aaa'", "x-"],
        );
    }

    /// The same example with an `x-` vendor path attribute is kept; the unknown query
    /// attribute is kept too, as RFC 7512 lets a consumer ignore query attributes.
    #[test]
    fn rfc_vendor_example_with_x_prefix_round_trips() {
        let text = "pkcs11:token=my-token;object=my-certificate;type=cert;x-aaa=value-a\
                    ?pin-source=file:/etc/token_pin&vendor-bbb=value-b";
        let uri = parse(text);
        assert_eq!(uri.vendor_path, [("x-aaa".into(), "value-a".into())]);
        assert_eq!(uri.vendor_query, [("vendor-bbb".into(), "value-b".into())]);
        assert_eq!(uri.to_string(), text);
    }

    // Our product examples.

    #[test]
    fn product_example_with_module_and_pin_file() {
        let text = "pkcs11:token=acc;object=ns-prod;type=private\
                    ?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/secrets/pin";
        let uri = parse(text);
        let expected = Pkcs11Uri {
            token: Some("acc".into()),
            object: Some("ns-prod".into()),
            object_type: Some(ObjectType::Private),
            module_path: Some("/usr/lib/softhsm/libsofthsm2.so".into()),
            pin_source: Some(PinSource::File("/run/secrets/pin".into())),
            ..Pkcs11Uri::default()
        };
        assert_eq!(uri, expected);
        assert_eq!(uri.to_string(), text);
        assert!(uri.has_token_selector());
    }

    #[test]
    fn product_example_with_id_and_pin_env() {
        let text = "pkcs11:token=acc;id=%01%02?pin-source=env:SUITEKEY_PIN";
        let uri = parse(text);
        assert_eq!(uri.id.as_deref(), Some(&[1, 2][..]));
        assert_eq!(uri.pin_source, Some(PinSource::Env("SUITEKEY_PIN".into())));
        assert_eq!(uri.to_string(), text);
    }

    // Reading and writing details.

    #[test]
    fn display_uses_canonical_order_and_encoding() {
        let uri = parse(
            "PKCS11:x-b=2;type=private;object=k%2Fey;slot-id=007;TOKEN=t\
             ?x-q=a/b?c&pin-source=/run/pin&module-path=/usr/lib/x.so",
        );
        assert_eq!(
            uri.to_string(),
            "pkcs11:token=t;slot-id=7;object=k%2Fey;type=private;x-b=2\
             ?module-path=/usr/lib/x.so&pin-source=file:/run/pin&x-q=a/b?c"
        );
    }

    #[test]
    fn id_is_always_fully_encoded() {
        let uri = Pkcs11Uri {
            id: Some(b"ab\xA2".to_vec()),
            ..Pkcs11Uri::default()
        };
        assert_eq!(uri.to_string(), "pkcs11:id=%61%62%A2");
        assert_eq!(parse("pkcs11:id=ab%a2").id.as_deref(), Some(&b"ab\xA2"[..]));
    }

    #[test]
    fn pin_source_forms() {
        let file = |path: &str| Some(PinSource::File(path.into()));
        let cases = [
            ("file:/run/pin", file("/run/pin")),
            ("file:///run/pin", file("/run/pin")),
            ("file://localhost/run/pin", file("/run/pin")),
            ("FILE:/run/pin", file("/run/pin")),
            ("/run/pin", file("/run/pin")),
            ("file:/run/my%20pin", file("/run/my pin")),
            (
                "env:SUITEKEY_PIN",
                Some(PinSource::Env("SUITEKEY_PIN".into())),
            ),
            ("env:_x9", Some(PinSource::Env("_x9".into()))),
        ];
        for (value, expected) in cases {
            let uri = parse(&format!("pkcs11:token=t?pin-source={value}"));
            assert_eq!(uri.pin_source, expected, "{value}");
        }
        let odd = PinSource::File("//server/pin".into());
        assert_eq!(odd.uri_value(), "file:////server/pin");
        assert_eq!(odd.uri_value().parse::<PinSource>().ok(), Some(odd));
    }

    #[test]
    fn empty_query_and_values_are_allowed() {
        assert_eq!(parse("pkcs11:?"), Pkcs11Uri::default());
        assert_eq!(parse("pkcs11:object=").object.as_deref(), Some(""));
        assert_eq!(parse("pkcs11:id=").id.as_deref(), Some(&[][..]));
    }

    #[test]
    fn case_insensitive_names_and_type() {
        let uri = parse("pkcs11:Object=k;TYPE=Secret-Key?Module-Name=softhsm2");
        assert_eq!(uri.object.as_deref(), Some("k"));
        assert_eq!(uri.object_type, Some(ObjectType::SecretKey));
        assert_eq!(uri.module_name.as_deref(), Some("softhsm2"));
    }

    #[test]
    fn object_type_text_round_trips() {
        for t in ObjectType::ALL {
            assert_eq!(t.to_string().parse::<ObjectType>().ok(), Some(t));
        }
    }

    // Refusals: each names the attribute (and its value when it is not secret).

    #[test]
    fn refuses_invalid_percent_escapes() {
        assert_refused("pkcs11:token=a%2", &["'token'", "\"%2\"", "%25"]);
        assert_refused("pkcs11:object=%zz", &["'object'", "\"%zz\""]);
        assert_refused("pkcs11:object=%\u{e9}", &["'object'", "percent escape"]);
        assert_refused(
            "pkcs11:token=t?module-name=a%4",
            &["'module-name'", "\"%4\""],
        );
    }

    #[test]
    fn refuses_invalid_utf8() {
        assert_refused("pkcs11:object=%FF", &["'object'", "UTF-8"]);
        assert_refused("pkcs11:x-v=%C3", &["'x-v'", "UTF-8"]);
    }

    #[test]
    fn refuses_unencoded_characters() {
        assert_refused("pkcs11:token=my token", &["'token'", "' '", "%20"]);
        assert_refused("pkcs11:object=a/b", &["'object'", "'/'", "%2F"]);
        assert_refused("pkcs11:token=\u{e1}", &["'token'", "%C3%A1"]);
        assert_refused("pkcs11:token=t?x-a=b;c", &["'x-a'", "%3B"]);
    }

    #[test]
    fn refuses_empty_attribute_names() {
        assert_refused("pkcs11:=x", &["path", "empty attribute name"]);
        assert_refused(
            "pkcs11:token=a;;object=b",
            &["path", "empty attribute name", "';'"],
        );
        assert_refused("pkcs11:token=a;", &["empty attribute name"]);
        assert_refused(
            "pkcs11:token=a?&x-a=b",
            &["query", "empty attribute name", "'&'"],
        );
    }

    #[test]
    fn refuses_malformed_attributes() {
        assert_refused("pkcs11:token", &["path attribute \"token\"", "no '='"]);
        assert_refused("pkcs11:to ken=a", &["\"to ken\"", "not valid"]);
    }

    #[test]
    fn refuses_duplicate_attributes() {
        assert_refused(
            "pkcs11:token=a;token=b",
            &["path attribute 'token'", "twice"],
        );
        assert_refused("pkcs11:id=%01;ID=%02", &["'id'", "twice"]);
        assert_refused("pkcs11:slot-id=1;slot-id=1", &["'slot-id'", "twice"]);
        assert_refused("pkcs11:x-a=1;X-A=2", &["'X-A'", "twice"]);
        assert_refused(
            "pkcs11:?module-path=/a.so&module-path=/b.so",
            &["query attribute 'module-path'", "twice"],
        );
        assert_refused(
            "pkcs11:?pin-source=/a&pin-source=/b",
            &["'pin-source'", "twice"],
        );
    }

    #[test]
    fn vendor_query_attributes_may_repeat() {
        let uri = parse("pkcs11:?x-a=1&x-a=2");
        assert_eq!(
            uri.vendor_query,
            [("x-a".into(), "1".into()), ("x-a".into(), "2".into())]
        );
    }

    #[test]
    fn refuses_bad_slot_ids() {
        for value in ["abc", "-1", "+1", "1 ", "", "18446744073709551616", "0x10"] {
            let text = format!("pkcs11:slot-id={}", value.replace(' ', "%20"));
            assert_refused(&text, &["slot-id", &format!("{value:?}")]);
        }
        assert_eq!(
            parse("pkcs11:slot-id=18446744073709551615").slot_id,
            Some(u64::MAX)
        );
    }

    #[test]
    fn refuses_bad_library_versions() {
        for value in ["", "1.", ".1", "1.2.3", "v1", "1.x"] {
            assert_refused(
                &format!("pkcs11:library-version={value}"),
                &["library-version", &format!("{value:?}")],
            );
        }
    }

    #[test]
    fn paths_are_escaped_for_messages_as_in_uris() {
        let path = Path::new("/tmp/a\u{1b}]0;t\u{7}\n b%/\u{e9}.so");
        assert_eq!(escaped_path(path), "/tmp/a%1B]0%3Bt%07%0A%20b%25/%C3%A9.so");
        let uri = Pkcs11Uri {
            module_path: Some(path.to_owned()),
            ..Pkcs11Uri::default()
        };
        assert_eq!(
            uri.to_string(),
            format!("pkcs11:?module-path={}", escaped_path(path))
        );
        assert_eq!(uri.to_string().parse::<Pkcs11Uri>().unwrap(), uri);
    }

    #[test]
    fn refuses_library_version_parts_above_255() {
        // CK_VERSION holds each part in one byte: 256 matches no module, and a long number
        // must not wrap around to one that does.
        for value in ["256", "1.256", "300.1", "255.1000", "18446744073709551617"] {
            assert_refused(
                &format!("pkcs11:library-version={value}"),
                &["library-version", &format!("{value:?}"), "0 to 255"],
            );
        }
        for value in ["0", "255", "255.255", "2.20", "007.01"] {
            let uri = parse(&format!("pkcs11:library-version={value}"));
            assert_eq!(uri.library_version.as_deref(), Some(value));
        }
    }

    #[test]
    fn refuses_a_nul_in_any_text_attribute() {
        // A module reads labels as C strings: "Test\0Label" would select "Test".
        let path_attrs = PATH_ATTRS
            .iter()
            .filter(|a| matches!(a.field, PathField::Text { .. }))
            .map(|a| (a.name, format!("pkcs11:{}=Test%00Label", a.name)));
        let others = [
            ("x-vendor", "pkcs11:x-vendor=a%00b".to_owned()),
            ("module-name", "pkcs11:?module-name=soft%00hsm2".to_owned()),
            (
                "module-path",
                "pkcs11:?module-path=/usr/lib/a%00.so".to_owned(),
            ),
            (
                "pin-source",
                "pkcs11:?pin-source=file:/run/pin%00x".to_owned(),
            ),
            ("x-query", "pkcs11:?x-query=a%00".to_owned()),
            ("pin-value", "pkcs11:?pin-value=4938%00".to_owned()),
        ];
        for (name, text) in path_attrs.chain(others) {
            let message = refusal(&text);
            assert!(
                message.contains(&format!("'{name}'")) && message.contains("NUL"),
                "{text}: {message}"
            );
            assert!(!message.contains("4938"), "{text}: {message}");
        }
        assert_eq!(parse("pkcs11:id=%00%01").id.as_deref(), Some(&[0u8, 1][..]));
    }

    #[test]
    fn refuses_unknown_types() {
        assert_refused(
            "pkcs11:type=secret",
            &["type \"secret\"", "secret-key", "private"],
        );
    }

    #[test]
    fn refuses_pin_source_with_pin_value() {
        assert_refused(
            "pkcs11:token=t?pin-source=file:/p&pin-value=1",
            &["pin-source", "pin-value"],
        );
    }

    #[test]
    fn refuses_module_path_with_module_name() {
        assert_refused(
            "pkcs11:token=t?module-name=softhsm2&module-path=/usr/lib/x.so",
            &["module-path", "module-name"],
        );
    }

    #[test]
    fn refuses_bad_modules() {
        assert_refused(
            "pkcs11:?module-path=lib/x.so",
            &["module-path \"lib/x.so\"", "absolute"],
        );
        assert_refused("pkcs11:?module-name=../x", &["module-name \"../x\""]);
        assert_refused("pkcs11:?module-name=", &["module-name \"\""]);
    }

    #[test]
    fn refuses_unknown_path_attributes() {
        assert_refused(
            "pkcs11:token=t;objetc=k",
            &[
                "path attribute 'objetc'",
                "token, manufacturer",
                "slot-id",
                "x-",
            ],
        );
        assert_refused("pkcs11:module-path=/x.so", &["'module-path'", "after '?'"]);
        assert_refused("pkcs11:?token=t", &["'token'", "before '?'"]);
    }

    #[test]
    fn refuses_pin_like_unknown_query_attributes() {
        assert_refused("pkcs11:?pin_value=1", &["'pin_value'", "pin-source"]);
        assert_refused("pkcs11:?x-pin=1", &["'x-pin'"]);
    }

    #[test]
    fn refuses_bad_pin_sources() {
        let forms = [
            "file:/absolute/path",
            "file:///absolute/path",
            "/absolute/path",
            "env:NAME",
        ];
        for value in [
            "relative/pin",
            "file:relative",
            "file:",
            "file://host/pin",
            "file://localhost",
            "env:",
            "env:1BAD",
            "env:A-B",
            "|/usr/bin/get-pin",
        ] {
            let message = refusal(&format!("pkcs11:?pin-source={value}"));
            // A refused value might be a PIN: only its form (`file:`, `env:`) is named.
            let rest = value.split_once(':').map_or(value, |(_, rest)| rest);
            assert!(rest.is_empty() || !message.contains(rest), "{message}");
            let form = ["file:", "env:"].into_iter().find(|p| value.starts_with(p));
            assert!(form.is_none_or(|f| message.contains(f)), "{message}");
            for form in forms {
                assert!(message.contains(form), "{message} lacks {form}");
            }
        }
    }

    #[test]
    fn refuses_fragments_schemes_and_long_input() {
        assert_refused("pkcs11:token=a#b", &["fragment", "%23"]);
        assert_refused("token=a", &["pkcs11:"]);
        assert_refused("pkcs12:token=a", &["pkcs11:"]);
        assert_refused("", &["pkcs11:"]);
        assert_refused("pk\u{e9}", &["pkcs11:"]);
        let long = format!("pkcs11:object={}", "a".repeat(MAX_URI_LEN));
        assert_refused(&long, &["bytes long", "8192"]);
    }

    #[test]
    fn a_pin_value_after_a_second_question_mark_is_refused_unseen() {
        for text in [
            "pkcs11:object=k?pin-source=env:A?pin-value=7531",
            "pkcs11:object=k?module-path=/usr/lib/x.so?PIN-VALUE=7531",
            "pkcs11:object=k?x-vendor=a?pin-value=7531",
        ] {
            let err = text.parse::<Pkcs11Uri>().unwrap_err();
            assert!(matches!(err, UriError::PinValueInValue), "{text}: {err}");
            assert!(!err.to_string().contains("7531"), "{err}");
            assert!(
                err.to_string()
                    .contains("separate query attributes with '&'")
            );
        }
    }

    #[test]
    fn pin_value_never_leaks() {
        let pin = "secret1234";
        let uri = parse(&format!("pkcs11:token=acc?pin-value={pin}"));
        assert!(!uri.to_string().contains(pin));
        let debug = format!("{uri:?}");
        assert!(!debug.contains(pin), "{debug}");
        assert!(debug.contains("pin_value: Some(<redacted>)"), "{debug}");
        for text in [
            format!("pkcs11:token=acc;bogus=1?pin-value={pin}"),
            format!("pkcs11:token=acc;slot-id=x?pin-value={pin}"),
            format!("pkcs11:token=acc?pin-value={pin}&pin-source=file:/p"),
            format!("pkcs11:token=acc?pin-value={pin}&pin-value={pin}"),
            format!("pkcs11:token=acc?pin-value={pin}&module-path=lib.so"),
            format!("pkcs11:token=acc?pin-value={pin}%zz"),
            format!("pkcs11:token=acc?pin-value=%{pin}"),
            format!("pkcs11:token=acc?pin-value={pin} "),
            format!("pkcs11:token=acc?pin-value={pin}\u{e9}"),
            format!("pkcs11:token=acc?pin-value={pin}%FF"),
            format!("pkcs11:token=acc?PIN-VALUE={pin}%FF"),
            format!("pkcs11:token=acc?pin-value={pin}#x"),
            format!("pkcs11:token=acc;pin-value={pin}"),
            format!("pkcs11:token=acc?pin_value={pin}"),
            format!("pkcs11:token=acc?pin-value:{pin}"),
            format!("pkcs11:token=acc?pin-value:{pin}=1"),
        ] {
            let err = text.parse::<Pkcs11Uri>().err();
            let shown = format!(
                "{} {err:?}",
                err.as_ref().map(ToString::to_string).unwrap_or_default()
            );
            assert!(err.is_some(), "{text} should be refused");
            assert!(!shown.contains(pin), "{text}: {shown}");
        }
    }

    #[test]
    fn equality_compares_pins() {
        let a = parse("pkcs11:?pin-value=1");
        assert_eq!(a, parse("pkcs11:?pin-value=1"));
        assert_ne!(a, parse("pkcs11:?pin-value=2"));
        assert_ne!(a, parse("pkcs11:"));
    }

    #[test]
    fn errors_say_what_to_do() {
        // Every refusal above is built from these; each message should carry a remedy.
        let message = refusal("pkcs11:token=t;objetc=k");
        assert!(message.contains("known ones are"));
        let message = refusal("pkcs11:slot-id=x");
        assert!(message.contains("token= or serial="));
    }

    // Property tests.

    /// Any text a URI may carry: every character but NUL, which is refused.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::collection::vec(any::<char>().prop_filter("not NUL", |c| *c != '\0'), 0..12)
                .prop_map(String::from_iter),
            "[;?&%/ =#a-zA-Z0-9\u{e1}\u{1F511}-]{0,12}",
        ]
    }

    /// `MAJOR` or `MAJOR.MINOR`, each part a byte (leading zeros included).
    fn library_version() -> impl Strategy<Value = String> {
        "[0-9]{1,3}(\\.[0-9]{1,3})?".prop_filter("parts are bytes", |v| {
            v.split('.').all(|part| part.parse::<u8>().is_ok())
        })
    }

    fn absolute_path() -> impl Strategy<Value = PathBuf> {
        text().prop_map(|t| PathBuf::from(format!("/{t}")))
    }

    fn module() -> impl Strategy<Value = (Option<String>, Option<PathBuf>)> {
        let name = text().prop_filter("a bare name", |n| !n.is_empty() && !n.contains(['/', '\\']));
        prop_oneof![
            Just((None, None)),
            name.prop_map(|n| (Some(n), None)),
            absolute_path().prop_map(|p| (None, Some(p))),
        ]
    }

    fn pin_source() -> impl Strategy<Value = PinSource> {
        prop_oneof![
            absolute_path().prop_map(PinSource::File),
            "[A-Za-z_][A-Za-z0-9_]{0,15}".prop_map(PinSource::Env),
        ]
    }

    fn vendor_query_name() -> impl Strategy<Value = String> {
        "(x-)?[a-zA-Z0-9_-]{1,10}".prop_filter("not a known or PIN-like name", |name| {
            find_path_attr(name).is_none() && QueryAttr::find(name).is_none() && !mentions_pin(name)
        })
    }

    prop_compose! {
        fn any_uri()(
            labels in prop::collection::vec(prop::option::of(text()), 9),
            library_version in prop::option::of(library_version()),
            slot_id in prop::option::of(any::<u64>()),
            id in prop::option::of(prop::collection::vec(any::<u8>(), 0..16)),
            object_type in prop::option::of(prop::sample::select(ObjectType::ALL.to_vec())),
            vendor_path in prop::collection::btree_map("x-[a-z0-9_-]{0,8}", text(), 0..3),
            (module_name, module_path) in module(),
            pin_source in prop::option::of(pin_source()),
            vendor_query in prop::collection::vec((vendor_query_name(), text()), 0..3),
        ) -> Pkcs11Uri {
            let mut labels = labels.into_iter();
            let mut label = || labels.next().flatten();
            Pkcs11Uri {
                token: label(),
                manufacturer: label(),
                serial: label(),
                model: label(),
                library_manufacturer: label(),
                library_description: label(),
                library_version,
                slot_description: label(),
                slot_manufacturer: label(),
                slot_id,
                object: label(),
                id,
                object_type,
                vendor_path: vendor_path.into_iter().collect(),
                module_path,
                module_name,
                pin_source,
                pin_value: None,
                vendor_query,
            }
        }
    }

    fn uri_like() -> impl Strategy<Value = String> {
        prop_oneof![
            "pkcs11:[a-z=;&?%0-9A-Fx/:. -]{0,48}",
            any_uri().prop_map(|uri| uri.to_string()),
            (any_uri(), "[a-z0-9%]{0,8}").prop_map(|(uri, pin)| {
                let uri = Pkcs11Uri {
                    pin_source: None,
                    ..uri
                }
                .to_string();
                let separator = if uri.contains('?') { '&' } else { '?' };
                format!("{uri}{separator}pin-value={pin}")
            }),
        ]
    }

    proptest! {
        #[test]
        fn format_then_parse_gives_back_the_value(uri in any_uri()) {
            let text = uri.to_string();
            let parsed = text.parse::<Pkcs11Uri>();
            prop_assert!(parsed.is_ok(), "{text}: {parsed:?}");
            let parsed = parsed.unwrap_or_default();
            prop_assert_eq!(&parsed, &uri);
            prop_assert_eq!(parsed.to_string(), text);
        }

        #[test]
        fn parse_format_parse_is_stable(input in uri_like()) {
            if let Ok(first) = input.parse::<Pkcs11Uri>() {
                let text = first.to_string();
                let second = text.parse::<Pkcs11Uri>();
                prop_assert!(second.is_ok(), "{input} -> {text}: {second:?}");
                let second = second.unwrap_or_default();
                let expected = Pkcs11Uri { pin_value: None, ..first };
                prop_assert_eq!(&second, &expected);
                prop_assert_eq!(second.to_string(), text);
            }
        }

        #[test]
        fn parsing_never_panics(input in any::<String>()) {
            let _ = input.parse::<Pkcs11Uri>();
        }

        /// Arbitrary bytes through the fuzzing entry point, which also checks that an accepted
        /// URI formats and parses back to itself.
        #[test]
        fn arbitrary_bytes_parse_or_are_refused_and_accepted_ones_round_trip(
            data in prop::collection::vec(any::<u8>(), 0..200)
        ) {
            crate::fuzzing::pkcs11_uri(&data);
        }

        /// Anything over the limit is refused with the size error before it is looked at,
        /// whatever it holds.
        #[test]
        fn input_over_the_limit_is_refused_with_the_size_error(
            extra in 1..4096usize,
            fill in "[a-z;=%?&#\u{e1}]",
        ) {
            let mut input = format!("pkcs11:object={}", fill.repeat(MAX_URI_LEN));
            input.truncate(input.floor_char_boundary(MAX_URI_LEN));
            let at_limit = input.parse::<Pkcs11Uri>();
            prop_assert!(!matches!(at_limit, Err(UriError::TooLong { .. })), "{:?}", at_limit.err());
            input.push_str(&"a".repeat(extra));
            let refused = input.parse::<Pkcs11Uri>();
            let is_too_long = matches!(
                refused,
                Err(UriError::TooLong { len, max: MAX_URI_LEN }) if len == input.len()
            );
            prop_assert!(is_too_long, "{refused:?}");
        }

        /// `id` escapes decode to the bytes they name, in upper or lower case hex, and `id`
        /// formats back fully encoded.
        #[test]
        fn percent_escapes_decode_to_their_bytes(
            bytes in prop::collection::vec(any::<u8>(), 0..64),
            upper in any::<bool>(),
        ) {
            let escaped: String = bytes
                .iter()
                .map(|b| if upper { format!("%{b:02X}") } else { format!("%{b:02x}") })
                .collect();
            let uri: Pkcs11Uri = format!("pkcs11:id={escaped}").parse().unwrap();
            prop_assert_eq!(uri.id.as_deref(), Some(&bytes[..]));
            let upper_escaped = escaped.to_uppercase();
            prop_assert_eq!(uri.to_string(), format!("pkcs11:id={upper_escaped}"));
        }

        /// A valid URI with one attribute replaced by junk is refused with a message, or
        /// accepted and then round-trips: never a panic, never a PIN in the message.
        #[test]
        fn a_valid_uri_with_one_attribute_mutated_is_refused_or_round_trips(
            uri in any_uri(),
            at in any::<prop::sample::Index>(),
            junk in prop_oneof![
                "[ -~]{0,24}",
                ".{0,12}",
                "pin-value=[0-9]{4}",
                "(token|object|id|slot-id|type|module-path|pin-source)=[%0-9a-zA-Z/:;?&=]{0,16}",
            ],
        ) {
            let uri = uri.to_string();
            let separator = if uri.contains('?') { '&' } else { '?' };
            let text = format!("{uri}{separator}pin-value=7531");
            let segments: Vec<&str> = text.split(['?', ';', '&']).collect();
            let victim = segments[at.index(segments.len())];
            let mutated = text.replacen(victim, &junk, 1);
            match mutated.parse::<Pkcs11Uri>() {
                Ok(_) => crate::fuzzing::pkcs11_uri(mutated.as_bytes()),
                Err(e) => {
                    let message = e.to_string();
                    prop_assert!(!message.is_empty());
                    prop_assert!(junk.contains("7531") || !message.contains("7531"), "{message}");
                }
            }
        }
    }
}
