//! What a token can do for each NetSuite algorithm: make the key and sign with it. Judged from
//! the mechanisms the module offers (and the key sizes it states), plus one small table of
//! limits that modules do not state: key kinds they advertise but mishandle.

use cryptoki::mechanism::MechanismType;

use super::Error;
use super::key::{Plan, mechanisms, plan_for};
use super::keygen::KeySpec;
use super::token::{Module, Token};
use crate::jose::{Alg, Curve, MIN_RSA_BITS, Scheme};

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

/// The known limit of `module` for `curve`, as a sentence naming the module, if it has one.
pub(crate) fn known_limit(module: &Module, curve: Curve) -> Result<Option<String>, Error> {
    let (manufacturer, description) = module.library()?;
    Ok(KNOWN_LIMITS
        .iter()
        .find(|l| {
            l.curve == curve && l.manufacturer == manufacturer && l.description == description
        })
        .map(|l| format!("{} ({}) {}", l.module, module.path().display(), l.limit)))
}

/// Whether the token can make `spec` keys: `Ok(what it uses)` or `Err(why not)`, naming the
/// module's limit. The outer error is a PKCS#11 call that failed.
pub(crate) fn keygen_support(
    token: &Token,
    spec: KeySpec,
    offered: &[MechanismType],
) -> Result<Result<String, String>, Error> {
    let module = token.module();
    if let KeySpec::Ec(curve) = spec
        && let Some(limit) = known_limit(module, curve)?
    {
        return Ok(Err(limit));
    }
    let mech = spec.mechanism().mechanism_type();
    if !offered.contains(&mech) {
        return Ok(Err(format!(
            "its module ({}) does not offer {mech}",
            module.description()?
        )));
    }
    Ok(match spec {
        KeySpec::Ec(curve) => Ok(format!("{mech} {}", curve.name())),
        KeySpec::Rsa { bits } => {
            let (min, max) = token.key_sizes(mech)?;
            if max == 0 || (min..=max).contains(&(bits as usize)) {
                Ok(format!("{mech} RSA {bits}"))
            } else {
                Err(format!(
                    "its module ({}) makes RSA keys of {min} to {max} bits only",
                    module.description()?
                ))
            }
        }
    })
}

/// Whether the token can sign `alg`: `Ok(how)` or `Err(why not)`.
pub(crate) fn sign_support(
    token: &Token,
    alg: Alg,
    offered: &[MechanismType],
) -> Result<Result<String, String>, Error> {
    if let Scheme::Ecdsa(curve) = alg.scheme()
        && let Some(limit) = known_limit(token.module(), curve)?
    {
        return Ok(Err(limit));
    }
    Ok(match plan_for(alg, offered) {
        Some(Plan::HashAndSign(m)) => Ok(m.mechanism_type().to_string()),
        Some(Plan::SignDigest(m)) => Ok(format!(
            "{} over a {} digest",
            m.mechanism_type(),
            alg.hash().name()
        )),
        None => {
            let (combined, raw) = mechanisms(alg);
            Err(format!(
                "its module ({}) offers neither {} nor {}",
                token.module().description()?,
                combined.mechanism_type(),
                raw.mechanism_type()
            ))
        }
    })
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
                    bits: MIN_RSA_BITS as u32,
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
