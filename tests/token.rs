//! `suitekey token` and `exec` end to end: an assertion signed in a real SoftHSM2 token,
//! exchanged at the strict NetSuite emulator (`suitekey emulate`, a child process) for an access
//! token that opens the emulator's protected resource.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::emulator::Emulator;
use common::fault_proxy::{FaultProxy, Mode};
use common::profile::{ACCOUNT, CLIENT, Profile, registration, write_config};
use common::readme_examples::{readme_line, run_traced, with_suitekey_on_path};
use common::{PIN, fixture, texts};
use serde_json::Value;

const CATALOG: &str = "/services/rest/record/v1/metadata-catalog";

/// An emulator with the certificates of `labels` registered for CLIENT (extra spec fields per
/// registration appended), plus `flags`.
fn emulator(
    dir: &Path,
    labels: &[&str],
    spec_extra: &str,
    flags: &[&str],
) -> (Emulator, Vec<String>) {
    let mut args: Vec<String> = Vec::new();
    let mut ids = Vec::new();
    for label in labels {
        let (pem, id) = fixture().cert_for(label, dir);
        args.push("--register".into());
        args.push(format!("{}{spec_extra}", registration(&pem)));
        ids.push(id);
    }
    args.extend(flags.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (Emulator::start(&args), ids)
}

/// `suitekey COMMAND` with the profile flags for fixture key `label` and this emulator.
fn command(emu: &Emulator, label: &str, kid: &str, command: &str) -> assert_cmd::Command {
    let f = fixture();
    let mut cmd = f.suitekey();
    cmd.arg(command).args(
        Profile::new(f.uri(label), kid)
            .token_url(&emu.token_url())
            .flags(),
    );
    cmd
}

/// `suitekey COMMAND` with the profile flags for fixture key `label` and this emulator, then
/// `rest`.
fn suitekey(emu: &Emulator, label: &str, kid: &str, args: &[&str]) -> Output {
    let (first, rest) = args.split_first().expect("a command");
    command(emu, label, kid, first)
        .args(rest)
        .output()
        .expect("run suitekey")
}

/// `suitekey token` for fixture key `label` with this client id, kid and token URL.
fn token_cmd(label: &str, client: &str, kid: &str, token_url: &str) -> assert_cmd::Command {
    let f = fixture();
    let mut cmd = f.suitekey();
    let profile = Profile::new(f.uri(label), kid).client(client);
    cmd.arg("token").args(profile.token_url(token_url).flags());
    cmd
}

/// GETs a path of the emulator with curl, with an optional bearer token; (status, body).
fn get(emu: &Emulator, path: &str, token: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o", "-", "-w", "\n%{http_code}"]);
    if let Some(token) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let out = cmd
        .arg(format!("{}{path}", emu.base))
        .output()
        .expect("curl");
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let (body, status) = text.rsplit_once('\n').expect("status line");
    (status.parse().expect("status"), body.to_owned())
}

#[test]
fn every_algorithm_gets_a_token_that_opens_the_protected_resource_in_every_format() {
    let dir = common::temp_dir();
    let (emu, ids) = emulator(dir.path(), &["p256", "p384", "p521", "rsa3072"], "", &[]);
    let cases = [
        ("p256", &ids[0], "ES256", "raw"),
        ("p384", &ids[1], "ES384", "json"),
        ("p521", &ids[2], "ES512", "header"),
        ("rsa3072", &ids[3], "PS256", "env"),
        ("rsa3072", &ids[3], "PS384", "raw"),
        ("rsa3072", &ids[3], "PS512", "json"),
    ];
    for (label, kid, alg, format) in cases {
        let out = suitekey(
            &emu,
            label,
            kid,
            &["token", "--alg", alg, "--format", format],
        );
        let (stdout, stderr) = texts(&out);
        assert!(out.status.success(), "{alg}: {stderr}");
        assert_eq!(stdout.lines().count(), 1, "{alg}: one line: {stdout}");
        let line = stdout.trim_end();
        let token = match format {
            "raw" => line.to_owned(),
            "header" => line
                .strip_prefix("Authorization: Bearer ")
                .expect("header form")
                .to_owned(),
            "env" => line
                .strip_prefix("NETSUITE_ACCESS_TOKEN='")
                .and_then(|t| t.strip_suffix('\''))
                .expect("env form, single-quoted")
                .to_owned(),
            _ => {
                let json: Value = serde_json::from_str(line).expect("JSON");
                assert_eq!(json["token_type"], "Bearer");
                let expires_in = json["expires_in"].as_u64().expect("expires_in");
                assert!((3590..=3600).contains(&expires_in), "{json}");
                let at = json["expires_at"].as_str().expect("expires_at");
                assert!(at.len() == 20 && at.ends_with('Z'), "RFC 3339: {at}");
                json["access_token"].as_str().expect("token").to_owned()
            }
        };
        assert!(!stderr.contains(&token), "{alg}: token on stderr");
        let (status, body) = get(&emu, CATALOG, Some(&token));
        assert_eq!(status, 200, "{alg}: {body}");
        assert!(body.contains("metadata-catalog"), "{body}");
    }
    assert_eq!(emu.stats()["tokens_issued"], 6);
    let (status, _) = get(&emu, CATALOG, Some("not-a-token"));
    assert_eq!(status, 401);
}

/// Gives `cmd` the p256 key's profile (certificate id `kid`, token URL `token_url`) in
/// `SUITEKEY_*` variables, on the token copy of `conf`.
fn profile_env(cmd: &mut Command, conf: &Path, kid: &str, token_url: &str) {
    cmd.env("SOFTHSM2_CONF", conf)
        .env("SUITEKEY_KEY", fixture().uri("p256"))
        .env("SUITEKEY_CLIENT_ID", CLIENT)
        .env("SUITEKEY_CERTIFICATE_ID", kid)
        .env("SUITEKEY_ACCOUNT", ACCOUNT)
        .env("SUITEKEY_TOKEN_URL", token_url);
}

/// README's two ways to call an API with a token (`token --format curl-config | curl -K -`
/// and `exec -- sh -c 'printf … | curl -H @-'`), exactly as written there, with the profile
/// given by `SUITEKEY_*` variables.
#[test]
fn the_readme_curl_examples_send_the_token_and_keep_it_out_of_every_argv() {
    let dir = common::temp_dir();
    let (emu, ids) = emulator(dir.path(), &["p256"], "", &[]);
    let conf = fixture().token_copy(None);
    for prefix in [
        "suitekey token [profile flags] --format curl-config |",
        "suitekey exec  [profile flags] -- sh -c",
    ] {
        let line = readme_line(prefix)
            .replace("[profile flags] ", "")
            .replace("https://…", &format!("{}{CATALOG}", emu.base));
        let traced = run_traced(&line, dir.path(), |cmd| {
            profile_env(cmd, &conf, &ids[0], &emu.token_url());
        });
        let (stdout, stderr) = texts(&traced.output);
        assert!(traced.output.status.success(), "{line}: {stderr}");
        assert!(stdout.contains("metadata-catalog"), "{line}: {stdout}");
        traced.assert_token_sent_but_in_no_argv();
    }
}

/// A token endpoint chooses the token: one with shell syntax must not reach a shell through
/// `eval "$(suitekey token --format env)"`, and a valid one must come out of it unchanged.
#[test]
fn a_token_with_shell_syntax_from_the_endpoint_is_refused_and_env_output_is_quoted() {
    let dir = common::temp_dir();
    let (_, kid) = fixture().cert_for("p256", dir.path());
    let proxy = FaultProxy::http();
    let conf = fixture().token_copy(None);
    let sh = |script: &str| {
        let mut cmd = Command::new("sh");
        with_suitekey_on_path(&mut cmd).args(["-c", script]);
        profile_env(&mut cmd, &conf, &kid, &proxy.token_url());
        cmd.output().expect("sh")
    };
    let eval = r#"eval "$(suitekey token --format env)"; printf %s "$NETSUITE_ACCESS_TOKEN""#;

    let pwned = dir.path().join("pwned");
    let hostile = format!("x;touch${{IFS}}{};", pwned.display());
    proxy.set(Mode::Grant(hostile.clone()));
    let out = sh(eval);
    assert!(
        !pwned.exists(),
        "the token endpoint's text ran in the shell: {}",
        texts(&out).1
    );
    let out = sh("suitekey token --format env");
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("RFC 6750"), "{stderr}");
    assert!(
        !stderr.contains("touch") && !stderr.contains(&hostile),
        "the token is echoed: {stderr}"
    );

    // `~` is valid token syntax, and an unquoted assignment would expand it.
    proxy.set(Mode::Grant("~root".into()));
    let out = sh(eval);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "~root");
}

