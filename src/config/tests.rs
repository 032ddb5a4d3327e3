use std::path::PathBuf;

use proptest::prelude::*;

use super::file::{default_path_from, open_with_default};
use super::*;
use crate::jose::Alg;
use crate::netsuite::Scopes;

const FULL: &str = r#"
[profiles.prod]
key = "pkcs11:token=acc;object=ns-prod?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/secrets/pin"
client-id = "abc123"
certificate-id = "Cert_ID-1"
account = "1234567_SB1"
alg = "ES256"
scope = ["restlets", "rest_webservices"]
token-url = "http://127.0.0.1:8080/token"
module = "/usr/lib/other.so"

[profiles.minimal]
key = "pkcs11:token=acc;object=ns-dev"
client-id = "def456"
certificate-id = "kid2"
account = "7654321"
scope = "suite_analytics, restlets"
"#;

/// [`FULL`] with `lines` added to its `prod` profile.
fn in_prod(lines: &str) -> String {
    FULL.replace(
        "module = \"/usr/lib/other.so\"\n",
        &format!("module = \"/usr/lib/other.so\"\n{lines}\n"),
    )
}

fn path() -> PathBuf {
    PathBuf::from("/home/u/.config/suitekey/config.toml")
}

fn config(text: &str) -> Config {
    Config::parse(&path(), text).unwrap()
}

fn resolve_text(text: &str, name: &str, flags: ProfileOverrides) -> Result<Profile, String> {
    let config = Config::parse(&path(), text).map_err(|e| e.to_string())?;
    let table = config.profile(name).map_err(|e| e.to_string())?;
    resolve(Some(table), flags).map_err(|e| e.to_string())
}

#[test]
fn full_profile_resolves() {
    let p = resolve_text(FULL, "prod", ProfileOverrides::default()).unwrap();
    assert_eq!(p.client_id.to_string(), "abc123");
    assert_eq!(p.certificate_id.to_string(), "Cert_ID-1");
    assert_eq!(p.account.to_string(), "1234567_SB1");
    assert_eq!(p.alg, Some(Alg::ES256));
    assert_eq!(p.scopes.to_string(), "restlets,rest_webservices");
    assert_eq!(
        p.endpoint().unwrap().as_str(),
        "http://127.0.0.1:8080/token"
    );
    assert_eq!(p.module, Some(PathBuf::from("/usr/lib/other.so")));
    assert_eq!(p.key.object.as_deref(), Some("ns-prod"));
    let ctx = p.exchange_context().unwrap();
    assert_eq!(ctx.token_url.as_str(), "http://127.0.0.1:8080/token");
}

#[test]
fn optional_fields_default_and_scope_may_be_a_string() {
    let p = resolve_text(FULL, "minimal", ProfileOverrides::default()).unwrap();
    assert_eq!(p.alg, None);
    assert_eq!(p.scopes.to_string(), "suite_analytics,restlets");
    assert_eq!(p.token_url, None);
    assert_eq!(
        p.endpoint().unwrap().as_str(),
        "https://7654321.suitetalk.api.netsuite.com/services/rest/auth/oauth2/v1/token"
    );
    let text = FULL.replace("scope = \"suite_analytics, restlets\"\n", "");
    let p = resolve_text(&text, "minimal", ProfileOverrides::default()).unwrap();
    assert_eq!(p.scopes, Scopes::default());
}

#[test]
fn flags_and_environment_override_the_file() {
    // clap merges flags and SUITEKEY_* into the same struct; either way they win.
    let flags = ProfileOverrides {
        key: Some(RawArg::from("pkcs11:token=other;object=k".to_owned())),
        client_id: Some("fromflag".parse().unwrap()),
        account: Some("999_SB2".parse().unwrap()),
        alg: Some(Alg::PS256),
        scopes: Some("suite_analytics".parse().unwrap()),
        token_url: Some(RawArg::from("http://127.0.0.1:9/t".to_owned())),
        module: Some("/flag.so".into()),
        ..ProfileOverrides::default()
    };
    let p = resolve_text(FULL, "prod", flags).unwrap();
    assert_eq!(p.key.token.as_deref(), Some("other"));
    assert_eq!(p.client_id.to_string(), "fromflag");
    assert_eq!(p.certificate_id.to_string(), "Cert_ID-1", "not overridden");
    assert_eq!(p.account.to_string(), "999_SB2");
    assert_eq!(p.alg, Some(Alg::PS256));
    assert_eq!(p.scopes.to_string(), "suite_analytics");
    assert_eq!(p.endpoint().unwrap().as_str(), "http://127.0.0.1:9/t");
    assert_eq!(p.module, Some(PathBuf::from("/flag.so")));
}

