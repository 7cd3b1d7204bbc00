//! When an endpoint that is alive should be ejected: Linkerd's `failureAccrual.kind`.
//!
//! A policy sees the outcomes of an alive endpoint's requests, one at a time, and answers
//! with a [`Reason`] when the endpoint should be marked dead. As in Finagle, the verdict is
//! only given on a failure (a success never ejects). The policy's memory is cleared when
//! the endpoint comes back from an ejection, so a revived endpoint starts with a clean
//! slate:
//!
//! * `io.l5d.consecutiveFailures` {failures}: eject after that many failures in a row.
//! * `io.l5d.successRate` {successRate, requests}: an exponentially weighted moving
//!   average of the success rate, where each request decays the past by `e^(-1/requests)`
//!   (the first request sets the average). Eject when it is below `successRate`, but only
//!   once at least `requests` requests have been seen.
//! * `io.l5d.successRateWindowed` {successRate, window}: the plain success rate of the
//!   requests of the last `window`, kept in ten buckets of `window / 10` (a result is
//!   forgotten between 0.9 × `window` and `window` after it arrived). Eject when it is
//!   below `successRate`, but only once the endpoint has been tracked for a whole window
//!   (since it was added or revived). Finagle used a time-decayed average here; a sliding
//!   window is easier to reason about and forgets old results outright.
//! * `none`: never eject.

use std::time::{Duration, Instant};

/// Which failures eject an endpoint (`failureAccrual.kind` and its parameters).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Policy {
    /// `io.l5d.consecutiveFailures`: eject after `failures` failures in a row.
    ConsecutiveFailures {
        /// How many failures in a row eject (`failures`, default 5).
        failures: u32,
    },
    /// `io.l5d.successRate`: eject when the EWMA success rate over about `requests`
    /// requests falls below `success_rate`.
    SuccessRate {
        /// The lowest acceptable success rate, in `[0, 1]` (`successRate`).
        success_rate: f64,
        /// The EWMA's window in requests, and the number of requests needed before any
        /// ejection (`requests`).
        requests: u32,
    },
    /// `io.l5d.successRateWindowed`: eject when the success rate over the last `window`
    /// falls below `success_rate`.
    SuccessRateWindowed {
        /// The lowest acceptable success rate, in `[0, 1]` (`successRate`).
        success_rate: f64,
        /// The sliding window (`window`, in seconds in the configuration).
        window: Duration,
    },
    /// `none`: failure accrual is off; endpoints are never ejected.
    Disabled,
}

impl Default for Policy {
    /// Linkerd's default: five consecutive failures.
    fn default() -> Self {
        Policy::ConsecutiveFailures { failures: 5 }
    }
}

impl Policy {
    /// Linkerd's `kind` for this policy.
    pub fn kind(&self) -> &'static str {
        match self {
            Policy::ConsecutiveFailures { .. } => "io.l5d.consecutiveFailures",
            Policy::SuccessRate { .. } => "io.l5d.successRate",
            Policy::SuccessRateWindowed { .. } => "io.l5d.successRateWindowed",
            Policy::Disabled => "none",
        }
    }
}

/// Why a policy ejected an endpoint.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reason {
    /// `failures` failures in a row.
    ConsecutiveFailures {
        /// The consecutive failures counted when the endpoint was ejected.
        failures: u32,
    },
    /// The measured success rate fell below the required one.
    SuccessRate {
        /// The success rate measured when the endpoint was ejected, in `[0, 1]`.
        rate: f64,
    },
}

/// Number of buckets of the sliding window.
const BUCKETS: usize = 10;

/// The memory of one endpoint's policy.
#[derive(Clone, Debug)]
pub(crate) enum PolicyState {
    Consecutive {
        threshold: u32,
        failures: u32,
    },
    Ewma {
        threshold: f64,
        window: u32,
        /// `e^(-1/window)`: how much of the past survives each request.
        decay: f64,
        rate: f64,
        requests: u64,
    },
    /// Boxed: the buckets would make every endpoint's state ten times larger.
    Windowed(Box<SlidingWindow>),
    Disabled,
}

