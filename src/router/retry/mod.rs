//! Retries, requeues and deadlines: the decisions, without the I/O.
//!
//! Linkerd 1.x retries at two levels. A *requeue* happens in the client when an attempt
//! failed before any byte reached the server (a connection could not be made): it is
//! always safe, immediate, and limited by the client's `requeueBudget`. A *retry* happens
//! in the service when the response classifier calls the outcome a retryable failure: it
//! waits for the configured backoff and is limited by the service's `retries.budget`.
//! Both stop at the request's deadline (`totalTimeoutMs` and the inbound
//! `l5d-ctx-deadline`).
//!
//! Each concern is a small sans-I/O core: nothing here reads a clock, draws a random
//! number or touches a socket. Callers pass `now` (an [`Instant`](std::time::Instant) for
//! budgets, a [`SystemTime`](std::time::SystemTime) for the wall-clock deadline header)
//! and a uniform random number in `[0, 1)`, so tests run on explicit times.
//!
//! * [`budget`]: the Finagle retry budget (deposits per request, withdrawals per retry,
//!   over a sliding window of ten slots).
//! * [`backoff`]: `constant` and `jittered` (decorrelated jitter) delays between retries.
//! * [`classify`]: the `io.l5d.http.*` and `io.l5d.h2.grpc.*` response classifiers (the
//!   latter also judge a stream's end), `l5d-retryable` and `l5d-success-class`.
//! * [`deadline`]: the `l5d-ctx-deadline` header.
//! * [`policy`]: for one finished attempt, requeue, retry after a delay, or give up.

pub mod backoff;
pub mod budget;
pub mod classify;
pub mod deadline;
pub mod policy;

pub use backoff::{Backoff, BackoffConfig};
pub use budget::RetryBudget;
pub use classify::{AttemptError, Classifier, Exchange, Outcome, ResponseClass, StreamEnd};
pub use deadline::Deadline;
pub use policy::{Decision, GiveUpReason, RetryState};
