//! The virtual PIV card (`scripts/tokens/piv.sh`, `scripts/tokens/piv-card/`) behind the real
//! smart-card stack: pcscd, vpcd, and both real PKCS#11 modules for PIV (Yubico's ykcs11 and
//! OpenSC), provisioned with Debian's `yubico-piv-tool` as users do it.
//!
//! The card's set-up, shared with the other tests that use it, is `tests/common/piv.rs`: one
//! card at a time (one pcscd per machine), tests skipped where the card cannot run (failed under
//! CI), PINs, PUKs and management keys never in argv.

mod common;

use std::path::Path;
use std::process::Command;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::MechanismType;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use common::piv::{Card, READER, card_can_run, lock_file, piv_sh};
use common::texts;

/// A PKCS#11 session on the card's slot of `module`; when dropped, the session is closed and
/// the module finalized (so it disconnects from the card, which resets it, as a client process
/// that ends does).
struct Module {
    ctx: Pkcs11,
    session: Option<Session>,
}

impl Drop for Module {
    fn drop(&mut self) {
        drop(self.session.take());
        let _ = self.ctx.clone().finalize();
    }
}

fn open(module: &Path) -> Module {
    let ctx = Pkcs11::new(module).unwrap();
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot: Slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_slot_info(*s).unwrap().slot_description().trim_end() == READER)
        .unwrap_or_else(|| panic!("{}: no slot '{READER}' with a token", module.display()));
    let session = Some(ctx.open_ro_session(slot).unwrap());
    Module { ctx, session }
}

impl Module {
    fn session(&self) -> &Session {
        self.session.as_ref().expect("open session")
    }

    fn login(&self, pin: &str) -> Result<(), CkError> {
        self.session()
            .login(UserType::User, Some(&AuthPin::new(pin.into())))
    }

    fn ec_params(&self, handle: ObjectHandle) -> Vec<u8> {
        match &self
            .session()
            .get_attributes(handle, &[AttributeType::EcParams])
            .unwrap()[..]
        {
            [Attribute::EcParams(p)] => p.clone(),
            other => panic!("no CKA_EC_PARAMS: {other:?}"),
        }
    }

    /// The object of `class` with CKA_ID `id`.
    fn object(&self, class: ObjectClass, id: u8) -> ObjectHandle {
        let found = self
            .session()
            .find_objects(&[Attribute::Class(class), Attribute::Id(vec![id])])
            .unwrap();
        assert_eq!(
            found.len(),
            1,
            "objects of class {class:?} with id {id:02x}"
        );
        found[0]
    }

    fn label(&self, handle: ObjectHandle) -> String {
        match &self
            .session()
            .get_attributes(handle, &[AttributeType::Label])
            .unwrap()[..]
        {
            [Attribute::Label(l)] => String::from_utf8_lossy(l).into_owned(),
            other => panic!("no label: {other:?}"),
        }
    }

    fn always_authenticate(&self, handle: ObjectHandle) -> bool {
        match &self
            .session()
            .get_attributes(handle, &[AttributeType::AlwaysAuthenticate])
            .unwrap()[..]
        {
            [Attribute::AlwaysAuthenticate(b)] => *b,
            other => panic!("no CKA_ALWAYS_AUTHENTICATE: {other:?}"),
        }
    }

    /// One multi-part ECDSA-SHA* signature, with the context-specific login (the PIN, again)
    /// right after C_SignInit when `pin` is given: the only point where it can be given.
    fn sign(
        &self,
        key: ObjectHandle,
        mech: &Mechanism,
        pin: Option<&str>,
        msg: &[u8],
    ) -> Result<Vec<u8>, CkError> {
        self.session().sign_init(mech, key)?;
        if let Some(pin) = pin {
            self.session()
                .login(UserType::ContextSpecific, Some(&AuthPin::new(pin.into())))?;
        }
        self.session().sign_update(msg)?;
        self.session().sign_final()
    }
}

