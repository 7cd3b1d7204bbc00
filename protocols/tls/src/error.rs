//! Errors that say exactly what failed: which file, which key, which name, which date.
//!
//! Setup errors (unreadable files, PEM without a certificate, a key that does not match
//! its certificate) name the path. Handshake errors are rustls errors sorted into the
//! kinds an operator acts on (unknown CA, name mismatch, expired, client certificate
//! required, protocol mismatch, ...), each with a short stable
//! [`metric_label`](TlsError::metric_label) for metrics and a message for logs.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use rustls::pki_types::UnixTime;
use rustls::{AlertDescription, CertificateError, OtherError};

use crate::settings::SettingsProblem;

/// Everything that can go wrong setting up TLS or during a handshake.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The settings are unusable; every problem is listed.
    #[error("invalid tls settings: {}", join_problems(.0))]
    Settings(Vec<SettingsProblem>),
    /// A file named by the settings could not be read.
    #[error("cannot read {what} {}: {source}", .path.display())]
    ReadFile {
        /// What the file was for (`certificate`, `private key`, `CA certificates`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: io::Error,
    },
    /// A file that should hold certificates holds none.
    #[error("{what} {} holds no PEM certificate (no -----BEGIN CERTIFICATE----- block)", .path.display())]
    NoCertificate {
        /// What the file was for.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// A key file holds no private key Plexus can read.
    #[error("private key {} holds no usable key: {detail}", .path.display())]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        detail: String,
    },
    /// A PEM file is malformed.
    #[error("{what} {} is not valid PEM: {detail}", .path.display())]
    BadPem {
        /// What the file was for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        detail: String,
    },
    /// A certificate file holds something that is not a usable certificate.
    #[error("{what} {}: {detail}", .path.display())]
    BadCertificateFile {
        /// What the file was for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The key parses but cannot sign (unsupported algorithm or curve, bad encoding).
    #[error("private key {} is not usable: {detail}", .path.display())]
    BadPrivateKey {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// The private key is not the key of the certificate.
    #[error("private key {} does not match certificate {}", .key_path.display(), .cert_path.display())]
    KeyMismatch {
        /// The certificate file.
        cert_path: PathBuf,
        /// The key file.
        key_path: PathBuf,
    },
    /// rustls refused the assembled configuration.
    #[error("cannot set up TLS: {0}")]
    Setup(String),
    /// The name to connect to cannot be a TLS server name.
    #[error("invalid TLS server name {name:?}: {detail}")]
    InvalidServerName {
        /// The name given.
        name: String,
        /// Why it is not a DNS name or IP address.
        detail: String,
    },
    /// `commonName` could not be filled in.
    #[error("tls commonName {template:?}: {detail}")]
    CommonName {
        /// The configured `commonName`.
        template: String,
        /// What is wrong.
        detail: String,
    },

    /// The peer's certificate does not chain to a trusted CA.
    #[error("the peer's certificate is not issued by a trusted CA: {detail}")]
    UnknownCa {
        /// More about the chain.
        detail: String,
    },
    /// The peer's certificate is for other names than the expected one.
    #[error("{}", name_mismatch_message(.expected, .presented))]
    NameMismatch {
        /// The name it had to carry (`commonName` or the server name).
        expected: String,
        /// The names it carries.
        presented: Vec<String>,
    },
    /// The peer's certificate has expired.
    #[error("the peer's certificate expired at {not_after} (now {now})")]
    Expired {
        /// Its `notAfter` (RFC 3339).
        not_after: String,
        /// The time of the check (RFC 3339).
        now: String,
    },
    /// The peer's certificate is not valid yet.
    #[error("the peer's certificate is not valid before {not_before} (now {now})")]
    NotYetValid {
        /// Its `notBefore` (RFC 3339).
        not_before: String,
        /// The time of the check (RFC 3339).
        now: String,
    },
    /// The server requires a client certificate and the client sent none.
    #[error("the server requires a client certificate and none was presented ({detail})")]
    ClientCertRequired {
        /// Which side saw it.
        detail: String,
    },
    /// The two sides share no TLS version, cipher suite, signature scheme or ALPN
    /// protocol.
    #[error("TLS protocol mismatch: {detail}")]
    ProtocolMismatch {
        /// What they could not agree on.
        detail: String,
    },
    /// The peer's certificate was refused for another reason (old X.509 version, bad
    /// signature, wrong key usage, malformed).
    #[error("the peer's certificate was refused: {detail}")]
    CertificateRejected {
        /// Why.
        detail: String,
    },
    /// The peer refused our certificate or the handshake with a TLS alert.
    #[error("the peer ended the handshake with the TLS alert {alert}")]
    PeerRejected {
        /// The alert (`BadCertificate`, `UnknownCA`, `HandshakeFailure`, ...).
        alert: String,
    },
    /// The handshake did not finish in time.
    #[error("the TLS handshake did not finish within {}ms", .after.as_millis())]
    HandshakeTimeout {
        /// The limit.
        after: Duration,
    },
    /// The connection failed under the handshake (reset, closed).
    #[error("the connection failed during the TLS handshake: {0}")]
    Io(#[source] io::Error),
    /// Any other TLS failure (a peer that misbehaves, a decryption error).
    #[error("TLS error: {detail}")]
    Protocol {
        /// rustls's description.
        detail: String,
    },
}

/// Why one of Plexus's own certificate checks refused a certificate. It travels through
/// rustls as `CertificateError::Other` and comes back out as a [`TlsError`] kind.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateIssue {
    /// An X.509 v1 (or v2) certificate under strict verification.
    #[error(
        "it is an X.509 v{version} certificate, which strict verification refuses (only v3 \
         with subjectAltName is accepted); reissue it (plexus tls issue) or, knowing the \
         risk, set legacyCertificates: true on the client"
    )]
    OldVersion {
        /// The version (1 or 2).
        version: u32,
    },
    /// The certificate cannot be parsed.
    #[error("cannot parse it: {0}")]
    Unparseable(String),
    /// No configured CA issued the chain (legacy verification).
    #[error("no configured CA is its issuer {issuer:?}")]
    UnknownIssuer {
        /// The issuer named by the last certificate of the chain.
        issuer: String,
    },
    /// A signature in the chain does not verify (legacy verification).
    #[error("the signature of {subject:?} does not verify against {issuer:?}")]
    BadSignature {
        /// The signed certificate.
        subject: String,
        /// The certificate whose key should have signed it.
        issuer: String,
    },
}

