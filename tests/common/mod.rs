//! Shared test fixture: a real SoftHSM2 token in a temp dir, with keys of every kind, and an
//! independent verifier (RustCrypto) for the signatures the token makes (OpenSSL, in SoftHSM2).
//!
//! The token is built once per run in `CARGO_TARGET_TMPDIR` (RSA key generation is slow) and
//! copied into each test process's own temp dir, with its own `SOFTHSM2_CONF`.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use der::{Decode as _, DecodePem as _};
use sha2::Digest as _;

pub mod agent;
pub mod certified;
pub mod emulator;
pub mod fault_proxy;
pub mod http;
pub mod modules;
pub mod openssl;
pub mod piv;
pub mod profile;
pub mod readme_examples;
pub mod secrets;
pub mod terminal;

/// A recognizable user PIN, so tests can assert it never appears in any output.
pub const PIN: &str = "fixture-PIN-50318";
const SO_PIN: &str = "fixture-SO-77120";
/// The fixture token's label.
pub const TOKEN: &str = "suitekey-test";
/// Bump when the key set changes, so a stale cached token is not reused.
const FIXTURE_VERSION: &str = "v3";

/// The kinds of key the fixture holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// EC on a named curve, by OID.
    Ec(&'static str),
    /// RSA with this many modulus bits.
    Rsa(u64),
}

const P256: &str = "1.2.840.10045.3.1.7";
const P384: &str = "1.3.132.0.34";
const P521: &str = "1.3.132.0.35";

/// (label, id, kind, CKA_ALWAYS_AUTHENTICATE). Labels say what the key is for.
pub const KEYS: &[(&str, u8, Kind, bool)] = &[
    ("p256", 0x01, Kind::Ec(P256), false),
    ("p384", 0x02, Kind::Ec(P384), false),
    ("p521", 0x03, Kind::Ec(P521), false),
    ("rsa3072", 0x04, Kind::Rsa(3072), false),
    ("rsa4096", 0x05, Kind::Rsa(4096), false),
    ("rsa2048", 0x06, Kind::Rsa(2048), false),
    ("p256-always-auth", 0x07, Kind::Ec(P256), true),
    ("twin", 0x08, Kind::Ec(P256), false),
    ("twin", 0x09, Kind::Ec(P256), false),
    ("rsa3072-always-auth", 0x0a, Kind::Rsa(3072), true),
    ("stale-public", 0x0b, Kind::Ec(P256), false),
];

/// A certificate object stored beside the `p256` key (same label and id), for `list`.
pub const CERT_LABEL: &str = "p256";

/// The module under test; `SUITEKEY_TEST_MODULE` overrides SoftHSM2's Debian path.
pub fn module_path() -> PathBuf {
    std::env::var_os("SUITEKEY_TEST_MODULE").map_or_else(
        || PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"),
        PathBuf::from,
    )
}

/// The fixture token's slot, from a cryptoki context of the caller's own, loading the module
/// directly (not through pkcs11-spy, so these calls are not counted).
pub fn own_context() -> (Pkcs11, cryptoki::slot::Slot) {
    let ctx = Pkcs11::new(module_path()).unwrap();
    let _ = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == TOKEN)
        .expect("fixture slot");
    (ctx, slot)
}

/// Each test process's token lives here; dirs of processes that have exited are removed.
fn runs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("runs")
}

/// OpenSC's pkcs11-spy module, wherever this machine's multiarch directory is.
pub fn pkcs11_spy() -> PathBuf {
    let dirs = fs::read_dir("/usr/lib")
        .expect("/usr/lib")
        .flatten()
        .map(|e| e.path());
    dirs.map(|d| d.join("pkcs11-spy.so"))
        .find(|p| p.is_file())
        .expect("pkcs11-spy.so from OpenSC (scripts/install-deps.sh)")
}

fn process_dir() -> PathBuf {
    runs_dir().join(std::process::id().to_string())
}

