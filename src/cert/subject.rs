//! A certificate's subject: as the user wrote it (RFC 4514), or `CN=<key label>`.

use std::str::FromStr as _;

use x509_cert::name::Name;

use crate::kind::{HasKind, Kind};

/// Why a subject is not usable.
#[derive(Debug, thiserror::Error)]
pub enum SubjectError {
    /// Not an RFC 4514 name.
    #[error(
        "--subject '{text}' is not an RFC 4514 name ({reason}); write it like 'CN=NetSuite M2M prod,O=Acme'"
    )]
    Syntax {
        /// What was given.
        text: String,
        /// The parser's words.
        reason: String,
    },
    /// An empty name.
    #[error("--subject is empty; give at least a CN, e.g. 'CN=NetSuite M2M prod'")]
    Empty,
}

impl HasKind for SubjectError {
    /// The subject is the user's input.
    fn kind(&self) -> Kind {
        Kind::Usage
    }
}

/// The certificate's subject: as given (RFC 4514), or `CN=<key label>` (`CN=suitekey` for a
/// key without one).
pub fn subject_name(given: Option<&str>, label: Option<&str>) -> Result<Name, SubjectError> {
    let text = match given {
        Some(s) => s.to_owned(),
        None => format!("CN={}", escape_rdn_value(label.unwrap_or("suitekey"))),
    };
    let name = Name::from_str(&text).map_err(|e| SubjectError::Syntax {
        text: text.clone(),
        reason: e.to_string(),
    })?;
    if name.is_empty() {
        return Err(SubjectError::Empty);
    }
    Ok(name)
}

/// RFC 4514 §2.4 escaping, so any key label can become a CN.
fn escape_rdn_value(value: &str) -> String {
    let mut out = String::new();
    for (i, c) in value.chars().enumerate() {
        let edge = (i == 0 && (c == '#' || c == ' ')) || (i + 1 == value.len() && c == ' ');
        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_key_label_becomes_a_valid_common_name() {
        for label in [
            "ns-prod",
            "a,b",
            "x=y+z",
            " lead",
            "trail ",
            "#hash",
            "q\"uote\\",
        ] {
            let name = subject_name(None, Some(label)).unwrap();
            let cn = name.common_name().unwrap().unwrap();
            assert_eq!(cn.value(), label, "{label}");
        }
        assert_eq!(
            subject_name(Some("CN=x,O=Acme"), Some("ignored"))
                .unwrap()
                .to_string(),
            "CN=x,O=Acme"
        );
        assert!(subject_name(Some("CN"), None).is_err());
    }
}
