//! What the route actor publishes to the workers: the ejected endpoints of one client.
//!
//! A [`Snapshot`] is immutable except for the probe tickets it shares with the actor, so
//! workers read it without locks and without waiting on a mailbox. Time moves on without
//! a new snapshot: an ejection's backoff ending makes its probe claimable, and a lost
//! probe's claim expiring makes it claimable again, both decided by the `now` a worker
//! passes in. The actor publishes a new snapshot after each [`Transition`](super::Transition)
//! and after each change of the endpoint set.
//!
//! A worker balancing one request:
//!
//! ```text
//! if snapshot.all_ejected(now) { pick among every endpoint (fail open) }
//! else { pick among those with snapshot.is_available(addr, now),
//!        then send only if snapshot.try_acquire(addr, now), else pick again }
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::policy::Reason;
use super::probe::ProbeTicket;

/// The ejected endpoints of one client, as published to the workers.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// How many endpoints the client has, ejected or not.
    endpoints: usize,
    /// Sorted by address.
    ejected: Vec<(SocketAddr, EjectedView)>,
}

/// Where an ejected endpoint's probe stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeState {
    /// The backoff is not over: the endpoint is dead.
    Waiting,
    /// The backoff is over and the probe is free: one request may be sent.
    Open,
    /// A probe was granted at `since` and its outcome has not arrived yet.
    Granted {
        /// When the probe was granted.
        since: Instant,
    },
}

/// One ejected endpoint, for the balancer and for the admin views.
#[derive(Clone, Debug)]
pub struct EjectedView {
    /// When the run of ejections started.
    pub since: Instant,
    /// When the current backoff ends and a probe may be sent.
    pub next_probe: Instant,
    /// The current backoff.
    pub backoff: Duration,
    /// Failures in a row, failed probes included.
    pub consecutive_failures: u32,
    /// Ejections in a row without a successful probe (1 for the first).
    pub ejections: u32,
    /// Why the policy ejected the endpoint.
    pub reason: Reason,
    /// The right to send the probe, shared with the actor and every copy of the
    /// snapshot.
    pub probe: ProbeTicket,
}

impl EjectedView {
    /// How long the endpoint has been out at `now` (`failure_accrual/removed_for_ms`).
    pub fn removed_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.since)
    }

    /// Where the probe stands at `now`.
    pub fn probe_state(&self, now: Instant) -> ProbeState {
        if now < self.next_probe {
            ProbeState::Waiting
        } else if self.probe.is_claimable(now) {
            ProbeState::Open
        } else {
            match self.probe.granted_at() {
                Some(since) => ProbeState::Granted { since },
                None => ProbeState::Open,
            }
        }
    }
}

impl Snapshot {
    /// A snapshot of a client with `endpoints` endpoints, of which `ejected` are out.
    pub(crate) fn new(endpoints: usize, mut ejected: Vec<(SocketAddr, EjectedView)>) -> Self {
        ejected.sort_by_key(|(addr, _)| *addr);
        Snapshot { endpoints, ejected }
    }

    /// How many endpoints the client has, ejected or not.
    pub fn endpoints(&self) -> usize {
        self.endpoints
    }

    /// The ejected endpoints, sorted by address.
    pub fn ejected(&self) -> &[(SocketAddr, EjectedView)] {
        &self.ejected
    }

    /// The ejection of `addr`, if it is out.
    pub fn get(&self, addr: SocketAddr) -> Option<&EjectedView> {
        self.ejected
            .binary_search_by_key(&addr, |(a, _)| *a)
            .ok()
            .map(|i| &self.ejected[i].1)
    }

    /// Whether `addr` may take a request at `now`: not ejected, or its probe is free.
    /// Addresses the actor does not know are reported available; the endpoint set
    /// comes from discovery, not from here.
    pub fn is_available(&self, addr: SocketAddr, now: Instant) -> bool {
        self.get(addr).is_none_or(|e| e.probe.is_claimable(now))
    }

    /// Call just before sending to `addr`: `true` when it is not ejected, or when its
    /// probe was free and is now claimed by the caller (send exactly that one request).
    pub fn try_acquire(&self, addr: SocketAddr, now: Instant) -> bool {
        self.get(addr).is_none_or(|e| e.probe.try_claim(now))
    }

    /// `true` when the client has endpoints and none may take a request at `now`: the
    /// balancer then fails open and sends to all of them (see the module docs of
    /// [`accrual`](super)).
    pub fn all_ejected(&self, now: Instant) -> bool {
        self.endpoints > 0
            && self.ejected.len() >= self.endpoints
            && self.ejected.iter().all(|(_, e)| !e.probe.is_claimable(now))
    }
}
