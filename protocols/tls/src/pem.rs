//! Reading certificates and private keys from PEM files, with errors that name the file.
//!
//! Linkerd 1.x wants PKCS#8 keys; Plexus also reads PKCS#1 (`RSA PRIVATE KEY`) and SEC1
//! (`EC PRIVATE KEY`) keys, which is what `openssl genrsa`/`ecparam` and many secrets
//! hold. Text around the PEM blocks (as `openssl x509 -text` leaves it) is ignored. A
//! certificate and its key are checked to belong together by comparing the key's public
//! half with the certificate's SubjectPublicKeyInfo.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::error::TlsError;
use crate::x509::CertInfo;

/// Reads every certificate of a PEM file (the first is the leaf when it is a chain).
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_file("certificate file", path)?;
    certificates_from_pem("certificate file", path, &bytes)
}

/// Reads the first private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_file("private key", path)?;
    private_key_from_pem(path, &bytes)
}

pub(crate) fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::ReadFile {
        what,
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn certificates_from_pem(
    what: &'static str,
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            what,
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// Reads a file of CA certificates (a trust bundle, `caCertPath`).
pub(crate) fn load_ca_certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_file(what, path)?;
    certificates_from_pem(what, path, &bytes)
}

pub(crate) fn private_key_from_pem(
    path: &Path,
    bytes: &[u8],
) -> Result<PrivateKeyDer<'static>, TlsError> {
    match PrivateKeyDer::from_pem_slice(bytes) {
        Ok(key) => Ok(key),
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            let text = String::from_utf8_lossy(bytes);
            let detail = if text.contains("ENCRYPTED PRIVATE KEY") {
                "it is encrypted; Plexus reads unencrypted keys only (PKCS#8 PRIVATE KEY, \
                 RSA PRIVATE KEY or EC PRIVATE KEY)"
            } else if text.contains("BEGIN CERTIFICATE") {
                "it holds a certificate, not a key (are certPath and keyPath swapped?)"
            } else {
                "expected a PEM block PRIVATE KEY (PKCS#8), RSA PRIVATE KEY (PKCS#1) or \
                 EC PRIVATE KEY (SEC1)"
            };
            Err(TlsError::NoPrivateKey {
                path: path.to_path_buf(),
                detail: detail.into(),
            })
        }
        Err(e) => Err(TlsError::BadPem {
            what: "private key",
            path: path.to_path_buf(),
            detail: e.to_string(),
        }),
    }
}

/// Where a certificate, its key and its intermediates live.
#[derive(Clone, Debug)]
pub(crate) struct KeyFiles {
    pub(crate) cert_path: PathBuf,
    pub(crate) key_path: PathBuf,
    pub(crate) intermediates_path: Option<PathBuf>,
}

/// The raw contents of [`KeyFiles`], compared between reloads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyFileBytes {
    cert: Vec<u8>,
    key: Vec<u8>,
    intermediates: Option<Vec<u8>>,
}

/// A certificate with its key, ready to serve, and what it says.
#[derive(Clone, Debug)]
pub(crate) struct Loaded {
    pub(crate) key: Arc<CertifiedKey>,
    pub(crate) leaf: CertInfo,
}

impl KeyFiles {
    pub(crate) fn read(&self) -> Result<KeyFileBytes, TlsError> {
        Ok(KeyFileBytes {
            cert: read_file("certificate", &self.cert_path)?,
            key: read_file("private key", &self.key_path)?,
            intermediates: match &self.intermediates_path {
                Some(p) => Some(read_file("intermediate certificates", p)?),
                None => None,
            },
        })
    }

    /// Parses what [`read`](Self::read) returned and checks that the key is the
    /// certificate's.
    pub(crate) fn build(
        &self,
        bytes: &KeyFileBytes,
        provider: &CryptoProvider,
    ) -> Result<Loaded, TlsError> {
        let mut chain = certificates_from_pem("certificate", &self.cert_path, &bytes.cert)?;
        if let (Some(path), Some(inter)) = (&self.intermediates_path, &bytes.intermediates) {
            chain.extend(certificates_from_pem(
                "intermediate certificates",
                path,
                inter,
            )?);
        }
        let leaf = CertInfo::parse(&chain[0]).map_err(|detail| TlsError::BadCertificateFile {
            what: "certificate",
            path: self.cert_path.clone(),
            detail: format!("cannot parse its first certificate: {detail}"),
        })?;
        let key_der = private_key_from_pem(&self.key_path, &bytes.key)?;
        let signing = provider
            .key_provider
            .load_private_key(key_der)
            .map_err(|e| TlsError::BadPrivateKey {
                path: self.key_path.clone(),
                detail: e.to_string(),
            })?;
        // rustls's own check parses the certificate with webpki, which refuses X.509
        // v1; compare the SubjectPublicKeyInfo directly instead.
        match signing.public_key() {
            Some(spki) if spki.as_ref() == leaf.spki.as_slice() => {}
            Some(_) => {
                return Err(TlsError::KeyMismatch {
                    cert_path: self.cert_path.clone(),
                    key_path: self.key_path.clone(),
                });
            }
            None => {
                return Err(TlsError::BadPrivateKey {
                    path: self.key_path.clone(),
                    detail: "cannot tell whether it matches the certificate".into(),
                });
            }
        }
        Ok(Loaded {
            key: Arc::new(CertifiedKey::new(chain, signing)),
            leaf,
        })
    }
}
