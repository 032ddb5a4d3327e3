//! NetSuite's rules on keys and algorithms: which algorithm names it accepts (not RS256, since
//! 1 March 2025), which keys (RSA of exactly 3072 or 4096 bits, EC on P-256, P-384 or P-521),
//! and so which algorithms a key may sign assertions with, and which one by default.
//!
//! `jose` knows what each algorithm is and which key type it needs; what NetSuite accepts of
//! them lives here, and every command asks here before the token is asked to sign.

use std::str::FromStr;

use crate::jose::{Alg, Curve, KeyKind, Scheme};
use crate::kind::{HasKind, Kind};

/// The smallest RSA modulus NetSuite accepts.
pub const MIN_RSA_BITS: usize = 3072;

const RULE_KEYS: &str =
    "NetSuite accepts RSA keys of 3072 or 4096 bits and EC keys on P-256, P-384 or P-521";

/// Why a key cannot be used, or an algorithm name is not one NetSuite accepts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AlgError {
    /// The name is not one of the six algorithms.
    #[error(
        "unknown algorithm '{0}'; NetSuite accepts ES256, ES384, ES512, PS256, PS384 and PS512"
    )]
    Unknown(String),
    /// RS256/384/512 (PKCS#1 v1.5) were accepted once.
    #[error(
        "{0} (RSASSA-PKCS1-v1_5) is refused by NetSuite since 1 March 2025; use PS256, PS384 or PS512 with the same RSA key"
    )]
    Pkcs1(String),
    /// The key's type does not fit the algorithm.
    #[error("{alg} needs {needs}, but the key is {key}; {hint}")]
    Mismatch {
        /// The algorithm asked for.
        alg: Alg,
        /// The key type the algorithm needs.
        needs: String,
        /// The key found.
        key: KeyKind,
        /// What to do instead.
        hint: String,
    },
    /// The key itself breaks NetSuite's certificate rules.
    #[error("{key} keys cannot be used with NetSuite: {rule}")]
    Refused {
        /// The key found.
        key: KeyKind,
        /// NetSuite's rule that refuses it.
        rule: &'static str,
    },
}

impl HasKind for AlgError {
    /// Bad input: an algorithm name, or `--alg` for the wrong key. (A key NetSuite refuses is
    /// the token's problem, which the layer that opened the key says.)
    fn kind(&self) -> Kind {
        Kind::Usage
    }
}

/// An algorithm named by the user (`--alg`, a profile's `alg`): one of the six, in any case;
/// RS256/384/512 are refused with NetSuite's reason.
impl FromStr for Alg {
    type Err = AlgError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(alg) = Alg::from_name(s) {
            return Ok(alg);
        }
        let upper = s.trim().to_ascii_uppercase();
        if matches!(upper.as_str(), "RS256" | "RS384" | "RS512") {
            return Err(AlgError::Pkcs1(upper));
        }
        Err(AlgError::Unknown(s.to_owned()))
    }
}

/// Refuses a key NetSuite does not accept, whatever the algorithm, citing its rule.
pub fn check_key(key: &KeyKind) -> Result<(), AlgError> {
    let refused = |rule| {
        Err(AlgError::Refused {
            key: key.clone(),
            rule,
        })
    };
    match key {
        KeyKind::Ec(_) => Ok(()),
        KeyKind::Rsa { bits: 3072 | 4096 } => Ok(()),
        KeyKind::Rsa { bits } if *bits > MIN_RSA_BITS => refused(
            "NetSuite accepts RSA keys of exactly 3072 or 4096 bits; make a new RSA 3072/4096 or EC key",
        ),
        KeyKind::Rsa { .. } => {
            refused("NetSuite refuses RSA keys below 3072 bits; make a new RSA 3072/4096 or EC key")
        }
        KeyKind::EcOther(_) | KeyKind::Other(_) => refused(RULE_KEYS),
    }
}

/// The algorithm used when the user names none: by curve for EC, PS256 for RSA.
pub fn default_alg(key: &KeyKind) -> Result<Alg, AlgError> {
    check_key(key)?;
    let alg = match key {
        KeyKind::Ec(Curve::P256) => Alg::ES256,
        KeyKind::Ec(Curve::P384) => Alg::ES384,
        KeyKind::Ec(Curve::P521) => Alg::ES512,
        _ => Alg::PS256,
    };
    Ok(alg)
}

/// Refuses a key `alg` cannot sign with, citing NetSuite's rule.
pub fn check_alg(alg: Alg, key: &KeyKind) -> Result<(), AlgError> {
    check_key(key)?;
    if alg.fits(key) {
        return Ok(());
    }
    let needs = match alg.scheme() {
        Scheme::Ecdsa(curve) => format!("an EC {} key", curve.name()),
        Scheme::Pss => "an RSA key of 3072 or 4096 bits".to_owned(),
    };
    let hint = match default_alg(key) {
        Ok(alg) => format!("use --alg {alg} for this key, or {needs}"),
        Err(e) => e.to_string(),
    };
    Err(AlgError::Mismatch {
        alg,
        needs,
        key: key.clone(),
        hint,
    })
}

/// The algorithms a key can sign, by NetSuite's rules (empty when NetSuite refuses the key).
pub fn usable_algs(key: &KeyKind) -> Vec<Alg> {
    Alg::ALL
        .into_iter()
        .filter(|a| check_alg(*a, key).is_ok())
        .collect()
}
