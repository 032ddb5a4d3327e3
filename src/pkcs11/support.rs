//! What a token can do for each NetSuite algorithm: make the key and sign with it. Judged from
//! the mechanisms the module offers (and the key sizes it states), plus one small table of
//! limits that modules do not state: key kinds they advertise but mishandle.

use cryptoki::mechanism::MechanismType;

use super::Error;
use super::key::{Plan, mechanisms, plan_for};
use super::keygen::KeySpec;
use super::module::Module;
use super::token::Token;
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
    let instead = if (min..=max).contains(&MIN_RSA_BITS) {
        format!("use --rsa-bits {MIN_RSA_BITS} (the default) or another token")
    } else {
        format!("use another token, or {PICK_ANOTHER}")
    };
    Ok(Some(format!(
        "its module ({}) makes RSA keys of {min} to {max} bits only; {instead}",
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
    if let Scheme::Ecdsa(curve) = alg.scheme()
        && let Some(limit) = curve_limit(token, curve, plan.mechanism_type())?
    {
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

#[cfg(test)]
mod tests {
    use super::*;

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
