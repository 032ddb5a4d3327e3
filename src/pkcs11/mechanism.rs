//! Which mechanism for which algorithm: how each NetSuite algorithm is signed (the module
//! hashes, or it signs a digest computed here), which mechanism makes each kind of key, and
//! what a token can do for each algorithm. Judged from the mechanisms the module offers (and the
//! key sizes it states), plus one small table of limits that modules do not state: key kinds
//! they advertise but mishandle.

use std::fmt;

use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use der::asn1::ObjectIdentifier;

use super::Error;
use super::module::Module;
use super::piv::PivModule;
use super::token::Token;
use crate::jose::{Alg, Curve, Hash, Scheme};

/// How a signature is made: the module hashes (preferred), or we hash and it signs the digest.
#[derive(Debug)]
pub(super) enum Plan {
    HashAndSign(Mechanism<'static>),
    SignDigest(Mechanism<'static>),
}

impl Plan {
    /// The mechanism the plan signs with.
    pub(super) fn mechanism(&self) -> &Mechanism<'static> {
        match self {
            Plan::HashAndSign(m) | Plan::SignDigest(m) => m,
        }
    }

    /// The type of the mechanism the plan signs with.
    pub(super) fn mechanism_type(&self) -> MechanismType {
        self.mechanism().mechanism_type()
    }

    /// What the token is given to sign `data` with `alg`: the data itself when the module
    /// hashes, else its digest.
    pub(super) fn input(&self, alg: Alg, data: &[u8]) -> Vec<u8> {
        match self {
            Plan::HashAndSign(_) => data.to_vec(),
            Plan::SignDigest(_) => alg.hash().digest(data),
        }
    }
}

/// The two ways to make an `alg` signature in PKCS#11: the hash-and-sign mechanism, and the
/// raw mechanism over a digest we compute. PSS always uses MGF1 with the same hash and a salt
/// as long as the hash, as JWS requires.
pub(super) fn mechanisms(alg: Alg) -> (Mechanism<'static>, Mechanism<'static>) {
    let (digest, mgf) = match alg.hash() {
        Hash::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
        Hash::Sha384 => (MechanismType::SHA384, PkcsMgfType::MGF1_SHA384),
        Hash::Sha512 => (MechanismType::SHA512, PkcsMgfType::MGF1_SHA512),
    };
    let pss = PkcsPssParams {
        hash_alg: digest,
        mgf,
        s_len: (alg.hash().output_len() as u64).into(),
    };
    match alg {
        Alg::ES256 => (Mechanism::EcdsaSha256, Mechanism::Ecdsa),
        Alg::ES384 => (Mechanism::EcdsaSha384, Mechanism::Ecdsa),
        Alg::ES512 => (Mechanism::EcdsaSha512, Mechanism::Ecdsa),
        Alg::PS256 => (Mechanism::Sha256RsaPkcsPss(pss), Mechanism::RsaPkcsPss(pss)),
        Alg::PS384 => (Mechanism::Sha384RsaPkcsPss(pss), Mechanism::RsaPkcsPss(pss)),
        Alg::PS512 => (Mechanism::Sha512RsaPkcsPss(pss), Mechanism::RsaPkcsPss(pss)),
    }
}

/// Picks the mechanism for `alg` among those offered: hash-and-sign where the module has it,
/// else the raw mechanism over a software digest.
pub(super) fn plan_for(alg: Alg, offered: &[MechanismType]) -> Option<Plan> {
    let (combined, raw) = mechanisms(alg);
    if offered.contains(&combined.mechanism_type()) {
        Some(Plan::HashAndSign(combined))
    } else if offered.contains(&raw.mechanism_type()) {
        Some(Plan::SignDigest(raw))
    } else {
        None
    }
}

pub(super) fn no_mechanism(token: &Token, alg: Alg) -> Error {
    let (combined, raw) = mechanisms(alg);
    let usable = token_algs(token).unwrap_or_default();
    let hint = if usable.is_empty() {
        "this token cannot sign any of ES256, ES384, ES512, PS256, PS384, PS512".to_owned()
    } else {
        let names: Vec<&str> = usable.iter().map(|a| a.name()).collect();
        format!(
            "it can sign {}; use a key for one of those",
            names.join(", ")
        )
    };
    Error::NoMechanism {
        token: token.label().to_owned(),
        alg: alg.to_string(),
        wanted: format!("{}, {}", combined.mechanism_type(), raw.mechanism_type()),
        hint,
    }
}

/// The algorithms a token can sign, judging by the mechanisms its module offers and the
/// module's known limits.
pub fn token_algs(token: &Token) -> Result<Vec<Alg>, Error> {
    let offered = token.mechanisms()?;
    let mut algs = Vec::new();
    for alg in Alg::ALL {
        if sign_support(token, alg, &offered)?.is_ok() {
            algs.push(alg);
        }
    }
    Ok(algs)
}

/// How to make an RSASSA-PKCS1-v1_5 signature with SHA-256, for certificates that must be
/// `sha256WithRSAEncryption` (NetSuite refuses PKCS#1 v1.5 for assertions, not for
/// certificates): the module's hash-and-sign mechanism, else `CKM_RSA_PKCS` over a `DigestInfo`
/// made here (see [`pkcs1_sha256_input`]).
pub(super) fn pkcs1_sha256_plan(token: &Token) -> Result<Plan, Error> {
    let offered = token.mechanisms()?;
    if offered.contains(&MechanismType::SHA256_RSA_PKCS) {
        Ok(Plan::HashAndSign(Mechanism::Sha256RsaPkcs))
    } else if offered.contains(&MechanismType::RSA_PKCS) {
        Ok(Plan::SignDigest(Mechanism::RsaPkcs))
    } else {
        Err(Error::NoMechanism {
            token: token.label().to_owned(),
            alg: "sha256WithRSAEncryption".into(),
            wanted: "CKM_SHA256_RSA_PKCS, CKM_RSA_PKCS".into(),
            hint: "make the certificate with an RSASSA-PSS signature instead (leave out --cert-sig pkcs1)".into(),
        })
    }
}

/// What the token is given to sign `data` with a [`pkcs1_sha256_plan`]: the data itself when
/// the module hashes, else the `DigestInfo` of its SHA-256 digest.
pub(super) fn pkcs1_sha256_input(plan: &Plan, data: &[u8]) -> Result<Vec<u8>, der::Error> {
    match plan {
        Plan::HashAndSign(_) => Ok(data.to_vec()),
        Plan::SignDigest(_) => digest_info_sha256(data),
    }
}

/// The PKCS#1 `DigestInfo` for SHA-256 over `data`: what `CKM_RSA_PKCS` signs.
fn digest_info_sha256(data: &[u8]) -> Result<Vec<u8>, der::Error> {
    #[derive(der::Sequence)]
    struct DigestInfo {
        algorithm: x509_cert::spki::AlgorithmIdentifierOwned,
        digest: der::asn1::OctetString,
    }
    der::Encode::to_der(&DigestInfo {
        algorithm: x509_cert::spki::AlgorithmIdentifierOwned {
            oid: ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1"),
            parameters: Some(der::asn1::Null.into()),
        },
        digest: der::asn1::OctetString::new(Hash::Sha256.digest(data))?,
    })
}

/// The kind of key pair to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySpec {
    /// EC on a named curve.
    Ec(Curve),
    /// RSA with a modulus of this many bits (public exponent 65537).
    Rsa {
        /// Modulus length in bits.
        bits: u32,
    },
}

