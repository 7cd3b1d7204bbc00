//! The phases of one Thrift call, in order: identify → bind → choose → the service
//! stack (deadline, retries of idempotent methods) → the client stack (balancer,
//! circuit breaker, requeues) → send (plain Thrift, or Mux to a Plexus peer).
//!
//! The phases are the HTTP router's: the same binding cache, service and client
//! entries, balancers, failure accrual and budgets (see [`crate::router::http`]); what
//! differs is how a call is named (Linkerd's Thrift rules, [`plexus_thrift::name`]) and
//! judged: a reply is a success only if it is a REPLY whose result struct holds the
//! success field, so application exceptions, declared or not, count as failures, which
//! Linkerd 1.x never saw. A reply is never retried (the application answered); a call
//! is sent again only when it certainly never reached an application (a requeue), or
//! when the service lists its method in `idempotentMethods`.

use std::time::{Instant, SystemTime};

use plexus_thrift::{Message, MessageKind, ReplyClass};

use super::call::CallContext;
use super::mux_client::{self, OpenError};
use super::upstream::{self, CallError, Delivered, Target};
use crate::naming::{Addr, Path};
use crate::router::balance::Outcome as BalanceOutcome;
use crate::router::binding::no_hosts;
use crate::router::choose;
use crate::router::client::Dial;
use crate::router::error::{ErrorKind, ProxyError};
use crate::router::http::{ClientEntry, ServiceEntry, Worker, bind};
use crate::router::peer::{self, PeerState};
use crate::router::retry::{
    AttemptError, Deadline, Decision, GiveUpReason, ResponseClass, RetryState,
};
use crate::router::stats::InFlight;

/// What a call came to, when it did not fail in the proxy.
#[derive(Debug)]
pub enum Answered {
    /// The endpoint's reply, judged once when it arrived.
    Reply(Message, Verdict),
    /// A ONEWAY call was delivered.
    Oneway,
}

/// How a reply counts: a success, or a failure with its metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the call succeeded.
    pub success: bool,
    /// The `failures/<label>` of a failure.
    pub failure: Option<&'static str>,
}

impl Answered {
    /// How the call counts (a delivered ONEWAY is a success).
    fn verdict(&self) -> Verdict {
        match self {
            Answered::Reply(_, v) => *v,
            Answered::Oneway => Verdict {
                success: true,
                failure: None,
            },
        }
    }
}

/// Ends a call's count in a scope (server, service), now: its verdict, or its routing
/// error.
pub fn finish(inflight: InFlight<'_>, result: &Result<Answered, ProxyError>) {
    let now = Instant::now();
    match result {
        Ok(answer) => {
            let v = answer.verdict();
            inflight.finish_outcome(v.success, v.failure, now);
        }
        Err(e) => inflight.finish_outcome(false, Some(e.metric_label()), now),
    }
}

/// The metric label of a reply that is not a success.
fn failure_label(class: ReplyClass) -> Option<&'static str> {
    match class {
        ReplyClass::Success => None,
        ReplyClass::DeclaredException { .. } => Some("DeclaredException"),
        ReplyClass::ApplicationException => Some("TApplicationException"),
    }
}

/// A reply and how it counts; an unreadable reply is a failure.
fn judged(reply: Message) -> Answered {
    let verdict = match plexus_thrift::classify(&reply) {
        Ok(class) => Verdict {
            success: class.is_success(),
            failure: failure_label(class),
        },
        Err(_) => Verdict {
            success: false,
            failure: Some("UnreadableReply"),
        },
    };
    Answered::Reply(reply, verdict)
}

/// The logical name of a call: `dstPrefix`, the client's destination if it sent one,
/// then the service of a `service:method` name and, with `thriftMethodInDst`, the
/// method.
pub fn identify(worker: &Worker, msg: &Message, ctx: &CallContext) -> Result<Path, ProxyError> {
    let router = &worker.router;
    let method_in_dst = router.thrift.as_ref().is_some_and(|t| t.method_in_dst);
    let segments =
        plexus_thrift::dst_segments(ctx.dest.as_deref(), &msg.header().name, method_in_dst)
            .map_err(|e| ProxyError::new(ErrorKind::Unidentified, e.to_string()))?;
    Ok(router
        .dst_prefix
        .concat(&Path::from_strs(segments.iter().map(String::as_str))))
}

