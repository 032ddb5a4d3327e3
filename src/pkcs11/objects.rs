//! Objects in a token and their attributes: finding them, reading what identifies a key (label,
//! id, type, size, curve) and its public half, and the inventory `list` shows.

use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use der::Decode as _;
use der::asn1::ObjectIdentifier;

use super::Error;
use super::module::Module;
use super::token::Token;
use super::uri::Pkcs11Uri;
use crate::jose::{self, Curve, KeyKind, PublicKey};

/// A key as `list` shows it: no secrets, just what identifies it and what it can do.
#[derive(Clone, Debug)]
pub struct KeySummary {
    /// `CKA_LABEL` of the private half (of the public half when only it is visible), if it
    /// is UTF-8 text.
    pub label: Option<String>,
    /// `CKA_LABEL` of the public half, when it differs from the private half's (PIV modules
    /// label the two halves differently).
    pub public_label: Option<String>,
    /// `CKA_ID` bytes.
    pub id: Vec<u8>,
    /// Type and size.
    pub kind: KeyKind,
    /// The private half is visible (else only the public half was seen, e.g. before login).
    pub private_visible: bool,
    /// `CKA_ALWAYS_AUTHENTICATE`: a PIN is needed for every signature.
    pub always_authenticate: bool,
}

impl KeySummary {
    /// Whether the object of `attrs` is the other half of this key: the same `CKA_ID` (PIV
    /// modules label the two halves differently, e.g. ykcs11's "Private key for PIV
    /// Authentication" and "Public key for PIV Authentication"), or for keys without an id the
    /// same label. A second public object like one already listed is counted once, too.
    fn pairs_with(&self, attrs: &Attrs) -> bool {
        if self.id.is_empty() || !self.private_visible {
            self.id == attrs.id && self.label == attrs.label
        } else {
            self.id == attrs.id
        }
    }
}

/// A certificate object as `list` shows it.
#[derive(Clone, Debug)]
pub struct CertSummary {
    /// `CKA_LABEL`, if it is UTF-8 text.
    pub label: Option<String>,
    /// `CKA_ID` bytes.
    pub id: Vec<u8>,
    /// `CKA_VALUE`: the certificate's DER (public), when the module returns it.
    pub value: Option<Vec<u8>>,
}

/// Lists the keys and certificates visible in the token (all of them after a login).
pub fn inventory(
    token: &Token,
    uri: &Pkcs11Uri,
    login: bool,
) -> Result<(Vec<KeySummary>, Vec<CertSummary>), Error> {
    let session = token.open()?;
    if login {
        token.login(&session, uri)?;
    }
    let module = token.module();
    let mut keys: Vec<KeySummary> = Vec::new();
    for (class, private_visible) in [
        (ObjectClass::PRIVATE_KEY, true),
        (ObjectClass::PUBLIC_KEY, false),
    ] {
        for handle in find(&session, module, &[Attribute::Class(class)])? {
            let attrs = Attrs::read(&session, module, handle)?;
            if !private_visible && let Some(pair) = keys.iter_mut().find(|k| k.pairs_with(&attrs)) {
                if pair.private_visible && pair.label != attrs.label {
                    pair.public_label = pair.public_label.take().or(attrs.label);
                }
                continue; // the public half of a key already listed
            }
            keys.push(KeySummary {
                kind: attrs.kind(),
                label: attrs.label,
                public_label: None,
                id: attrs.id,
                private_visible,
                always_authenticate: attrs.always_authenticate,
            });
        }
    }
    let mut certs = Vec::new();
    for handle in find(
        &session,
        module,
        &[Attribute::Class(ObjectClass::CERTIFICATE)],
    )? {
        let attrs = Attrs::read(&session, module, handle)?;
        let value = value(&session, module, handle)?;
        certs.push(CertSummary {
            label: attrs.label,
            id: attrs.id,
            value,
        });
    }
    Ok((keys, certs))
}

/// The objects `template` matches.
pub(super) fn find(
    session: &Session,
    module: &Module,
    template: &[Attribute],
) -> Result<Vec<ObjectHandle>, Error> {
    session
        .find_objects(template)
        .map_err(|e| module.call_err("C_FindObjects", &e))
}