impl KeySpec {
    /// The RSA modulus size keys are made with when none is asked for (`--rsa-bits`'
    /// default), and the size [`support`] tries: 3072 bits, the 128-bit security level.
    pub const DEFAULT_RSA_BITS: u32 = 3072;

    /// The key-pair generation mechanism for this kind.
    pub(super) fn mechanism(self) -> Mechanism<'static> {
        match self {
            KeySpec::Ec(_) => Mechanism::EccKeyPairGen,
            KeySpec::Rsa { .. } => Mechanism::RsaPkcsKeyPairGen,
        }
    }
}

impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySpec::Ec(curve) => write!(f, "EC {}", curve.name()),
            KeySpec::Rsa { bits } => write!(f, "RSA {bits}"),
        }
    }
}

/// A key kind a module offers the mechanisms for but cannot really use, found by testing it.
struct KnownLimit {
    /// `C_GetInfo`'s library manufacturer, exactly.
    manufacturer: &'static str,
    /// `C_GetInfo`'s library description, exactly.
    description: &'static str,
    /// The module's usual name.
    module: &'static str,
    /// The curve it cannot use.
    curve: Curve,
    /// What goes wrong, and what to use instead.
    limit: &'static str,
}

/// Applied to every version of the module: refusing a kind a later release has fixed costs a
/// clear message, allowing a broken one costs an unusable key that NetSuite would refuse.
const KNOWN_LIMITS: &[KnownLimit] = &[KnownLimit {
    manufacturer: "tpm2-software.github.io",
    description: "TPM2.0 Cryptoki",
    module: "tpm2-pkcs11",
    curve: Curve::P521,
    limit: "cannot use P-521 keys (measured with 1.9: it stores their public point as invalid DER and signing fails with CKR_HOST_MEMORY), so no ES512 on this module; use ES256 or ES384",
}];

