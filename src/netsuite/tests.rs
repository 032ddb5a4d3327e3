use std::time::{SystemTime, UNIX_EPOCH};

use super::*;
use crate::jose::{Alg, Curve, KeyKind, Signer};
use crate::kind::{HasKind, Kind};

#[test]
fn account_maps_to_host_and_token_url() {
    let acct: AccountId = "1234567_SB1".parse().unwrap();
    assert_eq!(acct.host_label(), "1234567-sb1");
    assert_eq!(
        acct.token_url().unwrap().as_str(),
        "https://1234567-sb1.suitetalk.api.netsuite.com/services/rest/auth/oauth2/v1/token"
    );
}

#[test]
fn bad_account_ids_are_refused_before_they_reach_a_host_name() {
    for bad in [
        "",
        "xn--zz",
        "XN--ZZ",
        "ab__cd",
        "_",
        "-",
        "1234567_",
        "_SB1",
        "1234567.evil.com",
        "123 4567",
        "acct/../x",
        "ünï",
        &"9".repeat(65),
    ] {
        let err = bad.parse::<AccountId>().unwrap_err();
        assert!(err.to_string().contains("letters, digits"), "{bad}: {err}");
    }
}

#[test]
fn scopes_parse_dedupe_and_serialize_as_an_array() {
    let s: Scopes = "restlets, rest_webservices,restlets".parse().unwrap();
    assert_eq!(
        serde_json::to_string(&s).unwrap(),
        r#"["restlets","rest_webservices"]"#
    );
    assert_eq!(
        "suite_analytics+restlets"
            .parse::<Scopes>()
            .unwrap()
            .to_string(),
        "suite_analytics,restlets"
    );
    assert_eq!(
        "restlet".parse::<Scopes>(),
        Err(Error::Scope("restlet".into()))
    );
    assert_eq!(" , ".parse::<Scopes>(), Err(Error::NoScope));
}

#[test]
fn lifetime_is_bounded_by_netsuites_hour() {
    assert_eq!("3600".parse::<Lifetime>().unwrap().secs(), 3600);
    for bad in ["0", "3601", "-1", "5m", "", "+300", " 300"] {
        assert!(
            bad.parse::<Lifetime>()
                .unwrap_err()
                .to_string()
                .contains("3600"),
            "{bad}"
        );
    }
}

#[test]
fn a_token_url_must_be_on_one_of_the_accounts_hosts_or_loopback() {
    let account: AccountId = "1234567_SB1".parse().unwrap();
    for ok in [
        "https://1234567-sb1.suitetalk.api.netsuite.com/services/rest/auth/oauth2/v1/token",
        "https://1234567-SB1.restlets.api.netsuite.com/services/rest/auth/oauth2/v1/token",
        "https://1234567-sb1.connect.api.netsuite.com:443/x",
        "http://127.0.0.1:8080/t",
        "https://[::1]/t",
        "http://localhost/t",
    ] {
        let url: TokenUrl = ok.parse().unwrap();
        assert_eq!(account.check_token_url(&url), Ok(()), "{ok}");
    }
    for bad in [
        "https://evil.example/token",
        "https://1234567.suitetalk.api.netsuite.com/t",
        "https://1234567-sb1.suitetalk.api.netsuite.com.evil.example/t",
        "https://evil.example/1234567-sb1.suitetalk.api.netsuite.com",
        "https://x.1234567-sb1.suitetalk.api.netsuite.com/t",
        "https://1234567-sb1.rest.api.netsuite.com/t",
        "https://1234567-sb1.suitetalk.api.netsuite.com./t",
        "https://10.0.0.1/t",
    ] {
        let url: TokenUrl = bad.parse().unwrap();
        let err = account.check_token_url(&url).unwrap_err().to_string();
        for want in [
            "1234567_SB1",
            "1234567-sb1.suitetalk.api.netsuite.com",
            "pass --token-url to override",
            url.url().host_str().unwrap(),
        ] {
            assert!(err.contains(want), "{bad}: {want} missing from {err}");
        }
    }
}