/// The `CKA_VALUE` of `handle` (public data only: a certificate's DER), if the module returns it.
pub(super) fn value(
    session: &Session,
    module: &Module,
    handle: ObjectHandle,
) -> Result<Option<Vec<u8>>, Error> {
    let attrs = session
        .get_attributes(handle, &[AttributeType::Value])
        .map_err(|e| module.call_err("C_GetAttributeValue", &e))?;
    Ok(attrs.into_iter().find_map(|a| match a {
        Attribute::Value(v) => Some(v),
        _ => None,
    }))
}

/// The attributes of a key or certificate object that suitekey reads. Never `CKA_VALUE` or any
/// other private component: only what identifies the object and its public size.
#[derive(Default)]
pub(super) struct Attrs {
    /// `CKA_LABEL`, if it is UTF-8 text.
    pub(super) label: Option<String>,
    /// `CKA_ID`.
    pub(super) id: Vec<u8>,
    key_type: Option<KeyType>,
    ec_params: Option<Vec<u8>>,
    modulus: Option<Vec<u8>>,
    modulus_bits: Option<u64>,
    /// `CKA_ALWAYS_AUTHENTICATE`: a context-specific login before every signature.
    pub(super) always_authenticate: bool,
    /// `CKA_SIGN`, when the module says.
    pub(super) sign: Option<bool>,
}

impl Attrs {
    const WANTED: [AttributeType; 8] = [
        AttributeType::Label,
        AttributeType::Id,
        AttributeType::KeyType,
        AttributeType::EcParams,
        AttributeType::Modulus,
        AttributeType::ModulusBits,
        AttributeType::AlwaysAuthenticate,
        AttributeType::Sign,
    ];

    /// The attributes of `handle` that suitekey reads.
    pub(super) fn read(
        session: &Session,
        module: &Module,
        handle: ObjectHandle,
    ) -> Result<Attrs, Error> {
        let got = session
            .get_attributes(handle, &Self::WANTED)
            .map_err(|e| module.call_err("C_GetAttributeValue", &e))?;
        let mut attrs = Attrs::default();
        // Modules silently leave out attributes an object does not have: match by type.
        for attr in got {
            match attr {
                Attribute::Label(l) => attrs.label = String::from_utf8(l).ok(),
                Attribute::Id(id) => attrs.id = id,
                Attribute::KeyType(t) => attrs.key_type = Some(t),
                Attribute::EcParams(p) => attrs.ec_params = Some(p),
                Attribute::Modulus(m) => attrs.modulus = Some(m),
                Attribute::ModulusBits(b) => attrs.modulus_bits = Some(b.into()),
                Attribute::AlwaysAuthenticate(a) => attrs.always_authenticate = a,
                Attribute::Sign(s) => attrs.sign = Some(s),
                _ => {}
            }
        }
        Ok(attrs)
    }

    /// `object=…;id=…` as in a key URI (percent-encoded, so any byte is shown safely).
    fn uri_attributes(&self) -> String {
        let uri = Pkcs11Uri {
            object: self.label.clone(),
            id: (!self.id.is_empty()).then(|| self.id.clone()),
            ..Pkcs11Uri::default()
        };
        let text = uri.to_string();
        match text.strip_prefix("pkcs11:") {
            Some("") | None => "a key with neither label nor id".to_owned(),
            Some(attributes) => attributes.to_owned(),
        }
    }

    /// The key's type and size.
    pub(super) fn kind(&self) -> KeyKind {
        match self.key_type {
            Some(KeyType::EC) => ec_kind(self.ec_params.as_deref()),
            Some(KeyType::RSA) => match (self.modulus_bits, &self.modulus) {
                (Some(bits), _) => KeyKind::Rsa {
                    bits: bits as usize,
                },
                (None, Some(m)) => KeyKind::Rsa { bits: bit_len(m) },
                (None, None) => KeyKind::Other("RSA of unknown size".into()),
            },
            Some(other) => KeyKind::Other(format!("{other}")),
            None => KeyKind::Other("unknown key type".into()),
        }
    }
}

