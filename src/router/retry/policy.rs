//! What to do after an attempt: requeue it, retry it after a delay, or give up.
//!
//! This is the decision the router calls once per finished attempt, kept pure: the
//! budget is passed in (locked by the caller), as are `now` and the random number for
//! the backoff. A [`RetryState`] lives for one request and counts its requeues and
//! retries. Linkerd 1.x has two levels, and so do the two methods:
//!
//! * [`RetryState::requeue`], in the client, for an error that never reached the server
//!   ([`is_requeueable`]): sent again at once, whatever the method or classifier, if the
//!   client's `requeueBudget` allows, the request has requeues left and the deadline has
//!   not passed. Finagle allows a request at most `⌈0.2 × balance⌉` requeues, the balance
//!   read when the request starts ([`requeue_limit`]), so one request cannot empty the
//!   budget.
//! * [`RetryState::retry`], in the service, for the classified outcome: a retryable
//!   failure is sent again after the backoff delay, if the body can be replayed, the
//!   delay ends before the deadline and the service's `retries.budget` allows.
//!
//! When a requeue is refused the router classifies the error and asks
//! [`RetryState::retry`]: a connect failure of a GET is still retried under
//! `retryableRead5XX`, from the service budget and after the backoff.
//!
//! Checks run cheapest and least shared first, so a refused retry never spends budget:
//! not retryable, then body, then deadline, then the budget. Budgets are deposited by
//! the caller once per request (not per attempt): the service budget when the request
//! enters the service, the client budget when it enters the client.

use std::time::{Duration, Instant};

use super::backoff::{Backoff, BackoffConfig};
use super::budget::RetryBudget;
use super::classify::{AttemptError, ResponseClass, is_requeueable};

/// How much of a request body is kept so it can be sent again (64 KiB); a longer body is
/// streamed and its request is not retried.
pub const DEFAULT_RETRY_BUFFER_BYTES: usize = 64 * 1024;

/// The decision for a finished attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The outcome is a success: return it.
    Done,
    /// Send the request again at once, to a newly chosen endpoint (a client requeue).
    Requeue,
    /// Send the request again after `after` (a service retry).
    Retry {
        /// The backoff delay.
        after: Duration,
    },
    /// Return the failure as it is.
    GiveUp {
        /// Why it is not tried again.
        reason: GiveUpReason,
    },
}

/// Why a failed attempt is not tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GiveUpReason {
    /// The classifier called the failure non-retryable, or (for a requeue) the error may
    /// have reached the server.
    NotRetryable,
    /// The budget has no retry left (`retries/budget_exhausted`).
    BudgetExhausted,
    /// The request has used all the requeues it may (`retries/request_limit`).
    RequestLimit,
    /// The request body was longer than the retry buffer and cannot be sent again
    /// (`retries/request_stream_too_long`).
    BodyTooLong,
    /// The deadline has passed, or would before the backoff delay ends.
    DeadlinePassed,
}

impl GiveUpReason {
    /// A short name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            GiveUpReason::NotRetryable => "not_retryable",
            GiveUpReason::BudgetExhausted => "budget_exhausted",
            GiveUpReason::RequestLimit => "request_limit",
            GiveUpReason::BodyTooLong => "request_stream_too_long",
            GiveUpReason::DeadlinePassed => "deadline_passed",
        }
    }
}

/// Finagle's cap on one request's requeues: `⌈0.2 × balance⌉` of the client's requeue
/// budget, read when the request starts (after its deposit).
pub fn requeue_limit(balance: u64) -> u32 {
    u32::try_from(balance.div_ceil(5)).unwrap_or(u32::MAX)
}

/// The retry state of one request: its backoff and how often it was sent again.
#[derive(Clone, Copy, Debug)]
pub struct RetryState {
    backoff: Backoff,
    requeue_limit: u32,
    requeues: u32,
    retries: u32,
}

impl RetryState {
    /// The state of a new request, with the service's backoff and the request's requeue
    /// limit (see [`requeue_limit`]).
    pub fn new(backoff: BackoffConfig, requeue_limit: u32) -> RetryState {
        RetryState {
            backoff: backoff.start(),
            requeue_limit,
            requeues: 0,
            retries: 0,
        }
    }

    /// Requeues made so far (`retries/requeues`, `retries/requeues_per_request`).
    pub fn requeues(&self) -> u32 {
        self.requeues
    }

