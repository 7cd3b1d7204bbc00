//! Hot reload of a certificate and its key from their files.
//!
//! Certificates are rotated by rewriting their files (or, in Kubernetes, by a Secret
//! volume swapping a symlink). On a handshake, at most once per interval, the files are
//! read again and compared with what is in service; when they changed and parse into a
//! certificate that matches its key, new handshakes use it. Connections already
//! established are not touched. A new file that is broken (half written, wrong key,
//! garbage) keeps the certificate in service and is logged once, not on every
//! handshake; a later good write is picked up as usual.

use std::sync::{Arc, Mutex, TryLockError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::error::{TlsError, format_unix_secs};
use crate::pem::{KeyFileBytes, KeyFiles, Loaded};

/// A certificate and key that follow their files.
#[derive(Debug)]
pub(crate) struct ReloadingKey {
    files: KeyFiles,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<Loaded>,
    interval: Duration,
    state: Mutex<State>,
    /// `server` or `client`, for logs.
    role: &'static str,
}

#[derive(Debug)]
struct State {
    last_check: Instant,
    /// The file contents in service.
    in_service: KeyFileBytes,
    /// The last problem logged, so that a broken file is reported once.
    last_error: Option<String>,
}

impl ReloadingKey {
    /// Loads the files once; any problem is an error (nothing to fall back on yet).
    pub(crate) fn new(
        files: KeyFiles,
        provider: Arc<CryptoProvider>,
        interval: Duration,
        role: &'static str,
    ) -> Result<ReloadingKey, TlsError> {
        let bytes = files.read()?;
        let loaded = files.build(&bytes, &provider)?;
        tracing::info!(
            role,
            cert = %files.cert_path.display(),
            subject = %loaded.leaf.subject,
            serial = %loaded.leaf.serial,
            not_after = %format_unix_secs(loaded.leaf.not_after),
            "loaded TLS certificate"
        );
        warn_if_expired(role, &files, &loaded);
        Ok(ReloadingKey {
            files,
            provider,
            current: ArcSwap::from_pointee(loaded),
            interval,
            state: Mutex::new(State {
                last_check: Instant::now(),
                in_service: bytes,
                last_error: None,
            }),
            role,
        })
    }

    /// The certificate to present now, after checking the files if the interval has
    /// passed.
    pub(crate) fn current(&self) -> Arc<CertifiedKey> {
        self.maybe_reload();
        self.current.load().key.clone()
    }

    /// Checks the files now. `Ok(true)` when a new certificate went into service,
    /// `Ok(false)` when the files did not change; on error the old certificate stays.
    pub(crate) fn reload_now(&self) -> Result<bool, TlsError> {
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        self.check(&mut state)
    }

    fn maybe_reload(&self) {
        let mut state = match self.state.try_lock() {
            Ok(s) => s,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            // Another handshake is checking right now; serve what is in service.
            Err(TryLockError::WouldBlock) => return,
        };
        if state.last_check.elapsed() < self.interval {
            return;
        }
        if let Err(e) = self.check(&mut state) {
            let message = e.to_string();
            if state.last_error.as_deref() != Some(message.as_str()) {
                tracing::error!(
                    role = self.role,
                    cert = %self.files.cert_path.display(),
                    error = %message,
                    "the TLS certificate files changed but cannot be used; keeping the certificate in service"
                );
                state.last_error = Some(message);
            }
        }
    }

    fn check(&self, state: &mut State) -> Result<bool, TlsError> {
        state.last_check = Instant::now();
        let bytes = self.files.read()?;
        if bytes == state.in_service {
            state.last_error = None;
            return Ok(false);
        }
        let loaded = self.files.build(&bytes, &self.provider)?;
        tracing::info!(
            role = self.role,
            cert = %self.files.cert_path.display(),
            subject = %loaded.leaf.subject,
            serial = %loaded.leaf.serial,
            not_after = %format_unix_secs(loaded.leaf.not_after),
            "reloaded TLS certificate"
        );
        warn_if_expired(self.role, &self.files, &loaded);
        self.current.store(Arc::new(loaded));
        state.in_service = bytes;
        state.last_error = None;
        Ok(true)
    }
}

/// A certificate outside its validity is still served (the peer decides), but it will
/// be refused by every verifying peer: say so where the operator looks.
fn warn_if_expired(role: &'static str, files: &KeyFiles, loaded: &Loaded) {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let leaf = &loaded.leaf;
    if now > leaf.not_after || now < leaf.not_before {
        tracing::warn!(
            role,
            cert = %files.cert_path.display(),
            not_before = %format_unix_secs(leaf.not_before),
            not_after = %format_unix_secs(leaf.not_after),
            "the TLS certificate is outside its validity period; peers that verify it will refuse it"
        );
    }
}

/// Hands a [`ReloadingKey`] to rustls as the server's certificate.
#[derive(Debug)]
pub(crate) struct ServerResolver(pub(crate) Arc<ReloadingKey>);

impl ResolvesServerCert for ServerResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }
}

/// Hands a [`ReloadingKey`] to rustls as the client's certificate.
#[derive(Debug)]
pub(crate) struct ClientResolver(pub(crate) Arc<ReloadingKey>);

impl ResolvesClientCert for ClientResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
