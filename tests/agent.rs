//! `suitekey agent` end to end: a child process on its own SoftHSM2 token copy and socket,
//! exchanging assertions at its own emulator (`suitekey emulate`), asked by raw HTTP/1.1 over
//! the Unix socket, by curl, and by `suitekey token`/`exec` through SUITEKEY_AUTH_SOCK.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::agent::{Agent, http_get, metric};
use common::certified::CertifiedCopy;
use common::emulator::Emulator;
use common::profile::{ACCOUNT, CLIENT, Profile, write_config};
use common::{PIN, fixture, is_root, libfaketime, suitekey_with_conf, texts};
use serde_json::Value;

const CATALOG: &str = "/services/rest/record/v1/metadata-catalog";
const TOKEN_PATH: &str = "/v1/profiles/prod/token";

/// A token copy for one agent, with a certificate for the `p256` key stored on it (so the
/// agent can watch its expiry) and written to a file for the emulator.
fn setup() -> CertifiedCopy {
    CertifiedCopy::new()
}

/// Whether the emulator accepts `token` for its protected resource.
fn opens_catalog(emu: &Emulator, token: &str) -> bool {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .arg(format!("{}{CATALOG}", emu.base))
        .output()
        .expect("curl");
    out.stdout == b"200"
}

fn token_of(body: &str) -> String {
    let json: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("JSON: {body}"));
    json["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

fn burst(socket: &Path, n: usize) -> Vec<(u16, String)> {
    let barrier = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (barrier, socket) = (Arc::clone(&barrier), socket.to_owned());
            std::thread::spawn(move || {
                barrier.wait();
                http_get(&socket, TOKEN_PATH)
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .collect()
}

/// The counters after two bursts of 200 requests, the first one cold.
fn check_metrics_after_two_bursts(agent: &Agent) {
    let (_, metrics) = agent.get("/metrics");
    let p = "{profile=\"prod\"}";
    assert_eq!(
        metric(&metrics, &format!("suitekey_agent_tokens_issued_total{p}")),
        Some(400.0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            &format!("suitekey_agent_upstream_exchanges_total{p}")
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, &format!("suitekey_agent_signatures_total{p}")),
        Some(1.0)
    );
    assert!(metric(&metrics, &format!("suitekey_agent_cache_hits_total{p}")) >= Some(200.0));
    let days = metric(
        &metrics,
        &format!("suitekey_agent_certificate_days_left{p}"),
    );
    assert!(
        days.is_some_and(|d| (728.0..=730.0).contains(&d)),
        "{metrics}"
    );
}

/// `/v1/profiles` for the one profile `prod`, which has a token.
fn check_profile_listing(agent: &Agent, kid: &str) {
    let profiles = agent.json("/v1/profiles");
    let prod = &profiles["profiles"][0];
    assert_eq!(prod["name"], "prod");
    assert_eq!(prod["alg"], "ES256");
    assert_eq!(prod["status"], "ok");
    assert_eq!(prod["certificate_id"], kid);
    assert!(prod["key"].as_str().unwrap().starts_with("pkcs11:token="));
    assert!(prod["token_expires_at"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn two_hundred_concurrent_cold_requests_share_one_exchange_and_then_the_cache() {
    let s = setup();
    let emu = s.emulator(&[]);
    let agent = s.agent_for(&emu);
    assert_eq!(agent.json("/v1/health")["status"], "ok");

    let first = burst(&agent.socket, 200);
    assert!(
        first.iter().all(|(status, _)| *status == 200),
        "{:?}",
        first[0]
    );
    let token = token_of(&first[0].1);
    assert!(
        first.iter().all(|(_, body)| token_of(body) == token),
        "200 identical tokens"
    );
    assert_eq!(
        emu.stats()["token_requests"],
        1,
        "exactly one upstream exchange"
    );
    assert!(opens_catalog(&emu, &token));

    let second = burst(&agent.socket, 200);
    assert!(
        second
            .iter()
            .all(|(s, b)| *s == 200 && token_of(b) == token)
    );
    assert_eq!(
        emu.stats()["token_requests"],
        1,
        "the second burst is served from the cache"
    );

    let json: Value = serde_json::from_str(&first[0].1).unwrap();
    assert_eq!(json["token_type"], "Bearer");
    let expires_in = json["expires_in"].as_u64().expect("expires_in");
    assert!((3500..=3600).contains(&expires_in), "{json}");

    check_metrics_after_two_bursts(&agent);
    check_profile_listing(&agent, &s.kid);

    let log = agent.stderr();
    assert!(
        !log.contains(PIN) && !log.contains(&token),
        "no PIN or token in the log"
    );
}

#[test]
fn the_api_answers_unknown_profiles_and_bad_paths_with_json_errors() {
    let s = setup();
    let emu = s.emulator(&[]);
    let agent = s.agent_for(&emu);
    let (status, body) = agent.get("/v1/profiles/nope/token");
    assert_eq!(status, 404, "{body}");
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"], "unknown_profile");
    assert!(
        json["message"].as_str().unwrap().contains("known: prod"),
        "{json}"
    );
    for path in ["/", "/v1/nothing", "/v1/profiles/prod/token/extra"] {
        let (status, body) = agent.get(path);
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["error"],
            "bad_request"
        );
    }
    for (method, path) in [("POST", "/v1/health"), ("DELETE", TOKEN_PATH)] {
        let reply = agent.request(method, path);
        assert_eq!(reply.status, 405, "{method} {path}: {}", reply.body);
        assert_eq!(reply.json()["error"], "method_not_allowed");
        assert_eq!(reply.header("allow"), Some("GET, HEAD"));
    }
    assert_eq!(emu.stats()["token_requests"], 0);
}

#[test]
fn token_and_exec_ask_the_agent_when_suitekey_auth_sock_is_set() {
    let s = setup();
    let emu = s.emulator(&[]);
    let agent = s.agent_for(&emu);
    let config = s.dir.path().join("config.toml");
    let served = token_of(&agent.get(TOKEN_PATH).1);

    // A client on another token copy: it never touches a token while the agent answers.
    let client = || {
        let mut cmd = suitekey_with_conf(&fixture().token_copy(None));
        cmd.env("SUITEKEY_AUTH_SOCK", &agent.socket)
            .arg("--config")
            .arg(&config);
        cmd
    };
    let out = client()
        .args(["--profile", "prod", "token"])
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.trim_end(), served);

    let out = client()
        .args([
            "--profile",
            "prod",
            "exec",
            "--",
            "sh",
            "-c",
            "printf %s \"$NETSUITE_ACCESS_TOKEN\"",
        ])
        .output()
        .unwrap();
    assert_eq!(texts(&out).0, served);
    assert_eq!(emu.stats()["token_requests"], 1);

    // --no-agent signs and exchanges here: a new token.
    let out = client()
        .args(["--profile", "prod", "token", "--no-agent"])
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert_ne!(stdout.trim_end(), served);
    assert_eq!(emu.stats()["token_requests"], 2);

    check_client_errors(&agent, client);
}

/// Agent errors keep the command's exit codes; an agent that is not there is 7.
fn check_client_errors(agent: &Agent, client: impl Fn() -> assert_cmd::Command) {
    let out = client()
        .args(["--profile", "nope", "token"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", texts(&out).1);
    assert!(texts(&out).1.contains("no profile 'nope'"));
    let out = client().args(["token"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        texts(&out).1.contains("--profile NAME"),
        "{}",
        texts(&out).1
    );
    let gone = agent.dir.path().join("gone.sock");
    let out = client()
        .env("SUITEKEY_AUTH_SOCK", &gone)
        .args(["--profile", "prod", "token"])
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.contains(&gone.display().to_string()) && stderr.contains("suitekey agent"),
        "{stderr}"
    );
}

#[test]
fn tokens_are_renewed_ahead_of_expiry_and_no_client_gets_an_expired_one() {
    let s = setup();
    let emu = s.emulator(&["--token-lifetime", "6"]);
    let agent = s.agent_for(&emu);
    // token → (first seen, expiry estimated from expires_in at first sight)
    let mut seen: HashMap<String, (Instant, Instant)> = HashMap::new();
    let mut order = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        let (status, body) = agent.get(TOKEN_PATH);
        assert_eq!(status, 200, "{body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        let expires_in = json["expires_in"].as_u64().unwrap();
        assert!(
            expires_in >= 1,
            "a token about to expire was handed out: {json}"
        );
        let token = token_of(&body);
        if !seen.contains_key(&token) {
            let now = Instant::now();
            assert!(
                opens_catalog(&emu, &token),
                "a fresh token is accepted upstream"
            );
            seen.insert(token.clone(), (now, now + Duration::from_secs(expires_in)));
            order.push(token);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        order.len() >= 3,
        "renewed at least twice in 15 s: {}",
        order.len()
    );
    for pair in order.windows(2) {
        let (_, old_expiry) = seen[&pair[0]];
        let (new_seen, _) = seen[&pair[1]];
        assert!(
            new_seen < old_expiry,
            "the next token was there before the old one expired"
        );
    }
    let issued = emu.stats()["tokens_issued"].as_u64().unwrap();
    assert!(
        issued as usize <= order.len() + 1,
        "no renewal storm: {issued} for {}",
        order.len()
    );
}

/// The least time left that a token of `lifetime` is handed out with, as README documents it:
/// 30 s, a tenth of the lifetime for tokens of under 5 minutes, and never under 1 s.
fn documented_margin(lifetime: Duration) -> Duration {
    (lifetime / 10).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// Polls the agent for `window` and checks every answer: a token whose real remaining life is
/// at least the documented margin. The remaining life is bounded from above by the test's own
/// clock: a token first seen at `f` was issued before `f`, so at a request sent at `t` it has at
/// most `f + lifetime - t` left.
fn poll_short_tokens(agent: &Agent, lifetime: Duration, window: Duration) {
    let margin = documented_margin(lifetime);
    let mut first_seen: HashMap<String, Instant> = HashMap::new();
    let start = Instant::now();
    while start.elapsed() < window {
        let sent = Instant::now();
        let (status, body) = agent.get(TOKEN_PATH);
        assert_eq!(status, 200, "{lifetime:?} tokens: {body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        let expires_in = json["expires_in"].as_u64().unwrap();
        assert!(
            expires_in >= margin.as_secs(),
            "{lifetime:?} tokens: handed out with expires_in {expires_in}, under the {margin:?} margin: {json}"
        );
        let seen = *first_seen
            .entry(token_of(&body))
            .or_insert_with(Instant::now);
        let at_most_left = (seen + lifetime).saturating_duration_since(sent);
        assert!(
            at_most_left >= margin,
            "{lifetime:?} tokens: one was handed out with at most {at_most_left:?} left, under the {margin:?} margin"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(first_seen.len() >= 2, "{lifetime:?} tokens were renewed");
}

/// With no client at all for `window`, the agent's exchanges (counted by the emulator).
fn idle_exchanges(emu: &Emulator, window: Duration) -> u64 {
    let before = emu.stats()["token_requests"].as_u64().unwrap();
    std::thread::sleep(window);
    emu.stats()["token_requests"].as_u64().unwrap() - before
}

#[test]
fn short_lived_tokens_keep_the_documented_margin_and_idle_renewals_are_spaced() {
    let check = |secs: &str| {
        let s = setup();
        let emu = s.emulator(&["--token-lifetime", secs]);
        let agent = s.agent_for(&emu);
        let lifetime = Duration::from_secs(secs.parse().unwrap());
        poll_short_tokens(&agent, lifetime, Duration::from_secs(8));
        // Background renewals are at least 4 s apart: at most 3 in 12 s.
        let idle = idle_exchanges(&emu, Duration::from_secs(12));
        assert!(
            idle <= 3,
            "{secs}-s tokens: {idle} exchanges in 12 s without clients: {}",
            agent.stderr()
        );
    };
    std::thread::scope(|scope| {
        scope.spawn(|| check("3"));
        scope.spawn(|| check("5"));
    });
}

#[test]
fn tokens_too_short_for_the_margin_are_refused_clearly() {
    let s = setup();
    let emu = s.emulator(&["--token-lifetime", "1"]);
    let agent = s.agent_for(&emu);
    let reply = agent.request("GET", TOKEN_PATH);
    assert_eq!(reply.status, 502, "{}", reply.body);
    let json = reply.json();
    assert_eq!(json["error"], "upstream");
    let message = json["message"].as_str().unwrap();
    assert!(
        message.contains("valid for 1 s") && message.contains("at least 1 s"),
        "{message}"
    );
    assert!(reply.header("retry-after").is_some(), "{}", reply.head);
    assert_eq!(emu.stats()["token_requests"], 1, "no exchange per request");
    assert_eq!(agent.request("GET", TOKEN_PATH).status, 502);
    assert_eq!(emu.stats()["token_requests"], 1);
}

#[test]
fn a_backward_wall_clock_step_never_serves_a_token_past_its_real_expiry() {
    let s = setup();
    let emu = s.emulator(&["--token-lifetime", "5"]);
    let lifetime = Duration::from_secs(5);
    let config = s.config(&emu.token_url(), &[("prod", &fixture().uri("p256"))]);
    // The agent's wall clock follows this file at run time; its monotonic clock is left alone.
    let clock = s.dir.path().join("faketime");
    std::fs::write(&clock, "+0").unwrap();
    let preload = libfaketime();
    let agent = Agent::start(
        &s.conf,
        &config,
        &[],
        &[
            ("LD_PRELOAD", preload.to_str().unwrap()),
            ("FAKETIME_TIMESTAMP_FILE", clock.to_str().unwrap()),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    let (status, body) = agent.get(TOKEN_PATH);
    assert_eq!(status, 200, "{body}");
    let mut first_seen = HashMap::from([(token_of(&body), Instant::now())]);
    std::fs::write(&clock, "-7200").unwrap();

    let start = Instant::now();
    let mut refused = 0;
    while start.elapsed() < lifetime * 2 {
        let sent = Instant::now();
        let (status, body) = agent.get(TOKEN_PATH);
        if status != 200 {
            assert_eq!(status, 502, "{body}");
            refused += 1;
            continue;
        }
        let token = token_of(&body);
        let seen = *first_seen.entry(token.clone()).or_insert_with(Instant::now);
        let at_most_left = (seen + lifetime).saturating_duration_since(sent);
        assert!(
            !at_most_left.is_zero(),
            "a token was served {:?} after its real expiry: {body}",
            sent - (seen + lifetime)
        );
        let json: Value = serde_json::from_str(&body).unwrap();
        let expires_in = json["expires_in"].as_u64().unwrap();
        assert!(
            expires_in <= at_most_left.as_secs(),
            "expires_in {expires_in} s, but at most {at_most_left:?} were left: {body}"
        );
        assert!(opens_catalog(&emu, &token), "served, yet refused upstream");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Two hours behind, the agent's assertions are expired: once the token it had expires for
    // real, nothing valid is left to serve.
    assert!(refused > 0, "no refusal after the token's real expiry");
}

#[test]
fn an_upstream_outage_serves_the_cached_token_and_shows_in_metrics_and_logs() {
    let s = setup();
    // Renewal is due 4-5 s before expiry; a failed exchange (3 attempts) takes up to 1.5 s.
    let emu = s.emulator(&["--token-lifetime", "16"]);
    let listen = emu.base.trim_start_matches("http://").to_owned();
    let agent = s.agent_for(&emu);
    let token = token_of(&agent.get(TOKEN_PATH).1);
    let got_at = Instant::now();

    // The same endpoint now fails every request.
    drop(emu);
    let _down = s.emulator_on(&listen, &["--fail-first", "100000"]);
    let mut failures = None;
    while failures.is_none() {
        assert!(
            got_at.elapsed() < Duration::from_secs(14),
            "no failure counted: {}",
            agent.stderr()
        );
        let (status, body) = agent.get(TOKEN_PATH);
        assert_eq!(status, 200, "the cached token is still served: {body}");
        assert_eq!(token_of(&body), token);
        let (_, metrics) = agent.get("/metrics");
        failures = metric(
            &metrics,
            "suitekey_agent_upstream_failures_total{profile=\"prod\",code=\"server_error\"}",
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        failures >= Some(1.0),
        "renewal failures are counted by code"
    );
    assert!(
        agent.logs_within("server_error", Duration::from_secs(5)),
        "and logged: {}",
        agent.stderr()
    );
    let (status, body) = agent.get(TOKEN_PATH);
    assert_eq!(
        (status, token_of(&body)),
        (200, token.clone()),
        "still served after the failure"
    );

    // Once the cached token has expired, the failure reaches the client.
    std::thread::sleep(Duration::from_secs(16).saturating_sub(got_at.elapsed()));
    let (status, body) = agent.get(TOKEN_PATH);
    assert_eq!(status, 502, "{body}");
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"], "upstream");
    assert!(
        json["message"].as_str().unwrap().contains("server_error"),
        "{json}"
    );
}

#[test]
fn a_failed_exchange_is_answered_with_retry_after_and_retried_in_the_background() {
    let s = setup();
    // The first exchange (three attempts) fails, the next one succeeds.
    let emu = s.emulator(&["--fail-first", "3"]);
    let agent = s.agent_for(&emu);
    let check_refusal = |reply: &common::agent::Reply| {
        assert_eq!(reply.status, 502, "{}", reply.body);
        assert_eq!(reply.json()["error"], "upstream");
        let retry_after: u64 = reply
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("Retry-After: {}", reply.head));
        assert!((1..=60).contains(&retry_after), "{}", reply.head);
    };
    check_refusal(&agent.request("GET", TOKEN_PATH));
    assert_eq!(emu.stats()["token_requests"], 3);
    // Until the backoff ends, requests get that failure without an exchange of their own.
    check_refusal(&agent.request("GET", TOKEN_PATH));
    assert_eq!(emu.stats()["token_requests"], 3, "no exchange per request");

    // No client asks again: the agent retries the cold profile by itself.
    let start = Instant::now();
    while agent.json("/v1/profiles")["profiles"][0]["token_expires_at"].is_null() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no retry in the background: {}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, body) = agent.get(TOKEN_PATH);
    assert_eq!(status, 200, "{body}");
    assert!(opens_catalog(&emu, &token_of(&body)));
    assert_eq!(emu.stats()["token_requests"], 4);
}

/// The emulator's token requests so far.
fn token_requests(emu: &Emulator) -> u64 {
    emu.stats()["token_requests"].as_u64().unwrap()
}

#[test]
fn a_refused_client_is_retried_rarely_shown_failed_and_retried_at_once_on_sighup() {
    let s = setup();
    let emu = s.emulator(&[]);
    let config = s.config(&emu.token_url(), &[("prod", &fixture().uri("p256"))]);
    // A certificate id the emulator does not know: NetSuite answers invalid_grant (MissingKey).
    let unknown = "A".repeat(43);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace(&s.kid, &unknown)).unwrap();
    let agent = Agent::start(&s.conf, &config, &[], &[]);

    let reply = agent.request("GET", TOKEN_PATH);
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert_eq!(token_requests(&emu), 1);
    let retry_after: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!(retry_after >= 15 * 60, "{}", reply.head);
    // Before, the agent tried again after 1, 2, 4, 8 s…
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(token_requests(&emu), 1, "retried: {}", agent.stderr());

    let check_explained = |message: &str| {
        assert!(
            message.contains("invalid_grant") && message.contains("SIGHUP"),
            "{message}"
        );
    };
    let profiles = agent.json("/v1/profiles");
    let prod = &profiles["profiles"][0];
    assert_eq!(prod["status"], "failed", "{profiles}");
    assert_eq!(prod["error"]["error"], "upstream", "{profiles}");
    check_explained(prod["error"]["message"].as_str().unwrap());
    let health = agent.json("/v1/health");
    assert_eq!(
        (&health["status"], &health["failed"]),
        (&"failed".into(), &1.into()),
        "{health}"
    );
    check_explained(&health["problems"][0]["reasons"][0].to_string());
    // A request gets the explanation at once, without an exchange of its own.
    let reply = agent.request("GET", TOKEN_PATH);
    assert_eq!(reply.status, 502, "{}", reply.body);
    check_explained(reply.json()["message"].as_str().unwrap());
    assert_eq!(token_requests(&emu), 1);

    agent.signal("HUP");
    wait_until(&agent, "one exchange after SIGHUP", || {
        token_requests(&emu) == 2
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(token_requests(&emu), 2, "exactly one: {}", agent.stderr());
    assert_eq!(
        agent.json("/v1/profiles")["profiles"][0]["status"],
        "failed"
    );
}

#[test]
fn a_long_retry_after_from_the_endpoint_is_honoured() {
    use common::fault_proxy::{FaultProxy, Mode};
    let s = setup();
    let proxy = FaultProxy::http();
    proxy.set(Mode::TooManyFor(3600));
    let config = s.config(&proxy.token_url(), &[("prod", &fixture().uri("p256"))]);
    let agent = Agent::start(&s.conf, &config, &[], &[]);
    let reply = agent.request("GET", TOKEN_PATH);
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert_eq!(proxy.requests(), 1, "a wait beyond 60 s ends the attempts");
    let retry_after: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!(retry_after > 3500, "{}", reply.head);
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(proxy.requests(), 1, "retried early: {}", agent.stderr());
}

/// The profile named `name` in `/v1/profiles`.
fn profile_named(profiles: &Value, name: &str) -> Value {
    profiles["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {profiles}"))
        .clone()
}

#[test]
fn health_reports_an_expired_expiring_or_mismatched_certificate_stored_with_the_key() {
    let s = setup();
    let f = fixture();
    let dir = s.dir.path();
    // On the token: p256's certificate expired 36 days ago, p384's has 9 days left, p521's
    // is new.
    let expired = common::cert_at_clock(&s.conf, &f.uri("p256"), "-37d", 1, &dir.join("a.pem"));
    let soon = common::cert_at_clock(&s.conf, &f.uri("p384"), "-721d", 730, &dir.join("b.pem"));
    let fine = common::cert_at_clock(&s.conf, &f.uri("p521"), "+0", 730, &dir.join("c.pem"));
    let profile =
        |key: &str, kid: &str| Profile::new(f.uri(key), kid).token_url("http://127.0.0.1:9/token");
    let config = write_config(
        &dir.join("config.toml"),
        &[
            ("expired", &profile("p256", &expired)),
            ("mismatch", &profile("p256", &fine)),
            ("soon", &profile("p384", &soon)),
            ("fine", &profile("p521", &fine)),
        ],
    );
    let agent = Agent::start(&s.conf, &config, &[], &[]);

    let profiles = agent.json("/v1/profiles");
    let expect = |name: &str, status: &str, needles: &[&str]| {
        let p = profile_named(&profiles, name);
        assert_eq!(p["status"], status, "{name}: {p}");
        let text = p.to_string();
        for needle in needles {
            assert!(text.contains(needle), "{name}: want {needle:?} in {p}");
        }
        p
    };
    let p = expect("expired", "failed", &["expired on", "days ago"]);
    assert_eq!(p["error"]["error"], "certificate", "{p}");
    assert!(p["certificate_days_left"].as_i64() <= Some(-36), "{p}");
    expect("mismatch", "warning", &[&expired, &fine, "certificate-id"]);
    expect("soon", "warning", &["expires in", "14-day notice"]);
    let p = expect("fine", "ok", &[]);
    assert_eq!(p["warnings"], serde_json::json!([]), "{p}");

    let health = agent.json("/v1/health");
    assert_eq!(health["status"], "failed", "{health}");
    assert_eq!(
        (health["failed"].as_u64(), health["warnings"].as_u64()),
        (Some(1), Some(2)),
        "{health}"
    );
    let problems = health["problems"].to_string();
    for needle in ["expired on", "14-day notice", &fine] {
        assert!(problems.contains(needle), "want {needle:?} in {health}");
    }
    let log = agent.stderr();
    for needle in [
        "expired on",
        "14-day notice",
        "is not the configured certificate-id",
    ] {
        assert!(log.contains(needle), "want {needle:?} logged: {log}");
    }
}

fn as_nobody_curl(socket: &Path) -> std::process::Output {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "curl",
            "-s",
            "-w",
            "\n%{http_code}",
        ])
        .arg("--unix-socket")
        .arg(socket)
        .arg("http://localhost/v1/health")
        .output()
        .expect("setpriv curl")
}

/// Adds `[agent] allowed-uids = [65534]` to `config` and has `agent` reload it.
fn allow_nobody_in_the_config_and_reload(agent: &Agent, config: &Path) {
    let mut text = std::fs::read_to_string(config).unwrap();
    text.push_str("\n[agent]\nallowed-uids = [65534]\n");
    std::fs::write(config, text).unwrap();
    agent.signal("HUP");
    wait_until(agent, "reload", || {
        agent.stderr().contains("config reloaded")
    });
}

#[test]
fn other_users_cannot_connect_and_are_refused_by_uid_unless_allowed() {
    use std::os::unix::fs::PermissionsExt as _;
    if !is_root() {
        eprintln!("skipped: needs root to run a client as another user (setpriv)");
        return;
    }
    let s = setup();
    let emu = s.emulator(&[]);
    let agent = s.agent_for(&emu);
    // The socket's directory is 0700: another user cannot even reach the socket.
    let out = as_nobody_curl(&agent.socket);
    assert!(
        !out.status.success(),
        "connect refused by the directory's mode"
    );

    // Opened up on purpose: the peer uid check answers 403 and logs it.
    let open_up = |agent: &Agent| {
        let chmod = |p: &Path, mode| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        chmod(agent.dir.path(), 0o711);
        chmod(&agent.socket, 0o666);
    };
    open_up(&agent);
    let out = as_nobody_curl(&agent.socket);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.ends_with("\n403"), "{text}");
    assert!(text.contains("\"forbidden\""), "{text}");
    assert!(
        agent.logs_within(
            "refused a connection from another user",
            std::time::Duration::from_secs(5)
        ),
        "{}",
        agent.stderr()
    );
    // The agent's own user still gets in.
    assert_eq!(agent.json("/v1/health")["status"], "ok");

    allow_nobody_in_the_config_and_reload(&agent, &s.dir.path().join("config.toml"));
    let out = as_nobody_curl(&agent.socket);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.ends_with("\n200"), "{text}");
    // Without [agent] again: the flag alone lets the other user in.
    let config = s.config(&emu.token_url(), &[("prod", &fixture().uri("p256"))]);
    let allowing = Agent::start(&s.conf, &config, &["--allow-uid", "65534"], &[]);
    open_up(&allowing);
    let out = as_nobody_curl(&allowing.socket);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.ends_with("\n200"), "{text}");
}

#[test]
fn the_agent_is_not_dumpable_so_same_user_processes_cannot_read_its_memory() {
    use std::os::unix::fs::MetadataExt as _;
    if !is_root() {
        eprintln!("skipped: needs root to run the agent as another user (setpriv)");
        return;
    }
    // Run as nobody, so that the owner of /proc/PID/mem tells: a dumpable process owns it
    // (and so may any process of its user open it), a non-dumpable one's belongs to root.
    // No token needed: the profile fails.
    let dir = common::agent::socket_dir();
    let (mut child, _socket) = agent_as_nobody(dir.path(), &[]);
    let proc_dir = PathBuf::from(format!("/proc/{}", child.id()));
    let status = std::fs::read_to_string(proc_dir.join("status")).unwrap();
    let owner = std::fs::metadata(proc_dir.join("mem")).map(|m| m.uid());
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        status.lines().any(|l| l.starts_with("Uid:\t65534")),
        "{status}"
    );
    assert_eq!(
        owner.unwrap(),
        0,
        "/proc/PID/mem belongs to root: not dumpable"
    );
}

#[test]
fn sighup_adds_a_profile_keeping_cached_tokens_and_sigterm_removes_the_socket() {
    let s = setup();
    let emu = s.emulator(&[]);
    let mut agent = s.agent_for(&emu);
    let token = token_of(&agent.get(TOKEN_PATH).1);
    assert_eq!(emu.stats()["token_requests"], 1);

    let key = fixture().uri("p256");
    s.config(&emu.token_url(), &[("prod", &key), ("added", &key)]);
    agent.signal("HUP");
    let start = Instant::now();
    while agent.json("/v1/profiles")["profiles"]
        .as_array()
        .unwrap()
        .len()
        < 2
    {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "reload: {}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        token_of(&agent.get(TOKEN_PATH).1),
        token,
        "unchanged profile keeps its token"
    );
    assert_eq!(emu.stats()["token_requests"], 1);
    let (status, body) = agent.get("/v1/profiles/added/token");
    assert_eq!(status, 200, "{body}");
    assert!(opens_catalog(&emu, &token_of(&body)));

    // A config that no longer parses changes nothing.
    std::fs::write(s.dir.path().join("config.toml"), "not toml [").unwrap();
    agent.signal("HUP");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(agent.json("/v1/health")["profiles"], 2);
    assert!(
        agent.stderr().contains("reload failed"),
        "{}",
        agent.stderr()
    );

    agent.signal("TERM");
    let status = agent.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}: {}", agent.stderr());
    assert!(!agent.socket.exists(), "socket removed");
}

/// Waits until `done` holds, at most 15 s, showing the agent's log otherwise.
fn wait_until(agent: &Agent, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{what}: {}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A key URI for the p256 key whose PIN is read from `pin_file`.
fn key_with_pin_file(pin_file: &Path) -> String {
    format!(
        "pkcs11:token={};object=p256;type=private?module-path={}&pin-source=file:{}",
        common::TOKEN,
        common::module_path().display(),
        pin_file.display()
    )
}

/// Sends `GET TOKEN_PATH` from a thread; its answer is the raw response (empty when the
/// connection closed without one).
fn request_in_background(socket: &Path) -> std::thread::JoinHandle<String> {
    use std::io::{Read as _, Write as _};
    let socket = socket.to_owned();
    std::thread::spawn(move || {
        let mut stream = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
        write!(
            stream,
            "GET {TOKEN_PATH} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
    })
}

#[test]
fn signals_during_startup_neither_kill_the_agent_nor_leave_its_socket() {
    let s = setup();
    let emu = s.emulator(&[]);
    // The PIN "file" is a FIFO: opening the profile blocks until the test writes the PIN,
    // after the socket is bound.
    let fifo = s.dir.path().join("pin.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let config = s.config(&emu.token_url(), &[("prod", &key_with_pin_file(&fifo))]);
    let starting = |conf: &Path| Agent::spawn_at(None, conf, &config, &[], &[]);

    let mut agent = starting(&s.conf);
    wait_until(&agent, "socket bound", || agent.socket.exists());
    agent.signal("HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "SIGHUP during startup killed the agent: {}",
        agent.stderr()
    );
    std::fs::write(&fifo, format!("{PIN}\n")).unwrap();
    agent.wait_ready();
    let (status, body) = agent.get(TOKEN_PATH);
    assert_eq!(status, 200, "{body}");

    // SIGTERM during startup: the agent stops once the profiles are open, never announces
    // the socket, and removes it.
    let mut stopped = starting(&fixture().token_copy(None));
    wait_until(&stopped, "socket bound", || stopped.socket.exists());
    stopped.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&fifo, format!("{PIN}\n")).unwrap();
    let status = stopped.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status:?}: {}", stopped.stderr());
    assert_eq!(stopped.read_stdout_line(), "", "no socket announced");
    assert!(!stopped.socket.exists(), "socket removed");
    assert!(stopped.stderr().contains("stopped during startup"));
}

#[test]
fn sigterm_finishes_the_request_in_flight_and_spares_a_successors_socket() {
    let s = setup();
    let emu = s.emulator(&["--delay-ms", "1500"]);
    let mut agent = s.agent_for(&emu);
    let in_flight = request_in_background(&agent.socket);
    wait_until(&agent, "exchange under way", || {
        emu.stats()["token_requests"] == 1
    });
    agent.signal("TERM");
    wait_until(&agent, "signal noticed", || {
        agent.stderr().contains("finishing the requests in flight")
    });

    // While the first agent drains, a second one takes the path over (nothing answers there).
    let config = s.dir.path().join("config.toml");
    let successor = Agent::start_at(
        Some(&agent.socket),
        &fixture().token_copy(None),
        &config,
        &[],
        &[],
    );

    let (status, body) = common::agent::parse_response(&in_flight.join().unwrap());
    assert_eq!(status, 200, "the request in flight is answered: {body}");
    assert!(opens_catalog(&emu, &token_of(&body)));
    let exit = agent.wait_exit(Duration::from_secs(15));
    assert!(exit.success(), "{exit:?}: {}", agent.stderr());
    assert!(
        successor.socket.exists(),
        "the successor's socket is left alone: {}",
        agent.stderr()
    );
    assert_eq!(successor.json("/v1/health")["status"], "ok");
}

#[test]
fn a_drain_longer_than_drain_timeout_is_cut_short() {
    let s = setup();
    let emu = s.emulator(&["--delay-ms", "25000"]);
    let config = s.config(&emu.token_url(), &[("prod", &fixture().uri("p256"))]);
    let mut agent = Agent::start(&s.conf, &config, &["--drain-timeout", "1"], &[]);
    let in_flight = request_in_background(&agent.socket);
    wait_until(&agent, "exchange under way", || {
        emu.stats()["token_requests"] == 1
    });
    agent.signal("TERM");
    // Well before the emulator answers (25 s).
    let exit = agent.wait_exit(Duration::from_secs(12));
    assert!(exit.success(), "{exit:?}: {}", agent.stderr());
    assert!(
        agent.stderr().contains("stopping anyway"),
        "{}",
        agent.stderr()
    );
    assert!(!agent.socket.exists(), "socket removed");
    assert!(
        !in_flight.join().unwrap().starts_with("HTTP/1.1 200"),
        "the cut request got no token"
    );
}

#[test]
fn a_live_agent_is_not_replaced_but_a_stale_socket_is() {
    let s = setup();
    let emu = s.emulator(&[]);
    let agent = s.agent_for(&emu);
    let config = s.dir.path().join("config.toml");
    let out = suitekey_with_conf(&s.conf)
        .arg("--config")
        .arg(&config)
        .args(["agent", "--socket"])
        .arg(&agent.socket)
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stdout.is_empty() && stderr.contains("already running"),
        "{stderr}"
    );
    assert_eq!(
        agent.json("/v1/health")["status"],
        "ok",
        "the first agent is untouched"
    );

    // A socket file left by a killed agent is replaced.
    let stale = agent.dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let mut again = Agent::start_at(Some(&stale), &s.conf, &config, &[], &[]);
    assert_eq!(again.json("/v1/health")["status"], "ok");
    assert!(
        again.stderr().contains("stale socket"),
        "{}",
        again.stderr()
    );
    again.signal("INT");
    assert!(again.wait_exit(Duration::from_secs(10)).success());
}

/// A key URI of the fixture's p256 key through pkcs11-spy (which logs every call to `log`),
/// with the PIN from `pin_file`, and the environment that makes the spy wrap SoftHSM2.
fn spied(pin_file: &Path, log: &Path) -> (String, [(&'static str, String); 2]) {
    let uri = format!(
        "pkcs11:token={};object=p256;type=private?module-path={}&pin-source=file:{}",
        common::TOKEN,
        common::pkcs11_spy().display(),
        pin_file.display()
    );
    let env = [
        ("PKCS11SPY", common::module_path().display().to_string()),
        ("PKCS11SPY_OUTPUT", log.display().to_string()),
    ];
    (uri, env)
}

fn start_spied(s: &CertifiedCopy, config: &Path, env: &[(&'static str, String); 2]) -> Agent {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Agent::start(&s.conf, config, &[], &env)
}

/// Sends SIGHUP and waits until the agent has reloaded `n` times in all.
fn reload(agent: &Agent, n: usize) {
    agent.signal("HUP");
    let start = Instant::now();
    while agent.stderr().matches("config reloaded").count() < n {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_pin_failure(agent: &Agent, profile: &str, wanted: &str) {
    let (status, body) = agent.get(&format!("/v1/profiles/{profile}/token"));
    assert_eq!(status, 503, "{body}");
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"], "pin", "{json}");
    let message = json["message"].as_str().unwrap();
    assert!(
        message.contains(wanted) && message.contains("not"),
        "{message}"
    );
    assert!(!message.contains("not-the-PIN"), "the PIN is never shown");
}

#[test]
fn a_wrong_pin_costs_one_login_stops_only_its_profile_and_is_never_retried() {
    let s = setup();
    let f = fixture();
    let emu = s.emulator(&[]);
    let wrong = s.dir.path().join("wrong.pin");
    std::fs::write(&wrong, "not-the-PIN-31415\n").unwrap();
    let log = s.dir.path().join("spy.log");
    let (broken, env) = spied(&wrong, &log);
    // Two profiles with the same wrong PIN source: the token sees the PIN once.
    let config = s.config(
        &emu.token_url(),
        &[
            ("broken", &broken),
            ("broken2", &broken),
            ("prod", &f.uri("p256")),
        ],
    );
    let agent = start_spied(&s, &config, &env);
    for _ in 0..3 {
        assert_pin_failure(&agent, "broken", "PIN rejected");
        assert_pin_failure(&agent, "broken2", "already refused");
    }
    let (status, body) = agent.get(TOKEN_PATH);
    assert_eq!(status, 200, "the other profile works: {body}");
    let profiles = agent.json("/v1/profiles");
    assert_eq!(profiles["profiles"][0]["status"], "failed");
    assert_eq!(profiles["profiles"][0]["error"]["error"], "pin");
    assert_eq!(agent.json("/v1/health")["failed"], 2);

    let out = suitekey_with_conf(&f.token_copy(None))
        .env("SUITEKEY_AUTH_SOCK", &agent.socket)
        .arg("--config")
        .arg(&config)
        .args(["--profile", "broken", "token"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", texts(&out).1);

    // Reloads reopen failed profiles, and their PIN source gives the refused PIN again.
    reload(&agent, 1);
    reload(&agent, 2);
    assert_pin_failure(&agent, "broken", "already refused");
    let calls = std::fs::read_to_string(&log).expect("pkcs11-spy log");
    assert_eq!(
        calls.matches("C_Login").count(),
        1,
        "exactly one login attempt, after two profiles and two reloads"
    );
    assert!(calls.contains("CKR_PIN_INCORRECT"));
    let metrics = agent.get("/metrics").1;
    assert_eq!(
        metric(
            &metrics,
            "suitekey_agent_upstream_exchanges_total{profile=\"broken\"}"
        ),
        Some(0.0),
        "nothing is counted for a profile that cannot sign: {metrics}"
    );

    // Once the PIN source gives another PIN, a reload tries it (once) and the profile works.
    std::fs::write(&wrong, format!("{PIN}\n")).unwrap();
    reload(&agent, 3);
    let (status, body) = agent.get("/v1/profiles/broken/token");
    assert_eq!(status, 200, "{body}");
    assert!(
        agent.stderr().contains("PIN rejected"),
        "{}",
        agent.stderr()
    );
    assert!(!agent.stderr().contains("not-the-PIN"));
}

#[test]
fn a_second_profile_on_a_token_shares_its_login_and_a_different_pin_source_is_refused() {
    let s = setup();
    let f = fixture();
    let emu = s.emulator(&[]);
    let log = s.dir.path().join("spy.log");
    let (good, env) = spied(&f.pin_file, &log);
    let wrong = s.dir.path().join("wrong.pin");
    std::fs::write(&wrong, "not-the-PIN-27182\n").unwrap();
    let (broken, _) = spied(&wrong, &log);
    // "prod" logs in first; "shared" uses the same PIN source, "zbroken" another one.
    let config = s.config(
        &emu.token_url(),
        &[("prod", &good), ("shared", &good), ("zbroken", &broken)],
    );
    let agent = start_spied(&s, &config, &env);
    for profile in ["prod", "shared"] {
        let (status, body) = agent.get(&format!("/v1/profiles/{profile}/token"));
        assert_eq!(status, 200, "{profile}: {body}");
    }
    let (status, body) = agent.get("/v1/profiles/zbroken/token");
    assert_eq!(
        status, 503,
        "a wrong PIN is not hidden by the token's login: {body}"
    );
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"], "profile_config", "{json}");
    let message = json["message"].as_str().unwrap();
    assert!(
        message.contains("'zbroken' and 'prod'") && message.contains("same pin-source"),
        "{message}"
    );
    assert!(!message.contains("not-the-PIN"));
    let calls = std::fs::read_to_string(&log).expect("pkcs11-spy log");
    // prod's, and shared's with the same PIN (answered CKR_USER_ALREADY_LOGGED_IN); none for
    // zbroken, whose wrong PIN was never read.
    assert_eq!(calls.matches("C_Login").count(), 2, "{calls}");
    assert!(
        !calls.contains("CKR_PIN_INCORRECT"),
        "the wrong PIN was never sent"
    );
}

#[test]
fn a_signer_whose_token_was_logged_out_reopens_its_session_and_logs_in_again() {
    use suitekey::jose::JwsError;
    use suitekey::netsuite::{AccountId, AssertionError, AssertionRequest};
    // In this process, on this process's own token: no other test here uses it after setup.
    let f = fixture();
    let request = AssertionRequest {
        client_id: CLIENT.parse().unwrap(),
        certificate_id: "kid-1".parse().unwrap(),
        token_url: ACCOUNT.parse::<AccountId>().unwrap().token_url().unwrap(),
        scopes: Default::default(),
        lifetime: Default::default(),
    };
    let uri: suitekey::pkcs11::Pkcs11Uri = f.uri("p256").parse().unwrap();
    let mut signer = suitekey::pkcs11::Key::open(&uri, None)
        .and_then(|k| k.signer(suitekey::jose::Alg::ES256))
        .expect("open p256");
    let signs = |signer: &suitekey::pkcs11::KeySigner| {
        let jws = request.sign(signer, std::time::SystemTime::now())?.jws;
        common::verify(&common::decode_jws(&jws), &f.public_key(0x01)).expect("verifies");
        Ok::<_, AssertionError>(())
    };
    signs(&signer).expect("first signature");

    // Something else in the process logs the token out (login state is shared by all sessions).
    let (ctx, slot) = common::own_context();
    ctx.open_ro_session(slot).unwrap().logout().unwrap();

    match signs(&signer) {
        Err(AssertionError::Jws(JwsError::Sign(e))) => {
            let lost = e
                .downcast_ref::<suitekey::pkcs11::Error>()
                .is_some_and(suitekey::pkcs11::Error::is_session_lost);
            assert!(lost, "a lost session is recognized: {e}")
        }
        other => panic!("signing on a closed session: {other:?}"),
    }
    signer.reopen().expect("new session, one login");
    signs(&signer).expect("signs again after reopening");
}

/// A fake agent on a socket in `dir` that answers one request with `response`.
fn fake_agent(dir: &Path, response: Vec<u8>) -> (PathBuf, std::thread::JoinHandle<()>) {
    use std::io::{Read as _, Write as _};
    let socket = dir.join("fake.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request);
        let _ = stream.write_all(&response);
    });
    (socket, server)
}

#[test]
fn whatever_answers_on_the_socket_is_read_capped_and_printed_without_control_characters() {
    let dir = tempfile::tempdir().unwrap();
    let run = |socket: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_suitekey"))
            .env("SUITEKEY_AUTH_SOCK", socket)
            .args(["--profile", "prod", "token"])
            .output()
            .unwrap();
        (out.status.code(), texts(&out).1)
    };
    let huge = "x".repeat(1 << 20);
    let mut oversized = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        huge.len() + 30
    )
    .into_bytes();
    oversized.extend(format!("{{\"error\":\"x\",\"message\":\"{huge}\"}}").bytes());
    let (socket, server) = fake_agent(dir.path(), oversized);
    let (code, stderr) = run(&socket);
    server.join().unwrap();
    assert_eq!(code, Some(7), "{stderr}");
    assert!(stderr.contains("larger than 64 KiB"), "{stderr}");
    assert!(stderr.len() < 2000, "{} bytes on stderr", stderr.len());

    std::fs::remove_file(&socket).unwrap();
    let body = r#"{"error":"token","message":"key gone\u001b]0;pwned\u0007\u001b[2J"}"#;
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let (socket, server) = fake_agent(dir.path(), reply.into_bytes());
    let (code, stderr) = run(&socket);
    server.join().unwrap();
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("key gone"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains('\u{7}'),
        "{stderr:?}"
    );
}

/// A fake agent that answers `GET …/token` with 200 and a token response granting `token`.
fn fake_agent_granting(dir: &Path, token: &str) -> (PathBuf, std::thread::JoinHandle<()>) {
    let body =
        serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600})
            .to_string();
    let reply = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    fake_agent(dir, reply.into_bytes())
}

#[test]
fn a_token_with_shell_syntax_from_the_agent_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pwned = dir.path().join("pwned");
    let hostile = format!("x;touch${{IFS}}{};", pwned.display());
    let (socket, server) = fake_agent_granting(dir.path(), &hostile);
    let mut sh = Command::new("sh");
    common::readme_examples::with_suitekey_on_path(&mut sh)
        .env("SUITEKEY_AUTH_SOCK", &socket)
        .args([
            "-c",
            r#"out=$(suitekey --profile prod token --format env) || exit; eval "$out""#,
        ]);
    let out = sh.output().unwrap();
    server.join().unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(!pwned.exists(), "the agent's text ran in the shell");
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("RFC 6750"), "{stderr}");
    assert!(
        stderr.contains(&socket.display().to_string()),
        "names the socket: {stderr}"
    );
    assert!(!stderr.contains("touch"), "the token is echoed: {stderr}");
}

#[test]
fn a_multi_line_message_from_the_agent_keeps_its_lines() {
    let dir = tempfile::tempdir().unwrap();
    let body = r#"{"error":"upstream","message":"invalid_grant\nlikely causes:\n- the certificate id\r\n- the clock\u001b[2J"}"#;
    let reply = format!(
        "HTTP/1.1 502 Bad Gateway\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let (socket, server) = fake_agent(dir.path(), reply.into_bytes());
    let out = Command::new(env!("CARGO_BIN_EXE_suitekey"))
        .env("SUITEKEY_AUTH_SOCK", &socket)
        .args(["--profile", "prod", "token"])
        .output()
        .unwrap();
    server.join().unwrap();
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains("invalid_grant\nlikely causes:\n- the certificate id"),
        "{stderr:?}"
    );
    assert!(
        !stderr.contains('\r') && !stderr.contains('\u{1b}'),
        "{stderr:?}"
    );
}

/// A `suitekey agent ARGS` run as nobody (uid 65534) in `dir`, serving a profile that cannot
/// open (with `--allow-uid 0`, it answers root's every token request with its error).
fn agent_as_nobody(dir: &Path, args: &[&str]) -> (std::process::Child, PathBuf) {
    use std::io::BufRead as _;
    std::os::unix::fs::chown(dir, Some(65534), Some(65534)).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(&config, "[profiles.p]\nkey = \"pkcs11:object=none\"\n").unwrap();
    let socket = dir.join("agent.sock");
    let mut child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_suitekey"))
        .arg("--config")
        .arg(&config)
        .arg("agent")
        .args(args)
        .arg("--socket")
        .arg(&socket)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("setpriv suitekey agent");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        line.trim_end(),
        socket.display().to_string(),
        "agent started"
    );
    (child, socket)
}

#[test]
fn an_agent_of_another_uid_is_refused_unless_suitekey_agent_uid_names_it() {
    if !is_root() {
        eprintln!("skipped: needs root to run the agent as another user (setpriv)");
        return;
    }
    let dir = common::agent::socket_dir();
    let (mut child, socket) = agent_as_nobody(dir.path(), &["--allow-uid", "0"]);
    let client = |agent_uid: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_suitekey"));
        cmd.env("SUITEKEY_AUTH_SOCK", &socket)
            .env_remove("SUITEKEY_AGENT_UID")
            .args(["--profile", "p", "token"]);
        if let Some(uid) = agent_uid {
            cmd.env("SUITEKEY_AGENT_UID", uid);
        }
        let out = cmd.output().unwrap();
        (out.status.code(), texts(&out).1)
    };
    let refused = client(None);
    let named = client(Some("65534"));
    let other = client(Some("1234"));
    let bad = client(Some("nobody"));
    let _ = child.kill();
    let _ = child.wait();

    let (code, stderr) = refused;
    assert_eq!(code, Some(7), "{stderr}");
    assert!(
        stderr.contains(&socket.display().to_string()) && stderr.contains("uid 65534"),
        "names the socket and the peer's uid: {stderr}"
    );
    assert!(stderr.contains("SUITEKEY_AGENT_UID"), "{stderr}");
    assert!(
        !stderr.contains("profile 'p'"),
        "the answer was read: {stderr}"
    );
    // Named: the agent is asked, and its own answer (a profile that cannot open) relayed.
    let (code, stderr) = named;
    assert!(matches!(code, Some(2 | 3)), "{code:?}: {stderr}");
    assert!(stderr.contains("profile 'p'"), "{stderr}");
    let (code, stderr) = other;
    assert_eq!(code, Some(7), "{stderr}");
    assert!(stderr.contains("uid 65534"), "{stderr}");
    let (code, stderr) = bad;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("SUITEKEY_AGENT_UID"), "{stderr}");
}

#[test]
fn exec_through_the_agent_gives_the_command_no_pin_variable() {
    let s = setup();
    let emu = s.emulator(&[]);
    let key = fixture().uri("p256").replace(
        &format!("pin-source=file:{}", fixture().pin_file.display()),
        "pin-source=env:MY_TOKEN_PIN",
    );
    let config = s.config(&emu.token_url(), &[("prod", &key)]);
    let agent = Agent::start(&s.conf, &config, &[], &[("MY_TOKEN_PIN", PIN)]);
    // The user's shell holds the PIN variable for the agent it started, and SUITEKEY_PIN.
    let out = Command::new(env!("CARGO_BIN_EXE_suitekey"))
        .env("SUITEKEY_AUTH_SOCK", &agent.socket)
        .env("MY_TOKEN_PIN", PIN)
        .env("SUITEKEY_PIN", PIN)
        .arg("--config")
        .arg(&config)
        .args(["--profile", "prod", "exec", "--", "sh", "-c"])
        .arg(common::SHOW_ENV)
        .output()
        .unwrap();
    common::assert_exec_got_the_token_and_no_pin(&out);
    assert_eq!(emu.stats()["token_requests"], 1, "answered by the agent");
}

/// README's agent examples (`token --format curl-config | curl -K -` and `exec -- sh -c
/// 'printf … | curl -H @-'`), exactly as written there.
#[test]
fn the_readme_agent_curl_examples_send_the_token_and_keep_it_out_of_every_argv() {
    use common::readme_examples::{readme_line, run_traced};
    let s = setup();
    let emu = s.emulator(&[]);
    let agent = s.agent_for(&emu);
    let config = s.dir.path().join("config.toml");
    for prefix in [
        "suitekey --profile prod token --format curl-config | curl -K - https://…",
        "suitekey --profile prod exec -- sh -c",
    ] {
        let line = readme_line(prefix).replace("https://…", &format!("{}{CATALOG}", emu.base));
        let traced = run_traced(&line, s.dir.path(), |cmd| {
            cmd.env("SUITEKEY_AUTH_SOCK", &agent.socket)
                .env("SUITEKEY_CONFIG", &config);
        });
        let (stdout, stderr) = texts(&traced.output);
        assert!(traced.output.status.success(), "{line}: {stderr}");
        assert!(stdout.contains("metadata-catalog"), "{line}: {stdout}");
        traced.assert_token_sent_but_in_no_argv();
    }
    assert_eq!(emu.stats()["token_requests"], 1, "answered by the agent");
}