/// What to do when a module cannot do an algorithm at all.
const PICK_ANOTHER: &str = "pick another algorithm (see `suitekey list --mechanisms`)";

/// The smallest stated maximum EC key size taken to be in bits. PKCS#11 states EC key sizes in
/// bits, but some modules state bytes (66 for P-521) or odd units, and reading those as bits
/// would refuse keys the module makes fine. Any module stating bits allows P-256 or more, so a
/// maximum below 256 (or 0, "not stated") is not taken as a limit.
const MIN_STATED_EC_BITS: usize = 256;

/// Whether the EC key-size range `min..=max` a module states excludes `curve`; only a range
/// clearly in bits counts (see [`MIN_STATED_EC_BITS`]).
fn range_excludes(curve: Curve, (min, max): (usize, usize)) -> bool {
    max >= MIN_STATED_EC_BITS && !(min..=max).contains(&curve.bits())
}

/// The known limit of `module` for `curve`, as a sentence naming the module, if it has one.
fn known_limit(module: &Module, curve: Curve) -> Result<Option<String>, Error> {
    let info = module.library()?;
    Ok(KNOWN_LIMITS
        .iter()
        .find(|l| {
            l.curve == curve
                && l.manufacturer == info.manufacturer
                && l.description == info.description
        })
        .map(|l| format!("{} ({}) {}", l.module, module.shown_path(), l.limit)))
}

/// Why the token cannot use `curve` keys with `mech` (which its module offers), naming the
/// module: a known limit, or the key sizes the module states for `mech`. `None` if it can.
pub(crate) fn curve_limit(
    token: &Token,
    curve: Curve,
    mech: MechanismType,
) -> Result<Option<String>, Error> {
    let module = token.module();
    if let Some(limit) = known_limit(module, curve)? {
        return Ok(Some(limit));
    }
    let range = token.key_sizes(mech)?;
    if !range_excludes(curve, range) {
        return Ok(None);
    }
    Ok(Some(format!(
        "its module ({}) states {mech} for EC keys of {} to {} bits only, so not {} ({} bits); {PICK_ANOTHER} or another token",
        module.library()?,
        range.0,
        range.1,
        curve.name(),
        curve.bits()
    )))
}