fn remove_dirs_of_exited_processes() {
    for entry in fs::read_dir(runs_dir()).into_iter().flatten().flatten() {
        if !Path::new("/proc").join(entry.file_name()).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

// SoftHSM2 reads SOFTHSM2_CONF in C_Initialize. Setting it before main, while the process has
// one thread, is the only moment `set_var` is sound; it also reaches this process's own
// cryptoki context, which reads the public keys for the verifier.
#[ctor::ctor(unsafe)]
fn point_softhsm_at_this_process() {
    // SAFETY: runs before main, so no other thread can be reading the environment.
    unsafe { std::env::set_var("SOFTHSM2_CONF", process_dir().join("softhsm2.conf")) };
}

/// A public key read from the token, for the independent verifier.
#[derive(Clone, Debug)]
pub enum PublicKey {
    /// SEC1 uncompressed point and the curve OID.
    Ec { curve: &'static str, point: Vec<u8> },
    /// Modulus and public exponent, big-endian.
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

/// The per-process token.
pub struct Fixture {
    /// The token's directory (conf, tokens, PIN file).
    pub dir: PathBuf,
    /// `SOFTHSM2_CONF` for commands run against this token.
    pub conf: PathBuf,
    /// A file holding the user PIN (mode 0600).
    pub pin_file: PathBuf,
    ctx: Pkcs11,
    slot: cryptoki::slot::Slot,
    /// The pristine token that command copies are made from (nobody logs in to it).
    pristine: PathBuf,
    public_keys: Vec<(u8, PublicKey)>,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

/// The token for this test process, created on first use.
pub fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        Fixture::create()
            .unwrap_or_else(|e| panic!("cannot create the SoftHSM2 fixture token with {}: {e} (scripts/install-deps.sh installs SoftHSM2 and OpenSC)", module_path().display()))
    })
}

type BoxError = Box<dyn std::error::Error>;

impl Fixture {
    fn create() -> Result<Fixture, BoxError> {
        remove_dirs_of_exited_processes();
        let dir = process_dir();
        let tokens = dir.join("tokens");
        fs::create_dir_all(&tokens)?;
        let conf = dir.join("softhsm2.conf");
        fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )?;
        let pin_file = dir.join("user.pin");
        fs::write(&pin_file, format!("{PIN}\n"))?;
        fs::set_permissions(
            &pin_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )?;

        let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("softhsm-fixture-{FIXTURE_VERSION}"));
        let lock = fs::File::create(cache.with_extension("lock"))?;
        lock.lock()?; // other test binaries may be building the same cache
        let cached = cache.is_dir();
        if cached {
            copy_dir(&cache, &tokens)?;
        }
        let ctx = Pkcs11::new(module_path())?;
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
        if !cached {
            build_token(&ctx)?;
            let staging = cache.with_extension("tmp");
            let _ = fs::remove_dir_all(&staging);
            copy_dir(&tokens, &staging)?;
            fs::rename(&staging, &cache)?;
        }
        let slot = fixture_slot(&ctx)?;
        let mut fixture = Fixture {
            dir,
            conf,
            pin_file,
            ctx,
            slot,
            pristine: cache,
            public_keys: Vec::new(),
        };
        // Read every public key now, while no test thread or child process touches the token.
        fixture.public_keys = KEYS
            .iter()
            .map(|k| (k.1, fixture.read_public_key(k.1)))
            .collect();
        Ok(fixture)
    }

    /// A logged-in session on the fixture token, in this process (not through suitekey).
    pub fn session(&self) -> Session {
        let session = self.ctx.open_ro_session(self.slot).expect("open session");
        match session.login(UserType::User, Some(&AuthPin::from(PIN))) {
            Ok(())
            | Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::UserAlreadyLoggedIn,
                _,
            )) => {}
            Err(e) => panic!("fixture login: {e}"),
        }
        session
    }

    /// The private key object with this id.
    pub fn private_key(&self, session: &Session, id: u8) -> ObjectHandle {
        let found = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Id(vec![id]),
            ])
            .expect("find");
        *found.first().expect("fixture key present")
    }

    /// The public key with this id, as read straight from the token.
    pub fn public_key(&self, id: u8) -> PublicKey {
        self.public_keys
            .iter()
            .find(|k| k.0 == id)
            .map(|k| k.1.clone())
            .expect("fixture key id")
    }

    fn read_public_key(&self, id: u8) -> PublicKey {
        let session = self.session();
        let found = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::Id(vec![id]),
            ])
            .expect("find");
        let handle = *found.first().expect("public key present");
        public_key_in(&session, handle)
    }

    /// The fixture token's serial number, as the token reports it.
    pub fn serial(&self) -> String {
        self.ctx
            .get_token_info(self.slot)
            .expect("token info")
            .serial_number()
            .trim_end()
            .to_owned()
    }

    /// The key URI of a fixture key, with the module path and the PIN file.
    pub fn uri(&self, object: &str) -> String {
        format!(
            "pkcs11:token={TOKEN};object={object};type=private?module-path={}&pin-source=file:{}",
            module_path().display(),
            self.pin_file.display()
        )
    }

    /// The `suitekey` binary, pointed at a fresh copy of this token, with no inherited
    /// SUITEKEY_* settings.
    ///
    /// Each command gets its own copy because SoftHSM2 rewrites `token.object` on every
    /// successful login, and another process reading it meanwhile sees a broken or
    /// uninitialized token (CKR_GENERAL_ERROR): concurrent tests would fail at random.
    pub fn suitekey(&self) -> assert_cmd::Command {
        self.suitekey_with_extra_tokens(None)
    }

    /// Like [`Fixture::suitekey`], with the tokens of another SoftHSM2 token directory beside
    /// the fixture token.
    pub fn suitekey_with_extra_tokens(&self, extra: Option<&Path>) -> assert_cmd::Command {
        suitekey_with_conf(&self.token_copy(extra))
    }

    /// A fresh copy of the pristine token (plus `extra`'s tokens), returning its
    /// `softhsm2.conf`; the copy's directory is the conf's parent.
    pub fn token_copy(&self, extra: Option<&Path>) -> PathBuf {
        static COPIES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let copy = self.dir.join(format!("copy-{n}"));
        copy_dir(&self.pristine, &copy.join("tokens")).expect("copy the fixture token");
        if let Some(extra) = extra {
            copy_dir(extra, &copy.join("tokens")).expect("copy the extra tokens");
        }
        let conf = copy.join("softhsm2.conf");
        fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                copy.join("tokens").display()
            ),
        )
        .expect("write softhsm2.conf");
        conf
    }

    /// The `suitekey` binary on this process's own token (not a copy), so this process's
    /// cryptoki session sees what the command made. The guard serializes such commands: SoftHSM2
    /// cannot take two processes writing one token at once.
    pub fn suitekey_on_own_token(
        &self,
    ) -> (std::sync::MutexGuard<'static, ()>, assert_cmd::Command) {
        static OWN_TOKEN: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let guard = OWN_TOKEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (guard, suitekey_with_conf(&self.conf))
    }

    /// A key URI on this process's token for a label that does not exist yet.
    pub fn new_key_uri(&self, object: &str) -> String {
        self.uri(object).replace(";type=private", "")
    }

    /// A certificate for fixture key `label`, made on a fresh token copy and written to
    /// `DIR/LABEL.pem`: its file and certificate id.
    pub fn cert_for(&self, label: &str, dir: &Path) -> (PathBuf, String) {
        let pem = dir.join(format!("{label}.pem"));
        let id = make_cert(&self.token_copy(None), &self.uri(label), &pem);
        (pem, id)
    }
}