/// Verifies an ES256/ES384 signature (raw r‖s, as PKCS#11 makes it) over `msg` with RustCrypto
/// against the certificate's public key: independently of the card and the modules.
fn verify(alg: &str, cert: &Path, msg: &[u8], signature: &[u8]) -> Result<(), String> {
    let (_, key) = common::cert_public_key(cert);
    let jws = common::Jws {
        header: serde_json::json!({ "alg": alg }),
        claims: serde_json::Value::Null,
        signature: signature.to_vec(),
        signing_input: String::from_utf8(msg.to_vec()).unwrap(),
    };
    common::verify(&jws, &key)
}

/// Each module's labels for the two halves of the 9a and 9c key pairs, which differ within a
/// pair: clients must match halves by CKA_ID.
const PAIR_LABELS: [(&str, [(&str, &str); 2]); 2] = [
    (
        "libykcs11.so",
        [
            (
                "Private key for PIV Authentication",
                "Public key for PIV Authentication",
            ),
            (
                "Private key for Digital Signature",
                "Public key for Digital Signature",
            ),
        ],
    ),
    (
        "opensc-pkcs11.so",
        [
            ("PIV AUTH key", "PIV AUTH pubkey"),
            ("SIGN key", "SIGN pubkey"),
        ],
    ),
];

/// DER of the named curves' OIDs, as both modules give CKA_EC_PARAMS for keys whose slot holds
/// a certificate.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

#[test]
fn both_modules_list_the_card_and_its_keys() {
    if !card_can_run("both_modules_list_the_card_and_its_keys") {
        return;
    }
    let card = Card::start();
    card.provision("9a", "ECCP256");
    card.provision("9c", "ECCP384");
    for (module, labels) in [
        (&card.ykcs11, PAIR_LABELS[0]),
        (&card.opensc, PAIR_LABELS[1]),
    ] {
        assert!(module.ends_with(labels.0));
        let out = card.pkcs11_tool(module, None, &["--list-slots"]);
        let (stdout, stderr) = texts(&out);
        assert!(out.status.success(), "{}: {stderr}", module.display());
        assert!(stdout.contains(&format!("): {READER}\n")), "{stdout}");
        assert!(stdout.contains("PIN initialized"), "{stdout}");
        let m = open(module);
        m.login(&card.pin()).unwrap();
        for ((id, params, always), (private, public)) in
            [(1, P256_PARAMS, false), (2, P384_PARAMS, true)]
                .into_iter()
                .zip(labels.1)
        {
            let what = format!("{} id {id:02x}", module.display());
            let (sk, pk) = (
                m.object(ObjectClass::PRIVATE_KEY, id),
                m.object(ObjectClass::PUBLIC_KEY, id),
            );
            assert_eq!(
                (m.label(sk).as_str(), m.label(pk).as_str()),
                (private, public),
                "{what}"
            );
            // 9c (id 02) is the slot whose key wants the PIN again before each signature.
            assert_eq!(m.always_authenticate(sk), always, "{what}");
            assert_eq!(m.ec_params(pk), params, "{what}");
        }
    }
}

#[test]
fn a_9a_signature_verifies_against_its_certificate_on_both_modules() {
    if !card_can_run("a_9a_signature_verifies_against_its_certificate_on_both_modules") {
        return;
    }
    let card = Card::start();
    let cert = card.provision("9a", "ECCP256");
    let data = card.path().join("data");
    std::fs::write(&data, b"suitekey 9a").unwrap();
    for module in [&card.ykcs11, &card.opensc] {
        let sig = card.path().join("sig");
        let out = card.pkcs11_tool(
            module,
            Some(&card.pin()),
            &[
                "--sign",
                "--mechanism",
                "ECDSA-SHA256",
                "--id",
                "01",
                "--input-file",
                data.to_str().unwrap(),
                "--output-file",
                sig.to_str().unwrap(),
            ],
        );
        assert!(
            out.status.success(),
            "{}: {}",
            module.display(),
            texts(&out).1
        );
        let signature = std::fs::read(&sig).unwrap();
        verify("ES256", &cert, b"suitekey 9a", &signature)
            .unwrap_or_else(|e| panic!("{}: {e}", module.display()));
    }
}