#[test]
fn exec_runs_the_command_with_the_token_in_its_environment_and_returns_its_status() {
    let dir = common::temp_dir();
    let (emu, ids) = emulator(dir.path(), &["p256"], "", &[]);
    let script = format!(
        "curl -s -H \"Authorization: Bearer $NETSUITE_ACCESS_TOKEN\" {}{CATALOG}; exit 7",
        emu.base
    );
    let out = suitekey(&emu, "p256", &ids[0], &["exec", "--", "sh", "-c", &script]);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert!(stdout.contains("metadata-catalog"), "{stdout}");
    assert!(
        stderr.is_empty(),
        "exec adds nothing to the command's own output: {stderr}"
    );

    // The token is in the child's environment, never in its argv.
    let out = suitekey(
        &emu,
        "p256",
        &ids[0],
        &[
            "exec",
            "--",
            "sh",
            "-c",
            "cat /proc/$$/cmdline; printf '\\n%s' \"$NETSUITE_ACCESS_TOKEN\"",
        ],
    );
    let (stdout, _) = texts(&out);
    let (cmdline, token) = stdout.rsplit_once('\n').expect("two parts");
    assert!(token.len() >= 32, "{stdout}");
    assert!(!cmdline.contains(token), "token in argv");

    // Nor does the command get the PIN, from SUITEKEY_PIN or the URI's pin-source=env:.
    let f = fixture();
    let key = f.uri("p256").replace(
        &format!("pin-source=file:{}", f.pin_file.display()),
        "pin-source=env:MY_TOKEN_PIN",
    );
    let out = f
        .suitekey()
        .env("SUITEKEY_PIN", PIN)
        .env("MY_TOKEN_PIN", PIN)
        .arg("exec")
        .args(
            Profile::new(key, &ids[0])
                .token_url(&emu.token_url())
                .flags(),
        )
        .args(["--", "sh", "-c", common::SHOW_ENV])
        .output()
        .expect("run");
    common::assert_exec_got_the_token_and_no_pin(&out);

    let out = suitekey(
        &emu,
        "p256",
        &ids[0],
        &["exec", "--", "/nonexistent/program"],
    );
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(127), "{stderr}");
    assert!(
        stderr.contains("cannot run '/nonexistent/program'"),
        "{stderr}"
    );
}