impl From<CertificateIssue> for rustls::Error {
    fn from(issue: CertificateIssue) -> Self {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(std::sync::Arc::new(
            issue,
        ))))
    }
}

fn join_problems(p: &[SettingsProblem]) -> String {
    p.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

fn name_mismatch_message(expected: &str, presented: &[String]) -> String {
    if presented.is_empty() {
        format!(
            "the peer's certificate is not valid for {expected:?}: it names no DNS or IP \
             subjectAltName (strict verification does not use the subject CN)"
        )
    } else {
        format!("the peer's certificate is valid for {presented:?}, not for {expected:?}")
    }
}

/// webpki describes presented names as `DnsName("a.example")` or
/// `IpAddress(10.0.0.1)`; errors show the bare name.
fn unwrap_name(name: &str) -> String {
    for kind in ["DnsName(", "IpAddress(", "UniformResourceIdentifier("] {
        if let Some(inner) = name.strip_prefix(kind).and_then(|r| r.strip_suffix(')')) {
            return inner.trim_matches('"').to_string();
        }
    }
    name.to_string()
}

/// Formats a certificate time as RFC 3339 (`2016-11-19T20:52:50Z`).
pub(crate) fn format_time(t: UnixTime) -> String {
    format_unix_secs(i64::try_from(t.as_secs()).unwrap_or(i64::MAX))
}

pub(crate) fn format_unix_secs(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{secs} seconds after 1970"))
}

impl TlsError {
    /// A short stable name of the error's kind, for metric labels
    /// (`unknown_ca`, `name_mismatch`, `expired`, `client_cert_required`, ...).
    pub fn metric_label(&self) -> &'static str {
        match self {
            TlsError::Settings(_) => "settings",
            TlsError::ReadFile { .. } => "file_unreadable",
            TlsError::NoCertificate { .. } => "no_certificate",
            TlsError::NoPrivateKey { .. } => "no_private_key",
            TlsError::BadPem { .. } => "bad_pem",
            TlsError::BadCertificateFile { .. } => "bad_certificate_file",
            TlsError::BadPrivateKey { .. } => "bad_private_key",
            TlsError::KeyMismatch { .. } => "key_mismatch",
            TlsError::Setup(_) => "setup",
            TlsError::InvalidServerName { .. } => "invalid_server_name",
            TlsError::CommonName { .. } => "common_name",
            TlsError::UnknownCa { .. } => "unknown_ca",
            TlsError::NameMismatch { .. } => "name_mismatch",
            TlsError::Expired { .. } => "expired",
            TlsError::NotYetValid { .. } => "not_yet_valid",
            TlsError::ClientCertRequired { .. } => "client_cert_required",
            TlsError::ProtocolMismatch { .. } => "protocol_mismatch",
            TlsError::CertificateRejected { .. } => "bad_certificate",
            TlsError::PeerRejected { .. } => "peer_rejected",
            TlsError::HandshakeTimeout { .. } => "timeout",
            TlsError::Io(_) => "io",
            TlsError::Protocol { .. } => "tls",
        }
    }

    /// Whether this error happened during (or after) a handshake, as opposed to while
    /// setting up.
    pub fn is_handshake(&self) -> bool {
        matches!(
            self,
            TlsError::UnknownCa { .. }
                | TlsError::NameMismatch { .. }
                | TlsError::Expired { .. }
                | TlsError::NotYetValid { .. }
                | TlsError::ClientCertRequired { .. }
                | TlsError::ProtocolMismatch { .. }
                | TlsError::CertificateRejected { .. }
                | TlsError::PeerRejected { .. }
                | TlsError::HandshakeTimeout { .. }
                | TlsError::Io(_)
                | TlsError::Protocol { .. }
        )
    }

    /// Classifies an I/O error from a TLS stream: a rustls error inside becomes its
    /// kind, anything else is [`TlsError::Io`]. Use it on read errors after the
    /// handshake too: with TLS 1.3 a server refuses a client certificate (or its
    /// absence) only after the client finished its side of the handshake, so the client
    /// sees [`TlsError::ClientCertRequired`] on its first read.
    pub fn from_io(err: io::Error) -> TlsError {
        let tls = err
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .cloned();
        match tls {
            Some(tls) => TlsError::from_rustls(&tls),
            None => TlsError::Io(err),
        }
    }

    /// Sorts a rustls error into its kind.
    pub fn from_rustls(err: &rustls::Error) -> TlsError {
        match err {
            rustls::Error::InvalidCertificate(cert) => from_certificate_error(cert),
            rustls::Error::NoCertificatesPresented => TlsError::ClientCertRequired {
                detail: "the client sent no certificate".into(),
            },
            rustls::Error::AlertReceived(alert) => from_alert(*alert),
            rustls::Error::PeerIncompatible(why) => TlsError::ProtocolMismatch {
                detail: format!("{why:?}"),
            },
            rustls::Error::NoApplicationProtocol => TlsError::ProtocolMismatch {
                detail: "no ALPN protocol in common".into(),
            },
            other => TlsError::Protocol {
                detail: other.to_string(),
            },
        }
    }
}