/// `suitekey cert --replace --force --key KEY --out PEM` on the token of `conf`: a new
/// certificate for the key, stored beside it and written to `pem`; returns its certificate id.
pub fn make_cert(conf: &Path, key: &str, pem: &Path) -> String {
    let out = suitekey_with_conf(conf)
        .args(["cert", "--replace", "--force", "--key", key, "--out"])
        .arg(pem)
        .output()
        .expect("run suitekey cert");
    let (id, stderr) = texts(&out);
    assert!(out.status.success(), "cert for {key}: {stderr}");
    id.trim().to_owned()
}

/// A temp dir under the target dir, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir")
}

/// libfaketime's preload library (the `faketime` package), wherever this machine's multiarch
/// directory is.
pub fn libfaketime() -> PathBuf {
    let candidates = fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|arch| arch.path().join("faketime/libfaketime.so.1"))
        .chain([PathBuf::from("/usr/local/lib/faketime/libfaketime.so.1")]);
    candidates
        .into_iter()
        .find(|p| p.exists())
        .expect("libfaketime.so.1 (the faketime package; scripts/install-deps.sh installs it)")
}

/// Whether the tests run as root (some need it to act as another user).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The `suitekey` binary with `SOFTHSM2_CONF` set and no inherited SUITEKEY_* settings.
pub fn suitekey_with_conf(conf: &Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("suitekey").expect("suitekey binary");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SUITEKEY_") || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    cmd.env("SOFTHSM2_CONF", conf);
    cmd
}