/// The curve `CKA_EC_PARAMS` names: a named curve's OID, or explicit domain parameters of a
/// curve suitekey knows (some modules give those, e.g. ykcs11 per its documentation).
fn ec_kind(params: Option<&[u8]>) -> KeyKind {
    let Some(params) = params else {
        return KeyKind::EcOther("of unknown curve".into());
    };
    match ObjectIdentifier::from_der(params) {
        Ok(oid) => Curve::from_oid(&oid)
            .map_or_else(|| KeyKind::EcOther(jose::curve_name(&oid)), KeyKind::Ec),
        Err(_) => match explicit_curve(params) {
            Some(curve) => KeyKind::Ec(curve),
            None => KeyKind::EcOther(
                "with explicit parameters of an unknown curve, or unreadable ones".into(),
            ),
        },
    }
}

/// Explicit EC domain parameters (SEC 1 §C.2 `SpecifiedECDomain`; RFC 3279 `ECParameters`).
#[derive(der::Sequence)]
struct SpecifiedEcDomain {
    version: u8,
    field_id: PrimeField,
    curve: Coefficients,
    base: der::asn1::OctetString,
    order: der::asn1::Uint,
    cofactor: Option<der::asn1::Uint>,
}

/// `FieldID` of a prime field: `prime-field` and the prime.
#[derive(der::Sequence)]
struct PrimeField {
    field_type: ObjectIdentifier,
    prime: der::asn1::Uint,
}

/// The curve's coefficients `a` and `b` (and the seed it was made from).
#[derive(der::Sequence)]
struct Coefficients {
    a: der::asn1::OctetString,
    b: der::asn1::OctetString,
    seed: Option<der::asn1::BitString>,
}

/// `prime-field` (ANSI X9.62).
const PRIME_FIELD: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.1.1");

/// A curve's parameters in lowercase hex without leading zeros: prime, a, b, the base point's x
/// coordinate, order (SEC 2 §2.4.2 and §2.5.1; FIPS 186-4 D.1.2.3, D.1.2.4).
struct KnownCurve {
    curve: Curve,
    prime: &'static str,
    a: &'static str,
    b: &'static str,
    base_x: &'static str,
    order: &'static str,
}

const KNOWN_CURVES: [KnownCurve; 2] = [
    KnownCurve {
        curve: Curve::P256,
        prime: "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff",
        a: "ffffffff00000001000000000000000000000000fffffffffffffffffffffffc",
        b: "5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b",
        base_x: "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296",
        order: "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551",
    },
    KnownCurve {
        curve: Curve::P384,
        prime: "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff",
        a: "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000fffffffc",
        b: "b3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aef",
        base_x: "aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25dbf55296c3a545e3872760ab7",
        order: "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973",
    },
];

/// The curve whose explicit domain parameters `params` (DER) are: every parameter must match
/// (the seed, which only says how the curve was made, is not compared).
fn explicit_curve(params: &[u8]) -> Option<Curve> {
    let domain = SpecifiedEcDomain::from_der(params).ok()?;
    if domain.field_id.field_type != PRIME_FIELD
        || domain.cofactor.is_some_and(|h| h.as_bytes() != [1])
    {
        return None;
    }
    let trimmed = |bytes: &[u8]| hex(&bytes[bytes.iter().take_while(|b| **b == 0).count()..]);
    // The base point, uncompressed (04 x y) or compressed (02/03 x): its x coordinate.
    let base = domain.base.as_bytes();
    let x = match base.split_first() {
        Some((0x04, xy)) if xy.len() % 2 == 0 => &xy[..xy.len() / 2],
        Some((0x02 | 0x03, x)) => x,
        _ => return None,
    };
    let wanted = [
        trimmed(domain.field_id.prime.as_bytes()),
        trimmed(domain.curve.a.as_bytes()),
        trimmed(domain.curve.b.as_bytes()),
        trimmed(x),
        trimmed(domain.order.as_bytes()),
    ];
    KNOWN_CURVES
        .iter()
        .find(|k| wanted == [k.prime, k.a, k.b, k.base_x, k.order])
        .map(|k| k.curve)
}