impl PolicyState {
    /// A fresh state for `policy` (already normalised), started at `now`.
    pub(crate) fn new(policy: &Policy, now: Instant) -> Self {
        match *policy {
            Policy::ConsecutiveFailures { failures } => PolicyState::Consecutive {
                threshold: failures.max(1),
                failures: 0,
            },
            Policy::SuccessRate {
                success_rate,
                requests,
            } => {
                let window = requests.max(1);
                PolicyState::Ewma {
                    threshold: success_rate,
                    window,
                    decay: (-1.0 / f64::from(window)).exp(),
                    rate: 1.0,
                    requests: 0,
                }
            }
            Policy::SuccessRateWindowed {
                success_rate,
                window,
            } => PolicyState::Windowed(Box::new(SlidingWindow::new(success_rate, window, now))),
            Policy::Disabled => PolicyState::Disabled,
        }
    }

    /// Forgets every outcome (the endpoint was revived at `now`).
    pub(crate) fn reset(&mut self, now: Instant) {
        match self {
            PolicyState::Consecutive { failures, .. } => *failures = 0,
            PolicyState::Ewma { rate, requests, .. } => {
                *rate = 1.0;
                *requests = 0;
            }
            PolicyState::Windowed(w) => w.reset(now),
            PolicyState::Disabled => {}
        }
    }

    /// Counts one outcome; `Some` when the endpoint should be ejected.
    pub(crate) fn record(&mut self, now: Instant, success: bool) -> Option<Reason> {
        match self {
            PolicyState::Consecutive {
                threshold,
                failures,
            } => {
                if success {
                    *failures = 0;
                    return None;
                }
                *failures = failures.saturating_add(1);
                (*failures >= *threshold).then_some(Reason::ConsecutiveFailures {
                    failures: *failures,
                })
            }
            PolicyState::Ewma {
                threshold,
                window,
                decay,
                rate,
                requests,
            } => {
                let x = if success { 1.0 } else { 0.0 };
                *requests = requests.saturating_add(1);
                *rate = if *requests == 1 {
                    x
                } else {
                    x + *decay * (*rate - x)
                };
                let ready = *requests >= u64::from(*window);
                (!success && ready && *rate < *threshold)
                    .then_some(Reason::SuccessRate { rate: *rate })
            }
            PolicyState::Windowed(w) => w.record(now, success),
            PolicyState::Disabled => None,
        }
    }

    /// The EWMA success rate, for the `successRate` policy (tests and admin views).
    #[cfg(test)]
    pub(crate) fn ewma(&self) -> Option<f64> {
        match self {
            PolicyState::Ewma { rate, .. } => Some(*rate),
            _ => None,
        }
    }
}

/// Success and failure counts of one slice of the window.
#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    /// Which slice (time since `origin` divided by the bucket width) the counts are for.
    index: u64,
    ok: u64,
    failed: u64,
}

/// The success rate of the last `window`, in [`BUCKETS`] buckets.
#[derive(Clone, Debug)]
pub(crate) struct SlidingWindow {
    threshold: f64,
    window: Duration,
    width: Duration,
    /// When tracking (re)started; buckets are numbered from here.
    origin: Instant,
    buckets: [Bucket; BUCKETS],
}

impl SlidingWindow {
    fn new(threshold: f64, window: Duration, now: Instant) -> Self {
        let window = window.max(Duration::from_millis(1));
        SlidingWindow {
            threshold,
            window,
            width: (window / BUCKETS as u32).max(Duration::from_nanos(1)),
            origin: now,
            buckets: [Bucket::default(); BUCKETS],
        }
    }

    fn reset(&mut self, now: Instant) {
        self.origin = now;
        self.buckets = [Bucket::default(); BUCKETS];
    }

    fn index(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(since / self.width.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Successes and failures within the window ending in bucket `current`.
    fn counts(&self, now: Instant) -> (u64, u64) {
        let current = self.index(now);
        self.buckets
            .iter()
            .filter(|b| b.index <= current && current - b.index < BUCKETS as u64)
            .fold((0, 0), |(ok, failed), b| {
                (ok.saturating_add(b.ok), failed.saturating_add(b.failed))
            })
    }

    fn record(&mut self, now: Instant, success: bool) -> Option<Reason> {
        let index = self.index(now);
        let bucket = &mut self.buckets[(index % BUCKETS as u64) as usize];
        if bucket.index != index {
            *bucket = Bucket {
                index,
                ..Bucket::default()
            };
        }
        if success {
            bucket.ok = bucket.ok.saturating_add(1);
            return None;
        }
        bucket.failed = bucket.failed.saturating_add(1);
        if now.saturating_duration_since(self.origin) < self.window {
            return None;
        }
        let (ok, failed) = self.counts(now);
        let rate = ok as f64 / ok.saturating_add(failed).max(1) as f64;
        (rate < self.threshold).then_some(Reason::SuccessRate { rate })
    }
}