/// Stores on the token of `conf` a new certificate for `key`, valid `days` from a clock moved
/// by `offset` (libfaketime, e.g. "-37d"), also written to `out`; returns its certificate id.
pub fn cert_at_clock(conf: &Path, key: &str, offset: &str, days: u32, out: &Path) -> String {
    let output = std::process::Command::new("faketime")
        .args(["-f", offset])
        .arg(env!("CARGO_BIN_EXE_suitekey"))
        .args(["cert", "--replace", "--force", "--key", key])
        .args(["--days", &days.to_string(), "--out"])
        .arg(out)
        .env("SOFTHSM2_CONF", conf)
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("faketime (scripts/install-deps.sh installs it)");
    let (id, stderr) = texts(&output);
    assert!(output.status.success(), "cert at {offset}: {stderr}");
    id.trim().to_owned()
}

fn build_token(ctx: &Pkcs11) -> Result<(), BoxError> {
    let slot = *ctx
        .get_slots_with_token()?
        .first()
        .ok_or("SoftHSM2 shows no free slot")?;
    ctx.init_token(slot, &AuthPin::from(SO_PIN), TOKEN)?;
    let slot = fixture_slot(ctx)?; // SoftHSM2 gives the initialized token a new slot id
    let session = ctx.open_rw_session(slot)?;
    session.login(UserType::So, Some(&AuthPin::from(SO_PIN)))?;
    session.init_pin(&AuthPin::from(PIN))?;
    session.logout()?;
    session.login(UserType::User, Some(&AuthPin::from(PIN)))?;
    for (label, id, kind, always) in KEYS {
        generate(&session, label, &[*id], *kind, *always)?;
    }
    // A second public key object with the id of `stale-public`, as a botched re-import leaves.
    let public = session.find_objects(&[
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::Id(vec![0x0b]),
    ])?;
    session.copy_object(
        *public.first().ok_or("stale-public has no public key")?,
        &[],
    )?;
    // The value is not parsed by SoftHSM2 or by `list` (yet); an empty Name is a valid subject.
    session.create_object(&[
        Attribute::Class(ObjectClass::CERTIFICATE),
        Attribute::CertificateType(cryptoki::object::CertificateType::X_509),
        Attribute::Token(true),
        Attribute::Label(CERT_LABEL.as_bytes().to_vec()),
        Attribute::Id(vec![0x01]),
        Attribute::Subject(vec![0x30, 0x00]),
        Attribute::Value(b"not a real certificate".to_vec()),
    ])?;
    Ok(())
}

fn fixture_slot(ctx: &Pkcs11) -> Result<cryptoki::slot::Slot, BoxError> {
    for slot in ctx.get_slots_with_token()? {
        if ctx.get_token_info(slot)?.label().trim_end() == TOKEN {
            return Ok(slot);
        }
    }
    Err("fixture token not found".into())
}

