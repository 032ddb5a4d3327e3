use super::*;

const ID_A: &str = "x1MST4MIlpfQnkY3cIPbW05n7jcJQX0rXv8WvN5Ngd8";
const ID_B: &str = "NPMnRyPg-2jZ4JrpGJh35vv9CUq1O8tKdnP9c1zWJpA";

fn at(rfc3339: &str) -> SystemTime {
    date_time(rfc3339).unwrap()
}

#[test]
fn a_list_is_read_from_a_bare_array_or_an_object_holding_one() {
    let item = format!(r#"{{"certificate_id":"{ID_A}","revoked":false}}"#);
    for body in [
        format!("[{item}]"),
        format!(r#"{{"items":[{item}],"count":1}}"#),
        format!(r#"{{"certificates":[{item}]}}"#),
        format!(r#"{{"links":[],"hasMore":false,"whatever":[{item}]}}"#),
    ] {
        let list = parse_list(body.as_bytes()).unwrap();
        // "links" is an array too, but holds no certificate: only the items that do count.
        let ids: Vec<String> = list.iter().map(|c| c.id.to_string()).collect();
        assert!(ids.is_empty() || ids == [ID_A], "{body}: {ids:?}");
    }
    let list = parse_list(format!(r#"{{"items":[{item}]}}"#).as_bytes()).unwrap();
    assert_eq!(list.len(), 1);
    assert!(parse_list(b"[]").unwrap().is_empty());
    for bad in [&b"{}"[..], b"\"x\"", b"<html>", b"[{"] {
        assert!(parse_list(bad).is_err(), "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn list_items_are_read_leniently_and_unknown_fields_ignored() {
    let body = format!(
        r#"[
          {{"certificate_id":"{ID_A}","algorithm":"EC","valid_from":"2025-01-01",
            "valid_until":"2027-01-01T00:00:00Z","created":"2025-01-01","revoked":false,
            "application":{{"id":"7","name":"x"}},"entity":{{"id":-5,"name":"Admin"}},
            "role":{{"id":"3","name":"Administrator"}},"extra":[1,2,3]}},
          {{"certificate_id":"{ID_B}","invalidated":"T","valid_until":1798761600000,
            "role":"1001","entity":42}},
          {{"id":"no certificate_id here"}},
          {{"certificate_id":"has spaces, not an id"}},
          17
        ]"#
    );
    let list = parse_list(body.as_bytes()).unwrap();
    assert_eq!(list.len(), 2);
    let (a, b) = (&list[0], &list[1]);
    assert_eq!(a.id.as_str(), ID_A);
    assert!(!a.revoked);
    assert_eq!(a.valid_until, Some(at("2027-01-01T00:00:00Z")));
    assert_eq!(
        (a.role, a.entity),
        (Some(InternalId(3)), Some(InternalId(-5)))
    );
    assert_eq!(a.algorithm.as_deref(), Some("EC"));
    assert!(b.revoked, "invalidated T");
    assert_eq!(
        b.valid_until,
        Some(UNIX_EPOCH + Duration::from_secs(1_798_761_600))
    );
    assert_eq!(
        (b.role, b.entity),
        (Some(InternalId(1001)), Some(InternalId(42)))
    );
    let shown = a.to_string();
    assert!(
        shown.contains(ID_A) && shown.contains("role 3") && shown.contains("entity -5"),
        "{shown}"
    );
    assert!(b.to_string().ends_with("revoked)"), "{b}");
}

#[test]
fn active_means_neither_revoked_nor_expired() {
    let now = at("2026-06-01T00:00:00Z");
    let cert = |revoked, until: Option<&str>| ListedCertificate {
        id: ID_A.parse().unwrap(),
        revoked,
        valid_until: until.map(at),
        role: None,
        entity: None,
        algorithm: None,
    };
    assert!(cert(false, Some("2026-06-02")).is_active(now));
    assert!(
        cert(false, None).is_active(now),
        "an unreadable expiry counts as active"
    );
    assert!(!cert(true, Some("2027-01-01")).is_active(now));
    assert!(!cert(false, Some("2026-05-31T23:59:59Z")).is_active(now));
}

#[test]
fn times_are_read_in_every_form_seen_and_odd_ones_left_unknown() {
    let midnight = at("2027-01-31T00:00:00Z");
    for same in [
        "2027-01-31",
        "2027-01-31T00:00:00Z",
        "2027-01-31 00:00:00",
        "2027-01-31T00:00:00.000Z",
        "2027-01-31T02:00:00+02:00",
        "2027-01-30T19:00:00-05:00",
        "1/31/2027",
        "1801353600",
        "1801353600000",
    ] {
        assert_eq!(timestamp(&Value::from(same)), Some(midnight), "{same}");
    }
    assert_eq!(timestamp(&Value::from(1_801_353_600_u64)), Some(midnight));
    for odd in [
        "",
        "soon",
        "2027-13-01",
        "31.01.2027",
        "2027-01-31T25:00:00Z",
        // Offsets that are not a time zone, and a hostile one that would overflow.
        "2027-01-31T00:00:00+9999999999999999",
        "2027-01-31T00:00:00-99999999999999:00",
        "2027-01-31T00:00:00+24:00",
        "2027-01-31T00:00:00+02:60",
        "2027-01-31T00:00:00+2:00",
        "2027-01-31T00:00:00+02:00:00",
    ] {
        assert_eq!(timestamp(&Value::from(odd)), None, "{odd}");
    }
    assert_eq!(timestamp(&Value::Bool(true)), None);
}

#[test]
fn internal_ids_are_numbers_or_numeric_strings() {
    assert_eq!("3".parse::<InternalId>().unwrap(), InternalId(3));
    assert_eq!(" -5 ".parse::<InternalId>().unwrap(), InternalId(-5));
    for bad in ["", "-", "3.0", "abc", "0x10", "1e3", &"9".repeat(19)] {
        assert!(bad.parse::<InternalId>().is_err(), "{bad}");
    }
    for (json, id) in [
        ("3", 3),
        ("\"-5\"", -5),
        (r#"{"id":"7"}"#, 7),
        (r#"{"id":8}"#, 8),
    ] {
        let value: Value = serde_json::from_str(json).unwrap();
        assert_eq!(
            InternalId::from_field(Some(&value)),
            Some(InternalId(id)),
            "{json}"
        );
    }
    for odd in ["true", "\"x\"", "{}", r#"{"name":"x"}"#, "1.5"] {
        let value: Value = serde_json::from_str(odd).unwrap();
        assert_eq!(InternalId::from_field(Some(&value)), None, "{odd}");
    }
}

#[test]
fn an_upload_is_sent_as_netsuites_json_and_its_answer_read_if_it_has_an_id() {
    let upload = Upload {
        file_content: "-----BEGIN CERTIFICATE-----\nMII…\n-----END CERTIFICATE-----\n",
        role: InternalId(3),
        entity: InternalId(-5),
    };
    let json: Value = serde_json::to_value(&upload).unwrap();
    assert_eq!(json["role"], 3);
    assert_eq!(json["entity"], -5);
    assert!(
        json["fileContent"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN")
    );
    let answer = format!(
        r#"{{"certificate_id":"{ID_A}","algorithm":"EC","invalidated":false,"entity_role_id":9}}"#
    );
    assert_eq!(
        parse_upload_answer(answer.as_bytes()).unwrap().as_str(),
        ID_A
    );
    assert_eq!(
        parse_upload_answer(format!("[{answer}]").as_bytes())
            .unwrap()
            .as_str(),
        ID_A
    );
    for none in [&b""[..], b"Created", b"{}", b"{\"certificate_id\":5}"] {
        assert_eq!(parse_upload_answer(none), None);
    }
}

#[test]
fn error_bodies_are_read_in_netsuites_shapes_and_nothing_odd_is_shown() {
    let rest = br#"{"type":"https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.4",
        "title":"Forbidden","status":403,
        "o:errorDetails":[{"detail":"Permission Violation: you need the Manage own OAuth 2.0 Client Credentials certificates permission.",
        "o:errorCode":"INSUFFICIENT_PERMISSION"}]}"#;
    let e = ApiErrorBody::parse(rest);
    assert_eq!(e.title.as_deref(), Some("Forbidden"));
    assert_eq!(e.codes, ["INSUFFICIENT_PERMISSION"]);
    assert!(e.mentions("insufficient_permission") && e.mentions("manage own"));
    assert!(
        e.to_string().starts_with("Forbidden: Permission Violation"),
        "{e}"
    );
    let oauth = ApiErrorBody::parse(br#"{"error":"invalid_token","error_description":"expired"}"#);
    assert_eq!(oauth.to_string(), "invalid_token: expired");
    assert_eq!(
        ApiErrorBody::parse(b"Successfully revoked").details,
        ["Successfully revoked"]
    );
    let hostile = ApiErrorBody::parse(b"line\x1b[31m red");
    assert!(hostile.is_empty(), "{hostile:?}");
    let long = format!(r#"{{"title":"{}"}}"#, "x".repeat(400));
    assert!(ApiErrorBody::parse(long.as_bytes()).is_empty());
}

#[test]
fn the_api_paths_carry_the_client_and_certificate_ids() {
    let client: ClientId = "abc123".parse().unwrap();
    let id: CertificateId = ID_A.parse().unwrap();
    assert_eq!(
        certificates_path(&client),
        "/services/rest/auth/oauth2/v1/clients/abc123/certificates"
    );
    assert_eq!(
        revoke_path(&client, &id),
        format!("/services/rest/auth/oauth2/v1/clients/abc123/certificates/{ID_A}/revoke")
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The certificate API's answers come from the network: no body makes the readers panic.
        #[test]
        fn reading_any_answer_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_list(&body);
            let _ = parse_upload_answer(&body);
            let _ = ApiErrorBody::parse(&body);
        }

        /// List entries with odd field values (dates with any offset, ids of any shape) are
        /// read or refused, never a panic.
        #[test]
        fn odd_list_entries_never_panic(
            until in "[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2})?([+-][0-9]{1,20}(:[0-9]{1,20})?|Z)?",
            role in "-?[0-9]{1,25}",
            revoked in "(true|false|\"T\"|\"F\"|null|[0-9]{1,3})",
        ) {
            let body = format!(
                r#"[{{"certificate_id":"{ID_A}","valid_until":"{until}","role":{{"id":"{role}"}},"entity":{{"id":{role}}},"revoked":{revoked}}}]"#
            );
            let _ = parse_list(body.as_bytes());
        }
    }
}
