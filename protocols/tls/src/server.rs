//! Accepting TLS on a router's server: the certificate (hot reloaded), optional client
//! certificates, versions, cipher suites and ALPN.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;

use crate::error::TlsError;
use crate::pem::{KeyFiles, load_ca_certificates};
use crate::reload::{ReloadingKey, ServerResolver};
use crate::settings::{ServerTlsSettings, TlsVersion, resolve_ciphers, resolve_versions};
use crate::stream::TlsStream;
use crate::{DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_RELOAD_INTERVAL, crypto_provider};

/// A server's TLS side, built once from its `tls:` block and shared by all its
/// connections (cloning is cheap).
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
    config: Arc<ServerConfig>,
    key: Arc<ReloadingKey>,
    handshake_timeout: Duration,
}

/// Builds the settings' versions and suites into a provider, logging what is dropped.
pub(crate) fn provider_for(
    protocols: Option<&[String]>,
    ciphers: Option<&[String]>,
    side: &'static str,
) -> Result<(Arc<CryptoProvider>, Vec<TlsVersion>), TlsError> {
    let mut provider = Arc::unwrap_or_clone(crypto_provider());
    let versions = resolve_versions(protocols).map_err(|p| TlsError::Settings(vec![p]))?;
    if !versions.dropped.is_empty() {
        tracing::warn!(
            side,
            dropped = ?versions.dropped,
            "tls.protocols lists versions Plexus does not speak; ignoring them"
        );
    }
    let suites = resolve_ciphers(ciphers, &provider.cipher_suites)
        .map_err(|p| TlsError::Settings(vec![p]))?;
    if !suites.dropped.is_empty() {
        tracing::warn!(
            side,
            dropped = ?suites.dropped,
            "tls.ciphers lists suites Plexus does not implement; ignoring them"
        );
    }
    provider.cipher_suites = suites.chosen;
    Ok((Arc::new(provider), versions.chosen))
}

impl ServerTls {
    /// Builds a server's TLS from its settings. `alpn` lists the protocols to offer, in
    /// order of preference (`[b"h2", b"http/1.1"]`); empty for none. The certificate
    /// files are read now (any problem is an error) and re-read on handshakes at most
    /// once a second when they change.
    pub fn new(settings: &ServerTlsSettings, alpn: &[&[u8]]) -> Result<ServerTls, TlsError> {
        Self::with_reload_interval(settings, alpn, DEFAULT_RELOAD_INTERVAL)
    }

    /// As [`new`](Self::new), checking the certificate files at most once per
    /// `reload_interval` (zero: on every handshake).
    pub fn with_reload_interval(
        settings: &ServerTlsSettings,
        alpn: &[&[u8]],
        reload_interval: Duration,
    ) -> Result<ServerTls, TlsError> {
        let problems = settings.validate();
        if !problems.is_empty() {
            return Err(TlsError::Settings(problems));
        }
        let (provider, versions) = provider_for(
            settings.protocols.as_deref(),
            settings.ciphers.as_deref(),
            "server",
        )?;
        let key = Arc::new(ReloadingKey::new(
            KeyFiles {
                cert_path: settings.cert_path.clone(),
                key_path: settings.key_path.clone(),
                intermediates_path: settings.intermediate_certs_path.clone(),
            },
            provider.clone(),
            reload_interval,
            "server",
        )?);
        let versions: Vec<_> = versions.iter().map(|v| v.rustls()).collect();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| TlsError::Setup(e.to_string()))?;
        let builder = match &settings.ca_cert_path {
            Some(ca) => {
                let roots = root_store("CA certificates (caCertPath)", ca)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                let verifier = if settings.require_client_auth {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| TlsError::Setup(format!("client certificate checks: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(ServerResolver(key.clone())));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let config = Arc::new(config);
        Ok(ServerTls {
            acceptor: TlsAcceptor::from(config.clone()),
            config,
            key,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        })
    }

    /// Sets how long [`accept`](Self::accept) waits for a handshake (default 10 s).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> ServerTls {
        self.handshake_timeout = timeout;
        self
    }

    /// Runs the server side of a handshake on `io`, within the handshake timeout.
    pub async fn accept<IO>(&self, io: IO) -> Result<TlsStream<IO>, TlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        match tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(io)).await {
            Ok(Ok(stream)) => Ok(TlsStream::server(stream)),
            Ok(Err(e)) => Err(TlsError::from_io(e)),
            Err(_) => Err(TlsError::HandshakeTimeout {
                after: self.handshake_timeout,
            }),
        }
    }

    /// The tokio-rustls acceptor (no timeout, errors unclassified), for callers that
    /// drive the handshake themselves.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// The rustls configuration in use.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// Re-reads the certificate files now instead of waiting for a handshake:
    /// `Ok(true)` when a new certificate went into service, `Ok(false)` when nothing
    /// changed. On error the certificate in service stays.
    pub fn reload_now(&self) -> Result<bool, TlsError> {
        self.key.reload_now()
    }
}

/// Loads a PEM file of CA certificates into a root store; each must be usable as a
/// trust anchor.
pub(crate) fn root_store(what: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_ca_certificates(what, path)? {
        roots.add(cert).map_err(|e| TlsError::BadCertificateFile {
            what,
            path: path.to_path_buf(),
            detail: format!("not usable as a CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("alpn_protocols", &self.config.alpn_protocols)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}