fn generate(
    session: &Session,
    label: &str,
    id: &[u8],
    kind: Kind,
    always_auth: bool,
) -> Result<(), BoxError> {
    let common = |private: bool| {
        let mut t = vec![
            Attribute::Token(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
        ];
        if private {
            t.extend([
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(true),
                Attribute::AlwaysAuthenticate(always_auth),
            ]);
        } else {
            t.push(Attribute::Verify(true));
        }
        t
    };
    let (mechanism, mut public) = match kind {
        Kind::Ec(oid) => {
            let oid = der::asn1::ObjectIdentifier::new(oid)?;
            (
                Mechanism::EccKeyPairGen,
                vec![Attribute::EcParams(der::Encode::to_der(&oid)?)],
            )
        }
        Kind::Rsa(bits) => (
            Mechanism::RsaPkcsKeyPairGen,
            vec![
                Attribute::ModulusBits(bits.into()),
                Attribute::PublicExponent(vec![1, 0, 1]),
            ],
        ),
    };
    public.extend(common(false));
    session.generate_key_pair(&mechanism, &public, &common(true))?;
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// The public key held by the object `handle` (EC point unwrapped from SoftHSM2's DER OCTET
/// STRING; the curve is not read, so it is left empty for EC keys found by label).
pub fn public_key_in(session: &Session, handle: ObjectHandle) -> PublicKey {
    let attrs = session
        .get_attributes(
            handle,
            &[
                AttributeType::EcParams,
                AttributeType::EcPoint,
                AttributeType::Modulus,
                AttributeType::PublicExponent,
            ],
        )
        .expect("attributes");
    let (mut params, mut point, mut n, mut e) = (None, None, None, None);
    for a in attrs {
        match a {
            Attribute::EcParams(p) => params = Some(p),
            Attribute::EcPoint(p) => point = Some(p),
            Attribute::Modulus(m) => n = Some(m),
            Attribute::PublicExponent(x) => e = Some(x),
            _ => {}
        }
    }
    match (point, n, e) {
        (Some(raw), _, _) => {
            let point = der::asn1::OctetString::from_der(&raw)
                .map(|o| o.as_bytes().to_vec())
                .unwrap_or(raw);
            let oid = params
                .and_then(|p| <der::asn1::ObjectIdentifier>::from_der(&p).ok())
                .map(|o| o.to_string())
                .unwrap_or_default();
            let curve = [P256, P384, P521]
                .into_iter()
                .find(|c| *c == oid)
                .unwrap_or("");
            PublicKey::Ec { curve, point }
        }
        (None, Some(n), Some(e)) => PublicKey::Rsa { n, e },
        _ => panic!("object holds no public key"),
    }
}

/// A finished command's stdout and stderr as text.
pub fn texts(out: &std::process::Output) -> (String, String) {
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).expect("UTF-8 output");
    (text(&out.stdout), text(&out.stderr))
}

/// A decoded compact JWS.
pub struct Jws {
    /// The protected header.
    pub header: serde_json::Value,
    /// The claims.
    pub claims: serde_json::Value,
    /// The signature bytes.
    pub signature: Vec<u8>,
    /// `header.claims`, the bytes that were signed.
    pub signing_input: String,
}

/// Splits and decodes a compact JWS, failing the test on any malformation.
pub fn decode_jws(jws: &str) -> Jws {
    let parts: Vec<&str> = jws.trim_end().split('.').collect();
    assert_eq!(parts.len(), 3, "a compact JWS has three parts: {jws}");
    let dec = |p: &str| {
        URL_SAFE_NO_PAD
            .decode(p)
            .unwrap_or_else(|e| panic!("part is not base64url: {e}"))
    };
    Jws {
        header: serde_json::from_slice(&dec(parts[0])).expect("header JSON"),
        claims: serde_json::from_slice(&dec(parts[1])).expect("claims JSON"),
        signature: dec(parts[2]),
        signing_input: format!("{}.{}", parts[0], parts[1]),
    }
}

/// The compact JWS a command printed, decoded; the command must succeed.
pub fn signed_jws(cmd: &mut assert_cmd::Command) -> Jws {
    let out = cmd.assert().success().get_output().stdout.clone();
    decode_jws(&String::from_utf8(out).expect("UTF-8"))
}

/// A shell script for `exec … -- sh -c SCRIPT`: prints the command's environment and the
/// length of the access token it was given.
pub const SHOW_ENV: &str = "env; echo \"token=${#NETSUITE_ACCESS_TOKEN}\"";

/// `exec … -- sh -c SHOW_ENV` succeeded, and the command got an access token but no PIN.
pub fn assert_exec_got_the_token_and_no_pin(out: &std::process::Output) {
    let (stdout, stderr) = texts(out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("token=43"), "{stdout}");
    assert!(
        !stdout.contains(PIN),
        "the PIN reached the command's environment"
    );
}

/// Verifies a JWS with RustCrypto (not the token's OpenSSL), by the header's `alg`. For PS*,
/// the salt length must be exactly the hash length.
pub fn verify(jws: &Jws, key: &PublicKey) -> Result<(), String> {
    use p256::ecdsa::signature::Verifier as _;
    let alg = jws.header["alg"].as_str().ok_or("no alg")?;
    let msg = jws.signing_input.as_bytes();
    let sig = &jws.signature;
    let e = |x: &dyn std::fmt::Display| x.to_string();
    match (alg, key) {
        ("ES256", PublicKey::Ec { curve: P256, point }) => {
            p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
                .map_err(|x| e(&x))?
                .verify(
                    msg,
                    &p256::ecdsa::Signature::from_slice(sig).map_err(|x| e(&x))?,
                )
                .map_err(|x| e(&x))
        }
        ("ES384", PublicKey::Ec { curve: P384, point }) => {
            p384::ecdsa::VerifyingKey::from_sec1_bytes(point)
                .map_err(|x| e(&x))?
                .verify(
                    msg,
                    &p384::ecdsa::Signature::from_slice(sig).map_err(|x| e(&x))?,
                )
                .map_err(|x| e(&x))
        }
        ("ES512", PublicKey::Ec { curve: P521, point }) => {
            p521::ecdsa::VerifyingKey::from_sec1_bytes(point)
                .map_err(|x| e(&x))?
                .verify(
                    msg,
                    &p521::ecdsa::Signature::from_slice(sig).map_err(|x| e(&x))?,
                )
                .map_err(|x| e(&x))
        }
        ("PS256", PublicKey::Rsa { n, e: exp }) => pss::<sha2::Sha256>(n, exp, msg, sig, 32),
        ("PS384", PublicKey::Rsa { n, e: exp }) => pss::<sha2::Sha384>(n, exp, msg, sig, 48),
        ("PS512", PublicKey::Rsa { n, e: exp }) => pss::<sha2::Sha512>(n, exp, msg, sig, 64),
        (alg, key) => Err(format!("alg {alg} does not fit key {key:?}")),
    }
}

fn pss<D>(n: &[u8], e: &[u8], msg: &[u8], sig: &[u8], salt: usize) -> Result<(), String>
where
    D: sha2::Digest + sha2::digest::FixedOutputReset + rsa::pkcs8::AssociatedOid,
{
    use rsa::signature::Verifier as _;
    let key = rsa::PublicKey::new(
        rsa::BoxedUint::from_be_slice_vartime(n),
        rsa::BoxedUint::from_be_slice_vartime(e),
    )
    .map_err(|x| x.to_string())?;
    let sig = rsa::pss::Signature::try_from(sig).map_err(|x| x.to_string())?;
    rsa::pss::VerifyingKey::<D>::new_with_salt_len(key.clone(), salt)
        .verify(msg, &sig)
        .map_err(|x| x.to_string())?;
    // The salt must be exactly the hash length: a verifier expecting any other length refuses.
    if rsa::pss::VerifyingKey::<D>::new_with_salt_len(key, salt - 1)
        .verify(msg, &sig)
        .is_ok()
    {
        return Err(format!(
            "PSS signature also verifies with salt length {}",
            salt - 1
        ));
    }
    Ok(())
}

/// base64url(SHA-256(DER)) computed here from the PEM, independently of suitekey.
pub fn expected_certificate_id(pem_file: &Path) -> String {
    let pem = std::fs::read_to_string(pem_file).expect("read PEM");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("base64 PEM body");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&der))
}

