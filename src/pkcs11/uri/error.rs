//! Why a string is not a PKCS#11 URI this program accepts.

use super::{UriComponent, known_path_names};

/// Why a string is not a PKCS#11 URI this program accepts. Messages never contain a PIN.
#[derive(Debug, thiserror::Error)]
pub enum UriError {
    /// The input is longer than [`MAX_URI_LEN`](super::MAX_URI_LEN).
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
         file:///absolute/path, /absolute/path, env:NAME and credential:NAME (systemd's \
         $CREDENTIALS_DIRECTORY)"
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