#[test]
fn token_urls_need_https_except_on_loopback() {
    assert!("https://example.com/token".parse::<TokenUrl>().is_ok());
    // aud must be exactly what the user gave, not the parser's normal form.
    assert_eq!(
        "https://Example.com".parse::<TokenUrl>().unwrap().as_str(),
        "https://Example.com"
    );
    for ok in [
        "http://127.0.0.1:8080/t",
        "http://localhost/t",
        "http://[::1]:9/t",
    ] {
        assert!(ok.parse::<TokenUrl>().is_ok(), "{ok}");
    }
    let err = "http://10.0.0.1/token".parse::<TokenUrl>().unwrap_err();
    assert!(matches!(err, Error::InsecureTokenUrl(_)), "{err}");
    assert!("ftp://x/y".parse::<TokenUrl>().is_err());
    let err = "https://user:S3CRET@x/y"
        .parse::<TokenUrl>()
        .unwrap_err()
        .to_string();
    assert!(
        !err.contains("S3CRET") && err.contains("credentials"),
        "{err}"
    );
    let err = "http://u:S3CRET@10.0.0.1/y"
        .parse::<TokenUrl>()
        .unwrap_err()
        .to_string();
    assert!(!err.contains("S3CRET"), "{err}");
    for spaced in [
        " https://x.example/t",
        "https://x.exa\nmple/t",
        "https://x.example/t\t",
    ] {
        assert!(
            spaced
                .parse::<TokenUrl>()
                .unwrap_err()
                .to_string()
                .contains("spaces"),
            "{spaced:?}"
        );
    }
    assert!("not a url".parse::<TokenUrl>().is_err());
}

#[test]
fn identifiers_refuse_empty_and_odd_characters() {
    assert!("1c34ab".parse::<ClientId>().is_ok());
    assert!("".parse::<ClientId>().is_err());
    assert!("ab cd".parse::<ClientId>().is_err());
    assert!("NPMnRyPg-x_Y".parse::<CertificateId>().is_ok());
    assert!("a\"b".parse::<CertificateId>().is_err());
}

#[derive(Debug, thiserror::Error)]
#[error("no key")]
struct NoKey;

impl HasKind for NoKey {
    fn kind(&self) -> Kind {
        Kind::Token
    }
}

struct Zeros;
impl Signer for Zeros {
    type Error = NoKey;
    fn alg(&self) -> Alg {
        Alg::ES256
    }
    fn public_key(&self) -> Result<crate::jose::PublicKey, Self::Error> {
        Err(NoKey)
    }
    fn sign(&self, _: &[u8]) -> Result<Vec<u8>, Self::Error> {
        Ok(vec![0; 64])
    }
}

fn request_to(token_url: TokenUrl) -> AssertionRequest {
    AssertionRequest {
        client_id: "c1".parse().unwrap(),
        certificate_id: "kid-1".parse().unwrap(),
        token_url,
        scopes: Scopes::default(),
        lifetime: "600".parse().unwrap(),
    }
}

/// The decoded header and claims of a compact JWS.
fn decoded(jws: &str) -> (Vec<u8>, serde_json::Value) {
    use base64::Engine as _;
    let parts: Vec<&str> = jws.split('.').collect();
    let dec = |p: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .unwrap()
    };
    (
        dec(parts[0]),
        serde_json::from_slice(&dec(parts[1])).unwrap(),
    )
}

