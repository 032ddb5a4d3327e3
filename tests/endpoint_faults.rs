//! The token endpoint misbehaving, and trust in it: a fault proxy (tests/common/fault_proxy.rs)
//! in front of the strict emulator refuses connections, stalls, fails, rate-limits, cuts or
//! bloats its answers, redirects, or presents a certificate from an unknown CA. `suitekey token
//! --no-agent` and the agent (real SoftHSM2 token) must answer with a clear error, try a
//! bounded number of times, never print a secret, and (the agent) keep serving a still valid
//! cached token and recover by itself. Also: `--ca-file`, host names, http only on loopback,
//! and a config `token-url` that must belong to the profile's account.

mod common;

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use common::agent::Agent;
use common::certified::CertifiedCopy;
use common::emulator::Emulator;
use common::fault_proxy::{FaultProxy, Mode, TestCa};
use common::profile::{Profile, registration, write_config};
use common::{PIN, fixture, texts};
use serde_json::Value;

/// A certificate for the fixture's p256 key (for the emulator), its id and a temp dir.
struct Setup(CertifiedCopy);

impl std::ops::Deref for Setup {
    type Target = CertifiedCopy;
    fn deref(&self) -> &CertifiedCopy {
        &self.0
    }
}

fn setup() -> Setup {
    Setup(CertifiedCopy::new())
}

impl Setup {
    /// An emulator that also accepts the proxies' token URLs as `aud`, with `flags`.
    fn emulator(&self, proxies: &[&FaultProxy], flags: &[&str]) -> Emulator {
        let spec = registration(&self.pem);
        let urls: Vec<String> = proxies.iter().map(|p| p.token_url()).collect();
        let mut args = vec!["--register", &spec];
        for url in &urls {
            args.extend(["--accept-aud", url]);
        }
        args.extend_from_slice(flags);
        let emu = Emulator::start(&args);
        for proxy in proxies {
            proxy.forward_to(&emu.base);
        }
        emu
    }

    /// `suitekey token --no-agent` for the p256 key at `url`, with `extra` arguments.
    fn token(&self, url: &str, extra: &[&str]) -> Output {
        fixture()
            .suitekey()
            .args(["token", "--no-agent"])
            .args(self.profile().token_url(url).flags())
            .args(extra)
            .output()
            .expect("run suitekey token")
    }
}

/// Exit 6, nothing on stdout, every `needle` on stderr, and no secret anywhere.
fn assert_fails(out: &Output, needles: &[&str]) -> String {
    let (stdout, stderr) = texts(out);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    for needle in needles {
        assert!(stderr.contains(needle), "want {needle:?} in:\n{stderr}");
    }
    assert_no_secret(&stderr);
    stderr
}

/// Neither the PIN nor anything JWT-like (an assertion starts `eyJ`).
fn assert_no_secret(text: &str) {
    assert!(!text.contains(PIN), "PIN in: {text}");
    assert!(!text.contains("eyJ"), "a JWT in: {text}");
}