/// Runs `token` and asserts exit 6 with the NetSuite code and an explanation on stderr.
fn assert_refused(out: &Output, code: &str, cause: &str) -> String {
    let (stdout, stderr) = texts(out);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    for want in [
        &format!("NetSuite error '{code}'"),
        "likely causes",
        "to tell them apart",
        "Login Audit Trail",
        CLIENT,
        cause,
    ] {
        assert!(stderr.contains(want), "want {want:?} in {stderr}");
    }
    assert!(!stderr.contains(PIN));
    stderr
}

#[test]
fn refusals_exit_6_with_the_netsuite_code_and_what_to_check() {
    let dir = common::temp_dir();
    let (emu, ids) = emulator(dir.path(), &["p256", "p384"], ",scopes=restlets", &[]);
    // Unknown kid: a certificate id the account does not have.
    let out = suitekey(
        &emu,
        "p256",
        "no-such-certificate",
        &["token", "--scope", "restlets"],
    );
    assert_refused(&out, "invalid_grant", "no-such-certificate");
    assert!(emu.stderr().contains("MissingKey"));
    // Bad signature: p256 signs, but the kid names p384's certificate.
    let out = suitekey(&emu, "p256", &ids[1], &["token", "--scope", "restlets"]);
    assert_refused(&out, "invalid_grant", &ids[1]);
    assert!(emu.stderr().contains("SignatureValidation"));
    // A scope not enabled on the integration record.
    let out = suitekey(
        &emu,
        "p256",
        &ids[0],
        &["token", "--scope", "restlets,rest_webservices"],
    );
    assert_refused(&out, "invalid_scope", "rest_webservices");
    assert!(emu.stderr().contains("ScopeMismatched"));
    // Wrong issuer.
    let out = token_cmd("p256", "0000", &ids[0], &emu.token_url())
        .args(["--scope", "restlets"])
        .output()
        .expect("run");
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains("NetSuite error 'invalid_client'"),
        "{stderr}"
    );
    // Wrong audience: the same endpoint under another name is not the URL NetSuite expects.
    let alias = emu.token_url().replace("127.0.0.1", "localhost");
    let out = token_cmd("p256", CLIENT, &ids[0], &alias)
        .args(["--scope", "restlets"])
        .output()
        .expect("run");
    assert_refused(&out, "invalid_grant", "localhost");
    assert!(emu.stderr().contains("TokenNotAcceptable"));
    // Each 4xx was tried once: 5 requests, no token.
    assert_counts(&emu, 5, 0);
}