fn bit_len(be: &[u8]) -> usize {
    let trimmed: &[u8] = match be.iter().position(|b| *b != 0) {
        Some(i) => &be[i..],
        None => &[],
    };
    trimmed.first().map_or(0, |first| {
        trimmed.len() * 8 - first.leading_zeros() as usize
    })
}

/// How many keys a "key not found" error lists.
const KEYS_LISTED: usize = 20;

/// The key `key` is not in `token`: the error lists the private keys `session` sees there
/// (label and id as URI attributes, and type; never a secret).
pub(super) fn key_not_found(token: &Token, session: &Session, key: String) -> Error {
    let module = token.module();
    let template = [Attribute::Class(ObjectClass::PRIVATE_KEY)];
    let present = match find(session, module, &template) {
        Ok(handles) if handles.is_empty() => "no private key that this login can see".to_owned(),
        Ok(handles) => {
            let mut shown: Vec<String> = handles
                .iter()
                .take(KEYS_LISTED)
                .map(|h| match Attrs::read(session, module, *h) {
                    Ok(attrs) => format!("{} ({})", attrs.uri_attributes(), attrs.kind()),
                    Err(e) => format!("a key whose attributes cannot be read ({e})"),
                })
                .collect();
            if handles.len() > KEYS_LISTED {
                shown.push(format!("{} more", handles.len() - KEYS_LISTED));
            }
            shown.join(", ")
        }
        Err(e) => format!("keys that cannot be listed ({e})"),
    };
    Error::KeyNotFound {
        key,
        token: token.label().to_owned(),
        present,
        module: module.shown_path(),
    }
}

/// The public key in `attrs` (from `C_GetAttributeValue`), `None` if they do not hold it.
pub(super) fn public_key_from(
    kind: &KeyKind,
    attrs: Vec<Attribute>,
) -> Result<Option<PublicKey>, String> {
    let (mut point, mut modulus, mut exponent) = (None, None, None);
    for attr in attrs {
        match attr {
            Attribute::EcPoint(p) => point = Some(p),
            Attribute::Modulus(m) => modulus = Some(m),
            Attribute::PublicExponent(e) => exponent = Some(e),
            _ => {}
        }
    }
    match (kind, point, modulus, exponent) {
        (KeyKind::Ec(curve), Some(p), _, _) => ec_point(*curve, &p).map(|point| {
            Some(PublicKey::Ec {
                curve: *curve,
                point,
            })
        }),
        (KeyKind::Rsa { .. }, _, Some(modulus), Some(exponent)) => {
            Ok(Some(PublicKey::Rsa { modulus, exponent }))
        }
        _ => Ok(None),
    }
}

/// `CKA_EC_POINT` as an uncompressed point. Modules store it raw or wrapped in a DER OCTET
/// STRING; both start with 0x04, so the length decides, not the first byte.
fn ec_point(curve: Curve, raw: &[u8]) -> Result<Vec<u8>, String> {
    let len = 1 + 2 * curve.field_len();
    if raw.len() == len && raw.first() == Some(&0x04) {
        return Ok(raw.to_vec());
    }
    match der::asn1::OctetString::from_der(raw) {
        Ok(o) if o.as_bytes().len() == len && o.as_bytes().first() == Some(&0x04) => {
            Ok(o.as_bytes().to_vec())
        }
        _ => Err(format!(
            "its CKA_EC_POINT ({} bytes) is not an uncompressed {} point, raw or DER-wrapped",
            raw.len(),
            curve.name()
        )),
    }
}

