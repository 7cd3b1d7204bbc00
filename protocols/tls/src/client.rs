//! Originating TLS from a router's client: verifying the server (strict, legacy or not
//! at all), presenting a client certificate (hot reloaded), versions and ALPN.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;

use crate::error::TlsError;
use crate::legacy::{LegacyVerifier, NoVerification, StrictVerifier};
use crate::pem::{KeyFiles, load_ca_certificates};
use crate::reload::{ClientResolver, ReloadingKey};
use crate::server::{provider_for, root_store};
use crate::settings::{ClientTlsSettings, SettingsProblem};
use crate::stream::TlsStream;
use crate::x509::CertInfo;
use crate::{DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_RELOAD_INTERVAL};

/// A client's TLS side, built once from its `tls:` block and shared by all its
/// connections (cloning is cheap).
#[derive(Clone)]
pub struct ClientTls {
    connector: TlsConnector,
    config: Arc<ClientConfig>,
    client_key: Option<Arc<ReloadingKey>>,
    handshake_timeout: Duration,
}

impl ClientTls {
    /// Builds a client's TLS from its settings. `alpn` lists the protocols to offer
    /// (`[b"h2"]`); empty for none. Trusted CA files and the client certificate are read
    /// now; the client certificate is re-read when its files change.
    ///
    /// Settings with `enabled: false` are refused: the caller should not originate TLS.
    pub fn new(settings: &ClientTlsSettings, alpn: &[&[u8]]) -> Result<ClientTls, TlsError> {
        Self::with_reload_interval(settings, alpn, DEFAULT_RELOAD_INTERVAL)
    }

    /// As [`new`](Self::new), checking the client certificate files at most once per
    /// `reload_interval`.
    pub fn with_reload_interval(
        settings: &ClientTlsSettings,
        alpn: &[&[u8]],
        reload_interval: Duration,
    ) -> Result<ClientTls, TlsError> {
        if !settings.enabled {
            return Err(TlsError::Settings(vec![SettingsProblem {
                key: "enabled",
                message: "is false: this client does not originate TLS".into(),
            }]));
        }
        let problems = settings.validate();
        if !problems.is_empty() {
            return Err(TlsError::Settings(problems));
        }
        let (provider, versions) = provider_for(settings.protocols.as_deref(), None, "client")?;
        let algs = provider.signature_verification_algorithms;
        let verifier: Arc<dyn ServerCertVerifier> = if settings.disable_validation {
            tracing::warn!(
                "tls.disableValidation is true: server certificates are NOT verified. The \
                 connection is encrypted, but anyone on the network path can pose as the \
                 server. Use it only for testing."
            );
            Arc::new(NoVerification { algs })
        } else if settings.legacy_certificates {
            let anchors = trust_anchors(settings)?;
            tracing::warn!(
                common_name = settings.common_name.as_deref().unwrap_or(""),
                "tls.legacyCertificates is true: server certificates are verified with the \
                 legacy rules. X.509 v1 certificates are accepted, the name may be only in \
                 the subject CN, and the CA's expiry, CA flags and key usages are ignored. \
                 Signatures up to the configured CA, the expected name and the server \
                 certificate's own dates are still checked. Replace these certificates \
                 (plexus tls init / issue) and remove the option."
            );
            let mut parsed = Vec::new();
            for (path, cert) in anchors {
                parsed.push(CertInfo::parse(&cert).map_err(|detail| {
                    TlsError::BadCertificateFile {
                        what: "trust certificates",
                        path,
                        detail: format!("cannot parse a CA certificate: {detail}"),
                    }
                })?);
            }
            Arc::new(LegacyVerifier::new(parsed, algs))
        } else {
            let mut roots = rustls::RootCertStore::empty();
            for path in trust_paths(settings) {
                roots
                    .roots
                    .extend(root_store("trust certificates", &path)?.roots);
            }
            let inner =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| TlsError::Setup(format!("server certificate checks: {e}")))?;
            Arc::new(StrictVerifier { inner })
        };
        let versions: Vec<_> = versions.iter().map(|v| v.rustls()).collect();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let (mut config, client_key) = match &settings.client_auth {
            Some(auth) => {
                let key = Arc::new(ReloadingKey::new(
                    KeyFiles {
                        cert_path: auth.cert_path.clone(),
                        key_path: auth.key_path.clone(),
                        intermediates_path: auth.intermediate_certs_path.clone(),
                    },
                    provider.clone(),
                    reload_interval,
                    "client",
                )?);
                (
                    builder.with_client_cert_resolver(Arc::new(ClientResolver(key.clone()))),
                    Some(key),
                )
            }
            None => (builder.with_no_client_auth(), None),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let config = Arc::new(config);
        Ok(ClientTls {
            connector: TlsConnector::from(config.clone()),
            config,
            client_key,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        })
    }