/// The emulator saw `requests` token requests and issued `issued` tokens.
fn assert_counts(emu: &Emulator, requests: u64, issued: u64) {
    let stats = emu.stats();
    assert_eq!(stats["token_requests"], requests, "{stats}");
    assert_eq!(stats["tokens_issued"], issued, "{stats}");
}

#[test]
fn rs256_is_refused_before_anything_is_sent() {
    let dir = common::temp_dir();
    let (emu, ids) = emulator(dir.path(), &["rsa3072"], "", &[]);
    let out = suitekey(&emu, "rsa3072", &ids[0], &["token", "--alg", "RS256"]);
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("refused by NetSuite since 1 March 2025"),
        "{stderr}"
    );
    assert_eq!(emu.stats()["token_requests"], 0);
}

/// The `jti`s of the attempts, from suitekey's debug log.
fn attempt_jtis(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.contains("requesting an access token"))
        .filter_map(|l| l.split("jti=").nth(1))
        .map(|rest| {
            rest.split_whitespace()
                .next()
                .unwrap_or("")
                .trim_matches('"')
                .to_owned()
        })
        .collect()
}

/// `token` at an emulator started with `flags`, logging at debug; (output, emulator).
fn token_with_faults(dir: &Path, flags: &[&str]) -> (Output, Emulator) {
    let (emu, ids) = emulator(dir, &["p256"], "", flags);
    let out = command(&emu, "p256", &ids[0], "token")
        .env("RUST_LOG", "suitekey=debug")
        .output()
        .expect("run");
    (out, emu)
}

fn assert_distinct(jtis: &[String], stderr: &str) {
    assert_eq!(jtis.len(), 3, "{stderr}");
    assert!(
        jtis[0] != jtis[1] && jtis[1] != jtis[2] && jtis[0] != jtis[2],
        "each attempt signs a new assertion: {jtis:?}"
    );
}

#[test]
fn server_errors_are_retried_with_fresh_assertions_at_most_three_times() {
    let dir = common::temp_dir();
    let (out, emu) = token_with_faults(dir.path(), &["--fail-first", "2"]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "third attempt succeeds: {stderr}");
    assert!(!stdout.trim().is_empty());
    assert_eq!(emu.stats()["token_requests"], 3);
    assert_distinct(&attempt_jtis(&stderr), &stderr);

    let (out, emu) = token_with_faults(dir.path(), &["--fail-first", "5"]);
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("server_error"), "{stderr}");
    assert_eq!(emu.stats()["token_requests"], 3, "gave up after 3 attempts");
    assert_distinct(&attempt_jtis(&stderr), &stderr);
}