    /// Retries made so far (`retries/total`, `retries/per_request`).
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Attempts started so far: the first, plus every requeue and retry decided.
    pub fn attempts(&self) -> u32 {
        1 + self.requeues + self.retries
    }

    /// Whether an error may be requeued: [`Decision::Requeue`] (a withdrawal from
    /// `budget` is made) or [`Decision::GiveUp`], after which the router classifies the
    /// error and asks [`RetryState::retry`].
    ///
    /// `time_left` is the time until the request's deadline, `None` without a deadline
    /// (see [`Deadline::time_left`](super::Deadline::time_left)).
    pub fn requeue(
        &mut self,
        error: AttemptError,
        time_left: Option<Duration>,
        budget: &mut RetryBudget,
        now: Instant,
    ) -> Decision {
        let reason = if !is_requeueable(error) {
            GiveUpReason::NotRetryable
        } else if time_left.is_some_and(|left| left.is_zero()) {
            GiveUpReason::DeadlinePassed
        } else if self.requeues >= self.requeue_limit {
            GiveUpReason::RequestLimit
        } else if !budget.try_withdraw(now) {
            GiveUpReason::BudgetExhausted
        } else {
            self.requeues += 1;
            return Decision::Requeue;
        };
        Decision::GiveUp { reason }
    }

