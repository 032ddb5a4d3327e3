//! Token-side faults under a running agent: the SoftHSM2 token directory of one profile's key is
//! moved away and put back, then the token is re-initialized (its keys gone) and the key
//! imported again. The affected profile answers 503 with a message naming its key URI and what
//! to do, shows as failed in `/v1/profiles` and `/v1/health`, and recovers by itself (no
//! SIGHUP); the other profile, on another token of the same module, serves tokens throughout.
//!
//! Also: a module path that is not a PKCS#11 library, for `list`, `assertion`, `token` and an
//! agent profile.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::agent::{Agent, http_get};
use common::emulator::Emulator;
use common::profile::{CLIENT as OTHER_CLIENT, Profile, registration_for, write_config};
use common::{fixture, make_cert, module_path, suitekey_with_conf, texts};
use serde_json::Value;

const VICTIM_CLIENT: &str = "0f9d6a2b1c3e4d5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7";
const VICTIM_PIN: &str = "victim-PIN-6021";
const VICTIM_SO_PIN: &str = "victim-SO-4410";

/// `softhsm2-util ARGS` on the token directory of `conf`; the PINs are test PINs.
fn softhsm_util(conf: &Path, args: &[&str]) {
    let out = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", conf)
        .args(args)
        .output()
        .expect("softhsm2-util (scripts/install-deps.sh installs SoftHSM2)");
    assert!(
        out.status.success(),
        "softhsm2-util {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The directory of the SoftHSM2 token labelled `label` under `tokens`.
fn token_dir(tokens: &Path, label: &str) -> PathBuf {
    let padded = format!("{label:<32}");
    std::fs::read_dir(tokens)
        .expect("token directory")
        .flatten()
        .map(|e| e.path())
        .find(|d| {
            std::fs::read(d.join("token.object"))
                .is_ok_and(|b| b.windows(padded.len()).any(|w| w == padded.as_bytes()))
        })
        .unwrap_or_else(|| panic!("no token '{label}' in {}", tokens.display()))
}

/// Two tokens of one SoftHSM2 module in one token directory: the fixture token (profile
/// `other`, key p256) and `victim` (profile `victim`, an imported P-256 key, so that it can be
/// imported again after the token is re-initialized), each with a certificate for the emulator.
struct Setup {
    conf: PathBuf,
    tokens: PathBuf,
    key_pem: PathBuf,
    victim_uri: String,
    dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let f = fixture();
    let conf = f.token_copy(None);
    let tokens = conf.parent().unwrap().join("tokens");
    let dir = common::temp_dir();
    let key_pem = dir.path().join("victim-key.pem");
    let status = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&key_pem)
        .output()
        .expect("openssl");
    assert!(status.status.success(), "openssl genpkey");
    let pin_file = dir.path().join("victim.pin");
    std::fs::write(&pin_file, format!("{VICTIM_PIN}\n")).unwrap();
    std::fs::set_permissions(
        &pin_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let s = Setup {
        victim_uri: format!(
            "pkcs11:token=victim;object=victim-key;type=private?module-path={}&pin-source=file:{}",
            module_path().display(),
            pin_file.display()
        ),
        conf,
        tokens,
        key_pem,
        dir,
    };
    softhsm_util(
        &s.conf,
        &[
            "--init-token",
            "--free",
            "--label",
            "victim",
            "--so-pin",
            VICTIM_SO_PIN,
            "--pin",
            VICTIM_PIN,
        ],
    );
    s.import_key();
    s
}

impl Setup {
    fn import_key(&self) {
        let pem = self.key_pem.display().to_string();
        softhsm_util(
            &self.conf,
            &[
                "--import",
                &pem,
                "--token",
                "victim",
                "--label",
                "victim-key",
                "--id",
                "0a0b",
                "--pin",
                VICTIM_PIN,
            ],
        );
    }

    /// An emulator issuing `lifetime`-second tokens to `other` (the p256 key) and `victim`,
    /// each with a new certificate: (emulator, other's certificate id, victim's).
    fn emulator(&self, lifetime: &str) -> (Emulator, String, String) {
        let certify = |key: &str, name: &str| {
            let pem = self.dir.path().join(format!("{name}.pem"));
            let kid = make_cert(&self.conf, key, &pem);
            (pem, kid)
        };
        let (other_pem, other_kid) = certify(&fixture().uri("p256"), "other");
        let (victim_pem, victim_kid) = certify(&self.victim_uri, "victim");
        let (r1, r2) = (
            registration_for(OTHER_CLIENT, &other_pem),
            registration_for(VICTIM_CLIENT, &victim_pem),
        );
        let emu = Emulator::start(&[
            "--register",
            &r1,
            "--register",
            &r2,
            "--token-lifetime",
            lifetime,
        ]);
        (emu, other_kid, victim_kid)
    }

    fn config(&self, url: &str, profiles: &[(&str, &str, &str, &str)]) -> PathBuf {
        let profiles: Vec<(&str, Profile)> = profiles
            .iter()
            .map(|(name, key, client, kid)| {
                let profile = Profile::new(*key, *kid).client(client).token_url(url);
                (*name, profile)
            })
            .collect();
        let named: Vec<(&str, &Profile)> = profiles.iter().map(|(n, p)| (*n, p)).collect();
        write_config(&self.dir.path().join("config.toml"), &named)
    }
}

/// Asks for `other`'s token every 100 ms until stopped; returns (requests, failures, distinct
/// tokens seen).
fn keep_asking(
    socket: PathBuf,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(u32, Vec<String>, usize)> {
    std::thread::spawn(move || {
        let (mut asked, mut failures, mut tokens) =
            (0, Vec::new(), std::collections::HashSet::new());
        while !stop.load(Ordering::Relaxed) {
            let (status, body) = http_get(&socket, "/v1/profiles/other/token");
            asked += 1;
            if status == 200 {
                let json: Value = serde_json::from_str(&body).unwrap();
                tokens.insert(json["access_token"].as_str().unwrap().to_owned());
            } else {
                failures.push(format!("{status} {body}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (asked, failures, tokens.len())
    })
}

fn wait_for(agent: &Agent, what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "{what} within {limit:?}; agent log:\n{}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The victim profile fails clearly: 503 JSON naming the key URI and what to do, failed in
/// `/v1/profiles` and `/v1/health`, and a log line.
fn check_victim_failed(agent: &Agent) {
    let mut last = (0, String::new());
    wait_for(
        agent,
        "the victim profile fails",
        Duration::from_secs(20),
        || {
            last = agent.get("/v1/profiles/victim/token");
            last.0 == 503
        },
    );
    let json: Value = serde_json::from_str(&last.1).unwrap();
    let message = json["message"].as_str().unwrap();
    assert_eq!(json["error"], "token", "{json}");
    assert!(
        message.contains("object=victim-key") && message.contains("put the key back"),
        "{message}"
    );
    assert!(message.contains("no reload needed"), "{message}");
    assert!(!message.contains(VICTIM_PIN), "{message}");
    assert!(!advises_initializing(message), "{message}");
    let profiles = agent.json("/v1/profiles");
    let victim = profiles["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "victim")
        .unwrap();
    assert_eq!(victim["status"], "failed", "{profiles}");
    assert_eq!(victim["error"]["error"], "token", "{profiles}");
    let health = agent.json("/v1/health");
    assert_eq!(health["failed"], 1, "{health}");
    assert!(
        agent.stderr().contains("object=victim-key"),
        "logged: {}",
        agent.stderr()
    );
}

fn check_victim_recovers(agent: &Agent, emu: &Emulator) {
    wait_for(
        agent,
        "the victim profile recovers by itself",
        Duration::from_secs(30),
        || agent.get("/v1/profiles/victim/token").0 == 200,
    );
    let (_, body) = agent.get("/v1/profiles/victim/token");
    let token: Value = serde_json::from_str(&body).unwrap();
    let catalog = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
        .arg(format!(
            "Authorization: Bearer {}",
            token["access_token"].as_str().unwrap()
        ))
        .arg(format!(
            "{}/services/rest/record/v1/metadata-catalog",
            emu.base
        ))
        .output()
        .expect("curl");
    assert_eq!(catalog.stdout, b"200", "the new token is accepted upstream");
    assert_eq!(agent.json("/v1/health")["failed"], 0);
}

#[test]
fn a_lost_token_fails_only_its_profile_clearly_and_recovers_by_itself_when_the_key_is_back() {
    let s = setup();
    let f = fixture();
    // Short tokens: both profiles sign every few seconds.
    let (emu, other_kid, victim_kid) = s.emulator("4");
    let config = s.config(
        &emu.token_url(),
        &[
            ("other", &f.uri("p256"), OTHER_CLIENT, &other_kid),
            ("victim", &s.victim_uri, VICTIM_CLIENT, &victim_kid),
        ],
    );
    let agent = Agent::start(&s.conf, &config, &[], &[]);
    assert_eq!(agent.get("/v1/profiles/victim/token").0, 200);
    let stop = Arc::new(AtomicBool::new(false));
    let asker = keep_asking(agent.socket.clone(), Arc::clone(&stop));

    // 1. The victim token's directory is moved away, then put back.
    let victim_dir = token_dir(&s.tokens, "victim");
    let away = s.dir.path().join("away");
    std::fs::rename(&victim_dir, &away).unwrap();
    check_victim_failed(&agent);
    std::fs::rename(&away, &victim_dir).unwrap();
    check_victim_recovers(&agent, &emu);

    // 2. The token is re-initialized (its keys are gone), then the key is imported again.
    let (so, pin) = (VICTIM_SO_PIN, VICTIM_PIN);
    softhsm_util(
        &s.conf,
        &[
            "--init-token",
            "--token",
            "victim",
            "--label",
            "victim",
            "--so-pin",
            so,
            "--pin",
            pin,
        ],
    );
    check_victim_failed(&agent);
    s.import_key();
    check_victim_recovers(&agent, &emu);

    stop.store(true, Ordering::Relaxed);
    let (asked, failures, tokens) = asker.join().unwrap();
    assert!(
        failures.is_empty(),
        "the other profile failed: {failures:?}"
    );
    assert!(
        tokens >= 3,
        "the other profile renewed its token meanwhile: {tokens} in {asked} requests"
    );
    let log = agent.stderr();
    assert!(
        log.contains("reinitializing the module"),
        "the module was reinitialized to find the moved token: {log}"
    );
    assert!(!log.contains(VICTIM_PIN) && !log.contains(common::PIN));
    eprintln!("other profile: {asked} requests, 0 failures, {tokens} tokens");
}

/// What each command says about a module path that is no PKCS#11 library.
fn not_modules(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let text = dir.join("module.txt");
    std::fs::write(
        &text,
        "not a library, only text that is long enough to have an ELF header\n".repeat(4),
    )
    .unwrap();
    let libz = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/lib/x86_64-linux-gnu",
        "/usr/lib64",
    ]
    .iter()
    .map(|d| Path::new(d).join("libz.so.1"))
    .find(|p| p.is_file())
    .expect("libz.so.1 (zlib)");
    vec![
        (text, "invalid ELF header"),
        (PathBuf::from("/bin/true"), "cannot load PKCS#11 module"),
        (libz, "C_GetFunctionList"),
        (dir.join("missing.so"), "no such file"),
        (dir.to_owned(), "is a directory"),
    ]
}

#[test]
fn a_module_path_that_is_no_pkcs11_library_is_named_with_what_to_do() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let conf = f.token_copy(None);
    for (path, why) in not_modules(dir.path()) {
        let shown = path.display().to_string();
        let key = f
            .uri("p256")
            .replace(&module_path().display().to_string(), &shown);
        let profile = Profile::new(key.as_str(), "kid");
        let with = |command: &str, profile: &Profile| {
            let mut args = vec![command.to_owned()];
            args.extend(profile.flags());
            args
        };
        let runs: [(&str, Vec<String>); 3] = [
            (
                "list",
                vec!["list".to_owned(), "--module".to_owned(), shown.clone()],
            ),
            ("assertion", with("assertion", &profile)),
            (
                "token",
                with("token", &profile.clone().token_url("http://127.0.0.1:9/t")),
            ),
        ];
        for (name, args) in runs {
            let out = suitekey_with_conf(&conf).args(&args).output().unwrap();
            let (stdout, stderr) = texts(&out);
            assert!(
                !out.status.success() && stdout.is_empty(),
                "{name} {shown}: {stdout}"
            );
            assert!(
                stderr.contains(&shown) && stderr.contains("is a PKCS#11 library"),
                "{name} {shown}: {stderr}"
            );
            assert!(stderr.contains(why), "{name} {shown}: {stderr}");
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
    an_agent_profile_with_a_bad_module_fails_alone(&conf, dir.path());
}

fn an_agent_profile_with_a_bad_module_fails_alone(conf: &Path, dir: &Path) {
    let f = fixture();
    // No exchange is made: the profiles are only opened.
    let url = "http://127.0.0.1:9/services/rest/auth/oauth2/v1/token";
    let mut profiles = vec![("good".to_owned(), f.uri("p256"))];
    for (i, (path, _)) in not_modules(dir).into_iter().enumerate() {
        let key = f.uri("p256").replace(
            &module_path().display().to_string(),
            &path.display().to_string(),
        );
        profiles.push((format!("bad{i}"), key));
    }
    let sections: Vec<String> = profiles
        .iter()
        .map(|(name, key)| {
            Profile::new(key.as_str(), "kid")
                .token_url(url)
                .section(name)
        })
        .collect();
    let config = dir.join("config.toml");
    std::fs::write(&config, sections.join("\n")).unwrap();
    let agent = Agent::start(conf, &config, &[], &[]);
    let health = agent.json("/v1/health");
    assert_eq!(health["failed"], profiles.len() - 1, "{health}");
    for (i, (path, why)) in not_modules(dir).into_iter().enumerate() {
        let reply = agent.request("GET", &format!("/v1/profiles/bad{i}/token"));
        assert_eq!(reply.status, 503, "{}", reply.body);
        let message = reply.json()["message"].as_str().unwrap().to_owned();
        assert!(
            message.contains(&path.display().to_string()) && message.contains(why),
            "{message}"
        );
    }
    let listing = agent.json("/v1/profiles");
    let good = listing["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "good")
        .unwrap()
        .clone();
    assert_eq!(good["status"], "ok", "{listing}");
}

/// `victims` profiles on the victim token, `missing` whose key the fixture token lacks (opened
/// again by every reload), and `other`, for `s.config`.
fn crowded_profiles(
    s: &Setup,
    victims: usize,
    missing: usize,
) -> Vec<(String, String, &'static str)> {
    let f = fixture();
    let mut profiles = vec![("other".to_owned(), f.uri("p256"), OTHER_CLIENT)];
    for i in 0..victims {
        profiles.push((format!("victim{i}"), s.victim_uri.clone(), VICTIM_CLIENT));
    }
    for i in 0..missing {
        let key = f
            .uri("p256")
            .replace("object=p256", &format!("object=none{i}"));
        profiles.push((format!("missing{i}"), key, OTHER_CLIENT));
    }
    profiles
}

/// An emulator issuing 2-second tokens to `other` and the victims, and an agent serving the
/// crowded profiles (`victims` on the victim token, `missing` whose key does not exist).
fn crowded_agent(s: &Setup, victims: usize, missing: usize) -> (Emulator, Agent) {
    let (emu, other_kid, victim_kid) = s.emulator("2");
    let profiles = crowded_profiles(s, victims, missing);
    let rows: Vec<(&str, &str, &str, &str)> = profiles
        .iter()
        .map(|(name, key, client)| {
            let kid = if *client == VICTIM_CLIENT {
                &victim_kid
            } else {
                &other_kid
            };
            (name.as_str(), key.as_str(), *client, kid.as_str())
        })
        .collect();
    let config = s.config(&emu.token_url(), &rows);
    let agent = Agent::start(&s.conf, &config, &[], &[]);
    (emu, agent)
}

/// A reload (SIGHUP) every 10 ms while the victim token is gone: the reload opens the profiles
/// whose key is missing (select, C_OpenSession, C_Login, C_FindObjects) while the victims'
/// recovery reinitializes the module. No call may run under a C_Finalize: the agent keeps
/// running (before every open held the module throughout, it died of SIGSEGV within ~3 s).
#[test]
fn reloads_while_a_lost_token_is_looked_for_do_not_crash_the_agent() {
    let s = setup();
    let (_emu, mut agent) = crowded_agent(&s, 12, 16);
    assert_eq!(agent.get("/v1/profiles/victim0/token").0, 200);
    std::fs::rename(token_dir(&s.tokens, "victim"), s.dir.path().join("away")).unwrap();
    let start = Instant::now();
    let mut reloads = 0;
    while start.elapsed() < Duration::from_secs(6) {
        if let Some(status) = agent.child.try_wait().unwrap() {
            panic!(
                "the agent died ({status}) after {reloads} reloads in {:?}; log:\n{}",
                start.elapsed(),
                agent.stderr()
            );
        }
        agent.signal("HUP");
        reloads += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    let log = agent.stderr();
    assert!(
        log.contains("reinitializing the module"),
        "the victims' recovery reinitialized the module meanwhile: {log}"
    );
    assert_eq!(
        agent.get("/v1/profiles/other/token").0,
        200,
        "{}",
        agent.stderr()
    );
    eprintln!(
        "{reloads} reloads survived, {} reinits",
        log.matches("reinitializing the module").count()
    );
}

/// `NAME{profile="PROFILE"}`'s value in the agent's `/metrics`.
fn metric(agent: &Agent, name: &str, profile: &str) -> u64 {
    let (_, text) = agent.get("/metrics");
    let prefix = format!("{name}{{profile=\"{profile}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in {text}"))
}

/// While a token stays gone, its profiles' retries do not each reinitialize the module: one at
/// once, then one per wait (10 s, doubling), so the other profile on the module is logged out
/// (and sends its PIN again) that many times only.
#[test]
fn a_token_that_stays_gone_reinitializes_its_module_rarely() {
    let s = setup();
    let (_emu, agent) = crowded_agent(&s, 4, 0);
    for i in 0..4 {
        // A cold profile is idle; a warm one renews, and retries with backoff once lost.
        assert_eq!(agent.get(&format!("/v1/profiles/victim{i}/token")).0, 200);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let asker = keep_asking(agent.socket.clone(), Arc::clone(&stop));
    std::fs::rename(token_dir(&s.tokens, "victim"), s.dir.path().join("away")).unwrap();
    std::thread::sleep(Duration::from_secs(12));
    stop.store(true, Ordering::Relaxed);
    let (asked, failures, _) = asker.join().unwrap();
    assert!(
        failures.is_empty(),
        "the other profile failed: {failures:?}"
    );
    let log = agent.stderr();
    let reinits = log.matches("reinitializing the module").count();
    let relogins = metric(&agent, "suitekey_agent_sessions_reopened_total", "other");
    eprintln!(
        "12 s gone: {reinits} reinitializations, other reopened {relogins} times in {asked} requests"
    );
    assert!(
        (1..=2).contains(&reinits),
        "{reinits} reinitializations: {log}"
    );
    assert!(
        relogins <= 2,
        "the other profile logged in again {relogins} times: {log}"
    );
}

/// `suitekey assertion` for fixture key p256 on the token copy `conf` (no exchange is made).
fn assertion_on(conf: &Path) -> std::process::Output {
    suitekey_with_conf(conf)
        .arg("assertion")
        .args(Profile::new(fixture().uri("p256"), "kid").flags())
        .output()
        .expect("run suitekey")
}

/// Advice that would destroy a non-extractable key if followed on a token that still holds it
/// (saying that a token is, or is not, initialized is no advice).
fn advises_initializing(message: &str) -> bool {
    let lower = message.to_lowercase().replace("initialized", "");
    lower.contains("initializ") || lower.contains("initialis") || lower.contains("import")
}

/// SoftHSM2 rewrites `token.object` at every login; a process that reads it meanwhile sees
/// it empty (the token then looks uninitialized) or cut short (`CKR_GENERAL_ERROR`). Both are
/// staged here by cutting the file, as a reader finds it mid-write: the error says the token did
/// not read whole and that this can be passing, and never advises initializing the token (which
/// would destroy its keys). Put back whole, the token works.
#[test]
fn a_token_read_mid_rewrite_is_reported_as_possibly_passing_without_advice_to_initialize() {
    let f = fixture();
    let conf = f.token_copy(None);
    let object =
        token_dir(&conf.parent().unwrap().join("tokens"), common::TOKEN).join("token.object");
    let whole = std::fs::read(&object).unwrap();
    for cut in [0, 8] {
        std::fs::write(&object, &whole[..cut]).unwrap();
        let out = assertion_on(&conf);
        let (stdout, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(3), "cut to {cut} bytes: {stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(
            !advises_initializing(&stderr),
            "cut to {cut} bytes: the message advises initializing a token that holds keys: {stderr}"
        );
        assert!(
            stderr.contains("another process") && stderr.contains("try again"),
            "cut to {cut} bytes: {stderr}"
        );
    }
    std::fs::write(&object, &whole).unwrap();
    let out = assertion_on(&conf);
    assert!(out.status.success(), "{}", texts(&out).1);
}

/// SoftHSM2 finds its tokens through `SOFTHSM2_CONF`; without it, it reads its default
/// configuration and shows no token of the user's. The error says so, not "initialize a token".
#[test]
fn a_forgotten_softhsm2_conf_is_named_instead_of_advice_to_initialize() {
    let f = fixture();
    let conf = f.token_copy(None);
    let mut cmd = suitekey_with_conf(&conf);
    cmd.env_remove("SOFTHSM2_CONF")
        .arg("assertion")
        .args(Profile::new(f.uri("p256"), "kid").flags());
    let out = cmd.output().expect("run suitekey");
    let (stdout, stderr) = texts(&out);
    assert!(!out.status.success() && stdout.is_empty(), "{stderr}");
    assert!(
        stderr.contains("SOFTHSM2_CONF is not set") && stderr.contains("export SOFTHSM2_CONF="),
        "{stderr}"
    );
    assert!(!advises_initializing(&stderr), "{stderr}");
}
