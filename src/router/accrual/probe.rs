//! The single probe of an ejected endpoint, claimable once across threads.
//!
//! When an ejection's backoff ends, exactly one request may be sent to the endpoint to
//! find out whether it has recovered. The route actor publishes its state to the worker
//! threads as a [`Snapshot`](super::Snapshot), so the grant cannot be a mutation of the
//! actor's state: each ejection carries a [`ProbeTicket`], shared by the actor and every
//! copy of the snapshot, that the first worker to pick the endpoint claims with one
//! compare-and-swap. Others see it held and pick another endpoint.
//!
//! A probe whose outcome never comes back (the request was dropped, the outcome was
//! lost on its way to the actor) must not leave the endpoint out forever, which is the
//! wedge Finagle's `ProbeClosed` state could get into. A claim therefore expires: once
//! it has been held for the ticket's timeout (the backoff that preceded the probe, at
//! least [`MIN_PROBE_TIMEOUT`]), the ticket can be claimed again and a new probe goes
//! out. At most one probe is granted per timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The shortest time a granted probe is waited for before another is granted, so a
/// zero backoff does not grant a probe to every request.
pub const MIN_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The right to send the one probe request of an ejected endpoint.
///
/// Cloning shares the ticket: a claim through any clone is seen by all.
#[derive(Clone)]
pub struct ProbeTicket(Arc<Inner>);

struct Inner {
    /// When the backoff ends and the ticket may first be claimed.
    opens_at: Instant,
    /// How long a claim lasts without an outcome.
    timeout: Duration,
    /// 0 when free, else 1 + the nanoseconds from `opens_at` to the claim.
    claimed: AtomicU64,
}

impl ProbeTicket {
    /// A free ticket that opens at `opens_at`; a claim expires after `timeout` (at least
    /// [`MIN_PROBE_TIMEOUT`]).
    pub(crate) fn new(opens_at: Instant, timeout: Duration) -> Self {
        ProbeTicket(Arc::new(Inner {
            opens_at,
            timeout: timeout.max(MIN_PROBE_TIMEOUT),
            claimed: AtomicU64::new(0),
        }))
    }

    /// When the backoff ends and a probe may first be sent.
    pub fn opens_at(&self) -> Instant {
        self.0.opens_at
    }

    /// How long a granted probe is waited for before another may be granted.
    pub fn timeout(&self) -> Duration {
        self.0.timeout
    }

    /// When the current probe was granted, if one is outstanding or was ever granted.
    pub fn granted_at(&self) -> Option<Instant> {
        self.decode(self.0.claimed.load(Ordering::Acquire))
    }

    /// Whether a claim at `now` would succeed: the backoff is over and no probe is
    /// outstanding (none was granted, or the last one expired).
    pub fn is_claimable(&self, now: Instant) -> bool {
        now >= self.0.opens_at && self.free(self.0.claimed.load(Ordering::Acquire), now)
    }

    /// Claims the probe at `now`; `true` means the caller must send the probe request.
    pub fn try_claim(&self, now: Instant) -> bool {
        if now < self.0.opens_at {
            return false;
        }
        let stamp = self.encode(now);
        let mut current = self.0.claimed.load(Ordering::Acquire);
        loop {
            if !self.free(current, now) {
                return false;
            }
            match self.0.claimed.compare_exchange_weak(
                current,
                stamp,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }

    fn free(&self, claimed: u64, now: Instant) -> bool {
        match self.decode(claimed) {
            None => true,
            Some(at) => now.saturating_duration_since(at) >= self.0.timeout,
        }
    }

    fn encode(&self, now: Instant) -> u64 {
        let nanos = now.saturating_duration_since(self.0.opens_at).as_nanos();
        u64::try_from(nanos)
            .unwrap_or(u64::MAX - 1)
            .min(u64::MAX - 1)
            + 1
    }

    fn decode(&self, claimed: u64) -> Option<Instant> {
        let nanos = claimed.checked_sub(1)?;
        // Encoded from an `Instant` at or after `opens_at`, so this cannot overflow
        // unless the stamp was clamped; then the claim is treated as very old.
        Some(
            self.0
                .opens_at
                .checked_add(Duration::from_nanos(nanos))
                .unwrap_or(self.0.opens_at),
        )
    }
}

impl std::fmt::Debug for ProbeTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeTicket")
            .field("opens_at", &self.0.opens_at)
            .field("timeout", &self.0.timeout)
            .field("granted_at", &self.granted_at())
            .finish()
    }
}