    /// Whether a classified attempt is retried: [`Decision::Done`] for a success,
    /// [`Decision::Retry`] (a withdrawal from `budget` is made) or [`Decision::GiveUp`].
    ///
    /// `body_replayable` is false once the request body outgrew the retry buffer.
    /// `time_left` is the time until the deadline, `None` without one; the retry is given
    /// up unless the backoff delay ends strictly before the deadline. `random` is uniform
    /// in `[0, 1)`, for a jittered backoff.
    pub fn retry(
        &mut self,
        class: ResponseClass,
        body_replayable: bool,
        time_left: Option<Duration>,
        budget: &mut RetryBudget,
        now: Instant,
        random: f64,
    ) -> Decision {
        let reason = match class {
            ResponseClass::Success => return Decision::Done,
            ResponseClass::Failure { retryable: false } => GiveUpReason::NotRetryable,
            ResponseClass::Failure { retryable: true } if !body_replayable => {
                GiveUpReason::BodyTooLong
            }
            ResponseClass::Failure { retryable: true } => {
                let after = self.backoff.next_delay(random);
                if time_left.is_some_and(|left| left <= after) {
                    GiveUpReason::DeadlinePassed
                } else if !budget.try_withdraw(now) {
                    GiveUpReason::BudgetExhausted
                } else {
                    self.retries += 1;
                    return Decision::Retry { after };
                }
            }
        };
        Decision::GiveUp { reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }

    /// A budget with `n` retries and nothing else.
    fn budget_of(n: u32) -> RetryBudget {
        RetryBudget::new(Duration::from_secs(1), n, 0.0).unwrap()
    }

    fn give_up(reason: GiveUpReason) -> Decision {
        Decision::GiveUp { reason }
    }

    const R: ResponseClass = ResponseClass::RETRYABLE_FAILURE;
    const N: ResponseClass = ResponseClass::NON_RETRYABLE_FAILURE;

    #[test]
    fn success_is_done_and_spends_nothing() {
        let now = Instant::now();
        let mut b = budget_of(1);
        let mut s = RetryState::new(BackoffConfig::default(), 0);
        let d = s.retry(ResponseClass::Success, false, Some(ms(0)), &mut b, now, 0.5);
        assert_eq!(d, Decision::Done);
        assert_eq!(b.balance(now), 1);
    }

    #[test]
    fn retries_after_the_backoff() {
        let now = Instant::now();
        let mut b = budget_of(5);
        let backoff = BackoffConfig::jittered(ms(10), ms(1_000)).unwrap();
        let mut s = RetryState::new(backoff, 0);
        assert_eq!(
            s.retry(R, true, None, &mut b, now, 0.5),
            Decision::Retry { after: ms(10) }
        );
        assert_eq!(
            s.retry(R, true, Some(ms(500)), &mut b, now, 1.0),
            Decision::Retry { after: ms(30) }
        );
        assert_eq!((s.retries(), s.requeues(), s.attempts()), (2, 0, 3));
        assert_eq!(b.balance(now), 3);
    }

    #[test]
    fn not_retryable() {
        let now = Instant::now();
        let mut b = budget_of(5);
        let mut s = RetryState::new(BackoffConfig::default(), 5);
        assert_eq!(
            s.retry(N, true, None, &mut b, now, 0.5),
            give_up(GiveUpReason::NotRetryable)
        );
        for error in [
            AttemptError::FailedAfterSend,
            AttemptError::Timeout,
            AttemptError::Other,
        ] {
            assert_eq!(
                s.requeue(error, None, &mut b, now),
                give_up(GiveUpReason::NotRetryable)
            );
        }
        assert_eq!(b.balance(now), 5);
        assert_eq!(s.attempts(), 1);
    }

    #[test]
    fn budget_exhausted() {
        let now = Instant::now();
        let mut b = budget_of(1);
        let mut s = RetryState::new(BackoffConfig::default(), 10);
        assert_eq!(
            s.retry(R, true, None, &mut b, now, 0.5),
            Decision::Retry { after: ms(0) }
        );
        assert_eq!(
            s.retry(R, true, None, &mut b, now, 0.5),
            give_up(GiveUpReason::BudgetExhausted)
        );
        let mut requeues = budget_of(1);
        let mut s = RetryState::new(BackoffConfig::default(), 10);
        assert_eq!(
            s.requeue(AttemptError::ConnectFailed, None, &mut requeues, now),
            Decision::Requeue
        );
        assert_eq!(
            s.requeue(AttemptError::ConnectFailed, None, &mut requeues, now),
            give_up(GiveUpReason::BudgetExhausted)
        );
    }

    #[test]
    fn body_too_long() {
        let now = Instant::now();
        let mut b = budget_of(5);
        let mut s = RetryState::new(BackoffConfig::default(), 0);
        assert_eq!(
            s.retry(R, false, None, &mut b, now, 0.5),
            give_up(GiveUpReason::BodyTooLong)
        );
        assert_eq!(b.balance(now), 5);
    }

    #[test]
    fn deadline_passed() {
        let now = Instant::now();
        let mut b = budget_of(5);
        let backoff = BackoffConfig::constant(ms(100));
        // The delay would end at the deadline: no time left for the retry.
        let mut s = RetryState::new(backoff, 5);
        assert_eq!(
            s.retry(R, true, Some(ms(100)), &mut b, now, 0.5),
            give_up(GiveUpReason::DeadlinePassed)
        );
        assert_eq!(
            s.retry(R, true, Some(ms(101)), &mut b, now, 0.5),
            Decision::Retry { after: ms(100) }
        );
        // A requeue is immediate: any time left will do, none will not.
        assert_eq!(
            s.requeue(
                AttemptError::ConnectFailed,
                Some(Duration::ZERO),
                &mut b,
                now
            ),
            give_up(GiveUpReason::DeadlinePassed)
        );
        assert_eq!(
            s.requeue(AttemptError::ConnectFailed, Some(ms(1)), &mut b, now),
            Decision::Requeue
        );
        assert_eq!(b.balance(now), 3);
    }

    #[test]
    fn request_limit() {
        let now = Instant::now();
        let mut b = budget_of(100);
        let mut s = RetryState::new(BackoffConfig::default(), 2);
        for _ in 0..2 {
            assert_eq!(
                s.requeue(AttemptError::ConnectFailed, None, &mut b, now),
                Decision::Requeue
            );
        }
        assert_eq!(
            s.requeue(AttemptError::ConnectFailed, None, &mut b, now),
            give_up(GiveUpReason::RequestLimit)
        );
        assert_eq!(b.balance(now), 98);
        // The service may still retry it.
        assert_eq!(
            s.retry(R, true, None, &mut b, now, 0.5),
            Decision::Retry { after: ms(0) }
        );
        assert_eq!((s.requeues(), s.retries(), s.attempts()), (2, 1, 4));
    }

    #[test]
    fn requeue_limit_is_a_fifth_of_the_balance_rounded_up() {
        assert_eq!(requeue_limit(0), 0);
        assert_eq!(requeue_limit(1), 1);
        assert_eq!(requeue_limit(5), 1);
        assert_eq!(requeue_limit(6), 2);
        assert_eq!(requeue_limit(100), 20);
        assert_eq!(requeue_limit(u64::MAX), u32::MAX);
    }

    #[test]
    fn reason_names() {
        assert_eq!(GiveUpReason::BudgetExhausted.as_str(), "budget_exhausted");
        assert_eq!(GiveUpReason::RequestLimit.as_str(), "request_limit");
    }
}
