//! One client connection of a Thrift router: what it speaks, and its calls.
//!
//! The first bytes decide, once per connection:
//! - Mux (a Plexus peer that upgraded, or a Finagle ThriftMux client): a
//!   [`plexus_mux::ServerSession`]; each Tdispatch is a call, answered by Rdispatch;
//! - framed Thrift, or unframed (strict binary or compact; both are recognised on any
//!   Thrift port, so a port serves either), with Finagle's TTwitter upgrade accepted as
//!   the first message of a framed connection.
//!
//! Thrift calls on one connection are dispatched concurrently as they are read (a
//! pipelining client gets its calls routed in parallel) and their replies are written
//! in the order the calls came, as a serial Thrift client expects. At most
//! [`MAX_PIPELINED`] calls are in flight per connection, and reading also waits while
//! a client leaves more than [`MAX_UNWRITTEN`] bytes of replies unread.
//! A message that cannot be read is answered with a `TApplicationException` when its
//! header could be read, and the connection is closed: the stream is out of step. Proxy
//! failures are answered the way Linkerd did, as a `TApplicationException` (type 6,
//! `INTERNAL_ERROR`) with the call's name and seqid; ONEWAY calls are never answered.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use plexus_mux::context::MuxFailure;
use plexus_mux::{Detected, Response, ServerEvent, ServerSession, SessionConfig};
use plexus_thrift::{
    Decoder, Message, MessageHeader, MessageKind, Protocol, ThriftError, ttwitter,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use super::call::CallContext;
use super::dispatch::{self, Answered};
use crate::router::ServerSpec;
use crate::router::error::{ErrorKind, ProxyError};
use crate::router::http::Worker;
use crate::router::stats;

/// Calls one connection may have in flight.
pub const MAX_PIPELINED: usize = 128;

/// Reply bytes kept for a client that does not read them; no more calls are read from
/// it until they drain below this.
const MAX_UNWRITTEN: usize = 4 << 20;

/// How long in-flight Mux calls get after a drain starts.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// The handshake probe a Mux client opens with (`Rerr(1, "tinit check")`, legacy type).
const MUX_PROBE: &[u8] = b"\x00\x00\x00\x0f\x7f\x00\x00\x01tinit check";

/// What a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Speaks {
    Mux,
    Thrift { framed: bool },
}

/// Decides what the buffered first bytes are; `Ok(None)` until there are enough.
fn sniff(buf: &[u8], framed_port: bool, max_frame: u32) -> Result<Option<Speaks>, String> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf.starts_with(MUX_PROBE) {
        return Ok(Some(Speaks::Mux));
    }
    if !framed_port {
        // An unframed port: only the Mux probe is told apart from Thrift.
        return Ok(if MUX_PROBE.starts_with(buf) {
            None
        } else {
            Some(Speaks::Thrift { framed: false })
        });
    }
    match plexus_mux::detect(buf, max_frame) {
        Ok(Detected::NeedMore) => Ok(None),
        Ok(Detected::Mux) => Ok(Some(Speaks::Mux)),
        Ok(Detected::FramedThrift) => Ok(Some(Speaks::Thrift { framed: true })),
        Ok(Detected::UnframedThrift) => Ok(Some(Speaks::Thrift { framed: false })),
        Err(e) => Err(e.to_string()),
    }
}

/// Requests a server received per protocol (`rt:server:protocol:requests`).
struct Counters {
    thrift: metrics::Counter,
    ttwitter: metrics::Counter,
    mux: metrics::Counter,
}

impl Counters {
    fn new(rt: &str, spec: &ServerSpec) -> Self {
        let id = format!("{}/{}", spec.addr.ip(), spec.addr.port());
        Counters {
            thrift: stats::protocol_requests(rt, &id, "thrift"),
            ttwitter: stats::protocol_requests(rt, &id, "thrift+ttwitter"),
            mux: stats::protocol_requests(rt, &id, "thriftmux"),
        }
    }
}

