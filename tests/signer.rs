//! The signing library used in-process, as the agent will: one key opened once, many
//! signatures, each verified independently. Also exercises adopting a module this process has
//! already initialized (the fixture did, to read public keys).

mod common;

use std::time::SystemTime;

use common::{decode_jws, fixture, verify};
use suitekey::jose::{Alg, Signer as _};
use suitekey::netsuite::{AccountId, AssertionRequest, Scopes};
use suitekey::pkcs11::{Key, Pkcs11Uri};

fn request() -> AssertionRequest {
    AssertionRequest {
        client_id: "abc123".parse().unwrap(),
        certificate_id: "kid-1".parse().unwrap(),
        token_url: "1234567".parse::<AccountId>().unwrap().token_url().unwrap(),
        scopes: Scopes::default(),
        lifetime: Default::default(),
    }
}

/// Opens the fixture key `object` for `alg` and checks three signatures in a row verify.
fn signs_repeatedly(object: &str, id: u8, alg: Alg) {
    let f = fixture();
    let uri: Pkcs11Uri = f.uri(object).parse().expect("fixture URI");
    let signer = Key::open(&uri, None)
        .and_then(|k| k.signer(alg))
        .unwrap_or_else(|e| panic!("{object}: {e}"));
    assert_eq!(signer.alg(), alg);
    for round in 0..3 {
        let assertion = request()
            .sign(&signer, SystemTime::now())
            .unwrap_or_else(|e| panic!("{object} round {round}: {e}"));
        verify(&decode_jws(&assertion.jws), &f.public_key(id))
            .unwrap_or_else(|e| panic!("{object} round {round}: {e}"));
    }
}

#[test]
fn an_always_authenticate_ec_key_signs_every_time_through_single_part_c_sign() {
    // SoftHSM2 has only CKM_ECDSA: SignInit, context login, then C_Sign via the function list.
    signs_repeatedly("p256-always-auth", 0x07, Alg::ES256);
}

#[test]
fn an_always_authenticate_rsa_key_signs_every_time_through_multi_part_signing() {
    // SoftHSM2 offers CKM_SHA384_RSA_PKCS_PSS: SignInit, context login, SignUpdate, SignFinal.
    signs_repeatedly("rsa3072-always-auth", 0x0a, Alg::PS384);
}

#[test]
fn an_ordinary_key_signs_repeatedly_on_one_session() {
    signs_repeatedly("p521", 0x03, Alg::ES512);
}

#[test]
fn a_signer_for_the_wrong_key_type_is_refused_by_the_token_layer() {
    let f = fixture();
    let uri: Pkcs11Uri = f.uri("p256").parse().unwrap();
    let err = Key::open(&uri, None)
        .and_then(|k| k.signer(Alg::PS256))
        .err()
        .expect("refused");
    assert!(err.to_string().contains("cannot sign PS256"), "{err}");
}

#[test]
fn the_signer_reports_the_public_key_the_token_holds() {
    let f = fixture();
    for (object, id, alg) in [
        ("p256", 0x01, Alg::ES256),
        ("p521", 0x03, Alg::ES512),
        ("rsa4096", 0x05, Alg::PS256),
    ] {
        let uri: Pkcs11Uri = f.uri(object).parse().unwrap();
        let signer = Key::open(&uri, None)
            .and_then(|k| k.signer(alg))
            .expect("signer");
        let got = signer.public_key().expect("public key");
        match (got, f.public_key(id)) {
            (
                suitekey::jose::PublicKey::Ec { point, .. },
                common::PublicKey::Ec { point: want, .. },
            ) => assert_eq!(point, want, "{object}"),
            (
                suitekey::jose::PublicKey::Rsa { modulus, exponent },
                common::PublicKey::Rsa { n, e },
            ) => {
                assert_eq!((modulus, exponent), (n, e), "{object}")
            }
            (got, want) => panic!("{object}: {got:?} vs {want:?}"),
        }
    }
}

#[test]
fn two_public_keys_with_the_key_id_are_refused_not_guessed() {
    let f = fixture();
    let uri: Pkcs11Uri = f.uri("stale-public").parse().unwrap();
    let signer = Key::open(&uri, None)
        .and_then(|k| k.signer(Alg::ES256))
        .expect("signer");
    let err = signer.public_key().expect_err("ambiguous public key");
    assert!(
        err.to_string()
            .contains("2 public key objects share its id"),
        "{err}"
    );
}