#[test]
fn rate_limits_are_waited_out() {
    let dir = common::temp_dir();
    let (emu, ids) = emulator(dir.path(), &["p256"], "", &["--rate-limit", "1"]);
    let out = suitekey(&emu, "p256", &ids[0], &["token"]);
    let (_, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert_counts(&emu, 2, 1);
}

#[test]
fn neither_the_pin_nor_the_access_token_reaches_stderr_at_trace_level() {
    let dir = common::temp_dir();
    let (emu, ids) = emulator(dir.path(), &["p256"], "", &["--fail-first", "1"]);
    let key = fixture().uri("p256").replace(
        &format!("&pin-source=file:{}", fixture().pin_file.display()),
        "",
    );
    let out = fixture()
        .suitekey()
        .env("RUST_LOG", "trace")
        .env("SUITEKEY_PIN", PIN)
        .arg("token")
        .args(
            Profile::new(key, &ids[0])
                .token_url(&emu.token_url())
                .flags(),
        )
        .output()
        .expect("run");
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    let token = stdout.trim();
    assert!(token.len() >= 32);
    assert!(stderr.len() > 1000, "trace logging is on: {stderr}");
    assert!(!stderr.contains(token), "access token on stderr");
    assert!(!stderr.contains(PIN), "PIN on stderr");
    assert!(
        !emu.stderr().contains(token),
        "access token in the emulator's log"
    );
}

#[test]
fn a_profile_from_the_config_file_is_used_and_flags_override_it() {
    let dir = common::temp_dir();
    let (emu, ids) = emulator(dir.path(), &["p256", "p384"], "", &[]);
    let f = fixture();
    let profile = Profile::new(f.uri("p256"), &ids[0])
        .token_url(&emu.token_url())
        .with("scope = [\"restlets\"]\n");
    let config = write_config(&dir.path().join("config.toml"), &[("test", &profile)]);
    let run = |extra: &[&str]| {
        f.suitekey()
            .arg("--config")
            .arg(&config)
            .args(["--profile", "test", "token"])
            .args(extra)
            .output()
            .expect("run")
    };
    let out = run(&[]);
    assert!(out.status.success(), "{}", texts(&out).1);
    let out = run(&["--key", &f.uri("p384"), "--certificate-id", &ids[1]]);
    assert!(out.status.success(), "flags override: {}", texts(&out).1);
    assert_eq!(emu.stats()["tokens_issued"], 2);

    std::fs::write(
        &config,
        "[profiles.test]\nclient-id = \"abc\"\nclientid = \"x\"\n",
    )
    .expect("write");
    let out = run(&[]);
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("profile 'test'") && stderr.contains("clientid"),
        "{stderr}"
    );
    std::fs::write(&config, "[profiles.test]\nclient-id = \"abc\"\n").expect("write");
    let out = run(&[]);
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&config.display().to_string()) && stderr.contains("'key'"),
        "{stderr}"
    );
    let out = f
        .suitekey()
        .arg("--config")
        .arg(&config)
        .args(["--profile", "nope", "token"])
        .output()
        .expect("run");
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("nope") && stderr.contains("test"),
        "{stderr}"
    );
}

/// `token` under libfaketime with the clock moved by `offset` (e.g. "-2h").
fn token_at_clock(emu: &Emulator, kid: &str, offset: &str) -> Output {
    let f = fixture();
    let mut cmd = Command::new("faketime");
    cmd.args(["-f", offset])
        .arg(env!("CARGO_BIN_EXE_suitekey"))
        .arg("token")
        .args(
            Profile::new(f.uri("p256"), kid)
                .token_url(&emu.token_url())
                .flags(),
        )
        // Timeouts and backoff run on the monotonic clock: leave it alone.
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env("SOFTHSM2_CONF", f.token_copy(None))
        .env_remove("RUST_LOG");
    cmd.output()
        .expect("faketime (scripts/install-deps.sh installs it)")
}

#[test]
fn a_clock_off_by_hours_is_refused_and_the_skew_reported() {
    let dir = common::temp_dir();
    let (emu, ids) = emulator(dir.path(), &["p256"], "", &[]);
    // Behind: the assertion expired long ago. Ahead: its iat is in the future.
    for (offset, audit) in [("-2h", "TokenExpired"), ("+1h", "TokenNotAcceptable")] {
        let out = token_at_clock(&emu, &ids[0], offset);
        let stderr = assert_refused(&out, "invalid_grant", &ids[0]);
        assert!(
            stderr.contains("clock differs from this machine's"),
            "{offset}: {stderr}"
        );
        assert!(stderr.contains("fix the local clock"), "{offset}: {stderr}");
        assert!(emu.stderr().contains(audit), "{offset}: {audit}");
    }
}

/// `suitekey COMMAND` for the p256 key on the token of `conf`, with this kid and token URL.
fn on_token(conf: &Path, command: &str, kid: &str, token_url: &str) -> Output {
    let profile = Profile::new(fixture().uri("p256"), kid).token_url(token_url);
    common::suitekey_with_conf(conf)
        .arg(command)
        .args(profile.flags())
        .output()
        .expect("run suitekey")
}

