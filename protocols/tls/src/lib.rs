//! TLS for Plexus routers, configured with the `tls` blocks of Linkerd 1.x configs.
//!
//! A router accepts TLS with a [`ServerTls`] built from a server's `tls:` block
//! ([`ServerTlsSettings`]) and originates TLS with a [`ClientTls`] built from a client's
//! `tls:` block ([`ClientTlsSettings`]). Both run on rustls with the *ring* provider. A
//! client trusts what its configuration names, or the operating system's CA bundle when
//! it names nothing; no root store is bundled.
//!
//! What this crate adds on top of rustls:
//! - the settings model with Linkerd's key names and a [`validate`](ServerTlsSettings::validate)
//!   step that names every problem at once;
//! - PEM loading that says which file is wrong and why (PKCS#8, PKCS#1 and SEC1 keys);
//! - hot reload: a server's (and a client's) certificate and key are re-read when their
//!   files change, so rotated certificates are used by new handshakes without a restart,
//!   and a broken new file keeps the old certificate in service;
//! - classified handshake errors ([`TlsError`] with [`TlsError::metric_label`]) for logs
//!   and metrics;
//! - an explicit legacy verifier (`legacyCertificates: true`) for old sample
//!   certificates that strict verification refuses (X.509 v1, no subjectAltName,
//!   expired CA).
//!
//! The crate knows nothing about routers or naming: the router decides when to use it
//! and with which server name.

mod client;
mod error;
mod legacy;
mod pem;
mod reload;
mod server;
mod settings;
mod stream;
mod x509;

pub use client::ClientTls;
pub use error::{CertificateIssue, TlsError};
pub use pem::{load_certificates, load_private_key};
pub use server::ServerTls;
pub use settings::{
    ClientAuthSettings, ClientTlsSettings, ServerTlsSettings, SettingsProblem, TlsVersion,
};
pub use stream::TlsStream;

use std::sync::Arc;
use std::time::Duration;

/// How long a handshake may take before it fails with [`TlsError::HandshakeTimeout`],
/// unless the caller sets another limit.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often, at most, the certificate files are checked for changes (on a handshake).
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// The crypto provider every Plexus TLS configuration is built with: rustls on *ring*.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