#[test]
fn slot_9c_signs_only_with_the_pin_right_before_each_signature() {
    if !card_can_run("slot_9c_signs_only_with_the_pin_right_before_each_signature") {
        return;
    }
    let card = Card::start();
    let cert = card.provision("9c", "ECCP384");
    let pin = card.pin();
    let refused = |r: Result<Vec<u8>, CkError>, what: &str| match r {
        Err(CkError::Pkcs11(RvError::UserNotLoggedIn, _)) => {}
        other => panic!("{what}: expected CKR_USER_NOT_LOGGED_IN, got {other:?}"),
    };
    for module in [&card.ykcs11, &card.opensc] {
        let what = module.display().to_string();
        let m = open(module);
        m.login(&pin).unwrap();
        let key = m.object(ObjectClass::PRIVATE_KEY, 2);
        // Two signatures in one session, each after its own context-specific login.
        for n in 1..=2 {
            let sig = m
                .sign(key, &Mechanism::EcdsaSha384, Some(&pin), b"9c")
                .unwrap();
            verify("ES384", &cert, b"9c", &sig).unwrap_or_else(|e| panic!("{what} #{n}: {e}"));
        }
        // Without it, the card refuses (its last command was a signature, not a VERIFY).
        refused(m.sign(key, &Mechanism::EcdsaSha384, None, b"9c"), &what);
        if module == &card.opensc {
            // OpenSC then drops the user login: C_Login(USER) succeeds again.
            m.login(&pin).unwrap();
        }
        let sig = m
            .sign(key, &Mechanism::EcdsaSha384, Some(&pin), b"9c")
            .unwrap();
        verify("ES384", &cert, b"9c", &sig).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    // ykcs11 does not check the context login itself: right after C_Login(USER) (a VERIFY) the
    // card accepts one signature without it, and only the card refuses the next. Hence a test
    // of PIN-always signs at least twice.
    let m = open(&card.ykcs11);
    m.login(&pin).unwrap();
    let key = m.object(ObjectClass::PRIVATE_KEY, 2);
    m.sign(key, &Mechanism::EcdsaSha384, None, b"9c").unwrap();
    refused(
        m.sign(key, &Mechanism::EcdsaSha384, None, b"9c"),
        "ykcs11, second",
    );
}

#[test]
fn a_wrong_pin_costs_a_try_and_the_last_one_locks_the_card() {
    if !card_can_run("a_wrong_pin_costs_a_try_and_the_last_one_locks_the_card") {
        return;
    }
    let card = Card::start();
    card.provision("9a", "ECCP256");
    let (pin, wrong) = (card.pin(), "00000000");
    assert_ne!(pin, wrong);
    let flags = |module: &Path| {
        let out = card.pkcs11_tool(module, None, &["--list-token-slots"]);
        texts(&out).0
    };
    assert_eq!(card.tries_left(), 3);
    // Each module reports the count through the token flags once it is low.
    let expect = [
        (2, "user PIN count low", &card.ykcs11),
        (1, "final user PIN try", &card.opensc),
        (0, "user PIN locked", &card.ykcs11),
    ];
    for (left, flag, module) in expect {
        let m = open(module);
        match m.login(wrong) {
            Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinLocked, _)) => {}
            other => panic!("wrong PIN with {} tries left: {other:?}", left + 1),
        }
        drop(m);
        assert_eq!(card.tries_left(), left);
        assert!(
            flags(module).contains(flag),
            "{left} left: {}",
            flags(module)
        );
    }
    // Locked: the right PIN no longer opens it, on either module.
    for module in [&card.ykcs11, &card.opensc] {
        match open(module).login(&pin) {
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => {}
            other => panic!(
                "{}: right PIN on a locked card: {other:?}",
                module.display()
            ),
        }
        assert!(
            flags(module).contains("user PIN locked"),
            "{}",
            flags(module)
        );
    }
    // The PUK unblocks it with a new PIN (all through yubico-piv-tool's standard input).
    let (puk, new_pin) = (card.secret("so.pin"), "24681357");
    card.piv_tool_ok(
        &format!("{puk}\n{new_pin}\n{new_pin}\n"),
        &["--action=unblock-pin"],
    );
    assert_eq!(card.tries_left(), 3);
    open(&card.ykcs11).login(new_pin).unwrap();
}

