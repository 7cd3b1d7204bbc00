//! Negotiated upgrades between Plexus peers: HTTP/1.1 carried over HTTP/2, plaintext
//! turned into TLS.
//!
//! When a client may upgrade (`peerUpgrades: [h2, tls]`), its first request to an
//! endpoint goes out as the application sent it, plus the offer `l5d-peer-upgrade: h2,
//! tls` (what the client may use). A Plexus router accepts HTTP/1.1 and HTTP/2 (prior
//! knowledge) on the same port, and, when its server has `tls` with
//! `acceptPlaintext: true`, TLS and plaintext on the same port too; it strips the offer
//! and answers with what it accepts (`h2`, plus `tls` when it has a certificate). From
//! then on this worker sends that endpoint's requests the best way both sides allow:
//! streams of one HTTP/2 connection, inside TLS; the peer turns them back into HTTP/1.1
//! for the application (Host, bodies, trailers intact). Anything else, an application
//! or another proxy, ignores the offer, the answer lacks the header, and the endpoint is
//! remembered as plain HTTP/1.1 for [`PLAIN_RECHECK`] before being offered again. `Upgrade` and `CONNECT` requests always
//! stay HTTP/1.1 end to end. If an HTTP/2 connection to a peer cannot be made, the
//! endpoint goes back to unknown and the next request negotiates again.
//!
//! What a worker learns is published in one shared table, which other workers consult
//! the first time they meet the endpoint (then they keep their own copy, so requests
//! take no lock), and which `/client_state.json` shows.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long an endpoint that did not take the offer is left alone.
pub const PLAIN_RECHECK: Duration = Duration::from_secs(300);

/// Upgrades offered, accepted, or in use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Upgrades {
    /// HTTP/1.1 carried over HTTP/2.
    pub h2: bool,
    /// TLS instead of plaintext.
    pub tls: bool,
    /// Thrift carried over one Mux session (Thrift routers).
    pub mux: bool,
}

impl Upgrades {
    /// A Thrift peer reached over Mux.
    pub const MUX: Upgrades = Upgrades {
        h2: false,
        tls: false,
        mux: true,
    };

    /// What both sides allow.
    pub fn and(self, other: Upgrades) -> Upgrades {
        Upgrades {
            h2: self.h2 && other.h2,
            tls: self.tls && other.tls,
            mux: self.mux && other.mux,
        }
    }

    /// The header value: `h2`, `tls` or `h2, tls`; `None` when empty.
    pub fn header(self) -> Option<&'static str> {
        match (self.h2, self.tls) {
            (true, true) => Some("h2, tls"),
            (true, false) => Some("h2"),
            (false, true) => Some("tls"),
            (false, false) => None,
        }
    }
}

/// What is known about an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    /// Never asked (or asked again after a failure): offer the upgrades.
    Unknown,
    /// Did not take the offer; as the application sent it until then.
    Plain {
        /// When to offer again.
        until: Instant,
        /// What the application speaks (`http/1.1`, `thrift`), for `/client_state.json`.
        protocol: &'static str,
    },
    /// A Plexus peer accepting these upgrades.
    Peer(Upgrades),
}

impl PeerState {
    fn label(self) -> &'static str {
        match self {
            PeerState::Unknown => "unknown",
            PeerState::Plain { protocol, .. } => protocol,
            PeerState::Peer(u) if u.mux => "thriftmux",
            PeerState::Peer(u) => match (u.h2, u.tls) {
                (true, true) => "h2+tls",
                (true, false) => "h2",
                (false, true) => "http/1.1+tls",
                (false, false) => "http/1.1 (peer)",
            },
        }
    }
}

thread_local! {
    static KNOWN: RefCell<HashMap<SocketAddr, PeerState>> = RefCell::new(HashMap::new());
}

fn shared() -> &'static Mutex<HashMap<SocketAddr, PeerState>> {
    static SHARED: OnceLock<Mutex<HashMap<SocketAddr, PeerState>>> = OnceLock::new();
    SHARED.get_or_init(Mutex::default)
}

/// What this worker knows about `addr` now (an expired `Plain` is `Unknown`).
pub fn state(addr: SocketAddr, now: Instant) -> PeerState {
    let local = KNOWN.with(|k| k.borrow().get(&addr).copied());
    let known = match local {
        Some(s) => s,
        None => {
            // First meeting on this worker: start from what another worker learned.
            let learned = shared()
                .lock()
                .ok()
                .and_then(|s| s.get(&addr).copied())
                .unwrap_or(PeerState::Unknown);
            KNOWN.with(|k| k.borrow_mut().insert(addr, learned));
            learned
        }
    };
    match known {
        PeerState::Plain { until, .. } if now >= until => PeerState::Unknown,
        s => s,
    }
}

/// Records what an exchange with `addr` showed.
pub fn learn(addr: SocketAddr, state: PeerState) {
    let changed = KNOWN.with(|k| k.borrow_mut().insert(addr, state) != Some(state));
    if changed {
        tracing::debug!(endpoint = %addr, protocol = state.label(), "peer protocol");
        if let Ok(mut s) = shared().lock() {
            s.insert(addr, state);
        }
    }
}

/// The protocol last negotiated with `addr` by any worker, for the admin view.
pub fn negotiated(addr: SocketAddr) -> Option<&'static str> {
    Some(shared().lock().ok()?.get(&addr)?.label())
}

/// The upgrades a header (offer or answer) names; `None` without the header.
pub fn parse(headers: &http::HeaderMap) -> Option<Upgrades> {
    let mut found = None;
    for v in headers
        .get_all(plexus_http::headers::L5D_PEER_UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        let u: &mut Upgrades = found.get_or_insert_with(Upgrades::default);
        for t in v.split(',').map(str::trim) {
            u.h2 |= t.eq_ignore_ascii_case("h2");
            u.tls |= t.eq_ignore_ascii_case("tls");
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_endpoints_are_offered_again_after_the_recheck_time() {
        let addr: SocketAddr = "127.0.9.9:1".parse().unwrap();
        let now = Instant::now();
        assert_eq!(state(addr, now), PeerState::Unknown);
        learn(
            addr,
            PeerState::Plain {
                until: now + PLAIN_RECHECK,
                protocol: "http/1.1",
            },
        );
        assert_eq!(
            state(addr, now),
            PeerState::Plain {
                until: now + PLAIN_RECHECK,
                protocol: "http/1.1",
            }
        );
        assert_eq!(state(addr, now + PLAIN_RECHECK), PeerState::Unknown);
        let both = PeerState::Peer(Upgrades {
            h2: true,
            tls: true,
            mux: false,
        });
        learn(addr, both);
        assert_eq!(state(addr, now), both);
        assert_eq!(negotiated(addr), Some("h2+tls"));
    }

    #[test]
    fn offers_and_answers_are_read_from_any_value() {
        let mut h = http::HeaderMap::new();
        assert_eq!(parse(&h), None);
        h.append("l5d-peer-upgrade", "H2".parse().unwrap());
        assert_eq!(
            parse(&h),
            Some(Upgrades {
                h2: true,
                tls: false,
                mux: false
            })
        );
        h.append("l5d-peer-upgrade", "tls, zstd".parse().unwrap());
        assert_eq!(
            parse(&h),
            Some(Upgrades {
                h2: true,
                tls: true,
                mux: false
            })
        );
        assert_eq!(
            Upgrades {
                h2: true,
                tls: true,
                mux: false
            }
            .header(),
            Some("h2, tls")
        );
        assert_eq!(Upgrades::default().header(), None);
    }
}