#[test]
fn a_token_url_from_the_file_must_be_on_the_accounts_host() {
    let foreign = FULL.replace("http://127.0.0.1:8080/token", "https://evil.example/token");
    let err = resolve_text(&foreign, "prod", ProfileOverrides::default()).unwrap_err();
    for want in [
        "profile 'prod'",
        "field 'token-url'",
        "'evil.example'",
        "1234567-sb1.suitetalk.api.netsuite.com",
        "pass --token-url to override",
    ] {
        assert!(err.contains(want), "{want} missing from {err}");
    }
    // The account's own hosts are fine, checked against the account in effect.
    let own = FULL.replace(
        "http://127.0.0.1:8080/token",
        "https://1234567-sb1.restlets.api.netsuite.com/services/rest/auth/oauth2/v1/token",
    );
    assert!(resolve_text(&own, "prod", ProfileOverrides::default()).is_ok());
    let other_account = ProfileOverrides {
        account: Some("7654321".parse().unwrap()),
        ..ProfileOverrides::default()
    };
    let err = resolve_text(&own, "prod", other_account).unwrap_err();
    assert!(err.contains("does not belong to account 7654321"), "{err}");
    // Given as a flag (or SUITEKEY_TOKEN_URL, which clap merges into it), it is deliberate.
    let explicit = ProfileOverrides {
        token_url: Some(RawArg::from("https://evil.example/token".to_owned())),
        ..ProfileOverrides::default()
    };
    let p = resolve_text(&foreign, "prod", explicit).unwrap();
    assert_eq!(p.endpoint().unwrap().as_str(), "https://evil.example/token");
}

#[test]
fn the_certificates_api_url_follows_the_token_urls_rules_and_defaults() {
    // Loopback token URL: the emulator serves the API on the same origin.
    let p = resolve_text(FULL, "prod", ProfileOverrides::default()).unwrap();
    assert_eq!(
        p.certificates_endpoint().unwrap().to_string(),
        "http://127.0.0.1:8080"
    );
    // The account's token URL: its restlets host.
    let p = resolve_text(FULL, "minimal", ProfileOverrides::default()).unwrap();
    assert_eq!(
        p.certificates_endpoint().unwrap().to_string(),
        "https://7654321.restlets.api.netsuite.com"
    );
    // From the file: the account's hosts or loopback only; a flag overrides deliberately.
    let with = |url: &str| in_prod(&format!("certificates-url = \"{url}\""));
    let own = with("https://1234567-sb1.restlets.api.netsuite.com");
    let p = resolve_text(&own, "prod", ProfileOverrides::default()).unwrap();
    assert_eq!(
        p.certificates_endpoint().unwrap().to_string(),
        "https://1234567-sb1.restlets.api.netsuite.com"
    );
    let foreign = with("https://evil.example");
    let err = resolve_text(&foreign, "prod", ProfileOverrides::default()).unwrap_err();
    for want in [
        "profile 'prod'",
        "field 'certificates-url'",
        "'evil.example'",
        "pass --certificates-url to override",
    ] {
        assert!(err.contains(want), "{want} missing from {err}");
    }
    let explicit = ProfileOverrides {
        certificates_url: Some(RawArg::from("https://evil.example".to_owned())),
        ..ProfileOverrides::default()
    };
    let p = resolve_text(&foreign, "prod", explicit).unwrap();
    assert_eq!(
        p.certificates_endpoint().unwrap().to_string(),
        "https://evil.example"
    );
    let err = resolve_text(
        &with("http://10.0.0.1"),
        "prod",
        ProfileOverrides::default(),
    )
    .unwrap_err();
    assert!(err.contains("http:// on a non-loopback host"), "{err}");
}

#[test]
fn role_and_entity_are_internal_ids_as_numbers_or_strings() {
    let text = in_prod("role = 3\nentity = \"-5\"");
    let p = resolve_text(&text, "prod", ProfileOverrides::default()).unwrap();
    assert_eq!(p.role.map(|r| r.to_string()).as_deref(), Some("3"));
    assert_eq!(p.entity.map(|e| e.to_string()).as_deref(), Some("-5"));
    let flags = ProfileOverrides {
        role: Some("1001".parse().unwrap()),
        ..ProfileOverrides::default()
    };
    let p = resolve_text(&text, "prod", flags).unwrap();
    assert_eq!(p.role.map(|r| r.to_string()).as_deref(), Some("1001"));
    let err = resolve_text(
        &in_prod("role = \"admin\""),
        "prod",
        ProfileOverrides::default(),
    )
    .unwrap_err();
    assert!(
        err.contains("field 'role'") && err.contains("internal id"),
        "{err}"
    );
    let err = Config::parse(&path(), &in_prod("entity = true")).unwrap_err();
    assert!(err.to_string().contains("expected a number"), "{err}");
}

