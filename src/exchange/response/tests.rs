//! The answer's parsing, against hostile bodies: sizes, nesting, overflow, types, encodings.

use std::time::{Duration, SystemTime};

use super::*;

#[test]
fn bad_success_bodies_are_refused_with_a_reason() {
    let now = SystemTime::now();
    for (body, reason) in [
        (
            r#"{"expires_in":60,"token_type":"Bearer"}"#,
            "no access_token",
        ),
        (
            r#"{"access_token":"a b","expires_in":60,"token_type":"Bearer"}"#,
            "printable",
        ),
        (
            r#"{"access_token":"t","expires_in":"soon","token_type":"Bearer"}"#,
            "not a number",
        ),
        (
            r#"{"access_token":"t","expires_in":-5,"token_type":"Bearer"}"#,
            "not a number",
        ),
        (
            r#"{"access_token":"t","expires_in":0,"token_type":"Bearer"}"#,
            "outside",
        ),
        (
            r#"{"access_token":"t","token_type":"Bearer"}"#,
            "no expires_in",
        ),
        (
            r#"{"access_token":"t","expires_in":60,"token_type":"MAC"}"#,
            "not Bearer",
        ),
        (r#"{"access_token":"t","expires_in":60}"#, "no token_type"),
        ("<html>", "not the JSON"),
        (r#"{"access_token":"t","exp"#, "not the JSON"),
    ] {
        let err = parse_success(body.as_bytes(), now).unwrap_err();
        assert!(err.contains(reason), "{body}: {err}");
    }
}

fn success(access_token: &str, expires_in: &str, token_type: &str) -> String {
    format!(
        r#"{{"access_token":{access_token},"expires_in":{expires_in},"token_type":{token_type}}}"#
    )
}

#[test]
fn an_expiry_beyond_the_clock_is_an_error_not_a_panic() {
    // The latest instant the platform's clock can hold, give or take a minute.
    let mut late = SystemTime::UNIX_EPOCH;
    for step in (0..63).rev().map(|bit| Duration::from_secs(1 << bit)) {
        if let Some(later) = late.checked_add(step) {
            late = later;
        }
    }
    let body = success(r#""t""#, "3600", r#""Bearer""#);
    let err = parse_success(body.as_bytes(), late).unwrap_err();
    assert!(err.contains("beyond what the system clock"), "{err}");
}

#[test]
fn tokens_outside_rfc_6750_syntax_are_refused_without_echo() {
    let now = SystemTime::now();
    for good in [
        "t",
        "aZ09-._~+/",
        "abc=",
        "abc==",
        "~root",
        "eyJh.eyJz.c2ln",
    ] {
        let body = success(&format!("\"{good}\""), "60", r#""Bearer""#);
        let token = parse_success(body.as_bytes(), now).expect(good);
        assert_eq!(token.expose_secret(), good);
    }
    for bad in [
        "x;touch${IFS}/tmp/pwned;",
        "$(id)",
        "`id`",
        "a'b",
        r#"a\"b"#,
        r"a\\b",
        "a=b",
        "=",
        "=abc",
        "a,b",
        "a%0Ab",
        "caf\u{e9}",
        "ab\\u0000",
    ] {
        let body = success(&format!("\"{bad}\""), "60", r#""Bearer""#);
        let err = parse_success(body.as_bytes(), now).unwrap_err();
        assert!(err.contains("RFC 6750"), "{bad}: {err}");
        assert!(bad.len() < 3 || !err.contains(bad), "{bad} echoed: {err}");
    }
}

#[test]
fn an_absurdly_long_access_token_is_refused_with_the_limit() {
    let now = SystemTime::now();
    let fits = "t".repeat(MAX_ACCESS_TOKEN_LEN);
    let body = success(&format!("\"{fits}\""), "60", r#""Bearer""#);
    assert!(parse_success(body.as_bytes(), now).is_ok());
    let long = "t".repeat(MAX_ACCESS_TOKEN_LEN + 1);
    let body = success(&format!("\"{long}\""), "60", r#""Bearer""#);
    let err = parse_success(body.as_bytes(), now).unwrap_err();
    assert!(err.contains(&MAX_ACCESS_TOKEN_LEN.to_string()), "{err}");
    assert!(!err.contains("ttt"), "{err}");
}

#[test]
fn deep_nesting_and_bad_encodings_are_refused_without_a_crash() {
    let now = SystemTime::now();
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    for (body, reason) in [
        (
            success(r#""t""#, &deep, r#""Bearer""#).into_bytes(),
            "recursion limit",
        ),
        // Unknown fields are skipped without recursion, however deep.
        (
            format!("{}1{}", "{\"a\":".repeat(50_000), "}".repeat(50_000)).into_bytes(),
            "no access_token",
        ),
        (
            b"{\"access_token\":\"\xff\xfe\",\"expires_in\":60}".to_vec(),
            "invalid JSON",
        ),
        (b"\xef\xbb\xbf{}".to_vec(), "invalid JSON"),
        (b"{\"access_token\":\"t\\ud800\"}".to_vec(), "invalid JSON"),
        (Vec::new(), "truncated"),
    ] {
        let err = parse_success(&body, now).unwrap_err();
        assert!(err.contains(reason), "{err}");
        assert!(err.len() < 300, "{err}");
        let _ = error_fields(&body);
    }
}

#[test]
fn server_chosen_values_are_echoed_only_when_short_and_printable() {
    let now = SystemTime::now();
    let long_type = format!("\"{}\"", "X".repeat(1000));
    for (body, shown, hidden) in [
        (success(r#""t""#, "60", r#""MAC""#), "'MAC'", ""),
        (success(r#""t""#, "60", &long_type), "1000 bytes", "XXXX"),
        (
            success(r#""t""#, "60", r#""Bear\u001b[2Jer""#),
            "bytes, not shown",
            "\u{1b}",
        ),
        (
            success(
                r#""t""#,
                r#""SECRETSECRETSECRETSECRETSECRETSECRETSECRET""#,
                r#""Bearer""#,
            ),
            "not shown",
            "SECRET",
        ),
        (r#""SECRET-TOKEN""#.to_owned(), "wrong shape", "SECRET"),
        (success("7", "60", r#""Bearer""#), "wrong shape", ""),
    ] {
        let err = parse_success(body.as_bytes(), now).unwrap_err();
        assert!(err.contains(shown), "{body}: {err}");
        assert!(hidden.is_empty() || !err.contains(hidden), "{body}: {err}");
    }
}

/// JSON values of every kind, nested a little.
fn any_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_give_an_error_or_a_sane_token(
        data in prop::collection::vec(any::<u8>(), 0..256)
    ) {
        crate::fuzzing::token_response(&data);
    }

    #[test]
    fn json_like_garbage_never_panics(
        body in r#"[{}\[\]":,0-9a-z_.eE+\- \\]{0,80}"#
    ) {
        crate::fuzzing::token_response(body.as_bytes());
    }

    /// A valid response with one field replaced by any JSON value is refused, naming the
    /// problem, unless the value happens to be valid; the token is never echoed.
    #[test]
    fn one_field_of_another_type_is_refused_or_valid(
        field in 0..3usize,
        value in any_json(),
    ) {
        let mut body = serde_json::json!({
            "access_token": "SECRETTOKEN",
            "expires_in": 3600,
            "token_type": "Bearer",
        });
        let name = ["access_token", "expires_in", "token_type"][field];
        body[name] = value.clone();
        let now = SystemTime::now();
        match parse_success(body.to_string().as_bytes(), now) {
            Ok(token) => {
                let secs = token.expires_at().duration_since(now).unwrap().as_secs();
                prop_assert!((1..=MAX_EXPIRES_IN).contains(&secs));
                prop_assert!(name != "token_type" || value.as_str().is_some_and(|t| t.eq_ignore_ascii_case("bearer")));
            }
            Err(err) => {
                prop_assert!(!err.contains("SECRETTOKEN"), "{err}");
                let named = err.contains(name) || err.contains("wrong shape");
                prop_assert!(named, "{name} = {value}: {err}");
            }
        }
    }

    /// Every number or numeric string for `expires_in` gives an error or exactly that many
    /// seconds, within a day: no overflow, no rounding, no negative or zero lifetime.
    #[test]
    fn expires_in_is_exact_or_refused(
        text in prop_oneof![
            any::<i128>().prop_map(|n| n.to_string()),
            any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()).prop_map(|f| format!("{f:e}")),
            (0..=100_000u64).prop_map(|n| n.to_string()),
            (0..=100_000u64).prop_map(|n| format!("\"{n}\"")),
            "-?[0-9]{1,30}(\\.[0-9]{1,5})?([eE][+-]?[0-9]{1,4})?",
        ],
    ) {
        let now = SystemTime::now();
        let body = success(r#""t""#, &text, r#""Bearer""#);
        match parse_success(body.as_bytes(), now) {
            Ok(token) => {
                let secs = token.expires_at().duration_since(now).unwrap();
                prop_assert!(secs >= Duration::from_secs(1) && secs <= Duration::from_secs(MAX_EXPIRES_IN));
                prop_assert_eq!(secs.subsec_nanos(), 0);
                let value: f64 = text.trim_matches('"').parse().unwrap();
                prop_assert_eq!(secs.as_secs() as f64, value);
            }
            Err(err) => prop_assert!(err.contains("expires_in") || err.contains("not the JSON"), "{text}: {err}"),
        }
    }
}