/// Routes one call and returns its answer; the service's stats count it.
pub async fn route(
    worker: &Worker,
    msg: Message,
    ctx: CallContext,
) -> Result<Answered, ProxyError> {
    let dst = identify(worker, &msg, &ctx)?;
    let started = Instant::now();
    let service = worker.service(&dst, started);
    let starting = Deadline::starting(ctx.deadline, service.policy.total_timeout);
    let deadline = starting.map(|(d, _)| d);
    let inflight = service.stats.start_at(started);
    let result = match starting.map(|(_, left)| left) {
        None => dispatch(worker, &service, &dst, None, started, &msg, &ctx).await,
        Some(None) => Err(ProxyError::new(
            ErrorKind::Timeout,
            format!("the deadline of the call to {dst} has passed"),
        )),
        Some(Some(left)) => {
            let attempt = dispatch(worker, &service, &dst, deadline, started, &msg, &ctx);
            match tokio::time::timeout(left, attempt).await {
                Ok(r) => r,
                Err(_) => Err(ProxyError::new(
                    ErrorKind::Timeout,
                    format!(
                        "exceeded {} ms to {dst} while waiting for a reply",
                        left.as_millis()
                    ),
                )),
            }
        }
    };
    finish(inflight, &result);
    result
}

/// Bind, choose, then attempts under the service's retry policy, for a call that
/// started at `started` (the one clock reading up to its first attempt, as on the HTTP
/// path).
async fn dispatch(
    worker: &Worker,
    service: &ServiceEntry,
    dst: &Path,
    deadline: Option<Deadline>,
    started: Instant,
    msg: &Message,
    ctx: &CallContext,
) -> Result<Answered, ProxyError> {
    let router = &worker.router;
    let tree = bind(worker, &ctx.local_dtab, dst, started).await?;
    let none = || no_hosts(dst, &router.base_dtab, &ctx.local_dtab);
    let bound = choose::leaf(&tree, none)?;
    let client = worker.client(&bound.id, started);
    let idempotent = msg.header().kind == MessageKind::Call
        && service
            .policy
            .idempotent_methods
            .iter()
            .any(|m| *m == msg.header().name);
    let mut state = RetryState::new(service.policy.backoff, 0);
    service.budget.borrow_mut().deposit(started);
    // When the next attempt starts: the call's start for the first, the clock after a
    // retry's wait for the others.
    let mut attempt_at = started;
    let result = loop {
        let result = forward(
            worker,
            &client,
            &bound.addr,
            attempt_at,
            msg,
            ctx,
            deadline,
            &none,
        )
        .await;
        let Err(e) = &result else { break result };
        if !idempotent || !matches!(e.kind, ErrorKind::Upstream | ErrorKind::Timeout) {
            break result;
        }
        let time_left = deadline.map(|d| d.time_left(SystemTime::now()));
        let now = Instant::now();
        let decision = state.retry(
            ResponseClass::RETRYABLE_FAILURE,
            true,
            time_left,
            &mut service.budget.borrow_mut(),
            now,
            choose::uniform(),
        );
        match decision {
            Decision::Retry { after } => {
                service.retries_total.increment(1);
                tracing::debug!(service = %dst, method = %msg.header().name, ?after, "retrying an idempotent call");
                attempt_at = now;
                if !after.is_zero() {
                    tokio::time::sleep(after).await;
                    attempt_at = Instant::now();
                }
            }
            Decision::GiveUp {
                reason: GiveUpReason::BudgetExhausted,
            } => {
                service.budget_exhausted.increment(1);
                break result;
            }
            _ => break result,
        }
    };
    service
        .retries_per_request
        .record(f64::from(state.retries()));
    result
}

/// The client stack: pick an endpoint, send, report the outcome, and requeue a call that
/// never reached an endpoint while the requeue budget allows. The attempt starts at
/// `now`.
#[allow(clippy::too_many_arguments)]
async fn forward(
    worker: &Worker,
    client: &ClientEntry,
    addr: &Addr,
    mut now: Instant,
    msg: &Message,
    ctx: &CallContext,
    deadline: Option<Deadline>,
    no_hosts: &dyn Fn() -> ProxyError,
) -> Result<Answered, ProxyError> {
    let mut state = client.begin(addr, now);
    let limits = worker
        .router
        .thrift
        .as_ref()
        .map(|t| t.limits)
        .unwrap_or_default();
    loop {
        let Some((endpoint, pending)) = client.pick(now) else {
            return Err(no_hosts());
        };
        let inflight = client.stats.start_at(now);
        let target = Target {
            dial: Dial {
                addr: endpoint,
                connect_timeout: worker.router.connect_timeout,
                version: crate::config::HttpVersion::Http1,
                upgrade_h2: false,
                negotiate_tls: false,
                tls: client.tls.as_ref(),
            },
            framed: client.thrift.framed,
            ttwitter: client.thrift.ttwitter,
            limits,
        };
        let retries = i32::try_from(state.requeues()).unwrap_or(i32::MAX);
        let sent = send(&target, client.thrift.mux, msg, ctx, deadline, retries);
        let sent = match client.attempt_timeout {
            None => sent.await,
            Some(limit) => tokio::time::timeout(limit, sent).await.unwrap_or_else(|_| {
                Err(CallError::sent(ProxyError::new(
                    ErrorKind::Timeout,
                    format!(
                        "{endpoint} did not answer within requestAttemptTimeoutMs ({} ms)",
                        limit.as_millis()
                    ),
                )))
            }),
        };
        match sent {
            Ok(answer) => {
                let v = answer.verdict();
                let outcome = if v.success {
                    BalanceOutcome::SUCCESS
                } else {
                    BalanceOutcome::FAILURE
                };
                let answered = Instant::now();
                pending.end(outcome, answered);
                client.outcome(endpoint, v.success);
                inflight.finish_outcome(v.success, v.failure, answered);
                return Ok(answer);
            }
            Err(CallError { error, sent }) => {
                now = Instant::now();
                pending.end(BalanceOutcome::FAILURE, now);
                client.outcome(endpoint, false);
                inflight.finish_outcome(false, Some(error.metric_label()), now);
                if sent
                    || !client.requeue(&mut state, endpoint, AttemptError::ConnectFailed, &error)
                {
                    return Err(error);
                }
            }
        }
    }
}