#[test]
fn rotate_before_days_is_a_number_of_days_from_1_to_365() {
    for (value, days) in [("1", 1), ("30", 30), ("\"365\"", 365)] {
        let text = in_prod(&format!("rotate-before-days = {value}"));
        let p = resolve_text(&text, "prod", ProfileOverrides::default()).unwrap();
        assert_eq!(
            p.rotate_before_days.map(|d| d.days()),
            Some(days),
            "{value}"
        );
    }
    let p = resolve_text(&in_prod(""), "prod", ProfileOverrides::default()).unwrap();
    assert!(p.rotate_before_days.is_none(), "off unless given");
    for value in ["0", "366", "-1", "\"soon\"", "30.5"] {
        let text = in_prod(&format!("rotate-before-days = {value}"));
        let err = resolve_text(&text, "prod", ProfileOverrides::default()).unwrap_err();
        assert!(
            err.contains("field 'rotate-before-days'")
                && (err.contains("from 1 to 365") || err.contains("expected a number of days")),
            "{value}: {err}"
        );
    }
}

#[test]
fn ca_file_is_relative_to_the_config_and_checked_when_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.toml");
    let text = format!("{FULL}\nca-file = \"ca.pem\"\ntimeout = 5\n");
    let config = Config::parse(&config_path, &text).unwrap();
    let table = config.profile("minimal").unwrap();
    let err = resolve(Some(table), ProfileOverrides::default())
        .unwrap_err()
        .to_string();
    let expected = dir.path().join("ca.pem");
    assert!(
        err.contains("field 'ca-file'")
            && err.contains(&format!("cannot read CA file '{}'", expected.display())),
        "{err}"
    );
    std::fs::write(
        &expected,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let err = resolve(Some(table), ProfileOverrides::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not a list of PEM certificates"), "{err}");
    assert!(!err.contains("AAAA"), "{err}");
    std::fs::write(&expected, "").unwrap();
    let err = resolve(Some(table), ProfileOverrides::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("holds no PEM block"), "{err}");
}

#[test]
fn timeouts_are_whole_seconds_up_to_five_minutes() {
    assert_eq!(
        "30".parse::<Timeout>().unwrap(),
        Timeout(std::time::Duration::from_secs(30))
    );
    for bad in ["0", "301", "1.5", "-1", "soon", ""] {
        let err = bad.parse::<Timeout>().unwrap_err().to_string();
        assert!(err.contains("1 to 300"), "{bad}: {err}");
    }
    let text = FULL.replace("alg = \"ES256\"", "alg = \"ES256\"\ntimeout = 7");
    let p = resolve_text(&text, "prod", ProfileOverrides::default()).unwrap();
    let url = p.endpoint().unwrap();
    let options = p.client_options(&url);
    assert_eq!(options.total_timeout, std::time::Duration::from_secs(7));
    assert!(options.connect_timeout <= options.total_timeout);
    let text = FULL.replace("alg = \"ES256\"", "alg = \"ES256\"\ntimeout = true");
    let err = Config::parse(&path(), &text).unwrap_err().to_string();
    assert!(err.contains("field 'timeout'"), "{err}");
}

#[test]
fn a_flag_replaces_a_bad_file_value() {
    let text = FULL.replace("1234567_SB1", "bad account!");
    let flags = ProfileOverrides {
        account: Some("1234567".parse().unwrap()),
        ..ProfileOverrides::default()
    };
    assert!(resolve_text(&text, "prod", flags).is_ok());
}

#[test]
fn flags_alone_suffice() {
    let flags = ProfileOverrides {
        key: Some(RawArg::from("pkcs11:object=k".to_owned())),
        client_id: Some("c".parse().unwrap()),
        certificate_id: Some("k".parse().unwrap()),
        account: Some("1".parse().unwrap()),
        ..ProfileOverrides::default()
    };
    let p = resolve(None, flags).unwrap();
    assert_eq!(p.scopes, Scopes::default());
}

#[test]
fn missing_fields_are_named_with_file_and_profile() {
    let text = FULL.replace("client-id = \"abc123\"\n", "");
    let err = resolve_text(&text, "prod", ProfileOverrides::default()).unwrap_err();
    assert_eq!(
        err,
        "config '/home/u/.config/suitekey/config.toml', profile 'prod': missing field 'client-id'; add it or pass --client-id or set SUITEKEY_CLIENT_ID"
    );
    let err = resolve(None, ProfileOverrides::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("missing --key: pass it or set SUITEKEY_KEY"),
        "{err}"
    );
}

#[test]
fn unknown_keys_are_named_with_the_known_ones() {
    let text = FULL.replace("client-id = \"abc123\"", "clientid = \"abc123\"");
    let err = Config::parse(&path(), &text).unwrap_err().to_string();
    assert_eq!(
        err,
        "config '/home/u/.config/suitekey/config.toml', profile 'prod': unknown key 'clientid' (known: key, client-id, certificate-id, account, alg, scope, token-url, module, ca-file, timeout, certificates-url, role, entity, rotate-before-days)"
    );
    let err = Config::parse(&path(), "[prod]\nkey = \"x\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unexpected top-level key 'prod'") && err.contains("[profiles.NAME]"),
        "{err}"
    );
    let err = Config::parse(&path(), "[profiles]\nprod = 1\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("'profiles.prod' must be a table"), "{err}");
}

#[test]
fn the_agent_table_lists_allowed_uids_and_refuses_anything_else() {
    let config = Config::parse(
        &path(),
        &format!("{FULL}\n[agent]\nallowed-uids = [1001, 0]\n"),
    )
    .unwrap();
    assert_eq!(config.allowed_uids(), [1001, 0]);
    assert_eq!(config.profile_names().count(), 2);
    let issue_spelling = Config::parse(&path(), "[agent]\nallowed_uids = [7]\n").unwrap();
    assert_eq!(issue_spelling.allowed_uids(), [7]);
    assert!(
        Config::parse(&path(), FULL)
            .unwrap()
            .allowed_uids()
            .is_empty()
    );
    for (text, expected) in [
        ("[agent]\nallowed-uids = [-1]\n", "'-1', which is not a uid"),
        ("[agent]\nallowed-uids = [4294967296]\n", "not a uid"),
        (
            "[agent]\nallowed-uids = [\"alice\"]\n",
            "\"alice\"', which is not a uid",
        ),
        ("[agent]\nallowed-uids = 1001\n", "must be a list of uids"),
        ("[agent]\nsocket = \"/tmp/x\"\n", "unknown key 'socket'"),
        ("agent = 1\n", "'agent' must be a table"),
    ] {
        let err = Config::parse(&path(), text).unwrap_err().to_string();
        assert!(err.contains(expected), "{text}: {err}");
    }
}

#[test]
fn unknown_profile_lists_the_known_ones() {
    let err = config(FULL).profile("staging").unwrap_err().to_string();
    assert_eq!(
        err,
        "config '/home/u/.config/suitekey/config.toml' has no profile 'staging' (known: minimal, prod)"
    );
    let err = config("").profile("x").unwrap_err().to_string();
    assert!(err.ends_with("(known: none)"), "{err}");
}

#[test]
fn bad_values_name_the_field() {
    let text = FULL.replace("1234567_SB1", "1234567.evil.com");
    let err = resolve_text(&text, "prod", ProfileOverrides::default()).unwrap_err();
    assert!(
        err.starts_with("config '/home/u/.config/suitekey/config.toml', profile 'prod': field 'account': account id '1234567.evil.com' is not valid"),
        "{err}"
    );
    let text = FULL.replace("\"ES256\"", "\"RS256\"");
    let err = resolve_text(&text, "prod", ProfileOverrides::default()).unwrap_err();
    assert!(err.contains("field 'alg'"), "{err}");
    let text = FULL.replace("\"rest_webservices\"]", "\"rest\"]");
    let err = resolve_text(&text, "prod", ProfileOverrides::default()).unwrap_err();
    assert!(err.contains("field 'scope': unknown scope 'rest'"), "{err}");
    let text = FULL.replace("account = \"1234567_SB1\"", "account = 1234567");
    let err = Config::parse(&path(), &text).unwrap_err().to_string();
    assert!(
        err.ends_with("field 'account': expected a string, found integer"),
        "{err}"
    );
    let text = FULL.replace("[\"restlets\", \"rest_webservices\"]", "[\"restlets\", 2]");
    let err = Config::parse(&path(), &text).unwrap_err().to_string();
    assert!(
        err.contains("field 'scope': expected a list of strings"),
        "{err}"
    );
}

#[test]
fn pin_values_are_refused_in_the_file_and_in_flags() {
    let text = FULL.replace("pin-source=file:/run/secrets/pin", "pin-value=S3CRET");
    let err = resolve_text(&text, "prod", ProfileOverrides::default()).unwrap_err();
    assert!(
        err.contains("field 'key'") && err.contains("pin-source=file:"),
        "{err}"
    );
    assert!(!err.contains("S3CRET"), "{err}");
    let flags = ProfileOverrides {
        key: Some(RawArg::from("pkcs11:object=k?pin-value=S3CRET".to_owned())),
        ..ProfileOverrides::default()
    };
    let err = resolve_text(FULL, "prod", flags).unwrap_err();
    assert!(
        err.starts_with("--key: ") && !err.contains("S3CRET"),
        "{err}"
    );
    let table = config(&text);
    let shown = format!("{:?}", table.profile("prod").unwrap());
    assert!(!shown.contains("S3CRET"), "{shown}");
}

#[test]
fn syntax_errors_give_a_position_but_not_the_line() {
    let text = "[profiles.prod]\nkey = \"pkcs11:object=k?pin-value=S3CRET\nclient-id = 1\n";
    let err = Config::parse(&path(), text).unwrap_err().to_string();
    assert!(err.contains("line 2"), "{err}");
    assert!(!err.contains("S3CRET"), "{err}");
}

#[test]
fn default_path_follows_xdg() {
    let p = default_path_from(Some("/x".into()), Some("/home/u".into()));
    assert_eq!(p, Some(PathBuf::from("/x/suitekey/config.toml")));
    let p = default_path_from(Some("relative".into()), Some("/home/u".into()));
    assert_eq!(
        p,
        Some(PathBuf::from("/home/u/.config/suitekey/config.toml"))
    );
    assert_eq!(default_path_from(None, None), None);
}

#[test]
fn a_missing_default_file_is_fine_but_an_explicit_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("config.toml");
    assert!(
        open_with_default(None, Some(absent.clone()))
            .unwrap()
            .is_none()
    );
    let err = open_with_default(Some(&absent), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("cannot read config '") && err.contains("config.toml"),
        "{err}"
    );
    std::fs::write(&absent, FULL).unwrap();
    let loaded = open_with_default(None, Some(absent.clone()))
        .unwrap()
        .unwrap();
    assert_eq!(
        loaded.profile_names().collect::<Vec<_>>(),
        ["minimal", "prod"]
    );
    assert_eq!(loaded.path(), absent);
}