/// Serves one accepted connection (plain or TLS) until it closes or a drain finishes it.
pub async fn serve<IO>(
    worker: Rc<Worker>,
    spec: Rc<ServerSpec>,
    io: IO,
    drain: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let Some(settings) = worker.router.thrift else {
        return;
    };
    let counters = Counters::new(&worker.router.label, &spec);
    let (mut rd, wr) = tokio::io::split(io);
    let mut buf = BytesMut::with_capacity(8 << 10);
    let max_frame = u32::try_from(settings.limits.max_message_bytes).unwrap_or(u32::MAX);
    let speaks = loop {
        match sniff(&buf, spec.thrift_framed, max_frame) {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(why) => {
                tracing::info!(router = %worker.router.label, server = %spec.addr, %why, "closing a connection that speaks neither Thrift nor Mux");
                return;
            }
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    };
    let conn = Conn {
        worker,
        spec,
        counters,
        drain,
    };
    match speaks {
        Speaks::Mux => conn.serve_mux(rd, wr, buf).await,
        Speaks::Thrift { framed } => conn.serve_thrift(rd, wr, buf, framed).await,
    }
}

struct Conn {
    worker: Rc<Worker>,
    spec: Rc<ServerSpec>,
    counters: Counters,
    drain: watch::Receiver<bool>,
}

type Pending = Pin<Box<dyn Future<Output = Option<Bytes>>>>;

/// What the next message on a Thrift connection is.
enum Incoming {
    /// Finagle's TTwitter probe.
    Probe(Message),
    /// A call and its context.
    Call(Message, CallContext),
    /// A message that is not a call (a REPLY sent to a server), or a TTwitter header that
    /// cannot be used: answered with an exception when it is not ONEWAY, then the
    /// connection goes on.
    Refused(MessageHeader, String),
}

/// `payload` as the connection's framing writes it. A payload too large to frame (over
/// 2 GiB, never read under the message limits) is sent without a length; the peer then
/// fails to read it rather than Plexus writing a wrong length.
fn frame(payload: &[u8], framed: bool) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 4);
    if !framed || plexus_thrift::encode_frame(payload, &mut out).is_err() {
        out.put_slice(payload);
    }
    out.freeze()
}

/// The bytes answering `header` with a `TApplicationException` (none for ONEWAY).
fn exception(header: &MessageHeader, why: &str, framed: bool, upgraded: bool) -> Option<Bytes> {
    if header.kind == MessageKind::Oneway {
        return None;
    }
    let reply = plexus_thrift::internal_error_reply(header, why);
    Some(if upgraded {
        frame(&ttwitter::wrap_reply(&reply), framed)
    } else {
        frame(reply.bytes(), framed)
    })
}

impl Conn {
    fn next_message(
        &self,
        decoder: &mut Decoder,
        buf: &mut BytesMut,
        upgraded: Option<Protocol>,
        first: bool,
    ) -> Result<Option<Incoming>, ThriftError> {
        let limits = *decoder.limits();
        if let Some(protocol) = upgraded {
            let Some(payload) = plexus_thrift::decode_frame(buf, &limits)? else {
                return Ok(None);
            };
            let (header, msg) = ttwitter::split_request(payload, protocol, &limits)?;
            return Ok(Some(
                self.classify(msg, CallContext::from_ttwitter(&header)),
            ));
        }
        let Some(msg) = decoder.decode(buf)? else {
            return Ok(None);
        };
        if first && decoder.is_framed() && ttwitter::is_upgrade_request(msg.header()) {
            return Ok(Some(Incoming::Probe(msg)));
        }
        Ok(Some(self.classify(msg, Ok(CallContext::default()))))
    }

    fn classify(&self, msg: Message, ctx: Result<CallContext, ProxyError>) -> Incoming {
        if msg.header().kind.is_request() {
            match ctx {
                Ok(ctx) => Incoming::Call(msg, ctx),
                Err(e) => Incoming::Refused(msg.header().clone(), e.to_string()),
            }
        } else {
            let h = msg.header().clone();
            let why = format!("a {} message is not a call", h.kind);
            Incoming::Refused(h, why)
        }
    }

