//! The TCP settings of the connections that carry traffic, made or accepted.
//!
//! Every connection a router makes to an endpoint or a peer, and every connection a
//! router's server accepts, gets `TCP_NODELAY` (Plexus writes whole messages; waiting
//! for more would only add latency) and TCP keepalive.
//!
//! Without keepalive, a connection whose peer vanished without closing it (a node
//! powered off, a network partition, an address handed to another pod) looks idle for
//! good: an HTTP/2 connection to it goes on taking new streams that are never answered,
//! and a server keeps the socket, and its memory, forever. With the probes below, such
//! a connection fails about a minute after its peer was last heard from; its requests
//! fail over (requeues, failure accrual) and the next ones get a new connection.
//!
//! The probes are answered by the peer's kernel, so a slow but live application is never
//! cut off by them. HTTP/2 PING frames would also test the peer process, but servers
//! such as gRPC's answer frequent pings with `GOAWAY` (`ENHANCE_YOUR_CALM`), so Plexus
//! does not send them.

use std::io;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

/// Silence on a connection before the first keepalive probe.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// Time between unanswered probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes after which the kernel closes the connection (with `ETIMEDOUT`).
pub const KEEPALIVE_PROBES: u32 = 3;

/// Applies Plexus's TCP settings to a connection just made or accepted. A setting the
/// kernel refuses is logged and left out: the connection works without it.
pub fn tune(stream: &TcpStream) {
    if let Err(error) = apply(stream) {
        tracing::debug!(%error, "cannot set the connection's TCP options");
    }
}

fn apply(stream: &TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let keepalive = TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    SockRef::from(stream).set_tcp_keepalive(&keepalive)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn assert_tuned(stream: &TcpStream) {
        assert!(stream.nodelay().expect("nodelay"));
        let socket = SockRef::from(stream);
        assert!(socket.keepalive().expect("SO_KEEPALIVE"));
        assert_eq!(KEEPALIVE_IDLE, socket.tcp_keepalive_time().expect("idle"));
        assert_eq!(
            KEEPALIVE_INTERVAL,
            socket.tcp_keepalive_interval().expect("interval")
        );
        assert_eq!(
            KEEPALIVE_PROBES,
            socket.tcp_keepalive_retries().expect("probes")
        );
    }

    #[tokio::test]
    async fn both_ends_of_a_connection_get_nodelay_and_keepalive() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let made = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (accepted, _) = listener.accept().await.expect("accept");
        // The kernel's defaults: no keepalive at all.
        assert!(!SockRef::from(&made).keepalive().expect("SO_KEEPALIVE"));
        tune(&made);
        tune(&accepted);
        assert_tuned(&made);
        assert_tuned(&accepted);
    }
}
