//! The agent's signing workers when the token loses their session, in this process: the
//! worker's key goes through pkcs11-spy (which logs every call), and a second cryptoki
//! context on the same SoftHSM2 logs the token out, or changes its PIN, under it.
//!
//! One test in its own binary: it changes the token's PIN, and login state and the PINs a
//! token refused are per process.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use cryptoki::context::Pkcs11;
use cryptoki::types::AuthPin;
use suitekey::agent::logins::Logins;
use suitekey::agent::metrics::{self, ProfileMetrics};
use suitekey::agent::signers::{SignError, SignerHandle};
use suitekey::config::Profile;
use suitekey::netsuite::{AccountId, AssertionRequest};

use common::profile::{CLIENT, Profile as TestProfile, write_config};
use common::{PIN, fixture};

fn spy_log() -> PathBuf {
    std::env::temp_dir().join(format!("suitekey-spy-{}.log", std::process::id()))
}

// pkcs11-spy reads its settings in C_GetFunctionList/C_Initialize, in this process: set them
// before main, while the process has one thread (the only moment `set_var` is sound).
#[ctor::ctor(unsafe)]
fn spy_on_softhsm() {
    // SAFETY: runs before main, so no other thread can be reading the environment.
    unsafe {
        std::env::set_var("PKCS11SPY", common::module_path());
        std::env::set_var("PKCS11SPY_OUTPUT", spy_log());
    }
}

fn logins_so_far() -> usize {
    std::fs::read_to_string(spy_log())
        .unwrap_or_default()
        .matches("C_Login")
        .count()
}

fn profile() -> Profile {
    let f = fixture();
    let key = format!(
        "pkcs11:token={};object=p256;type=private?module-path={}&pin-source=file:{}",
        common::TOKEN,
        common::pkcs11_spy().display(),
        f.pin_file.display()
    );
    let account: AccountId = "1234567".parse().unwrap();
    Profile {
        key: key.parse().unwrap(),
        client_id: CLIENT.parse().unwrap(),
        certificate_id: "kid-1".parse().unwrap(),
        alg: None,
        scopes: Default::default(),
        token_url: None,
        module: None,
        account,
        ca_file: None,
        timeout: None,
        certificates_url: None,
        role: None,
        entity: None,
        rotate_before_days: None,
    }
}

fn spawn(
    name: &str,
    logins: &Arc<Logins>,
    metrics: &Arc<ProfileMetrics>,
) -> Result<SignerHandle, String> {
    let profile = profile();
    let (logins, who, uri) = (Arc::clone(logins), name.to_owned(), profile.key.clone());
    let login =
        Box::new(move |token: &suitekey::pkcs11::Token| logins.credential(&who, &uri, token));
    let open = suitekey::commands::open_signer_with;
    SignerHandle::spawn(name, profile, (open, login), Arc::clone(metrics))
        .map(|(h, _)| h)
        .map_err(|e| suitekey::report::chain(&e))
}

fn counter(metrics: &ProfileMetrics, name: &str) -> String {
    let text = metrics::render([("p", metrics, None)].into_iter());
    let prefix = format!("suitekey_agent_{name}{{profile=\"p\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{name} in {text}"))
        .to_owned()
}

#[test]
fn a_lost_session_is_reopened_once_and_a_pin_refused_at_relogin_stops_every_profile_on_the_token() {
    let f = fixture();
    // With its timers: a request waits for its signature no longer than the handle's bound.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let request = AssertionRequest {
        client_id: CLIENT.parse().unwrap(),
        certificate_id: "kid-1".parse().unwrap(),
        token_url: "1234567".parse::<AccountId>().unwrap().token_url().unwrap(),
        scopes: Default::default(),
        lifetime: Default::default(),
    };
    let sign = |h: &SignerHandle| runtime.block_on(h.sign(request.clone()));
    let verify = |signed: suitekey::netsuite::ClientAssertion| {
        common::verify(&common::decode_jws(&signed.jws), &f.public_key(0x01)).expect("verifies")
    };
    let logins = Arc::new(Logins::default());
    let metrics = Arc::new(ProfileMetrics::default());
    let handle = spawn("p", &logins, &metrics).expect("open p256 through the spy");
    assert_eq!(logins_so_far(), 1);
    verify(sign(&handle).expect("first signature"));

    // Something else in the process logs the token out (login state is shared by all sessions).
    let (ctx, slot) = common::own_context();
    ctx.open_ro_session(slot).unwrap().logout().unwrap();
    verify(sign(&handle).expect("signs again after reopening its session"));
    assert_eq!(counter(&metrics, "sessions_reopened_total"), "1");
    assert_eq!(counter(&metrics, "signatures_total"), "2");
    assert_eq!(logins_so_far(), 2, "one login to reopen");

    // The PIN is changed under the agent, and the token logged out: the re-login is refused.
    let session = ctx.open_rw_session(slot).unwrap();
    session
        .set_pin(&AuthPin::from(PIN), &AuthPin::from("changed-PIN-4242"))
        .unwrap();
    session.logout().unwrap();
    match sign(&handle) {
        Err(e) => {
            let text = suitekey::report::chain(&e);
            assert!(e.is_pin() && text.contains("PIN rejected"), "{text}")
        }
        Ok(_) => panic!("signed with a PIN the token no longer has"),
    }
    assert_eq!(logins_so_far(), 3, "one try of the old PIN");
    assert!(
        handle.stopped().is_some(),
        "the stop is visible outside the worker"
    );
    assert!(logins.refused("p"));
    match sign(&handle) {
        Err(SignError::Stopped(reason)) => assert!(reason.contains("PIN rejected"), "{reason}"),
        other => panic!("a stopped worker answered {other:?}"),
    }
    assert_eq!(
        counter(&metrics, "signatures_total"),
        "2",
        "failures are not counted"
    );

    // Another profile on the same token shares its refused PIN: it never sends it.
    let second = spawn("q", &logins, &Arc::default());
    let err = second
        .err()
        .expect("the refused PIN is not tried for a second profile");
    assert!(err.to_string().contains("already refused"), "{err}");
    // Neither does a new generation of logins (a reload) that reads the same PIN file.
    let reloaded = Arc::new(Logins::default());
    let err = spawn("p", &reloaded, &Arc::default())
        .err()
        .expect("refused");
    assert!(err.to_string().contains("already refused"), "{err}");
    assert_eq!(logins_so_far(), 3, "the refused PIN was sent exactly once");

    profiles_stopped_by_a_refused_pin_report_it_and_stay_failed_across_a_reload(&ctx, slot);
    // Like the agent at exit: every worker closes its session before the process ends (a
    // module called while the process tears down can crash).
    drop(handle);
    assert_eq!(
        suitekey::agent::signers::wait_for_workers(std::time::Duration::from_secs(5)),
        0,
        "every signing worker ended"
    );
}

