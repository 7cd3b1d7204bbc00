//! The state machine of one endpoint: alive, or ejected with a probe to come.
//!
//! ```text
//!            policy verdict                 backoff over
//!   Alive ─────────────────────▶ Dead ───────────────────▶ ProbeOpen
//!     ▲                            ▲                           │ one request
//!     │ probe succeeded            │ probe failed              ▼ (ticket claimed)
//!     └────────────────────────────┴──────────────────── ProbeGranted
//!                                                              │ no outcome for the
//!                                                              ▼ probe timeout
//!                                                          ProbeOpen again
//! ```
//!
//! `Dead`, `ProbeOpen` and `ProbeGranted` are one [`Ejection`] seen at different times:
//! before `until` it is dead, after it the [`ProbeTicket`] says whether the probe is free
//! or outstanding. So time alone never needs a call into the state machine; only outcomes
//! do.
//!
//! Outcomes are handled like this:
//! * alive: the outcome goes to the policy, which may eject (`until = now + backoff`);
//! * dead (before `until`): ignored. These are late results of requests sent before the
//!   ejection (or sent anyway because every endpoint was out, see the module docs); they
//!   neither revive nor lengthen the ejection;
//! * after `until`: the first outcome is the probe's verdict, whichever request carried
//!   it. A success revives the endpoint and clears the policy and the backoff; a failure
//!   ejects it again with the next, longer, backoff.

use std::time::{Duration, Instant};

use super::backoff::Backoff;
use super::policy::{Policy, PolicyState, Reason};
use super::probe::ProbeTicket;

/// A change of an endpoint's state caused by an outcome, for logs and the
/// `failure_accrual/*` metrics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Transition {
    /// The policy ejected an alive endpoint. Metrics: `removals` += 1,
    /// `removed_for_ms` += `backoff`.
    Removed {
        /// Why the policy ejected it.
        reason: Reason,
        /// How long it stays out before its probe.
        backoff: Duration,
    },
    /// The probe failed and the endpoint is out again, for longer. Metrics: `probes` += 1,
    /// `removed_for_ms` += `backoff`.
    ProbeFailed {
        /// How long it stays out before its next probe.
        backoff: Duration,
        /// How many ejections in a row, this one included (2 after the first failed
        /// probe).
        ejections: u32,
    },
    /// The probe succeeded and the endpoint is alive again. Metrics: `probes` += 1,
    /// `revivals` += 1.
    Revived {
        /// How long it was out, from the first ejection of the run to the revival.
        removed_for: Duration,
    },
}

/// An endpoint out of the balancer, until its probe succeeds.
#[derive(Clone, Debug)]
pub(crate) struct Ejection {
    /// When the run of ejections started (the policy's verdict).
    pub(crate) since: Instant,
    /// When this ejection's backoff ends and the probe may be sent.
    pub(crate) until: Instant,
    /// This ejection's backoff.
    pub(crate) backoff: Duration,
    /// Ejections in a row without a successful probe (1 for the first).
    pub(crate) ejections: u32,
    /// The policy's verdict that started the run.
    pub(crate) reason: Reason,
    /// The right to send this ejection's probe.
    pub(crate) probe: ProbeTicket,
}

impl Ejection {
    fn new(
        since: Instant,
        now: Instant,
        ejections: u32,
        reason: Reason,
        backoff: Duration,
    ) -> Self {
        let until = later(now, backoff);
        Ejection {
            since,
            until,
            backoff,
            ejections,
            reason,
            probe: ProbeTicket::new(until, backoff),
        }
    }
}

/// `now + d`, or the latest representable instant on the way there.
fn later(now: Instant, mut d: Duration) -> Instant {
    loop {
        if let Some(t) = now.checked_add(d) {
            return t;
        }
        d /= 2;
    }
}

/// One endpoint's failure-accrual state.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    policy: PolicyState,
    /// Failures in a row (alive or probing), for the admin view.
    consecutive_failures: u32,
    /// `Some` while the endpoint is out of the balancer.
    ejection: Option<Ejection>,
}

impl Endpoint {
    /// A new, alive endpoint.
    pub(crate) fn new(policy: &Policy, now: Instant) -> Self {
        Endpoint {
            policy: PolicyState::new(policy, now),
            consecutive_failures: 0,
            ejection: None,
        }
    }

    /// The current ejection, if the endpoint is out.
    pub(crate) fn ejection(&self) -> Option<&Ejection> {
        self.ejection.as_ref()
    }

    /// Failures in a row.
    pub(crate) fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// The policy's memory (tests).
    #[cfg(test)]
    pub(crate) fn policy(&self) -> &PolicyState {
        &self.policy
    }

    /// Whether a request may be sent at `now` without claiming anything: alive, or the
    /// probe is free.
    pub(crate) fn is_available(&self, now: Instant) -> bool {
        match &self.ejection {
            None => true,
            Some(e) => e.probe.is_claimable(now),
        }
    }

    /// Like [`Endpoint::is_available`], but claims the probe if the endpoint is probing.
    pub(crate) fn try_acquire(&self, now: Instant) -> bool {
        match &self.ejection {
            None => true,
            Some(e) => e.probe.try_claim(now),
        }
    }

    /// Counts one outcome at `now`. `rand` (uniform in `[0, 1)`) jitters the backoff if
    /// the endpoint is ejected.
    pub(crate) fn record(
        &mut self,
        now: Instant,
        success: bool,
        rand: f64,
        backoff: &Backoff,
    ) -> Option<Transition> {
        if let Some(e) = &self.ejection
            && now < e.until
        {
            return None;
        }
        if success {
            self.consecutive_failures = 0;
        } else {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        }
        let Some(ejection) = &self.ejection else {
            let reason = self.policy.record(now, success)?;
            let backoff = backoff.delay(0, rand);
            self.ejection = Some(Ejection::new(now, now, 1, reason, backoff));
            return Some(Transition::Removed { reason, backoff });
        };
        if success {
            let removed_for = now.saturating_duration_since(ejection.since);
            self.ejection = None;
            self.policy.reset(now);
            return Some(Transition::Revived { removed_for });
        }
        let ejections = ejection.ejections.saturating_add(1);
        let next = backoff.delay(ejections - 1, rand);
        self.ejection = Some(Ejection::new(
            ejection.since,
            now,
            ejections,
            ejection.reason,
            next,
        ));
        Some(Transition::ProbeFailed {
            backoff: next,
            ejections,
        })
    }
}
