//! The form rules: what the HTTP request must be before its assertion is looked at.

use std::collections::HashMap;

use super::refusal::Refusal;
use super::{TokenRequest, clip};

/// The only grant type NetSuite's M2M flow uses.
pub const GRANT_TYPE: &str = "client_credentials";
/// The only client assertion type (RFC 7523).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The form rules: content type, one client authentication method, exactly the three fields
/// with the right grant and assertion types. Returns the `client_assertion`.
pub fn check_form(req: &TokenRequest<'_>) -> Result<String, Refusal> {
    let mime = req
        .content_type
        .and_then(|ct| ct.split(';').next())
        .map(str::trim);
    if !mime.is_some_and(|m| m.eq_ignore_ascii_case("application/x-www-form-urlencoded")) {
        return Err(Refusal::request(format!(
            "content type {:?} is not application/x-www-form-urlencoded",
            req.content_type.map(clip)
        )));
    }
    if req.has_authorization {
        return Err(Refusal::request(
            "an Authorization header was sent besides the client assertion (several client authentication methods)",
        ));
    }
    let mut fields: HashMap<String, String> = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(req.body) {
        if !matches!(
            name.as_ref(),
            "grant_type" | "client_assertion_type" | "client_assertion"
        ) {
            return Err(Refusal::request(format!(
                "unexpected field {:?}; only grant_type, client_assertion_type and client_assertion are allowed",
                clip(&name)
            )));
        }
        if fields
            .insert(name.to_string(), value.into_owned())
            .is_some()
        {
            return Err(Refusal::request(format!("field {name} is duplicated")));
        }
    }
    let field = |name: &str| {
        fields
            .get(name)
            .ok_or_else(|| Refusal::request(format!("field {name} is missing")))
    };
    if field("grant_type")? != GRANT_TYPE {
        return Err(Refusal::request(format!("grant_type is not {GRANT_TYPE}")));
    }
    if field("client_assertion_type")? != ASSERTION_TYPE {
        return Err(Refusal::request(format!(
            "client_assertion_type is not {ASSERTION_TYPE}"
        )));
    }
    field("client_assertion").cloned()
}
