use super::*;
use crate::kind::{HasKind, Kind};

#[test]
fn table_rows_match_their_variants() {
    for alg in Alg::ALL {
        assert_eq!(alg.name(), format!("{alg:?}"));
        assert_eq!(alg.name().parse::<Alg>(), Ok(alg));
    }
}

#[test]
fn ecdsa_der_and_raw_convert_both_ways() {
    // r has a leading zero byte to strip and s a high bit that DER must pad.
    let mut raw = vec![0u8; 64];
    raw[1] = 0x12;
    raw[31] = 0x34;
    raw[32] = 0x80;
    raw[63] = 0x01;
    let der = ecdsa_raw_to_der(&raw).unwrap();
    assert_eq!(der[0], 0x30);
    assert_eq!(ecdsa_to_raw(&der, Curve::P256).unwrap(), raw);
    assert_eq!(ecdsa_to_raw(&raw, Curve::P256).unwrap(), raw);
    assert!(ecdsa_to_raw(&raw[..63], Curve::P256).is_err());
    // A P-521 signature in DER whose integers are 66 bytes long.
    let raw521: Vec<u8> = (0..132)
        .map(|i| if i % 66 == 0 { 1 } else { i as u8 })
        .collect();
    let der = ecdsa_raw_to_der(&raw521).unwrap();
    assert_eq!(ecdsa_to_raw(&der, Curve::P521).unwrap(), raw521);
}

/// A signer's failure in tests.
#[derive(Debug, thiserror::Error)]
#[error("no key")]
struct NoKey;

impl HasKind for NoKey {
    fn kind(&self) -> Kind {
        Kind::Token
    }
}

struct Fixed(Vec<u8>, Alg);
impl Signer for Fixed {
    type Error = NoKey;
    fn alg(&self) -> Alg {
        self.1
    }
    fn public_key(&self) -> Result<PublicKey, Self::Error> {
        Err(NoKey)
    }
    fn sign(&self, _: &[u8]) -> Result<Vec<u8>, Self::Error> {
        Ok(self.0.clone())
    }
}

#[test]
fn compact_jws_has_three_base64url_parts_and_checks_signature_length() {
    let jws = compact_jws(
        &serde_json::json!({"a": 1}),
        &serde_json::json!({"b": "?"}),
        &Fixed(vec![0xfb; 64], Alg::ES256),
    )
    .unwrap();
    let parts: Vec<&str> = jws.split('.').collect();
    assert_eq!(parts, ["eyJhIjoxfQ", "eyJiIjoiPyJ9", &b64url(&[0xfb; 64])]);
    let err = compact_jws(&1, &2, &Fixed(vec![1; 63], Alg::ES256)).unwrap_err();
    assert!(err.to_string().contains("63 bytes, expected 64"));
}