#[test]
fn rsa_2048_keys_sign_pss_on_both_modules() {
    if !card_can_run("rsa_2048_keys_sign_pss_on_both_modules") {
        return;
    }
    let card = Card::start();
    let cert = card.provision("9a", "RSA2048");
    let pss = Mechanism::Sha256RsaPkcsPss(PkcsPssParams {
        hash_alg: MechanismType::SHA256,
        mgf: PkcsMgfType::MGF1_SHA256,
        s_len: 32.into(),
    });
    for module in [&card.ykcs11, &card.opensc] {
        let m = open(module);
        m.login(&card.pin()).unwrap();
        let key = m.object(ObjectClass::PRIVATE_KEY, 1);
        let sig = m.sign(key, &pss, None, b"rsa").unwrap();
        let (_, public) = common::cert_public_key(&cert);
        let jws = common::Jws {
            header: serde_json::json!({ "alg": "PS256" }),
            claims: serde_json::Value::Null,
            signature: sig,
            signing_input: "rsa".into(),
        };
        common::verify(&jws, &public).unwrap_or_else(|e| panic!("{}: {e}", module.display()));
    }
}

/// Live processes (not zombies) whose command line names `dir`.
fn processes_naming(dir: &Path) -> Vec<String> {
    let needle = dir.to_str().unwrap();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let path = entry.path();
        let Ok(cmdline) = std::fs::read(path.join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let zombie = std::fs::read_to_string(path.join("stat")).is_ok_and(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'))
        });
        if cmdline.contains(needle) && !zombie {
            found.push(cmdline);
        }
    }
    found
}

/// The EC points of the public keys with ids 01 and 02, through ykcs11.
fn public_points(card: &Card) -> Vec<Vec<u8>> {
    let m = open(&card.ykcs11);
    m.login(&card.pin()).unwrap();
    [1, 2]
        .map(|id| {
            let handle = m.object(ObjectClass::PUBLIC_KEY, id);
            match &m
                .session()
                .get_attributes(handle, &[AttributeType::EcPoint])
                .unwrap()[..]
            {
                [Attribute::EcPoint(p)] => p.clone(),
                other => panic!("no CKA_EC_POINT: {other:?}"),
            }
        })
        .to_vec()
}

#[test]
fn the_card_keeps_keys_pin_and_tries_when_stopped_and_started_again() {
    if !card_can_run("the_card_keeps_keys_pin_and_tries_when_stopped_and_started_again") {
        return;
    }
    let mut card = Card::start();
    let cert = card.provision("9a", "ECCP256");
    card.provision("9c", "ECCP384");
    let before = public_points(&card);
    assert!(open(&card.opensc).login("00000000").is_err());
    assert_eq!(card.tries_left(), 2);

    // Stopped ("card removed", and pcscd with it): nothing of DIR runs, pcscd is free.
    card.stop();
    assert_eq!(processes_naming(card.path()), Vec::<String>::new());
    assert!(
        !Path::new("/run/pcscd/pcscd.comm").exists(),
        "pcscd left its socket"
    );
    let free = Command::new("flock")
        .args(["--nonblock"])
        .arg(lock_file())
        .arg("true")
        .status();
    assert!(
        matches!(free, Ok(s) if s.success()),
        "the pcscd lock is still held"
    );

    // Started again on the same DIR: same keys, same PIN, the try it lost still lost.
    card.start_again();
    assert_eq!(card.tries_left(), 2);
    assert_eq!(public_points(&card), before);
    let m = open(&card.ykcs11);
    m.login(&card.pin()).unwrap();
    let sig = m
        .sign(
            m.object(ObjectClass::PRIVATE_KEY, 1),
            &Mechanism::EcdsaSha256,
            None,
            b"again",
        )
        .unwrap();
    verify("ES256", &cert, b"again", &sig).unwrap();
    drop(m);
    // A good PIN resets the count, as on a real card.
    assert_eq!(card.tries_left(), 3);
}