/// The certificate's public key, as the verifier takes it.
pub fn cert_public_key(pem_file: &Path) -> (x509_cert::Certificate, PublicKey) {
    let cert = x509_cert::Certificate::from_pem(std::fs::read(pem_file).expect("read"))
        .expect("PEM certificate");
    let spki = cert.tbs_certificate().subject_public_key_info();
    let bits = spki.subject_public_key.raw_bytes().to_vec();
    let key = if spki.algorithm.oid.to_string() == "1.2.840.10045.2.1" {
        let curve: der::asn1::ObjectIdentifier = spki
            .algorithm
            .parameters
            .as_ref()
            .expect("named curve")
            .decode_as()
            .expect("curve OID");
        let curve = match curve.to_string().as_str() {
            "1.2.840.10045.3.1.7" => "1.2.840.10045.3.1.7",
            "1.3.132.0.34" => "1.3.132.0.34",
            _ => "1.3.132.0.35",
        };
        PublicKey::Ec { curve, point: bits }
    } else {
        let rsa = rsa::pkcs1::RsaPublicKey::<der::asn1::UintRef<'_>>::from_der(&bits)
            .expect("RSA public key");
        PublicKey::Rsa {
            n: rsa.modulus.as_bytes().to_vec(),
            e: rsa.public_exponent.as_bytes().to_vec(),
        }
    };
    (cert, key)
}

/// Stores the certificate in `pem` on the token of `conf` as an object with CKA_ID `id` (hex)
/// and `label` (if any), with OpenSC's pkcs11-tool (the PIN through its environment), as a user who
/// imports a certificate does.
pub fn store_certificate_with_id(conf: &Path, pem: &Path, id: &str, label: Option<&str>) {
    let der = pem.with_extension("der");
    let out = std::process::Command::new("openssl")
        .args(["x509", "-outform", "der", "-in"])
        .arg(pem)
        .arg("-out")
        .arg(&der)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{}", texts(&out).1);
    let out = std::process::Command::new("pkcs11-tool")
        .arg("--module")
        .arg(module_path())
        .args(["--token-label", TOKEN, "--login", "--pin", "env:STORE_PIN"])
        .args(["--write-object"])
        .arg(&der)
        .args(["--type", "cert", "--id", id])
        .args(label.map(|l| ["--label", l]).into_iter().flatten())
        .env("SOFTHSM2_CONF", conf)
        .env("STORE_PIN", PIN)
        .output()
        .expect("pkcs11-tool (OpenSC)");
    assert!(
        out.status.success(),
        "write the certificate: {}",
        texts(&out).1
    );
}
