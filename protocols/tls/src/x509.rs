//! Reading certificates the way Plexus's own checks need them, whatever their X.509
//! version, and checking signatures with rustls's algorithms.
//!
//! webpki (rustls's verifier) parses only X.509 v3 end-entity certificates, so the
//! checks it cannot do (does this key match that v1 certificate, does this v1 leaf carry
//! that name, is it signed by that CA) parse with x509-parser instead. Signatures are
//! always verified by the provider's [`WebPkiSupportedAlgorithms`]: no cryptography is
//! done here.

use std::net::IpAddr;

use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls13_signature_with_raw_key};
use rustls::pki_types::{ServerName, SubjectPublicKeyInfoDer};
use rustls::{CertificateError, DigitallySignedStruct, PeerMisbehaved};
use x509_parser::asn1_rs::{Any, FromDer, Sequence};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

/// The parts of a certificate Plexus's checks read, copied out of the DER.
#[derive(Clone, Debug)]
pub(crate) struct CertInfo {
    /// 1 for v1, 3 for v3.
    pub(crate) version: u32,
    pub(crate) serial: String,
    pub(crate) subject: String,
    pub(crate) subject_raw: Vec<u8>,
    pub(crate) issuer: String,
    pub(crate) issuer_raw: Vec<u8>,
    pub(crate) common_names: Vec<String>,
    pub(crate) dns_names: Vec<String>,
    pub(crate) ip_addrs: Vec<IpAddr>,
    /// Seconds since 1970.
    pub(crate) not_before: i64,
    /// Seconds since 1970.
    pub(crate) not_after: i64,
    /// The whole SubjectPublicKeyInfo (DER).
    pub(crate) spki: Vec<u8>,
    /// The contents of the SPKI's AlgorithmIdentifier (what
    /// `SignatureVerificationAlgorithm::public_key_alg_id` returns).
    pub(crate) spki_alg: Vec<u8>,
    /// The subjectPublicKey bits.
    pub(crate) public_key: Vec<u8>,
    /// The signed part (DER of tbsCertificate).
    tbs: Vec<u8>,
    /// The contents of the signatureAlgorithm (what `signature_alg_id` returns).
    sig_alg: Vec<u8>,
    signature: Vec<u8>,
}

/// The contents of the second element of a DER SEQUENCE whose first element is skipped:
/// the AlgorithmIdentifier of a Certificate (after tbsCertificate) or, with `skip`
/// false, the first element (the algorithm of a SubjectPublicKeyInfo).
fn algorithm_contents(der: &[u8], skip_first: bool) -> Result<Vec<u8>, String> {
    let (_, outer) = Sequence::from_der(der).map_err(|e| e.to_string())?;
    let mut rest: &[u8] = &outer.content;
    if skip_first {
        let (after, _) = Any::from_der(rest).map_err(|e| e.to_string())?;
        rest = after;
    }
    let (_, alg) = Any::from_der(rest).map_err(|e| e.to_string())?;
    Ok(alg.data.to_vec())
}