fn from_alert(alert: AlertDescription) -> TlsError {
    match alert {
        AlertDescription::CertificateRequired => TlsError::ClientCertRequired {
            detail: "the server answered with the alert CertificateRequired".into(),
        },
        AlertDescription::ProtocolVersion
        | AlertDescription::NoApplicationProtocol
        | AlertDescription::InsufficientSecurity => TlsError::ProtocolMismatch {
            detail: format!("the peer sent the alert {alert:?}"),
        },
        AlertDescription::BadCertificate
        | AlertDescription::UnsupportedCertificate
        | AlertDescription::CertificateRevoked
        | AlertDescription::CertificateExpired
        | AlertDescription::CertificateUnknown
        | AlertDescription::UnknownCA
        | AlertDescription::AccessDenied
        | AlertDescription::HandshakeFailure
        | AlertDescription::DecryptError
        | AlertDescription::IllegalParameter => TlsError::PeerRejected {
            alert: format!("{alert:?}"),
        },
        other => TlsError::Protocol {
            detail: format!("the peer sent the alert {other:?}"),
        },
    }
}

fn from_certificate_error(err: &CertificateError) -> TlsError {
    match err {
        CertificateError::UnknownIssuer => TlsError::UnknownCa {
            detail: "its chain does not lead to any of the trusted CA certificates".into(),
        },
        CertificateError::ExpiredContext { time, not_after } => TlsError::Expired {
            not_after: format_time(*not_after),
            now: format_time(*time),
        },
        CertificateError::Expired => TlsError::Expired {
            not_after: "(unknown)".into(),
            now: format_time(UnixTime::now()),
        },
        CertificateError::NotValidYetContext { time, not_before } => TlsError::NotYetValid {
            not_before: format_time(*not_before),
            now: format_time(*time),
        },
        CertificateError::NotValidYet => TlsError::NotYetValid {
            not_before: "(unknown)".into(),
            now: format_time(UnixTime::now()),
        },
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => TlsError::NameMismatch {
            expected: expected.to_str().into_owned(),
            presented: presented.iter().map(|n| unwrap_name(n)).collect(),
        },
        CertificateError::NotValidForName => TlsError::NameMismatch {
            expected: "(unknown)".into(),
            presented: Vec::new(),
        },
        CertificateError::Other(other) => match other.0.downcast_ref::<CertificateIssue>() {
            Some(CertificateIssue::UnknownIssuer { .. }) => TlsError::UnknownCa {
                detail: other.0.to_string(),
            },
            _ => TlsError::CertificateRejected {
                detail: other.0.to_string(),
            },
        },
        other => TlsError::CertificateRejected {
            detail: rustls::Error::InvalidCertificate(other.clone()).to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_certificate_times() {
        assert_eq!(format_unix_secs(1_479_588_770), "2016-11-19T20:52:50Z");
    }

    #[test]
    fn alerts_and_errors_sort_into_kinds() {
        let e = TlsError::from_rustls(&rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired,
        ));
        assert_eq!(e.metric_label(), "client_cert_required");
        let e = TlsError::from_rustls(&rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        assert_eq!(e.metric_label(), "unknown_ca");
        let e = TlsError::from_rustls(&CertificateIssue::OldVersion { version: 1 }.into());
        assert_eq!(e.metric_label(), "bad_certificate");
        assert!(e.to_string().contains("X.509 v1"), "{e}");
        let e = TlsError::from_rustls(&rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::NoCipherSuitesInCommon,
        ));
        assert_eq!(e.metric_label(), "protocol_mismatch");
        let io = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::UnknownCA),
        );
        let e = TlsError::from_io(io);
        assert_eq!(e.metric_label(), "peer_rejected");
        assert!(e.to_string().contains("UnknownCA"), "{e}");
        let e = TlsError::from_io(io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(e.metric_label(), "io");
    }

    #[test]
    fn presented_names_are_bare() {
        assert_eq!(unwrap_name("DnsName(\"a.example\")"), "a.example");
        assert_eq!(unwrap_name("IpAddress(127.0.0.1)"), "127.0.0.1");
        assert_eq!(unwrap_name("linkerd"), "linkerd");
    }

    #[test]
    fn name_mismatch_says_both_names() {
        let e = TlsError::NameMismatch {
            expected: "world".into(),
            presented: vec!["hello".into()],
        };
        let s = e.to_string();
        assert!(s.contains("\"world\"") && s.contains("\"hello\""), "{s}");
    }
}
