//! Reading a `pkcs11:` string: splitting it into attributes, percent-decoding their values,
//! and checking each value and the combination (see the module documentation for the choices).

use std::path::PathBuf;
use std::str::FromStr;

use percent_encoding::{AsciiSet, percent_decode_str, utf8_percent_encode};
use secrecy::SecretString;
use zeroize::Zeroize;

use super::{
    EVERY_BYTE, MAX_URI_LEN, ObjectType, PIN_VALUE, PathField, PinSource, PinValue, Pkcs11Uri,
    QueryAttr, SCHEME, UriComponent, UriError, find_path_attr,
};

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
        let shown = ["file:", "env:", "credential:"]
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
        if let Some(name) = strip_prefix_ignore_case(value, "credential:") {
            return if is_credential_name(name) {
                Ok(Self::Credential(name.to_owned()))
            } else {
                Err(refuse(
                    "names a credential that is not a plain file name (1 to 255 letters, digits \
                     and '_', '-', '.', '@', '+'; not '.' or '..')",
                ))
            };
        }
        if value.starts_with('/') {
            return Ok(Self::File(PathBuf::from(value)));
        }
        Err(refuse("is not a form suitekey reads"))
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

/// A name `LoadCredential=` can give and `$CREDENTIALS_DIRECTORY/NAME` can only mean one file
/// in that directory: no slash, not `.` or `..`, and nothing a terminal would act on.
fn is_credential_name(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.@+".contains(c))
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| text.get(prefix.len()..))
        .flatten()
}

pub(super) fn check_library_version(value: &str) -> Result<(), UriError> {
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

pub(super) fn mentions_pin(name: &str) -> bool {
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

    fn decode_secret(self, raw: &str) -> Result<PinValue, UriError> {
        let mut text = self.decode_text(raw)?;
        let secret = SecretString::from(text.as_str());
        text.zeroize();
        Ok(PinValue::new(secret))
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
}