impl CertInfo {
    /// Parses a DER certificate of any X.509 version.
    pub(crate) fn parse(der: &[u8]) -> Result<CertInfo, String> {
        let (rest, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        if !rest.is_empty() {
            return Err("trailing bytes after the certificate".into());
        }
        Self::from_parsed(&cert)
    }

    fn from_parsed(cert: &X509Certificate<'_>) -> Result<CertInfo, String> {
        let tbs = &cert.tbs_certificate;
        let common_names = tbs
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok().map(str::to_string))
            .collect();
        let mut dns_names = Vec::new();
        let mut ip_addrs = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => dns_names.push(d.to_string()),
                    GeneralName::IPAddress(bytes) => {
                        if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                            ip_addrs.push(IpAddr::from(v4));
                        } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                            ip_addrs.push(IpAddr::from(v6));
                        }
                    }
                    _ => {}
                }
            }
        }
        let spki = tbs.subject_pki.raw.to_vec();
        Ok(CertInfo {
            version: tbs.version().0 + 1,
            serial: tbs.raw_serial_as_string(),
            subject: tbs.subject().to_string(),
            subject_raw: tbs.subject().as_raw().to_vec(),
            issuer: tbs.issuer().to_string(),
            issuer_raw: tbs.issuer().as_raw().to_vec(),
            common_names,
            dns_names,
            ip_addrs,
            not_before: tbs.validity().not_before.timestamp(),
            not_after: tbs.validity().not_after.timestamp(),
            spki_alg: algorithm_contents(&spki, false)?,
            spki,
            public_key: tbs.subject_pki.subject_public_key.data.to_vec(),
            tbs: tbs.as_ref().to_vec(),
            sig_alg: algorithm_contents(cert.as_raw(), true)?,
            signature: cert.signature_value.data.to_vec(),
        })
    }

    /// The names this certificate is for, as shown in errors: its DNS and IP
    /// subjectAltNames, then its subject CN(s).
    pub(crate) fn presented_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.dns_names.clone();
        names.extend(self.ip_addrs.iter().map(IpAddr::to_string));
        for cn in &self.common_names {
            if !names.iter().any(|n| n.eq_ignore_ascii_case(cn)) {
                names.push(cn.clone());
            }
        }
        names
    }

    /// Whether the certificate carries `name` in a subjectAltName or in its subject CN
    /// (the legacy rule). DNS names compare case-insensitively; a `*.example.com` SAN
    /// matches one extra leftmost label.
    pub(crate) fn matches_name(&self, name: &ServerName<'_>) -> bool {
        match name {
            ServerName::DnsName(dns) => {
                let want = dns.as_ref().trim_end_matches('.').to_ascii_lowercase();
                self.dns_names.iter().any(|san| dns_matches(san, &want))
                    || self
                        .common_names
                        .iter()
                        .any(|cn| cn.trim_end_matches('.').eq_ignore_ascii_case(&want))
            }
            ServerName::IpAddress(ip) => {
                let ip = IpAddr::from(*ip);
                self.ip_addrs.contains(&ip)
                    || self.common_names.iter().any(|cn| cn == &ip.to_string())
            }
            _ => false,
        }
    }

    /// Checks that `self` is signed by the key of `issuer`.
    pub(crate) fn signed_by(
        &self,
        issuer: &CertInfo,
        algs: &WebPkiSupportedAlgorithms,
    ) -> Result<(), CertificateError> {
        let mut tried = false;
        for alg in algs.all.iter().filter(|a| {
            a.signature_alg_id().as_ref() == self.sig_alg.as_slice()
                && a.public_key_alg_id().as_ref() == issuer.spki_alg.as_slice()
        }) {
            tried = true;
            if alg
                .verify_signature(&issuer.public_key, &self.tbs, &self.signature)
                .is_ok()
            {
                return Ok(());
            }
        }
        if tried {
            Err(CertificateError::BadSignature)
        } else {
            Err(
                CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext {
                    signature_algorithm_id: self.sig_alg.clone(),
                    public_key_algorithm_id: issuer.spki_alg.clone(),
                },
            )
        }
    }

    /// Checks a handshake signature made with this certificate's key. TLS 1.3 goes to
    /// rustls's raw-key check; for TLS 1.2, which does not tie a scheme to one
    /// algorithm, every algorithm rustls maps `dss.scheme` to is tried, as rustls does.
    pub(crate) fn verify_handshake(
        &self,
        message: &[u8],
        dss: &DigitallySignedStruct,
        algs: &WebPkiSupportedAlgorithms,
        tls13: bool,
    ) -> Result<(), rustls::Error> {
        if tls13 {
            let spki = SubjectPublicKeyInfoDer::from(self.spki.as_slice());
            return verify_tls13_signature_with_raw_key(message, &spki, dss, algs).map(|_| ());
        }
        let Some((_, candidates)) = algs.mapping.iter().find(|(s, _)| *s == dss.scheme) else {
            return Err(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into());
        };
        let mut tried = false;
        for alg in candidates
            .iter()
            .filter(|a| a.public_key_alg_id().as_ref() == self.spki_alg.as_slice())
        {
            tried = true;
            if alg
                .verify_signature(&self.public_key, message, dss.signature())
                .is_ok()
            {
                return Ok(());
            }
        }
        Err(if tried {
            CertificateError::BadSignature.into()
        } else {
            CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext {
                signature_algorithm_id: Vec::new(),
                public_key_algorithm_id: self.spki_alg.clone(),
            }
            .into()
        })
    }
}

fn dns_matches(san: &str, want: &str) -> bool {
    let san = san.trim_end_matches('.').to_ascii_lowercase();
    if san == want {
        return true;
    }
    match san.strip_prefix("*.") {
        Some(suffix) => want
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_one_label() {
        assert!(dns_matches("*.example.com", "a.example.com"));
        assert!(!dns_matches("*.example.com", "a.b.example.com"));
        assert!(!dns_matches("*.example.com", "example.com"));
        assert!(dns_matches("Linkerd", "linkerd"));
    }
}