#[test]
fn token_and_assertion_warn_about_the_certificate_stored_with_the_key() {
    let dir = common::temp_dir();
    let conf = fixture().token_copy(None);
    let key = fixture().uri("p256");
    let pem = dir.path().join("stored.pem");
    let succeeds = |out: &Output| {
        let (stdout, stderr) = texts(out);
        assert!(out.status.success(), "{stderr}");
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
        stderr
    };
    let register = |kid: &str| {
        Emulator::start(&[
            "--register",
            &format!("{},certificate-id={kid}", registration(&pem)),
        ])
    };

    // In date, and the configured id: no warning.
    let kid = common::cert_at_clock(&conf, &key, "+0", 730, &pem);
    let emu = register(&kid);
    let stderr = succeeds(&on_token(&conf, "token", &kid, &emu.token_url()));
    assert!(!stderr.contains("WARN"), "{stderr}");

    // NetSuite shows another id for the certificate: the token works, with a warning.
    let other = "B".repeat(43);
    let emu = register(&other);
    let stderr = succeeds(&on_token(&conf, "token", &other, &emu.token_url()));
    assert!(
        stderr.contains(&kid) && stderr.contains(&other) && stderr.contains("certificate-id"),
        "{stderr}"
    );

    // 8 or 9 days left, within NetSuite's 14-day notice.
    let kid = common::cert_at_clock(&conf, &key, "-721d", 730, &pem);
    let emu = register(&kid);
    let stderr = succeeds(&on_token(&conf, "token", &kid, &emu.token_url()));
    assert!(
        stderr.contains("expires in") && stderr.contains("14-day notice"),
        "{stderr}"
    );

    // Expired 36 days ago: the assertion is still signed (NetSuite decides), with a warning.
    let kid = common::cert_at_clock(&conf, &key, "-37d", 1, &pem);
    let stderr = succeeds(&on_token(&conf, "assertion", &kid, &emu.token_url()));
    assert!(
        stderr.contains("expired on") && stderr.contains("days ago"),
        "{stderr}"
    );

    // The p384 key's certificate, stored (also) with the p256 key under the configured id.
    let p384 = dir.path().join("p384.pem");
    let kid = common::cert_at_clock(&conf, &fixture().uri("p384"), "+0", 730, &p384);
    common::store_certificate_with_id(&conf, &p384, "01", None);
    let stderr = succeeds(&on_token(&conf, "assertion", &kid, &emu.token_url()));
    assert!(
        stderr.contains(&kid) && stderr.contains("holds another public key"),
        "{stderr}"
    );
}

#[test]
fn loopback_http_never_goes_through_a_proxy() {
    let dir = common::temp_dir();
    let (emu, ids) = emulator(dir.path(), &["p256"], "", &[]);
    // A proxy that would see the assertion in clear text (port 9 refuses connections).
    let out = command(&emu, "p256", &ids[0], "token")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("http_proxy", "http://127.0.0.1:9")
        .env("ALL_PROXY", "http://127.0.0.1:9")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", texts(&out).1);
}

/// A child process that keeps one core busy until dropped, then is killed by its PID.
struct BusyCore(std::process::Child);

impl BusyCore {
    fn start() -> BusyCore {
        BusyCore(
            Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .expect("sh"),
        )
    }
}

impl Drop for BusyCore {
    fn drop(&mut self) {
        // Child::kill signals this child's PID only.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// SoftHSM2 rewrites `token.object` at every login, and another process reading the token at
/// that moment sees it broken (`CKR_GENERAL_ERROR`) or uninitialized. Four loops of fifty
/// `suitekey token` runs on one token (not a copy each), with one core kept busy, all succeed:
/// the runs take turns at opening and logging in, and retry what still fails.
#[test]
fn four_parallel_loops_of_fifty_token_runs_on_one_softhsm2_token_all_succeed() {
    const LOOPS: usize = 4;
    const RUNS: usize = 50;
    let dir = common::temp_dir();
    let (emu, ids) = emulator(dir.path(), &["p256"], "", &[]);
    let f = fixture();
    let conf = f.token_copy(None);
    let url = emu.token_url();
    let run = || {
        common::suitekey_with_conf(&conf)
            .arg("token")
            .args(Profile::new(f.uri("p256"), &ids[0]).token_url(&url).flags())
            .output()
            .expect("run suitekey")
    };
    let busy = BusyCore::start();
    let failures: Vec<String> = std::thread::scope(|s| {
        let loops: Vec<_> = (0..LOOPS)
            .map(|_| {
                s.spawn(|| {
                    (0..RUNS)
                        .map(|_| run())
                        .filter(|out| !out.status.success())
                        .map(|out| format!("exit {:?}: {}", out.status.code(), texts(&out).1))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        loops
            .into_iter()
            .flat_map(|l| l.join().expect("loop thread"))
            .collect()
    });
    drop(busy);
    assert!(
        failures.is_empty(),
        "{} of {} runs failed:\n{}",
        failures.len(),
        LOOPS * RUNS,
        failures.join("")
    );
    assert_eq!(emu.stats()["tokens_issued"], (LOOPS * RUNS) as u64);
}
