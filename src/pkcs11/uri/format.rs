//! Writing a [`Pkcs11Uri`] back: the canonical order and the minimal percent-encoding, never
//! the `pin-value`.

use std::fmt::{self, Write as _};
use std::path::Path;

use percent_encoding::{AsciiSet, percent_encode, utf8_percent_encode};

use super::{
    EVERY_BYTE, PATH_ATTRS, PATH_ENCODE, PathField, PinSource, Pkcs11Uri, QUERY_ENCODE, SCHEME,
    UriComponent,
};

impl PinSource {
    /// The percent-encoded query value; `file://` is kept when the path itself starts with
    /// `//`, which `file:` alone would turn into a host name.
    pub(super) fn uri_value(&self) -> String {
        match self {
            Self::File(path) => {
                let bytes = path.as_os_str().as_encoded_bytes();
                let authority = if bytes.starts_with(b"//") { "//" } else { "" };
                format!("file:{authority}{}", escaped_path(path))
            }
            Self::Env(name) => format!("env:{}", utf8_percent_encode(name, QUERY_ENCODE)),
            Self::Credential(name) => {
                format!("credential:{}", utf8_percent_encode(name, QUERY_ENCODE))
            }
        }
    }
}

impl Pkcs11Uri {
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
