//! Certificates for unit tests, made in-process with software P-256 keys (ECDSA signing is
//! deterministic, RFC 6979, so a seed gives the same key every time).

use std::str::FromStr as _;
use std::time::SystemTime;

use p256::ecdsa::signature::Signer as _;
use x509_cert::name::Name;

use super::{CertRequest, CertSignature, Certificate, build};
use crate::jose::{Alg, Curve, PublicKey};
use crate::netsuite::ValidityDays;

/// The software P-256 key with this seed (any byte but 0).
pub fn p256_key(seed: u8) -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[seed; 32]).expect("a valid P-256 scalar")
}

/// The public half of [`p256_key`].
pub fn p256_public(seed: u8) -> PublicKey {
    PublicKey::Ec {
        curve: Curve::P256,
        point: p256_key(seed)
            .verifying_key()
            .to_sec1_point(false)
            .as_bytes()
            .to_vec(),
    }
}

/// A self-signed certificate for the P-256 key with this seed, made at `now` (so valid from a
/// minute before it) for `days` days; `subject` tells certificates of one key apart.
pub fn p256_certificate(seed: u8, subject: &str, now: SystemTime, days: u32) -> Certificate {
    let request = CertRequest {
        subject: Name::from_str(&format!("CN={subject}")).expect("an RFC 4514 name"),
        days: days
            .to_string()
            .parse::<ValidityDays>()
            .expect("1 to 730 days"),
        signature: CertSignature::for_alg(Alg::ES256),
    };
    build(&request, &p256_public(seed), now, |tbs| {
        let signature: p256::ecdsa::Signature = p256_key(seed).sign(tbs);
        Ok::<_, crate::cert::Error>(signature.to_der().as_bytes().to_vec())
    })
    .expect("a certificate")
}