#[test]
fn a_file_over_the_limit_is_refused_and_one_at_the_limit_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let at_limit = dir.path().join("at-limit.toml");
    // A comment line filling the file to exactly the limit: valid, empty TOML.
    let comment = format!("#{}\n", "x".repeat(MAX_CONFIG_LEN as usize - 2));
    std::fs::write(&at_limit, &comment).unwrap();
    let config = Config::load(&at_limit).unwrap();
    assert_eq!(config.profile_names().count(), 0);
    let over = dir.path().join("over.toml");
    std::fs::write(&over, format!("{comment}#")).unwrap();
    let err = Config::load(&over).unwrap_err();
    assert!(matches!(err, ConfigError::TooLarge { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("1048576 bytes"), "{message}");
    assert!(
        message.contains("check that --config names the config file"),
        "{message}"
    );
}

/// A FIFO reports a length of 0 and never ends: only a bounded read stops.
#[test]
fn an_endless_fifo_is_refused_after_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("endless");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("skipped: mkfifo is not available");
        return;
    }
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            use std::io::Write as _;
            let mut pipe = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
            let chunk = [b'#'; 64 * 1024];
            let mut sent = 0u64;
            // Stops when the reader closes the pipe (EPIPE), or at 64 MiB.
            while sent < 64 * MAX_CONFIG_LEN && pipe.write_all(&chunk).is_ok() {
                sent += chunk.len() as u64;
            }
            sent
        })
    };
    let err = Config::load(&fifo).unwrap_err();
    assert!(matches!(err, ConfigError::TooLarge { .. }), "{err}");
    let sent = writer.join().unwrap();
    assert!(
        sent < 4 * MAX_CONFIG_LEN,
        "read {sent} bytes before refusing"
    );
}

