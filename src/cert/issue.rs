//! A certificate issued by a token key: built here ([`build`]), its to-be-signed part signed
//! inside the token, in X.509's form of the signature (DER for ECDSA; PSS or PKCS#1 v1.5 for
//! RSA). Storing it on the token beside the key is [`KeySigner::store_certificate`]'s.

use std::time::SystemTime;

use super::build::{BuildError, CertRequest, build};
use super::certificate::Certificate;
use super::signature::CertSignature;
use crate::jose::{self, PublicKey, Signer as _};
use crate::kind::{HasKind, Kind};
use crate::pkcs11::{self, KeySigner};

/// Why the token's signature over a certificate could not be had.
#[derive(Debug, thiserror::Error)]
enum TbsSignError {
    /// The token failed to sign.
    #[error(transparent)]
    Token(pkcs11::Error),
    /// The token's ECDSA signature could not be put in X.509's DER form.
    #[error("cannot DER-encode the token's ECDSA signature: {0}")]
    Der(der::Error),
}

impl HasKind for TbsSignError {
    /// The token's kind; a signature that cannot be encoded is the token's fault too.
    fn kind(&self) -> Kind {
        match self {
            TbsSignError::Token(e) => e.kind(),
            TbsSignError::Der(_) => Kind::Token,
        }
    }
}

/// A self-signed certificate for `signer`'s key (whose public key is `public`), valid from
/// `now` as `request` says, signed in the token.
pub fn issue_with(
    signer: &KeySigner,
    request: &CertRequest,
    public: &PublicKey,
    now: SystemTime,
) -> Result<Certificate, BuildError> {
    build(request, public, now, |tbs| {
        sign_tbs(signer, request.signature, tbs)
    })
}

/// The token's signature over the to-be-signed certificate, in X.509 form.
fn sign_tbs(
    signer: &KeySigner,
    signature: CertSignature,
    tbs: &[u8],
) -> Result<Vec<u8>, TbsSignError> {
    match signature {
        CertSignature::Pkcs1Sha256 => signer.sign_pkcs1_sha256(tbs).map_err(TbsSignError::Token),
        CertSignature::Pss(_) => signer.sign(tbs).map_err(TbsSignError::Token),
        CertSignature::Ecdsa(_) => {
            let raw = signer.sign(tbs).map_err(TbsSignError::Token)?;
            jose::ecdsa_raw_to_der(&raw).map_err(TbsSignError::Der)
        }
    }
}