fn assert_token(out: &Output) -> String {
    let (stdout, stderr) = texts(out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert_no_secret(&stderr);
    stdout.trim_end().to_owned()
}

/// Each fault once through `suitekey token --no-agent`: (mode, requests the endpoint may see,
/// what stderr must say). Retryable faults are tried 3 times, the others once.
#[test]
fn cli_endpoint_faults_give_clear_errors_after_bounded_attempts() {
    let s = setup();
    let proxy = FaultProxy::http();
    let _emu = s.emulator(&[&proxy], &[]);
    let url = proxy.token_url();
    assert_token(&s.token(&url, &[]));
    let cases: [(Mode, u32, &[&str]); 8] = [
        (Mode::Refuse, 0, &["cannot connect to", "(3 attempts)"]),
        (
            Mode::Slow,
            1,
            &["no complete answer from", "within 1 s", "--timeout"],
        ),
        (
            Mode::ServerError,
            3,
            &["HTTP 500", "after 3 attempts", "try again later"],
        ),
        (
            Mode::TooMany,
            3,
            &["HTTP 429", "after 3 attempts", "cache tokens"],
        ),
        (Mode::Truncated, 1, &["unusable answer", "cut short"]),
        (Mode::NotJson, 1, &["unusable answer", "not the JSON"]),
        (Mode::Oversized, 1, &["larger than 64 KiB"]),
        (Mode::OversizedUnannounced, 1, &["larger than 64 KiB"]),
    ];
    for (mode, attempts, needles) in cases {
        proxy.set(mode.clone());
        let before = proxy.requests();
        let started = Instant::now();
        let out = s.token(&url, &["--timeout", "1"]);
        let stderr = assert_fails(&out, needles);
        assert!(
            stderr.contains(&url),
            "{mode:?}: the endpoint is named: {stderr}"
        );
        assert_eq!(proxy.requests() - before, attempts, "{mode:?}: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{mode:?} took {:?}",
            started.elapsed()
        );
    }
    // And it works again once the endpoint does.
    proxy.set(Mode::Pass);
    assert_token(&s.token(&url, &[]));
}

#[test]
fn redirects_are_not_followed_with_the_assertion() {
    let s = setup();
    let (front, elsewhere) = (FaultProxy::http(), FaultProxy::http());
    let _emu = s.emulator(&[&front, &elsewhere], &[]);
    for status in [307, 308] {
        front.set(Mode::Redirect(status, elsewhere.token_url()));
        let out = s.token(&front.token_url(), &[]);
        assert_fails(
            &out,
            &[
                &format!("redirected (HTTP {status}"),
                "to host '127.0.0.1'",
                "does not follow redirects",
            ],
        );
    }
    assert_eq!(front.requests(), 2, "each tried once");
    assert_eq!(
        elsewhere.requests(),
        0,
        "the assertion never went elsewhere"
    );
}

#[test]
fn an_unknown_ca_is_refused_and_ca_file_trusts_a_private_one() {
    let s = setup();
    let ca = TestCa::new(s.dir.path(), "private", "IP:127.0.0.1");
    let other = TestCa::new(s.dir.path(), "other", "IP:127.0.0.1");
    let proxy = FaultProxy::https(&ca, &other);
    let emu = s.emulator(&[&proxy], &[]);
    let url = proxy.token_url();
    // The operating system's roots do not know the private CA: refused, once, with the fix.
    let out = s.token(&url, &[]);
    assert_fails(
        &out,
        &[
            "TLS with the token endpoint",
            &url,
            "--ca-file",
            "UnknownIssuer",
        ],
    );
    assert_eq!(proxy.connections(), 1, "a TLS refusal is not retried");
    assert_eq!(proxy.requests(), 0, "nothing was sent");
    // Another CA's file does not help: --ca-file replaces the roots, it is not a bypass.
    let out = s.token(&url, &["--ca-file", other.ca_pem.to_str().unwrap()]);
    assert_fails(&out, &["UnknownIssuer"]);
    // The right CA file, by flag and by environment: a real token.
    assert_token(&s.token(&url, &["--ca-file", ca.ca_pem.to_str().unwrap()]));
    let f = fixture();
    let out = f
        .suitekey()
        .env("SUITEKEY_CA_FILE", &ca.ca_pem)
        .args(["token", "--no-agent"])
        .args(s.profile().token_url(&url).flags())
        .output()
        .expect("run");
    assert_token(&out);
    drop(emu);
}

#[test]
fn a_certificate_for_another_host_is_refused_even_with_its_ca() {
    let s = setup();
    let wrong = TestCa::new(s.dir.path(), "wrong", "DNS:wrong.example");
    let other = TestCa::new(s.dir.path(), "other", "IP:127.0.0.1");
    let proxy = FaultProxy::https(&wrong, &other);
    let _emu = s.emulator(&[&proxy], &[]);
    let out = s.token(
        &proxy.token_url(),
        &["--ca-file", wrong.ca_pem.to_str().unwrap()],
    );
    assert_fails(&out, &["TLS with the token endpoint", "not valid for name"]);
    assert_eq!(proxy.requests(), 0);
}

#[test]
fn unusable_ca_files_are_refused_naming_the_file() {
    let s = setup();
    let dir = s.dir.path();
    let missing = dir.join("missing.pem");
    let text = dir.join("text.pem");
    std::fs::write(&text, "not a certificate\n").unwrap();
    let key_only = dir.join("key.pem");
    let ca = TestCa::new(dir, "k", "IP:127.0.0.1");
    let key = std::fs::read_to_string(dir.join("k-server.key")).unwrap();
    std::fs::write(&key_only, &key).unwrap();
    let cases = [
        (&missing, "cannot read CA file"),
        (&text, "holds no PEM block"),
        (&key_only, "is not a list of PEM certificates"),
    ];
    for (file, why) in cases {
        let out = s.token(
            "https://127.0.0.1:9/token",
            &["--ca-file", file.to_str().unwrap()],
        );
        let (_, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        for needle in [why, file.to_str().unwrap(), "--ca-file"] {
            assert!(stderr.contains(needle), "{needle} in {stderr}");
        }
        assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");
    }
    drop(ca);
}

#[test]
fn plain_http_is_refused_off_loopback() {
    let s = setup();
    for url in ["http://10.1.2.3/token", "http://example.com/token"] {
        let out = s.token(url, &[]);
        let (_, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("http:// on a non-loopback host"),
            "{stderr}"
        );
    }
}

/// A config whose profile `p` has `token_url`; the account is ACCOUNT.
fn config_with_url(s: &Setup, token_url: &str) -> PathBuf {
    let profile = s.profile().token_url(token_url);
    write_config(&s.dir.path().join("foreign.toml"), &[("p", &profile)])
}

#[test]
fn a_config_token_url_must_belong_to_the_account_unless_given_explicitly() {
    let s = setup();
    let proxy = FaultProxy::http();
    let _emu = s.emulator(&[&proxy], &[]);
    let config = config_with_url(
        &s,
        "https://attacker.example/services/rest/auth/oauth2/v1/token",
    );
    let run = |extra: &[&str], env: Option<&str>| {
        let mut cmd = fixture().suitekey();
        if let Some(url) = env {
            cmd.env("SUITEKEY_TOKEN_URL", url);
        }
        cmd.arg("--config")
            .arg(&config)
            .args(["--profile", "p", "token", "--no-agent"])
            .args(extra)
            .output()
            .expect("run")
    };
    let out = run(&[], None);
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in [
        "profile 'p'",
        "field 'token-url'",
        "'attacker.example'",
        "1234567.suitetalk.api.netsuite.com",
        "pass --token-url to override",
    ] {
        assert!(stderr.contains(needle), "{needle} in {stderr}");
    }
    // Given explicitly, by flag or environment, any https (or loopback) URL is used.
    assert_token(&run(&["--token-url", &proxy.token_url()], None));
    assert_token(&run(&[], Some(&proxy.token_url())));
    assert_eq!(proxy.requests(), 2);
}

/// The agent's fault profiles: (name, mode, failure code in /metrics, attempts per exchange).
const AGENT_FAULTS: [(&str, Mode, &str, u32); 9] = [
    ("refused", Mode::Refuse, "connect", 0),
    ("slow", Mode::Slow, "timeout", 1),
    ("error500", Mode::ServerError, "http_500", 3),
    ("limited", Mode::TooMany, "http_429", 3),
    ("truncated", Mode::Truncated, "malformed", 1),
    ("notjson", Mode::NotJson, "malformed", 1),
    ("oversized", Mode::Oversized, "malformed", 1),
    ("unannounced", Mode::OversizedUnannounced, "malformed", 1),
    ("tls", Mode::UntrustedTls, "tls", 0),
];

fn metric(text: &str, profile: &str, code: &str) -> u32 {
    let name =
        format!("suitekey_agent_upstream_failures_total{{profile=\"{profile}\",code=\"{code}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&name))
        .map_or(0, |v| v.trim().parse().expect("a count"))
}

fn agent_token(agent: &Agent, profile: &str) -> (u16, String) {
    let (status, body) = agent.get(&format!("/v1/profiles/{profile}/token"));
    let token = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["access_token"].as_str().map(str::to_owned));
    (status, token.unwrap_or(body))
}

/// Writes the agent's config: one profile per fault (each behind its own proxy; the TLS one
/// trusts the private CA through a relative `ca-file`), and one whose token URL is foreign.
fn agent_config(s: &Setup, proxies: &[FaultProxy], ca: &TestCa) -> PathBuf {
    assert_eq!(
        ca.ca_pem,
        s.dir.path().join("private-ca.pem"),
        "beside the config"
    );
    let mut profiles: Vec<(&str, Profile)> = Vec::new();
    for ((name, mode, ..), proxy) in AGENT_FAULTS.iter().zip(proxies) {
        let extra = match mode {
            Mode::Slow => "timeout = 1\n",
            Mode::UntrustedTls => "ca-file = \"private-ca.pem\"\n",
            _ => "",
        };
        profiles.push((name, s.profile().token_url(&proxy.token_url()).with(extra)));
    }
    let foreign = s.profile().token_url("https://attacker.example/token");
    profiles.push(("foreign", foreign));
    let named: Vec<(&str, &Profile)> = profiles.iter().map(|(n, p)| (*n, p)).collect();
    write_config(&s.dir.path().join("agent.toml"), &named)
}

/// The emulator's token lifetime in the agent test. A token is renewed a quarter of its life
/// ahead (plus up to 25 % jitter) and served until a tenth of its life is left, so a failed
/// renewal shows at least 0.15 × 40 = 6 s before the cached token goes stale: 2 s for the
/// slowest fault (429: three attempts, 1 s of Retry-After between them), half a second for
/// the request that checks the cached token, over 3 s of slack for a busy machine. Each
/// profile's deadline is taken from its own token, not from the test's start.
const LIFETIME: Duration = Duration::from_secs(40);

/// A profile's first token and until when the agent may still serve it.
struct Served {
    token: String,
    fresh_until: Instant,
}

#[test]
fn the_agent_serves_its_cached_token_through_every_endpoint_fault_and_recovers() {
    let s = setup();
    let ca = TestCa::new(s.dir.path(), "private", "IP:127.0.0.1");
    let other = TestCa::new(s.dir.path(), "other", "IP:127.0.0.1");
    let proxies: Vec<FaultProxy> = AGENT_FAULTS
        .iter()
        .map(|(_, mode, ..)| match mode {
            Mode::UntrustedTls => FaultProxy::https(&ca, &other),
            _ => FaultProxy::http(),
        })
        .collect();
    let refs: Vec<&FaultProxy> = proxies.iter().collect();
    let lifetime = LIFETIME.as_secs().to_string();
    let _emu = s.emulator(&refs, &["--token-lifetime", &lifetime]);
    let config = agent_config(&s, &proxies, &ca);
    let agent = Agent::start(&fixture().token_copy(None), &config, &[], &[]);

    assert_foreign_profile_refused(&agent);
    let first: Vec<Served> = AGENT_FAULTS
        .iter()
        .map(|(name, ..)| first_token(&agent, name))
        .collect();
    for ((_, mode, ..), proxy) in AGENT_FAULTS.iter().zip(&proxies) {
        proxy.set(mode.clone());
    }
    await_failures_serving_cached(&agent, &proxies, &first);
    assert_faults_reported(&agent);

    // The endpoints come back: every profile gets a new token without a restart.
    for proxy in &proxies {
        proxy.set(Mode::Pass);
    }
    await_recovery(&agent, &first);
    let health = agent.json("/v1/health");
    assert_eq!(health["exchange_failing"], 0, "{health}");
    assert_no_secret(&agent.stderr());
    let (_, metrics) = agent.get("/metrics");
    assert_no_secret(&metrics);
}

/// The foreign token URL: that profile is refused with the reason.
fn assert_foreign_profile_refused(agent: &Agent) {
    let (status, body) = agent_token(agent, "foreign");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("attacker.example") && body.contains("pass --token-url to override"),
        "{body}"
    );
}

/// `profile`'s first token, and when it stops being served: a tenth of its life before it
/// expires. This request fetched it (`expires_in` says so), so it expires no sooner than a
/// lifetime after the request began; `expires_in` itself is rounded down to whole seconds.
fn first_token(agent: &Agent, profile: &str) -> Served {
    let asked = Instant::now();
    let (status, body) = agent.get(&format!("/v1/profiles/{profile}/token"));
    assert_eq!(status, 200, "{profile}: {body}");
    let json: Value = serde_json::from_str(&body).expect("token JSON");
    let expires_in = Duration::from_secs(json["expires_in"].as_u64().expect("expires_in"));
    assert!(
        expires_in + Duration::from_secs(2) >= LIFETIME,
        "{profile}: a new token: {body}"
    );
    Served {
        token: json["access_token"].as_str().expect("a token").to_owned(),
        fresh_until: asked + LIFETIME - LIFETIME / 10,
    }
}

/// Each profile's renewal fails; the moment it shows, the cached token is still served, and
/// the endpoint saw a bounded number of attempts. Each profile must fail while its token is
/// still fresh, with half a second to spare for the request that checks it.
fn await_failures_serving_cached(agent: &Agent, proxies: &[FaultProxy], first: &[Served]) {
    let spare = Duration::from_millis(500);
    let mut pending: Vec<usize> = (0..AGENT_FAULTS.len()).collect();
    while !pending.is_empty() {
        let late: Vec<&str> = pending
            .iter()
            .filter(|&&i| Instant::now() + spare > first[i].fresh_until)
            .map(|&i| AGENT_FAULTS[i].0)
            .collect();
        assert!(
            late.is_empty(),
            "no failure shown while the token was fresh: {late:?}: {}",
            agent.stderr()
        );
        let (_, metrics) = agent.get("/metrics");
        // Right after the counters: an exchange that starts later adds at most one more.
        let seen: Vec<u32> = proxies.iter().map(|p| p.requests() - 1).collect();
        pending.retain(|&i| !failure_shown(agent, i, &metrics, seen[i], &first[i]));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether profile `i`'s failure shows in `metrics`; if so, checks that its cached token is
/// served and that `seen` requests (after the first token's) fit the failed exchanges.
fn failure_shown(agent: &Agent, i: usize, metrics: &str, seen: u32, first: &Served) -> bool {
    let (name, _, code, attempts) = &AGENT_FAULTS[i];
    let failures = metric(metrics, name, code);
    if failures == 0 {
        return false;
    }
    let (status, token) = agent_token(agent, name);
    assert_eq!(
        (status, &token),
        (200, &first.token),
        "{name}: cached token served"
    );
    assert!(
        seen >= attempts * failures && seen <= attempts * (failures + 1),
        "{name}: {seen} requests for {failures} failed exchanges of {attempts} attempts"
    );
    true
}

/// Health counts every fault profile as failing (the foreign one as failed), and the TLS
/// profile's error says how to fix it.
fn assert_faults_reported(agent: &Agent) {
    let health = agent.json("/v1/health");
    assert_eq!(health["exchange_failing"], AGENT_FAULTS.len(), "{health}");
    assert_eq!(health["failed"], 1, "only the foreign profile: {health}");
    let profiles = agent.json("/v1/profiles");
    let tls = profiles["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "tls")
        .unwrap();
    let message = tls["last_exchange_error"]["message"].as_str().unwrap();
    assert!(message.contains("--ca-file"), "{message}");
}

/// Every profile serves a new token by itself. The renewal task retries when its backoff ends
/// (1 s doubling, and a profile fails a few times at most before the switch), so 30 s after
/// the switch is generous.
fn await_recovery(agent: &Agent, first: &[Served]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut pending: Vec<usize> = (0..AGENT_FAULTS.len()).collect();
    while !pending.is_empty() {
        assert!(
            Instant::now() < deadline,
            "not recovered: {:?}: {}",
            pending
                .iter()
                .map(|i| AGENT_FAULTS[*i].0)
                .collect::<Vec<_>>(),
            agent.stderr()
        );
        pending.retain(|&i| {
            let (status, token) = agent_token(agent, AGENT_FAULTS[i].0);
            !(status == 200 && token != first[i].token)
        });
        std::thread::sleep(Duration::from_millis(200));
    }
}