/// Why the token's module cannot make `bits`-bit RSA keys with `mech`, given the sizes it
/// states (`max` 0: not stated), with what to use instead. `None` if it can.
fn rsa_limit(token: &Token, mech: MechanismType, bits: usize) -> Result<Option<String>, Error> {
    let (min, max) = token.key_sizes(mech)?;
    if max == 0 || (min..=max).contains(&bits) {
        return Ok(None);
    }
    let default = KeySpec::DEFAULT_RSA_BITS;
    let instead = if (min..=max).contains(&(default as usize)) {
        format!("use --rsa-bits {default} (the default) or another token")
    } else {
        format!("use another token, or {PICK_ANOTHER}")
    };
    Ok(Some(format!(
        "its module ({}) makes RSA keys of {min} to {max} bits only; {instead}",
        token.module().library()?
    )))
}

/// Why the token cannot sign for NetSuite with RSA keys through `mech`: the module states it
/// for keys smaller than NetSuite's least (Yubico's ykcs11 2.2: 1024 to 2048 bits). `None` if
/// it can, or states no sizes.
fn pss_limit(token: &Token, mech: MechanismType) -> Result<Option<String>, Error> {
    let (min, max) = token.key_sizes(mech)?;
    // The least RSA size suitekey makes is NetSuite's least (checked in netsuite's tests).
    let least = KeySpec::DEFAULT_RSA_BITS as usize;
    if max == 0 || max >= least {
        return Ok(None);
    }
    Ok(Some(format!(
        "its module ({}) states {mech} for RSA keys of {min} to {max} bits only, and NetSuite refuses RSA keys below {least} bits; use an EC key (ES256, ES384) on this token",
        token.module().library()?
    )))
}

/// Whether the token can make `spec` keys: `Ok(what it uses)` or `Err(why not)`, naming the
/// module's limit. The outer error is a PKCS#11 call that failed.
pub(crate) fn keygen_support(
    token: &Token,
    spec: KeySpec,
    offered: &[MechanismType],
) -> Result<Result<String, String>, Error> {
    let mech = spec.mechanism().mechanism_type();
    if let Some(reason) = PivModule::of(token)?.and_then(PivModule::cannot_create) {
        return Ok(Err(reason.to_owned()));
    }
    if !offered.contains(&mech) {
        return Ok(Err(format!(
            "its module ({}) does not offer {mech}; {PICK_ANOTHER}",
            token.module().library()?
        )));
    }
    let (limit, uses) = match spec {
        KeySpec::Ec(curve) => (
            curve_limit(token, curve, mech)?,
            format!("{mech} {}", curve.name()),
        ),
        KeySpec::Rsa { bits } => (
            rsa_limit(token, mech, bits as usize)?,
            format!("{mech} RSA {bits}"),
        ),
    };
    Ok(limit.map_or(Ok(uses), Err))
}

/// Whether the token can sign `alg`: `Ok(how)` or `Err(why not)`.
pub(crate) fn sign_support(
    token: &Token,
    alg: Alg,
    offered: &[MechanismType],
) -> Result<Result<String, String>, Error> {
    let Some(plan) = plan_for(alg, offered) else {
        let (combined, raw) = mechanisms(alg);
        return Ok(Err(format!(
            "its module ({}) offers neither {} nor {}; {PICK_ANOTHER}",
            token.module().library()?,
            combined.mechanism_type(),
            raw.mechanism_type()
        )));
    };
    let limit = match alg.scheme() {
        Scheme::Ecdsa(curve) => curve_limit(token, curve, plan.mechanism_type())?,
        Scheme::Pss => pss_limit(token, plan.mechanism_type())?,
    };
    if let Some(limit) = limit {
        return Ok(Err(limit));
    }
    Ok(Ok(match plan {
        Plan::HashAndSign(m) => m.mechanism_type().to_string(),
        Plan::SignDigest(m) => {
            format!("{} over a {} digest", m.mechanism_type(), alg.hash().name())
        }
    }))
}

