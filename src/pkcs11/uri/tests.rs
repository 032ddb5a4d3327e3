use std::path::Path;

use secrecy::ExposeSecret as _;

use super::parse::mentions_pin;
use super::*;

fn exposed(pin: Option<&PinValue>) -> Option<&str> {
    pin.map(|p| p.pin().expose_secret())
}

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
        (
            "credential:suitekey.pin",
            Some(PinSource::Credential("suitekey.pin".into())),
        ),
        (
            "CREDENTIAL:a@b+c-d_e",
            Some(PinSource::Credential("a@b+c-d_e".into())),
        ),
    ];
    for (value, expected) in cases {
        let uri = parse(&format!("pkcs11:token=t?pin-source={value}"));
        assert_eq!(uri.pin_source, expected, "{value}");
    }
    for bad in [
        "credential:",
        "credential:.",
        "credential:..",
        "credential:a/b",
        "credential:%2Fetc%2Fpin",
        "credential:a%20b",
        "credential:x%1b",
    ] {
        let err = format!("pkcs11:token=t?pin-source={bad}")
            .parse::<Pkcs11Uri>()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("credential:…") && err.contains("plain file name"),
            "{bad}: {err}"
        );
    }
    let named = PinSource::Credential("pin".into());
    assert_eq!(named.uri_value(), "credential:pin");
    assert_eq!(named.uri_value().parse::<PinSource>().ok(), Some(named));
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
        "[A-Za-z0-9_@+-][A-Za-z0-9_.@+-]{0,15}".prop_map(PinSource::Credential),
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

#[test]
fn a_key_ref_names_one_private_key() {
    for (text, expected) in [
        ("pkcs11:token=a;object=k;type=cert", "names a cert object"),
        ("pkcs11:token=a;type=private", "names no key"),
        (
            "pkcs11:token=a;object=k;x-slot-hint=3",
            "the vendor attribute 'x-slot-hint'",
        ),
        (
            "pkcs11:token=a;object=k;objetc=j",
            "unknown PKCS#11 URI path attribute",
        ),
    ] {
        let err = text.parse::<KeyRef>().unwrap_err().to_string();
        assert!(err.contains(expected), "{text}: {err}");
    }
    for text in [
        "pkcs11:object=k",
        "pkcs11:id=%01;type=private?pin-value=1234",
        "pkcs11:token=a;object=k;type=PRIVATE",
    ] {
        let key: KeyRef = text.parse().unwrap();
        assert_eq!(key.to_string(), parse(text).to_string());
        assert_eq!(*key, parse(text));
    }
}