#[test]
fn non_utf8_and_deeply_nested_files_are_refused_with_a_reason() {
    let err = read_limited(&b"[profiles.p]\nkey = \"\xff\"\n"[..], &path()).unwrap_err();
    assert!(matches!(err, ConfigError::NotUtf8 { .. }), "{err}");
    assert!(err.to_string().contains("save it as UTF-8"), "{err}");
    for deep in [
        format!("a = {}1{}", "[".repeat(100_000), "]".repeat(100_000)),
        format!("a = {}1{}", "{b = ".repeat(100_000), "}".repeat(100_000)),
        format!("[{}]", vec!["a"; 100_000].join(".")),
        format!("{} = 1", vec!["a"; 100_000].join(".")),
    ] {
        let err = Config::parse(&path(), &deep).map(|_| ()).unwrap_err();
        assert!(
            matches!(err, ConfigError::Syntax { .. } | ConfigError::Layout { .. }),
            "{err}"
        );
    }
}

proptest! {
    #[test]
    fn parsing_never_panics(text in any::<String>()) {
        let _ = Config::parse(&path(), &text);
    }

    #[test]
    fn parsing_and_resolving_profile_like_text_never_panics(
        lines in proptest::collection::vec(
            "(key|client-id|certificate-id|account|alg|scope|token-url|module|x) = (\"[ -~]{0,30}\"|\\[\"[a-z_]{0,12}\"\\]|[0-9]{1,3})",
            0..8,
        )
    ) {
        let text = format!("[profiles.p]\n{}\n", lines.join("\n"));
        if let Ok(config) = Config::parse(&path(), &text)
            && let Ok(table) = config.profile("p")
        {
            let _ = resolve(Some(table), ProfileOverrides::default());
        }
    }

    #[test]
    fn arbitrary_bytes_are_read_and_parsed_without_panic(
        data in prop::collection::vec(any::<u8>(), 0..512)
    ) {
        crate::fuzzing::config(&data);
    }

    #[test]
    fn input_over_the_limit_is_refused_with_the_size_error(
        extra in 1..4096usize,
        fill in any::<u8>(),
    ) {
        let data = vec![fill; MAX_CONFIG_LEN as usize + extra];
        let err = read_limited(&data[..], &path());
        let refused = matches!(err, Err(ConfigError::TooLarge { max: MAX_CONFIG_LEN, .. }));
        prop_assert!(refused, "{:?}", err.map(|_| ()));
    }
}

