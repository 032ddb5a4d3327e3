//! Slot 9c of the virtual PIV card (`tests/common/piv.rs`) signing in this process, as the
//! agent's signing workers do: the key signs three times in a row through each module, each
//! signature verified with RustCrypto (the card refuses a 9c signature without a VERIFY right
//! before it, and ykcs11 lets the first one after C_Login through, so only repeated signatures
//! prove the PIN before each); and OpenSC, which drops the user's login when the card refuses
//! a signature, is recovered from with exactly one login.
//!
//! Its own binary: OpenSC goes through pkcs11-spy, which this process sets up before main, and
//! login state is per process.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use suitekey::agent::logins::Logins;
use suitekey::agent::metrics::{self, ProfileMetrics};
use suitekey::agent::signers::SignerHandle;
use suitekey::config::Profile;
use suitekey::jose::Alg;
use suitekey::netsuite::{AccountId, AssertionRequest};
use suitekey::pkcs11::{Key, Pkcs11Uri};

use common::piv::{Card, READER, card_can_run};
use common::profile::CLIENT;

/// OpenSC's module, wherever this machine's multiarch directory is.
fn opensc_module() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib")
        .ok()?
        .flatten()
        .map(|e| e.path().join("opensc-pkcs11.so"))
        .find(|p| p.is_file())
}

fn spy_log() -> PathBuf {
    std::env::temp_dir().join(format!("suitekey-piv-spy-{}.log", std::process::id()))
}

// pkcs11-spy reads its settings when it is loaded, in this process: set them before main,
// while the process has one thread (the only moment `set_var` is sound).
#[ctor::ctor(unsafe)]
fn spy_on_opensc() {
    if let Some(module) = opensc_module() {
        // SAFETY: runs before main, so no other thread can be reading the environment.
        unsafe {
            std::env::set_var("PKCS11SPY", module);
            std::env::set_var("PKCS11SPY_OUTPUT", spy_log());
        }
    }
}

fn request() -> AssertionRequest {
    AssertionRequest {
        client_id: CLIENT.parse().unwrap(),
        certificate_id: "kid-9c".parse().unwrap(),
        token_url: "1234567".parse::<AccountId>().unwrap().token_url().unwrap(),
        scopes: Default::default(),
        lifetime: Default::default(),
    }
}

/// Verifies an assertion's signature against the certificate `pem` with RustCrypto.
fn verifies(jws: &str, pem: &Path) {
    let (_, key) = common::cert_public_key(pem);
    common::verify(&common::decode_jws(jws), &key).expect("the signature verifies");
}

/// The user logins pkcs11-spy saw succeed (context-specific ones apart; this process's own
/// session, which also goes through the spy, finds the user logged in already).
fn user_logins() -> usize {
    let log = std::fs::read_to_string(spy_log()).unwrap_or_default();
    log.split("C_Login")
        .skip(1)
        .filter(|call| {
            let call = call.split(": C_").next().unwrap_or_default();
            call.contains("userType = CKU_USER") && call.contains(" CKR_OK")
        })
        .count()
}

fn counter(metrics: &ProfileMetrics, name: &str) -> String {
    let text = metrics::render([("p", metrics, None)].into_iter());
    let prefix = format!("suitekey_agent_{name}{{profile=\"p\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{name} in {text}"))
        .to_owned()
}

/// Signs with the 9c key once without the PIN before it, in a session of this process's own
/// (the module and its login state are shared with the signer's): the card refuses it.
fn refused_signature(module: &Path, pin: &str) {
    let ctx = Pkcs11::new(module).unwrap();
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_slot_info(*s).unwrap().slot_description().trim_end() == READER)
        .expect("the card's slot");
    let session = ctx.open_ro_session(slot).unwrap();
    match session.login(UserType::User, Some(&AuthPin::from(pin))) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("login: {e}"),
    }
    let key = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Id(vec![2]),
        ])
        .unwrap()[0];
    let refused = session
        .sign_init(&Mechanism::EcdsaSha384, key)
        .and_then(|()| session.sign_update(b"no PIN right before"))
        .and_then(|()| session.sign_final());
    assert!(
        matches!(refused, Err(CkError::Pkcs11(RvError::UserNotLoggedIn, _))),
        "{refused:?}"
    );
}

#[test]
fn slot_9c_signs_again_and_again_and_opensc_recovers_its_dropped_login_with_one_login() {
    if !card_can_run(
        "slot_9c_signs_again_and_again_and_opensc_recovers_its_dropped_login_with_one_login",
    ) {
        return;
    }
    let card = Card::start();
    let pem = card.provision("9c", "ECCP384");

    // ykcs11: one key opened once, three signatures.
    let uri: Pkcs11Uri = card.uri(&card.ykcs11, 2).parse().unwrap();
    let signer = Key::open(&uri, None)
        .and_then(|k| k.signer(Alg::ES384))
        .expect("the 9c key through ykcs11");
    for _ in 0..3 {
        let signed = request().sign(&signer, SystemTime::now()).expect("signs");
        verifies(&signed.jws, &pem);
    }
    drop(signer);

    // OpenSC, through pkcs11-spy, in an agent's signing worker.
    let opensc = opensc_module().expect("OpenSC's module");
    assert_eq!(opensc, card.opensc);
    let key = card.uri(&common::pkcs11_spy(), 2);
    let profile = Profile {
        key: key.parse().unwrap(),
        client_id: CLIENT.parse().unwrap(),
        certificate_id: "kid-9c".parse().unwrap(),
        alg: None,
        scopes: Default::default(),
        token_url: None,
        module: None,
        account: "1234567".parse().unwrap(),
        ca_file: None,
        timeout: None,
        certificates_url: None,
        role: None,
        entity: None,
        rotate_before_days: None,
    };
    let logins = Arc::new(Logins::default());
    let metrics = Arc::new(ProfileMetrics::default());
    let (who, uri) = ("p".to_owned(), profile.key.clone());
    let login =
        Box::new(move |token: &suitekey::pkcs11::Token| logins.credential(&who, &uri, token));
    let (handle, _) = SignerHandle::spawn(
        "p",
        profile,
        (suitekey::commands::open_signer_with, login),
        Arc::clone(&metrics),
    )
    .unwrap_or_else(|e| panic!("{}", suitekey::report::chain(&e)));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let sign = || runtime.block_on(handle.sign(request())).expect("signs");
    for _ in 0..3 {
        verifies(&sign().jws, &pem);
    }
    assert_eq!(user_logins(), 1);
    assert_eq!(counter(&metrics, "sessions_reopened_total"), "0");

    // A signature without the PIN right before it: OpenSC drops the user's login, and the
    // worker gets it back with one login (the PIN it holds, never asked for again).
    refused_signature(&opensc, &card.pin());
    verifies(&sign().jws, &pem);
    assert_eq!(user_logins(), 2, "one login to recover");
    assert_eq!(counter(&metrics, "sessions_reopened_total"), "1");
    verifies(&sign().jws, &pem);
    assert_eq!(user_logins(), 2);
    let _ = std::fs::remove_file(spy_log());
}