/// Lowercase hex, for key ids in messages and listings.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl ecparam -name prime256v1 -param_enc explicit -outform DER` (OpenSSL 3.0).
    const EXPLICIT_P256: &str = "3081f7020101302c06072a8648ce3d0101022100ffffffff00000001000000000000000000000000ffffffffffffffffffffffff305b0420ffffffff00000001000000000000000000000000fffffffffffffffffffffffc04205ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b031500c49d360886e704936a6678e1139d26b7819f7e900441046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c2964fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5022100ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551020101";
    /// `openssl ecparam -name secp384r1 -param_enc explicit -outform DER` (OpenSSL 3.0).
    const EXPLICIT_P384: &str = "30820157020101303c06072a8648ce3d0101023100fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff307b0430fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000fffffffc0430b3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aef031500a335926aa319a27a1d00896a6773a4827acdac73046104aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25dbf55296c3a545e3872760ab73617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c00a60b1ce1d7e819d7a431d7c90ea0e5f023100ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973020101";
    /// The same P-256 parameters with `-conv_form compressed -no_seed`: a compressed base point
    /// and no seed.
    const EXPLICIT_P256_COMPRESSED: &str = "3081c0020101302c06072a8648ce3d0101022100ffffffff00000001000000000000000000000000ffffffffffffffffffffffff30440420ffffffff00000001000000000000000000000000fffffffffffffffffffffffc04205ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b0421036b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296022100ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551020101";

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn explicit_p256_and_p384_parameters_are_recognised() {
        assert_eq!(
            ec_kind(Some(&unhex(EXPLICIT_P256))),
            KeyKind::Ec(Curve::P256)
        );
        assert_eq!(
            ec_kind(Some(&unhex(EXPLICIT_P256_COMPRESSED))),
            KeyKind::Ec(Curve::P256)
        );
        assert_eq!(
            ec_kind(Some(&unhex(EXPLICIT_P384))),
            KeyKind::Ec(Curve::P384)
        );
    }

    #[test]
    fn explicit_parameters_that_differ_in_anything_but_the_seed_are_no_known_curve() {
        let p256 = unhex(EXPLICIT_P256);
        // One bit flipped in the prime, in b, in the base point's x, in the order.
        for at in [20, 120, 160, 240] {
            let mut changed = p256.clone();
            changed[at] ^= 0x01;
            assert!(
                matches!(ec_kind(Some(&changed)), KeyKind::EcOther(_)),
                "byte {at}"
            );
        }
        // The P-384 prime with the P-256 rest is no curve either.
        assert!(explicit_curve(&unhex(EXPLICIT_P384)[..100]).is_none());
        assert!(matches!(
            ec_kind(Some(&[0x30, 0x03, 0x02, 0x01, 0x01])),
            KeyKind::EcOther(_)
        ));
    }

    #[test]
    fn curves_are_read_from_ec_params_and_unknown_ones_named() {
        let p256 = der::Encode::to_der(&Curve::P256.oid()).unwrap();
        assert_eq!(ec_kind(Some(&p256)), KeyKind::Ec(Curve::P256));
        let p224 = der::Encode::to_der(&ObjectIdentifier::new_unwrap("1.3.132.0.33")).unwrap();
        assert_eq!(ec_kind(Some(&p224)), KeyKind::EcOther("P-224".into()));
        assert!(matches!(ec_kind(Some(&[0x30, 0x00])), KeyKind::EcOther(_)));
    }

    #[test]
    fn ec_points_are_decoded_by_length_raw_or_der_wrapped() {
        let raw: Vec<u8> = std::iter::once(0x04).chain(1..=64).collect();
        assert_eq!(ec_point(Curve::P256, &raw).unwrap(), raw);
        let wrapped =
            der::Encode::to_der(&der::asn1::OctetString::new(raw.clone()).unwrap()).unwrap();
        assert_eq!(wrapped[0], 0x04, "DER OCTET STRING tag is 0x04 too");
        assert_eq!(ec_point(Curve::P256, &wrapped).unwrap(), raw);
        assert!(ec_point(Curve::P384, &raw).is_err());
        // tpm2-pkcs11's broken P-521 point (04 85 …) is refused, not misread.
        assert!(ec_point(Curve::P521, &[0x04, 0x85, 0x01]).is_err());
    }

    #[test]
    fn modulus_bits_ignore_leading_zero_bytes() {
        assert_eq!(bit_len(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(bit_len(&[0x01, 0x00]), 9);
        assert_eq!(bit_len(&[0x00]), 0);
    }
}