#[test]
fn assertion_carries_exactly_the_claims_netsuite_expects() {
    let account: AccountId = "1234567".parse().unwrap();
    let req = request_to(account.token_url().unwrap());
    let now = UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    let a = req.sign(&Zeros, now).unwrap();
    let (header, claims) = decoded(&a.jws);
    assert_eq!(header, br#"{"typ":"JWT","alg":"ES256","kid":"kid-1"}"#);
    let expected = serde_json::json!({
        "iss": "c1", "scope": ["restlets", "rest_webservices"],
        "aud": "https://1234567.suitetalk.api.netsuite.com/services/rest/auth/oauth2/v1/token",
        "iat": 1_700_000_000u64, "exp": 1_700_000_600u64, "jti": a.jti,
    });
    assert_eq!(claims, expected);
    assert_eq!(a.jti.len(), 22);
    assert_ne!(
        req.sign(&Zeros, now).unwrap().jti,
        a.jti,
        "jti must be fresh per assertion"
    );
    assert!(!format!("{a:?}").contains(&a.jws));
}

/// Why a loopback token URL may skip the account check: the assertion sent there names it
/// as `aud`, exactly as given, so NetSuite would refuse it (see `check_token_url`).
#[test]
fn an_assertion_for_a_loopback_url_names_that_url_as_aud() {
    let account: AccountId = "1234567".parse().unwrap();
    for loopback in [
        "http://127.0.0.1:8080/services/rest/auth/oauth2/v1/token",
        "http://localhost:9/t",
        "https://[::1]/t",
    ] {
        let url: TokenUrl = loopback.parse().unwrap();
        assert_eq!(account.check_token_url(&url), Ok(()), "{loopback}");
        let a = request_to(url).sign(&Zeros, SystemTime::now()).unwrap();
        let (_, claims) = decoded(&a.jws);
        assert_eq!(claims["aud"], loopback);
        assert_ne!(
            claims["aud"].as_str(),
            Some(account.token_url().unwrap().as_str()),
            "never NetSuite's token URL"
        );
    }
}

#[test]
fn certificate_validity_is_one_to_730_days() {
    assert_eq!("730".parse::<ValidityDays>().unwrap().days(), 730);
    assert_eq!("1".parse::<ValidityDays>().unwrap().days(), 1);
    for bad in ["0", "731", "-1", "+5", "", "1e3", "99999999999"] {
        let err = bad.parse::<ValidityDays>().unwrap_err().to_string();
        assert!(err.contains("two years"), "{bad}: {err}");
    }
    assert_eq!(ValidityDays::default().days(), 730);
}

#[test]
fn certificate_ids_are_base64url_sha256_of_the_der() {
    // SHA-256("") in base64url without padding.
    assert_eq!(
        CertificateId::of_certificate(b"").to_string(),
        "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
    );
}

#[test]
fn names_parse_case_insensitively_and_rs256_is_explained() {
    assert_eq!("es384".parse::<Alg>(), Ok(Alg::ES384));
    let err = "RS256".parse::<Alg>().unwrap_err().to_string();
    assert!(
        err.contains("1 March 2025") && err.contains("PS256"),
        "{err}"
    );
    assert!(
        "HS256"
            .parse::<Alg>()
            .unwrap_err()
            .to_string()
            .contains("ES256, ES384")
    );
}

#[test]
fn default_alg_follows_the_key() {
    assert_eq!(default_alg(&KeyKind::Ec(Curve::P384)), Ok(Alg::ES384));
    assert_eq!(default_alg(&KeyKind::Ec(Curve::P521)), Ok(Alg::ES512));
    assert_eq!(default_alg(&KeyKind::Rsa { bits: 4096 }), Ok(Alg::PS256));
}

#[test]
fn netsuite_key_rules_are_enforced_with_the_rule_in_the_message() {
    let rsa2048 = KeyKind::Rsa { bits: 2048 };
    let msg = check_alg(Alg::PS256, &rsa2048).unwrap_err().to_string();
    assert!(msg.contains("3072"), "{msg}");
    let p224 = KeyKind::EcOther("1.3.132.0.33".into());
    let msg = default_alg(&p224).unwrap_err().to_string();
    assert!(msg.contains("P-256, P-384 or P-521"), "{msg}");
    assert!(usable_algs(&rsa2048).is_empty());
    assert_eq!(
        usable_algs(&KeyKind::Rsa { bits: 3072 }),
        vec![Alg::PS256, Alg::PS384, Alg::PS512]
    );
    assert_eq!(usable_algs(&KeyKind::Ec(Curve::P256)), vec![Alg::ES256]);
}

#[test]
fn mismatch_names_both_sides_and_a_fix() {
    let msg = check_alg(Alg::ES384, &KeyKind::Ec(Curve::P256))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("ES384 needs an EC P-384 key") && msg.contains("--alg ES256"),
        "{msg}"
    );
    let msg = check_alg(Alg::PS256, &KeyKind::Ec(Curve::P256))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("RSA") && msg.contains("--alg ES256"), "{msg}");
}