#[test]
fn of_several_problems_the_one_checked_first_is_told() {
    // The key, then the endpoint and account (and whether the file's token URL is the
    // account's), then the CA file, then the claims, then the rest as declared.
    let key_only = ProfileOverrides {
        key: Some(RawArg::from("pkcs11:object=k".to_owned())),
        ..ProfileOverrides::default()
    };
    let err = resolve(None, key_only.clone()).unwrap_err().to_string();
    assert!(err.starts_with("missing --account"), "{err}");
    let with_account = ProfileOverrides {
        account: Some("1".parse().unwrap()),
        ..key_only
    };
    let err = resolve(None, with_account).unwrap_err().to_string();
    assert!(err.starts_with("missing --client-id"), "{err}");
    let text = FULL
        .replace("http://127.0.0.1:8080/token", "https://evil.example/token")
        .replace("client-id = \"abc123\"\n", "")
        .replace(
            "alg = \"ES256\"",
            "alg = \"RS256\"\nca-file = \"/nonexistent/ca.pem\"",
        );
    let err = resolve_text(&text, "prod", ProfileOverrides::default()).unwrap_err();
    assert!(err.contains("field 'token-url'"), "{err}");
    let text = text.replace("https://evil.example/token", "http://127.0.0.1:1/t");
    let err = resolve_text(&text, "prod", ProfileOverrides::default()).unwrap_err();
    assert!(err.contains("field 'ca-file'"), "{err}");
    let text = text.replace("ca-file = \"/nonexistent/ca.pem\"", "");
    let err = resolve_text(&text, "prod", ProfileOverrides::default()).unwrap_err();
    assert!(err.contains("missing field 'client-id'"), "{err}");
}

#[test]
fn the_report_order_names_declared_fields() {
    use super::fields::{keys, names};
    use super::resolve::{FOREIGN_CERTIFICATES_URL, FOREIGN_URL, REPORT_ORDER};
    let foreign = [FOREIGN_URL, FOREIGN_CERTIFICATES_URL];
    for field in REPORT_ORDER.iter().filter(|f| !foreign.contains(f)) {
        assert!(keys().contains(&names(field).key), "{field}");
    }
}