/// Sends one attempt: over the endpoint's Mux session when the client may upgrade and
/// the endpoint is (or may be) a Plexus peer; as plain Thrift otherwise.
async fn send(
    target: &Target<'_>,
    mux: bool,
    msg: &Message,
    ctx: &CallContext,
    deadline: Option<Deadline>,
    retries: i32,
) -> Result<Answered, CallError> {
    let addr = target.dial.addr;
    let known = peer::state(addr, Instant::now());
    if mux && !matches!(known, PeerState::Plain { .. }) {
        match mux_client::session(&target.dial).await {
            Ok(session) => {
                if known != PeerState::Peer(peer::Upgrades::MUX) {
                    peer::learn(addr, PeerState::Peer(peer::Upgrades::MUX));
                }
                return send_mux(addr, &session, msg, ctx, deadline, retries, &target.limits).await;
            }
            Err(OpenError::Connect(e)) => return Err(CallError::unsent(e)),
            Err(OpenError::NotMux(why)) => {
                tracing::info!(endpoint = %addr, %why, "endpoint does not speak mux; sending plain thrift");
                peer::learn(
                    addr,
                    PeerState::Plain {
                        until: Instant::now() + peer::PLAIN_RECHECK,
                        protocol: "thrift",
                    },
                );
            }
        }
    }
    match upstream::call(target, msg, ctx, deadline).await? {
        Delivered::Reply(r) => Ok(judged(r)),
        Delivered::Oneway => Ok(Answered::Oneway),
    }
}

/// One call over a Mux session. A ONEWAY call rides a Tdispatch too (the peer answers
/// once it has written it; see docs/thrift.md); a Nack means the peer never passed the
/// call on, so it may go elsewhere.
async fn send_mux(
    addr: std::net::SocketAddr,
    session: &mux_client::Session,
    msg: &Message,
    ctx: &CallContext,
    deadline: Option<Deadline>,
    retries: i32,
    limits: &plexus_thrift::Limits,
) -> Result<Answered, CallError> {
    let request = ctx.to_mux(msg.bytes().clone(), deadline, retries);
    let answer = session.dispatch(request).await.map_err(|()| {
        CallError::unsent(ProxyError::new(
            ErrorKind::Connect,
            format!("{addr}: the mux session closed"),
        ))
    })?;
    let response = match answer {
        Ok(r) => r,
        Err(e) if e.is_retryable() => {
            return Err(CallError::unsent(mux_client::request_error(addr, &e)));
        }
        Err(e) => return Err(CallError::sent(mux_client::request_error(addr, &e))),
    };
    match response.reply {
        plexus_mux::codec::Reply::Ok(body) => {
            if msg.header().kind == MessageKind::Oneway {
                return Ok(Answered::Oneway);
            }
            let reply = Message::parse(body, limits).map_err(|e| {
                CallError::sent(ProxyError::new(
                    ErrorKind::Upstream,
                    format!("{addr} (mux): the reply is not a Thrift message: {e}"),
                ))
            })?;
            Ok(judged(reply))
        }
        plexus_mux::codec::Reply::Error(text) => Err(CallError::sent(ProxyError::new(
            ErrorKind::Upstream,
            format!("{addr} (mux): {text}"),
        ))),
        plexus_mux::codec::Reply::Nack => Err(CallError::unsent(ProxyError::new(
            ErrorKind::Connect,
            format!("{addr} (mux): the peer did not take the call (nack)"),
        ))),
    }
}