    /// Sets how long [`connect`](Self::connect) waits for a handshake (default 10 s).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> ClientTls {
        self.handshake_timeout = timeout;
        self
    }

    /// Runs the client side of a handshake on `io`. `server_name` is the name the
    /// server's certificate must carry and the SNI sent (a DNS name; an IP address is
    /// checked against IP subjectAltNames and sends no SNI): the client's `commonName`
    /// with its captures filled in ([`ClientTlsSettings::common_name_with`]).
    pub async fn connect<IO>(&self, server_name: &str, io: IO) -> Result<TlsStream<IO>, TlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let name = ServerName::try_from(server_name.to_string()).map_err(|e| {
            TlsError::InvalidServerName {
                name: server_name.to_string(),
                detail: e.to_string(),
            }
        })?;
        let handshake = self.connector.connect(name, io);
        match tokio::time::timeout(self.handshake_timeout, handshake).await {
            Ok(Ok(stream)) => Ok(TlsStream::client(stream, server_name.to_string())),
            Ok(Err(e)) => Err(TlsError::from_io(e)),
            Err(_) => Err(TlsError::HandshakeTimeout {
                after: self.handshake_timeout,
            }),
        }
    }

    /// The tokio-rustls connector (no timeout, errors unclassified), for callers that
    /// drive the handshake themselves.
    pub fn connector(&self) -> TlsConnector {
        self.connector.clone()
    }

    /// The rustls configuration in use.
    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    /// Re-reads the client certificate files now (see [`ServerTls::reload_now`]);
    /// `Ok(false)` when there is no client certificate or nothing changed.
    ///
    /// [`ServerTls::reload_now`]: crate::ServerTls::reload_now
    pub fn reload_now(&self) -> Result<bool, TlsError> {
        match &self.client_key {
            Some(key) => key.reload_now(),
            None => Ok(false),
        }
    }
}

/// Where the operating system keeps its CA bundle (Debian, Ubuntu, Alpine; Fedora, RHEL;
/// macOS and the BSDs), after `SSL_CERT_FILE`.
const SYSTEM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// The configured trust (`trustCertsBundle`, `trustCerts`), or, when neither is given,
/// the system's CA bundle, as the JVM's default trust store served Linkerd (egress to
/// public services). Plexus bundles no CAs of its own.
fn trust_paths(settings: &ClientTlsSettings) -> Vec<PathBuf> {
    let configured: Vec<PathBuf> = settings
        .trust_certs_bundle
        .iter()
        .chain(settings.trust_certs.iter())
        .cloned()
        .collect();
    if !configured.is_empty() {
        return configured;
    }
    let system = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from))
        .find(|p| p.is_file());
    match system {
        Some(path) => vec![path],
        // Reported by root_store as a missing file naming where it looked.
        None => vec![PathBuf::from(SYSTEM_BUNDLES[0])],
    }
}

fn trust_anchors(
    settings: &ClientTlsSettings,
) -> Result<Vec<(PathBuf, CertificateDer<'static>)>, TlsError> {
    let mut out = Vec::new();
    for path in trust_paths(settings) {
        for cert in load_ca_certificates("trust certificates", &path)? {
            out.push((path.clone(), cert));
        }
    }
    Ok(out)
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("alpn_protocols", &self.config.alpn_protocols)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}