/// What `keygen` makes when no size is asked for is a key NetSuite accepts.
#[test]
fn the_default_rsa_size_of_new_keys_is_accepted() {
    let bits = crate::pkcs11::KeySpec::DEFAULT_RSA_BITS as usize;
    assert_eq!(check_key(&KeyKind::Rsa { bits }), Ok(()));
}

#[test]
fn the_certificates_api_is_on_the_accounts_restlets_host_or_the_emulators_origin() {
    let account: AccountId = "1234567_SB1".parse().unwrap();
    let url = account.certificates_url().unwrap();
    assert_eq!(
        url.to_string(),
        "https://1234567-sb1.restlets.api.netsuite.com"
    );
    assert_eq!(
        url.join("/services/rest/auth/oauth2/v1/clients/c/certificates")
            .as_str(),
        "https://1234567-sb1.restlets.api.netsuite.com/services/rest/auth/oauth2/v1/clients/c/certificates"
    );
    let emulator: TokenUrl = "http://127.0.0.1:8080/services/rest/auth/oauth2/v1/token?x=1"
        .parse()
        .unwrap();
    assert!(emulator.is_loopback());
    let origin = CertificatesUrl::origin_of(&emulator);
    assert_eq!(origin.to_string(), "http://127.0.0.1:8080");
    assert!(origin.is_loopback());
    assert_eq!(origin.join("/a/b").as_str(), "http://127.0.0.1:8080/a/b");
    // A base with a path prefix (a proxy) keeps it.
    let prefixed: CertificatesUrl = "https://proxy.example/netsuite/".parse().unwrap();
    assert_eq!(
        prefixed.join("/a").as_str(),
        "https://proxy.example/netsuite/a"
    );
}

#[test]
fn a_certificates_url_follows_the_token_urls_rules_and_names_its_flag() {
    let account: AccountId = "1234567_SB1".parse().unwrap();
    for ok in [
        "https://1234567-sb1.restlets.api.netsuite.com",
        "https://1234567-SB1.suitetalk.api.netsuite.com/",
        "http://127.0.0.1:8080",
        "http://localhost",
    ] {
        let url: CertificatesUrl = ok.parse().unwrap();
        assert_eq!(account.check_certificates_url(&url), Ok(()), "{ok}");
    }
    for bad in [
        "https://evil.example",
        "https://1234567-sb1.restlets.api.netsuite.com.evil.example",
        "https://1234567.restlets.api.netsuite.com",
    ] {
        let url: CertificatesUrl = bad.parse().unwrap();
        let err = account
            .check_certificates_url(&url)
            .unwrap_err()
            .to_string();
        for want in [
            "certificates API URL host",
            "1234567-sb1.restlets.api.netsuite.com",
            "pass --certificates-url to override",
        ] {
            assert!(err.contains(want), "{bad}: {want} missing from {err}");
        }
    }
    let err = "http://10.0.0.1".parse::<CertificatesUrl>().unwrap_err();
    assert!(matches!(err, Error::InsecureCertificatesUrl(_)), "{err}");
    for bad in [
        "https://x/?a=b",
        "https://u:SECRET@x/",
        "https://x/#f",
        "ftp://x",
        "https://x y",
    ] {
        let err = bad.parse::<CertificatesUrl>().unwrap_err().to_string();
        assert!(err.starts_with("certificates API URL"), "{bad}: {err}");
        assert!(!err.contains("SECRET"), "{err}");
    }
}
