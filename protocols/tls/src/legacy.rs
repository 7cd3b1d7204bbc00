//! The server certificate verifiers a client can use: strict (the default), legacy
//! (`legacyCertificates: true`) and none (`disableValidation: true`).
//!
//! Strict is rustls's webpki verifier, with a clearer error for X.509 v1 certificates.
//! Legacy exists for the sample certificates of the Linkerd 1.x tutorials and
//! deployments built from them: an X.509 v1 server certificate without
//! subjectAltName, signed by a v1 CA certificate that has long expired. webpki refuses
//! v1 certificates and never looks at the subject CN. The legacy verifier still checks
//! what matters most: each signature of the chain up to a configured CA (with the
//! provider's signature algorithms), the expected name (in a subjectAltName or the
//! subject CN), the server certificate's own dates, and the handshake signature. It
//! ignores the X.509 version, a missing subjectAltName, the CA's dates and the CA flags
//! and key usages of the chain, which is what makes it weaker.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use crate::error::CertificateIssue;
use crate::x509::CertInfo;

/// The longest chain (intermediates above the server certificate) the legacy verifier
/// follows.
const MAX_INTERMEDIATES: usize = 8;

fn parse_peer(cert: &CertificateDer<'_>) -> Result<CertInfo, rustls::Error> {
    CertInfo::parse(cert).map_err(|e| CertificateIssue::Unparseable(e).into())
}

/// rustls's verifier, explaining X.509 v1 refusals.
#[derive(Debug)]
pub(crate) struct StrictVerifier {
    pub(crate) inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for StrictVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|e| match CertInfo::parse(end_entity) {
                Ok(leaf) if leaf.version < 3 => CertificateIssue::OldVersion {
                    version: leaf.version,
                }
                .into(),
                _ => e,
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `legacyCertificates: true`: see the module documentation for what is and is not
/// checked.
#[derive(Debug)]
pub(crate) struct LegacyVerifier {
    anchors: Vec<CertInfo>,
    algs: WebPkiSupportedAlgorithms,
}

impl LegacyVerifier {
    /// `anchors` are the configured CA certificates (any version, any dates).
    pub(crate) fn new(anchors: Vec<CertInfo>, algs: WebPkiSupportedAlgorithms) -> LegacyVerifier {
        LegacyVerifier { anchors, algs }
    }

    fn check_dates(cert: &CertInfo, now: UnixTime) -> Result<(), rustls::Error> {
        let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let at = |secs: i64| UnixTime::since_unix_epoch(Duration::from_secs(secs.max(0) as u64));
        if now_secs < cert.not_before {
            return Err(CertificateError::NotValidYetContext {
                time: now,
                not_before: at(cert.not_before),
            }
            .into());
        }
        if now_secs > cert.not_after {
            return Err(CertificateError::ExpiredContext {
                time: now,
                not_after: at(cert.not_after),
            }
            .into());
        }
        Ok(())
    }

    /// Follows the chain from `leaf` through `intermediates` to a configured CA.
    fn check_chain(
        &self,
        leaf: &CertInfo,
        intermediates: &[CertInfo],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let mut current = leaf;
        for _ in 0..=MAX_INTERMEDIATES {
            let mut bad_signature = None;
            for anchor in self
                .anchors
                .iter()
                .filter(|a| a.subject_raw == current.issuer_raw)
            {
                match current.signed_by(anchor, &self.algs) {
                    Ok(()) => return Ok(()),
                    Err(_) => bad_signature = Some(anchor),
                }
            }
            let next = intermediates.iter().find(|i| {
                i.subject_raw == current.issuer_raw && current.signed_by(i, &self.algs).is_ok()
            });
            match (next, bad_signature) {
                (Some(next), _) => {
                    Self::check_dates(next, now)?;
                    current = next;
                }
                (None, Some(anchor)) => {
                    return Err(CertificateIssue::BadSignature {
                        subject: current.subject.clone(),
                        issuer: anchor.subject.clone(),
                    }
                    .into());
                }
                (None, None) => {
                    return Err(CertificateIssue::UnknownIssuer {
                        issuer: current.issuer.clone(),
                    }
                    .into());
                }
            }
        }
        Err(CertificateIssue::UnknownIssuer {
            issuer: current.issuer.clone(),
        }
        .into())
    }
}

impl ServerCertVerifier for LegacyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let leaf = parse_peer(end_entity)?;
        let intermediates: Vec<CertInfo> = intermediates
            .iter()
            .filter_map(|c| CertInfo::parse(c).ok())
            .collect();
        self.check_chain(&leaf, &intermediates, now)?;
        Self::check_dates(&leaf, now)?;
        if !leaf.matches_name(server_name) {
            return Err(CertificateError::NotValidForNameContext {
                expected: server_name.to_owned(),
                presented: leaf.presented_names(),
            }
            .into());
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        parse_peer(cert)?.verify_handshake(message, dss, &self.algs, false)?;
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        parse_peer(cert)?.verify_handshake(message, dss, &self.algs, true)?;
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// `disableValidation: true`: any server certificate is accepted. The handshake
/// signature is still checked against the certificate's key, so the connection is at
/// least encrypted to whoever holds that key.
#[derive(Debug)]
pub(crate) struct NoVerification {
    pub(crate) algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        parse_peer(cert)?.verify_handshake(message, dss, &self.algs, false)?;
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        parse_peer(cert)?.verify_handshake(message, dss, &self.algs, true)?;
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
