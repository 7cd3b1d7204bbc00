//! An established TLS connection, with what the handshake agreed on.
//!
//! The router needs to know, after the handshake, which ALPN protocol was chosen (to
//! speak HTTP/2 or HTTP/1.1), which TLS version and suite (for metrics and
//! `/client_state.json`) and the peer's certificates (for `forwardClientCert`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::settings::{TlsVersion, suite_name};

/// A TLS connection over `IO`, client or server side. Reads and writes go through TLS.
#[derive(Debug)]
pub struct TlsStream<IO> {
    inner: tokio_rustls::TlsStream<IO>,
    server_name: Option<String>,
}

impl<IO> TlsStream<IO> {
    pub(crate) fn client(inner: tokio_rustls::client::TlsStream<IO>, name: String) -> Self {
        TlsStream {
            inner: inner.into(),
            server_name: Some(name),
        }
    }

    pub(crate) fn server(inner: tokio_rustls::server::TlsStream<IO>) -> Self {
        let server_name = inner.get_ref().1.server_name().map(str::to_string);
        TlsStream {
            inner: inner.into(),
            server_name,
        }
    }

    /// The ALPN protocol both sides agreed on (`h2`, `http/1.1`), if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.inner.get_ref().1.alpn_protocol()
    }

    /// The TLS version in use.
    pub fn protocol_version(&self) -> Option<TlsVersion> {
        self.inner
            .get_ref()
            .1
            .protocol_version()
            .and_then(TlsVersion::from_rustls)
    }

    /// The cipher suite in use, by IANA name.
    pub fn cipher_suite(&self) -> Option<String> {
        self.inner
            .get_ref()
            .1
            .negotiated_cipher_suite()
            .map(|s| suite_name(&s))
    }

    /// On a client connection, the name the server was verified against (also sent as
    /// SNI when it is a DNS name); on a server connection, the SNI the client sent.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// The certificates the peer presented, leaf first (none for a client that sent no
    /// certificate).
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.inner.get_ref().1.peer_certificates()
    }

    /// Whether this is the server side of the connection.
    pub fn is_server(&self) -> bool {
        matches!(self.inner, tokio_rustls::TlsStream::Server(_))
    }

    /// The underlying transport.
    pub fn get_ref(&self) -> &IO {
        self.inner.get_ref().0
    }

    /// The tokio-rustls stream, for APIs that want it.
    pub fn into_inner(self) -> tokio_rustls::TlsStream<IO> {
        self.inner
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