/// One algorithm's row in `list --mechanisms`.
#[derive(Clone, Debug)]
pub struct AlgSupport {
    /// The algorithm.
    pub alg: Alg,
    /// The keygen mechanism and key kind, or why the token cannot make the key.
    pub keygen: Result<String, String>,
    /// The signing mechanism, or why the token cannot sign.
    pub sign: Result<String, String>,
}

/// For each NetSuite algorithm, whether the token can make its key (RSA: the default
/// 3072 bits) and sign with it.
pub fn support(token: &Token) -> Result<Vec<AlgSupport>, Error> {
    let offered = token.mechanisms()?;
    Alg::ALL
        .into_iter()
        .map(|alg| {
            let spec = match alg.scheme() {
                Scheme::Ecdsa(curve) => KeySpec::Ec(curve),
                Scheme::Pss => KeySpec::Rsa {
                    bits: KeySpec::DEFAULT_RSA_BITS,
                },
            };
            Ok(AlgSupport {
                alg,
                keygen: keygen_support(token, spec, &offered)?,
                sign: sign_support(token, alg, &offered)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_sign_is_preferred_and_raw_mechanisms_are_the_fallback() {
        let softhsm = [
            MechanismType::ECDSA,
            MechanismType::RSA_PKCS_PSS,
            MechanismType::SHA384_RSA_PKCS_PSS,
        ];
        assert!(matches!(
            plan_for(Alg::ES256, &softhsm),
            Some(Plan::SignDigest(Mechanism::Ecdsa))
        ));
        assert!(matches!(
            plan_for(Alg::PS384, &softhsm),
            Some(Plan::HashAndSign(Mechanism::Sha384RsaPkcsPss(_)))
        ));
        match plan_for(Alg::PS512, &softhsm) {
            Some(Plan::SignDigest(Mechanism::RsaPkcsPss(p))) => {
                assert_eq!(p.hash_alg, MechanismType::SHA512);
                assert_eq!(u64::from(p.s_len), 64);
            }
            other => panic!("unexpected {other:?}"),
        }
        let tpm = [MechanismType::ECDSA_SHA384, MechanismType::ECDSA];
        assert!(matches!(
            plan_for(Alg::ES384, &tpm),
            Some(Plan::HashAndSign(Mechanism::EcdsaSha384))
        ));
        assert!(plan_for(Alg::PS256, &tpm).is_none());
    }

    #[test]
    fn the_pkcs1_digest_info_is_the_standard_sha256_prefix_and_digest() {
        let info = digest_info_sha256(b"abc").unwrap();
        // RFC 8017 §9.2 note 1: the DER prefix for SHA-256.
        let prefix = [
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ];
        assert_eq!(&info[..19], &prefix);
        assert_eq!(&info[19..], Hash::Sha256.digest(b"abc").as_slice());
    }

    #[test]
    fn a_range_in_bits_excludes_the_curves_outside_it() {
        // A PIV-like module: P-256 and P-384 only.
        assert!(!range_excludes(Curve::P256, (256, 384)));
        assert!(!range_excludes(Curve::P384, (256, 384)));
        assert!(range_excludes(Curve::P521, (256, 384)));
        // kryoptic (256-521) and SoftHSM2 (112-521) state every curve.
        for curve in Curve::ALL {
            assert!(!range_excludes(curve, (256, 521)), "{curve:?}");
            assert!(!range_excludes(curve, (112, 521)), "{curve:?}");
        }
        // A minimum above the curve.
        assert!(range_excludes(Curve::P256, (384, 521)));
    }

    #[test]
    fn a_range_not_clearly_in_bits_excludes_nothing() {
        for curve in Curve::ALL {
            // Not stated, stated in bytes (32 to 66), an odd unit.
            for range in [(0, 0), (32, 66), (1, 3), (0, 255)] {
                assert!(!range_excludes(curve, range), "{curve:?} {range:?}");
            }
        }
    }
}