/// The same through the agent's profiles: the stop shows as the profile's failure, costs no
/// more signatures or exchanges, and a reload reopens the profile without sending the PIN.
fn profiles_stopped_by_a_refused_pin_report_it_and_stay_failed_across_a_reload(
    ctx: &Pkcs11,
    slot: cryptoki::slot::Slot,
) {
    use suitekey::agent::{Options, profiles};
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_pin(dir.path(), "changed-PIN-4242");
    let options = Options {
        config: None,
        socket: None,
        allow_uids: Vec::new(),
        module: None,
        open: suitekey::commands::open_signer_with,
        drain_timeout: std::time::Duration::from_secs(1),
        sign_timeout: suitekey::agent::signers::DEFAULT_SIGN_TIMEOUT,
        rotation: Default::default(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let logins = Arc::new(Logins::default());
    let open =
        |previous| profiles::open_all(&config, previous, &options, &logins, runtime.handle());
    let empty = profiles::ProfileMap::new();
    let served = open(&empty);
    let prod = Arc::clone(&served["prod"]);
    assert!(prod.failure().is_none(), "{:?}", prod.failure());
    let before = logins_so_far();

    let session = ctx.open_rw_session(slot).unwrap();
    session
        .set_pin(
            &AuthPin::from("changed-PIN-4242"),
            &AuthPin::from("third-PIN-777"),
        )
        .unwrap();
    session.logout().unwrap();
    let Ok(active) = &prod.state else {
        panic!("prod is active")
    };
    let cache = &active.cache;
    for _ in 0..3 {
        let failure = runtime
            .block_on(cache.get())
            .err()
            .expect("no token")
            .failure;
        assert!(
            failure.message.contains("PIN rejected"),
            "{}",
            failure.message
        );
    }
    // After the first backoff (at most 1 s), a request finds the stopped signer.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert!(runtime.block_on(cache.get()).is_err());
    assert_eq!(logins_so_far(), before + 1, "one re-login");
    let failure = prod.failure().expect("the stopped profile reports it");
    assert_eq!(failure.kind.name(), "pin");
    let counters = metrics::render([("p", &*prod.metrics, None)].into_iter());
    for zero in ["signatures_total", "upstream_exchanges_total"] {
        assert!(
            counters.contains(&format!("suitekey_agent_{zero}{{profile=\"p\"}} 0\n")),
            "{counters}"
        );
    }
    assert!(
        counters.contains("code=\"pin\"} 1\n"),
        "one failure counted, not one per request: {counters}"
    );

    let reloaded = open(&served);
    assert!(
        !Arc::ptr_eq(&reloaded["prod"], &prod),
        "a stopped profile is reopened"
    );
    let failure = reloaded["prod"].failure().expect("still failed");
    assert!(
        failure.message.contains("already refused"),
        "{}",
        failure.message
    );
    assert_eq!(logins_so_far(), before + 1, "and the PIN is not sent again");
    an_unchecked_pin_is_an_error("third-PIN-777");
}

/// A config with profile `prod`: the p256 key through the spy, its PIN in a file in `dir`.
fn config_with_pin(dir: &std::path::Path, pin: &str) -> suitekey::config::Config {
    let pin_file = dir.join("user.pin");
    std::fs::write(&pin_file, format!("{pin}\n")).unwrap();
    let key = profile().key.to_string().replace(
        &fixture().pin_file.display().to_string(),
        &pin_file.display().to_string(),
    );
    let config_file = write_config(
        &dir.join("config.toml"),
        &[("prod", &TestProfile::new(key, "kid-1"))],
    );
    suitekey::config::Config::open(Some(&config_file))
        .unwrap()
        .unwrap()
}

fn an_unchecked_pin_is_an_error(token_pin: &str) {
    // Outside the agent's one-login-per-token rule (here: the token without the spy), a second
    // PIN the logged-in token cannot check is an error, not a success.
    let direct = |pin: &str| {
        let uri = format!(
            "pkcs11:token={};object=p256;type=private?module-path={}&pin-value={pin}",
            common::TOKEN,
            common::module_path().display()
        );
        suitekey::pkcs11::Key::open(&uri.parse().unwrap(), None)
    };
    let _logged_in = direct(token_pin).expect("the token's PIN logs in");
    let err = direct("not-the-PIN-1")
        .err()
        .expect("an unchecked PIN is refused");
    assert!(err.to_string().contains("cannot be checked"), "{err}");
}
