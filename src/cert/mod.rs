//! X.509 certificates for NetSuite: reading one (PEM or DER), the certificate id NetSuite will
//! show for it and its public key; building a self-signed one around a token key; and checking
//! one against NetSuite's rules.
//!
//! | module | owns |
//! | --- | --- |
//! | `certificate` | reading a certificate file or token object: [`Certificate`] and its accessors |
//! | `spki` | a certificate's public key to and from its SubjectPublicKeyInfo |
//! | `signature` | how a certificate is signed: [`CertSignature`], algorithm identifiers, PSS parameters |
//! | `build` | a self-signed certificate made with the token's key: [`build`] |
//! | `issue` | [`build`] with a [`KeySigner`](crate::pkcs11::KeySigner) signing in the token: [`issue_with`] |
//! | `subject` | its subject, as given or from the key's label: [`subject_name`] |
//! | `check` | NetSuite's rules for an upload: [`violations`], and [`check`] with its [`Report`] |
//! | `stored` | the certificate stored with a key, as a profile uses it: [`StoredWithKey`] |
//! | `time` | times as certificates show them: [`rfc3339`] |

mod build;
mod certificate;
mod check;
mod issue;
mod signature;
mod spki;
mod stored;
mod subject;
#[cfg(test)]
pub(crate) mod testing;
mod time;

pub use build::{BuildError, CertRequest, build};
pub use certificate::{Certificate, Error};
pub use check::{EXPIRY_NOTICE_DAYS, Report, Violation, check, violations};
pub use issue::issue_with;
pub use signature::CertSignature;
pub use spki::{public_key_from_spki, spki_of};
pub use stored::{Finding, Severity, StoredWithKey};
pub use subject::{SubjectError, subject_name};
pub use time::rfc3339;