    async fn serve_thrift<R, W>(self, mut rd: R, mut wr: W, mut buf: BytesMut, framed: bool)
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let router = &self.worker.router;
        let limits = router.thrift.map(|t| t.limits).unwrap_or_default();
        let mut decoder = Decoder::new(framed, limits);
        let mut calls: FuturesOrdered<Pending> = FuturesOrdered::new();
        let mut out = BytesMut::new();
        let mut upgraded: Option<Protocol> = None;
        let mut first = true;
        let mut reading = true;
        let mut drain = self.drain.clone();
        loop {
            while reading && calls.len() < MAX_PIPELINED && out.len() < MAX_UNWRITTEN {
                let next = self.next_message(&mut decoder, &mut buf, upgraded, first);
                match next {
                    Ok(None) => break,
                    Ok(Some(Incoming::Probe(probe))) => {
                        let reply = ttwitter::upgrade_reply(probe.header());
                        upgraded = Some(probe.header().protocol);
                        let bytes = frame(reply.bytes(), framed);
                        calls.push_back(Box::pin(async move { Some(bytes) }));
                    }
                    Ok(Some(Incoming::Call(msg, ctx))) => {
                        if upgraded.is_some() {
                            self.counters.ttwitter.increment(1);
                        } else {
                            self.counters.thrift.increment(1);
                        }
                        let (worker, spec) = (self.worker.clone(), self.spec.clone());
                        let ttwitter = upgraded.is_some();
                        calls.push_back(crate::router::boxed(|| {
                            call(worker, spec, msg, ctx, framed, ttwitter)
                        }));
                    }
                    Ok(Some(Incoming::Refused(header, why))) => {
                        tracing::debug!(router = %router.label, method = %header.name, %why, "refused a message");
                        let answer = exception(&header, &why, framed, upgraded.is_some());
                        calls.push_back(Box::pin(async move { answer }));
                    }
                    Err(e) => {
                        tracing::info!(router = %router.label, server = %self.spec.addr, error = %e, "unreadable Thrift message; closing the connection");
                        if let Some(h) = e.header().filter(|h| h.kind.is_request()) {
                            let answer = exception(
                                h,
                                &format!("unreadable message: {e}"),
                                framed,
                                upgraded.is_some(),
                            );
                            calls.push_back(Box::pin(async move { answer }));
                        }
                        reading = false;
                    }
                }
                first = false;
            }
            if !reading && calls.is_empty() && out.is_empty() {
                break;
            }
            tokio::select! {
                read = rd.read_buf(&mut buf), if reading && calls.len() < MAX_PIPELINED && out.len() < MAX_UNWRITTEN => {
                    match read {
                        Ok(0) | Err(_) => reading = false,
                        Ok(_) => {}
                    }
                }
                Some(answer) = calls.next(), if !calls.is_empty() => {
                    if let Some(bytes) = answer {
                        out.extend_from_slice(&bytes);
                    }
                }
                written = wr.write_buf(&mut out), if !out.is_empty() => {
                    if written.is_err() {
                        return;
                    }
                }
                changed = drain.changed(), if reading => {
                    if changed.is_err() || *drain.borrow() {
                        reading = false;
                    }
                }
            }
        }
        let _ = wr.shutdown().await;
    }

    async fn serve_mux<R, W>(self, mut rd: R, mut wr: W, buf: BytesMut)
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let router = self.worker.router.clone();
        let mut session = ServerSession::new(SessionConfig::default(), Instant::now());
        session.receive(&buf, Instant::now());
        let (done_tx, mut done) = mpsc::unbounded_channel::<(u32, Response)>();
        let mut tasks: HashMap<u32, tokio::task::JoinHandle<()>> = HashMap::new();
        let mut out = BytesMut::new();
        let mut inbuf = BytesMut::with_capacity(16 << 10);
        let mut drain = self.drain.clone();
        let mut draining = *drain.borrow();
        if draining {
            session.drain(Some(Instant::now() + DRAIN_GRACE));
        }
        'session: loop {
            while session.poll_transmit(&mut out) {}
            while let Some(event) = session.poll_event() {
                match event {
                    ServerEvent::Request { tag, request, .. } => {
                        self.counters.mux.increment(1);
                        let task = tokio::task::spawn_local(dispatch_mux(
                            self.worker.clone(),
                            self.spec.clone(),
                            tag,
                            request,
                            done_tx.clone(),
                        ));
                        tasks.insert(tag, task);
                    }
                    ServerEvent::Cancelled { tag, reason } => {
                        tracing::debug!(router = %router.label, tag, %reason, "mux call discarded by the client");
                        if let Some(t) = tasks.remove(&tag) {
                            t.abort();
                        }
                    }
                    ServerEvent::Finished => break 'session,
                    ServerEvent::Failed(e) => {
                        tracing::info!(router = %router.label, server = %self.spec.addr, error = %e, "mux session failed");
                        break 'session;
                    }
                    ServerEvent::StartTls { .. } => {
                        // This side's `tls` header says off, so a session never gets here.
                        break 'session;
                    }
                    ServerEvent::Ready(_) | ServerEvent::Pong { .. } => {}
                }
            }
            let timeout = session.poll_timeout();
            tokio::select! {
                read = rd.read_buf(&mut inbuf), if out.len() < MAX_UNWRITTEN => match read {
                    Ok(0) | Err(_) => session.receive_eof(Instant::now()),
                    Ok(_) => {
                        session.receive(&inbuf, Instant::now());
                        inbuf.clear();
                    }
                },
                Some((tag, response)) = done.recv() => {
                    tasks.remove(&tag);
                    if let Err(e) = session.respond(tag, response) {
                        tracing::debug!(router = %router.label, tag, error = %e, "mux reply not sent");
                    }
                }
                written = wr.write_buf(&mut out), if !out.is_empty() => {
                    if written.is_err() {
                        break 'session;
                    }
                }
                () = sleep_until(timeout), if timeout.is_some() => session.handle_timeout(Instant::now()),
                changed = drain.changed(), if !draining => {
                    if changed.is_err() || *drain.borrow() {
                        draining = true;
                        session.drain(Some(Instant::now() + DRAIN_GRACE));
                    }
                }
            }
        }
        while session.poll_transmit(&mut out) {}
        let _ = wr.write_all(&out).await;
        let _ = wr.shutdown().await;
        for (_, t) in tasks {
            t.abort();
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Routes one call read from a Thrift connection; the bytes to write back, if any.
async fn call(
    worker: Rc<Worker>,
    spec: Rc<ServerSpec>,
    msg: Message,
    ctx: CallContext,
    framed: bool,
    upgraded: bool,
) -> Option<Bytes> {
    let stats = worker.server_stats(spec.addr);
    let inflight = stats.start();
    let header = msg.header().clone();
    let result = dispatch::route(&worker, msg, ctx).await;
    dispatch::finish(inflight, &result);
    let reply = match result {
        Ok(Answered::Reply(reply, _)) => reply,
        Ok(Answered::Oneway) => return None,
        Err(e) => {
            tracing::debug!(router = %worker.router.label, method = %header.name, error = %e, "call failed");
            return exception(&header, &e.to_string(), framed, upgraded);
        }
    };
    if header.kind == MessageKind::Oneway {
        return None;
    }
    Some(if upgraded {
        frame(&ttwitter::wrap_reply(&reply), framed)
    } else {
        frame(reply.bytes(), framed)
    })
}

/// Routes one Tdispatch and sends its Rdispatch to the session. Calls that certainly
/// never reached an application are nacked (the peer may send them elsewhere); other
/// proxy failures travel as a `TApplicationException` reply, so the bytes the caller
/// gets are those a plain Thrift hop would give.
async fn dispatch_mux(
    worker: Rc<Worker>,
    spec: Rc<ServerSpec>,
    tag: u32,
    request: plexus_mux::Request,
    done: mpsc::UnboundedSender<(u32, Response)>,
) {
    let limits = worker.router.thrift.map(|t| t.limits).unwrap_or_default();
    let response = match Message::parse(request.body.clone(), &limits) {
        Err(e) => Response::error(format!("the dispatch body is not a Thrift message: {e}")),
        Ok(msg) => {
            let stats = worker.server_stats(spec.addr);
            let inflight = stats.start();
            let header = msg.header().clone();
            let oneway = header.kind == MessageKind::Oneway;
            let result = match CallContext::from_mux(&request) {
                Ok(ctx) => dispatch::route(&worker, msg, ctx).await,
                Err(e) => Err(e),
            };
            dispatch::finish(inflight, &result);
            match result {
                Ok(Answered::Reply(reply, _)) => Response::ok(reply.bytes().clone()),
                Ok(Answered::Oneway) => Response::ok(Bytes::new()),
                Err(e) => {
                    tracing::debug!(router = %worker.router.label, method = %header.name, error = %e, "mux call failed");
                    if e.kind == ErrorKind::Connect {
                        Response {
                            contexts: vec![
                                MuxFailure(MuxFailure::REJECTED | MuxFailure::RETRYABLE).context(),
                            ],
                            reply: plexus_mux::codec::Reply::Nack,
                        }
                    } else if oneway {
                        Response::error(e.to_string())
                    } else {
                        let reply = plexus_thrift::internal_error_reply(&header, &e.to_string());
                        Response::ok(reply.bytes().clone())
                    }
                }
            }
        }
    };
    let _ = done.send((tag, response));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_tell_mux_from_thrift() {
        let max = 16 << 20;
        assert_eq!(sniff(b"", true, max), Ok(None));
        assert_eq!(sniff(MUX_PROBE, true, max), Ok(Some(Speaks::Mux)));
        assert_eq!(sniff(MUX_PROBE, false, max), Ok(Some(Speaks::Mux)));
        assert_eq!(sniff(&MUX_PROBE[..5], false, max), Ok(None));
        // A framed strict-binary CALL.
        let framed = b"\x00\x00\x00\x11\x80\x01\x00\x01\x00\x00\x00\x04ping\x00\x00\x00\x01\x00";
        assert_eq!(
            sniff(framed, true, max),
            Ok(Some(Speaks::Thrift { framed: true }))
        );
        // Unframed strict binary and compact, on either kind of port.
        for port_framed in [true, false] {
            assert_eq!(
                sniff(b"\x80\x01\x00\x01\x00\x00\x00\x04ping", port_framed, max),
                Ok(Some(Speaks::Thrift { framed: false }))
            );
            assert_eq!(
                sniff(b"\x82\x21\x01\x04ping", port_framed, max),
                Ok(Some(Speaks::Thrift { framed: false }))
            );
        }
        assert!(sniff(b"GET / HTTP/1.1\r\n", true, max).is_err());
    }
}
