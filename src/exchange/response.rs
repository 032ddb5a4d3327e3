//! Reading the endpoint's answer: the body, capped in size; a success parsed into an
//! [`AccessToken`] (RFC 6750's token syntax, `expires_in` as a number or a numeric string);
//! NetSuite's error fields; and the server's clock, from its `Date` header.

use std::time::{Duration, SystemTime};

use reqwest::header::{DATE, HeaderMap};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::token::AccessToken;

/// Responses larger than this are refused: NetSuite's answers are a few hundred bytes, and a
/// bigger one is a misdirected request (a portal page, a proxy) that must not fill memory.
pub const MAX_BODY: usize = 64 * 1024;

/// A `Date` header further than this from the local clock is reported with the error.
pub const CLOCK_SKEW_LIMIT: Duration = Duration::from_secs(30);

/// The longest `expires_in` accepted; NetSuite's tokens live 3600 s, and a cache must not keep
/// a token for days because a server said so.
const MAX_EXPIRES_IN: u64 = 86_400;

/// The longest access token accepted. NetSuite's are about 1 KiB; one much longer would not
/// fit the `Authorization` header limits of most servers, so it is refused here, clearly.
pub const MAX_ACCESS_TOKEN_LEN: usize = 16 * 1024;

/// Server clock minus local clock, in seconds, when the `Date` header shows more than
/// [`CLOCK_SKEW_LIMIT`] between them.
pub(super) fn clock_skew(headers: &HeaderMap, now: SystemTime) -> Option<i64> {
    let date = headers.get(DATE)?.to_str().ok()?;
    let server = httpdate::parse_http_date(date).ok()?;
    let skew = match server.duration_since(now) {
        Ok(ahead) => i64::try_from(ahead.as_secs()).ok()?,
        Err(behind) => -i64::try_from(behind.duration().as_secs()).ok()?,
    };
    (skew.unsigned_abs() > CLOCK_SKEW_LIMIT.as_secs()).then_some(skew)
}

/// What a clock skew means, and what to do about it.
pub(super) fn skew_message(skew: i64) -> String {
    let side = if skew > 0 { "behind" } else { "ahead of" };
    format!(
        "the server's clock differs from this machine's by {} s (this machine is {side} it); NetSuite refuses assertions from the future — fix the local clock (NTP)",
        skew.unsigned_abs()
    )
}

/// Why a response body could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("the response is larger than {} KiB", MAX_BODY / 1024)]
    TooLarge,
    #[error("the response was cut short: {0}")]
    Read(reqwest::Error),
}

/// The body, read chunk by chunk and abandoned as soon as it exceeds [`MAX_BODY`].
pub(crate) async fn read_capped(
    response: &mut reqwest::Response,
) -> Result<Zeroizing<Vec<u8>>, BodyError> {
    let announced = response.content_length().unwrap_or(0);
    if announced > MAX_BODY as u64 {
        return Err(BodyError::TooLarge);
    }
    // Zeroizing: a success body holds the access token.
    let mut body = Zeroizing::new(Vec::with_capacity(announced as usize));
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// NetSuite's `{"error": …}` fields, if the body is such JSON.
pub(crate) fn error_fields(body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: Option<String>,
        error_description: Option<String>,
    }
    // Codes and descriptions are shown to the user: keep only printable, short text.
    let clean = |s: String| {
        let printable = s.len() <= 200 && s.chars().all(|c| !c.is_control());
        printable.then_some(s)
    };
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => (e.error.and_then(clean), e.error_description.and_then(clean)),
        Err(_) => (None, None),
    }
}

/// A success body: `access_token`, `expires_in` (number or numeric string), `token_type`
/// (Bearer, any case). The agent's answers have this form too. Values the server chose are
/// echoed in errors only when short and printable, and never the token.
pub(crate) fn parse_success(body: &[u8], now: SystemTime) -> Result<AccessToken, String> {
    #[derive(Deserialize)]
    struct SuccessBody {
        access_token: Option<String>,
        expires_in: Option<serde_json::Value>,
        token_type: Option<String>,
    }
    let parsed: SuccessBody = serde_json::from_slice(body).map_err(|e| not_json(&e))?;
    let secret = SecretString::from(parsed.access_token.ok_or("no access_token in the body")?);
    let token = secret.expose_secret();
    if token.len() > MAX_ACCESS_TOKEN_LEN {
        return Err(format!(
            "the access_token is {} bytes, more than the {MAX_ACCESS_TOKEN_LEN} accepted \
             (NetSuite's are about 1 KiB); check that the token URL is NetSuite's",
            token.len()
        ));
    }
    if !is_bearer_token_syntax(token) {
        return Err(format!(
            "the access_token is empty or holds characters outside RFC 6750's token syntax \
             (printable ASCII letters, digits, -._~+/ then trailing =), which a bearer token \
             never needs ({} bytes, not shown)",
            token.len()
        ));
    }
    let secs = expires_in(parsed.expires_in.as_ref())?;
    match parsed.token_type.as_deref() {
        Some(t) if t.eq_ignore_ascii_case("bearer") => {}
        Some(t) => return Err(format!("token_type {} is not Bearer", shown(t))),
        None => return Err("no token_type in the body".into()),
    }
    let beyond = "the token's expiry is beyond what the system clock can represent";
    AccessToken::new(secret, Duration::from_secs(secs), now).ok_or_else(|| beyond.to_owned())
}

/// RFC 6750's `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
/// Every bearer token has this form; holding a token to it means a server's (or a socket
/// peer's) choice of token can carry no header, shell or curl-config syntax into what
/// suitekey prints or sets.
fn is_bearer_token_syntax(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// Why a body is not token-response JSON. Only syntax errors are quoted: serde's messages for
/// values of the wrong type repeat the value, which came from the server.
fn not_json(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Data => "JSON of the wrong shape (an object with access_token, expires_in \
                           and token_type is expected)"
            .to_owned(),
        Category::Eof => "truncated JSON".to_owned(),
        Category::Syntax | Category::Io => format!("invalid JSON ({e})"),
    };
    format!("the body is not the JSON a token response carries: {what}")
}

/// A server-chosen value for an error message: quoted when short and printable, else only its
/// length (it could be anything, even a token sent in the wrong field).
fn shown(value: &str) -> String {
    if value.len() <= 40 && value.chars().all(|c| !c.is_control()) {
        format!("'{value}'")
    } else {
        format!("({} bytes, not shown)", value.len())
    }
}

/// `expires_in` as seconds, from a JSON number or a numeric string.
fn expires_in(value: Option<&serde_json::Value>) -> Result<u64, String> {
    use serde_json::Value;
    let value = value.ok_or("no expires_in in the body")?;
    let secs = match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    let text = value.to_string();
    match secs {
        Some(s) if (1..=MAX_EXPIRES_IN).contains(&s) => Ok(s),
        Some(_) => Err(format!(
            "expires_in {} is outside 1..={MAX_EXPIRES_IN} seconds",
            shown(&text)
        )),
        None => Err(format!(
            "expires_in {} is not a number of seconds",
            shown(&text)
        )),
    }
}

#[cfg(test)]
mod tests;
