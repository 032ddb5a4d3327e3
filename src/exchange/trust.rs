//! Trust: which certificates an https token endpoint may present (`--ca-file`, or the
//! operating system's roots), the TLS failure behind a transport error, and the process's TLS
//! crypto provider.

use std::fmt;
use std::path::{Path, PathBuf};

/// A CA file larger than this is refused: a bundle of every public CA is about 200 KiB.
const MAX_CA_FILE: u64 = 1024 * 1024;

/// `--ca-file`: PEM certificates of the CA(s) a private token endpoint's certificate chains to.
/// They replace the operating system's roots (like curl's `--cacert`), so that a public CA
/// cannot vouch for a host the user meant to pin to a private one.
#[derive(Clone)]
pub struct CaFile {
    path: PathBuf,
    /// The certificates, DER.
    certs: Vec<Vec<u8>>,
}

impl fmt::Debug for CaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaFile")
            .field("path", &self.path)
            .field("certificates", &self.certs.len())
            .finish()
    }
}

/// Why a `--ca-file` is not usable.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    /// The file cannot be read.
    #[error("cannot read CA file '{}': {source}; --ca-file names a PEM file with the certificate of the CA that signed the token endpoint's certificate", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is too large to be a CA bundle.
    #[error("CA file '{}' is larger than {} KiB; it should hold only the CA certificate(s) of the token endpoint", .path.display(), MAX_CA_FILE / 1024)]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// Not PEM certificates, or one that cannot serve as a root.
    #[error("CA file '{}' {reason}; it must hold PEM certificates (-----BEGIN CERTIFICATE-----), e.g. the private CA's ca.pem", .path.display())]
    Unusable {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl CaFile {
    /// Reads the PEM certificates of `path`, refusing a file with none, with other PEM
    /// blocks (a private key put there by mistake), or with a certificate that cannot be a
    /// trust anchor.
    pub fn load(path: &Path) -> Result<CaFile, CaFileError> {
        let read = |source| CaFileError::Read {
            path: path.to_owned(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read)?.len();
        if size > MAX_CA_FILE {
            return Err(CaFileError::TooLarge {
                path: path.to_owned(),
            });
        }
        let text = std::fs::read(path).map_err(read)?;
        let unusable = |reason: String| CaFileError::Unusable {
            path: path.to_owned(),
            reason,
        };
        if !text.windows(11).any(|w| w == b"-----BEGIN ") {
            return Err(unusable("holds no PEM block".into()));
        }
        let chain = x509_cert::Certificate::load_pem_chain(&text)
            .map_err(|e| unusable(format!("is not a list of PEM certificates ({e})")))?;
        let mut certs = Vec::with_capacity(chain.len());
        let mut roots = rustls::RootCertStore::empty();
        for (i, cert) in chain.iter().enumerate() {
            let der = der::Encode::to_der(cert)
                .map_err(|e| unusable(format!("has a certificate that cannot be encoded ({e})")))?;
            roots
                .add(rustls::pki_types::CertificateDer::from(der.as_slice()))
                .map_err(|e| {
                    unusable(format!(
                        "has certificate {} that cannot be a root ({e})",
                        i + 1
                    ))
                })?;
            certs.push(der);
        }
        if certs.is_empty() {
            return Err(unusable("holds no certificate".into()));
        }
        Ok(CaFile {
            path: path.to_owned(),
            certs,
        })
    }

    /// The file the certificates came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn certificates(&self) -> Result<Vec<reqwest::Certificate>, reqwest::Error> {
        self.certs
            .iter()
            .map(|der| reqwest::Certificate::from_der(der))
            .collect()
    }
}

/// The TLS error behind a transport failure, if it was one. rustls reports through
/// `io::Error`s (hyper-rustls wraps tokio-rustls' in another), whose `source()` skips the
/// error they wrap, so those are opened by hand.
pub(super) fn tls_cause(err: &reqwest::Error) -> Option<&rustls::Error> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(mut e) = next {
        while let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            e = inner;
        }
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = e.source();
    }
    None
}

/// Installs ring as the process's TLS crypto provider unless one is installed. reqwest is built
/// without one so that ring (small and portable) is used instead of aws-lc, and every reqwest
/// client needs it, even for plain http. Losing a race to another installer is fine.
pub(crate) fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