#[test]
fn stop_never_signals_a_process_it_did_not_start() {
    let dir = tempfile::Builder::new()
        .prefix("sk-piv-")
        .tempdir()
        .unwrap();
    // PID files left by an earlier run, whose PIDs now belong to other processes.
    let mut others: Vec<_> = (0..2)
        .map(|_| Command::new("sleep").arg("600").spawn().unwrap())
        .collect();
    for (n, (name, other)) in ["pcscd", "card"].iter().zip(&others).enumerate() {
        std::fs::write(
            dir.path().join(format!("{}-{name}.pid", n + 2)),
            format!("{}\n", other.id()),
        )
        .unwrap();
    }
    let out = piv_sh(&["stop".as_ref(), dir.path().as_os_str()], &[]);
    let running: Vec<bool> = others
        .iter_mut()
        .map(|o| o.try_wait().unwrap().is_none())
        .collect();
    for other in &mut others {
        let _ = other.kill();
        let _ = other.wait();
    }
    assert!(out.status.success(), "{}", texts(&out).1);
    assert_eq!(
        running,
        [true, true],
        "stop killed a process it did not start"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "stale PID files are left"
    );
}

#[test]
fn start_refuses_an_unsafe_dir() {
    if !card_can_run("start_refuses_an_unsafe_dir") {
        return;
    }
    let parent = tempfile::tempdir().unwrap();
    for bad in ["with space", "quote'", "dollar$x", "semi;colon"] {
        let dir = parent.path().join(bad);
        let out = piv_sh(&["start".as_ref(), dir.as_os_str()], &[]);
        let (_, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(1), "{bad}: {stderr}");
        assert!(
            stderr.contains("DIR may hold only letters, digits and / . _ -"),
            "{bad}: {stderr}"
        );
        assert!(!dir.exists(), "{bad}: created anyway");
    }
}

#[test]
fn start_refuses_a_pcscd_that_is_not_its_own() {
    if !card_can_run("start_refuses_a_pcscd_that_is_not_its_own") {
        return;
    }
    let _turn = common::piv::turn();
    let dir = tempfile::Builder::new()
        .prefix("sk-piv-")
        .tempdir()
        .unwrap();
    let (other, card_dir) = (dir.path().join("other"), dir.path().join("card"));
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("reader.conf"), "").unwrap();
    // Under the machine's pcscd lock (no card of ours runs meanwhile), a pcscd of someone else
    // runs, then piv.sh starts with a lock of its own: it must see that pcscd and refuse.
    let script = r#"pcscd --foreground --config "$1/reader.conf" >/dev/null 2>&1 & pid=$!
        for _ in $(seq 100); do [ -S /run/pcscd/pcscd.comm ] && break; sleep 0.1; done
        SUITEKEY_PCSCD_LOCK=$1/lock bash "$2" start "$3"; status=$?
        kill "$pid"; wait "$pid"; exit $status"#;
    let out = Command::new("flock")
        .args(["--wait", "300"])
        .arg(lock_file())
        .args(["bash", "-c", script, "_"])
        .arg(&other)
        .arg(common::piv::script())
        .arg(&card_dir)
        .env("CARGO_TARGET_DIR", common::piv::cargo_target_dir())
        .output()
        .unwrap();
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("another pcscd runs (PID ")
            && stderr.contains("only one can run per machine"),
        "{stderr}"
    );
    assert_eq!(processes_naming(&card_dir), Vec::<String>::new());
}
