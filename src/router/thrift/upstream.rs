//! Plain Thrift connections to endpoints: pooled per worker, one call at a time each.
//!
//! A Thrift connection is serial: a reply carries no more than the request's seqid, so
//! only one call may be outstanding on it (Finagle's Thrift client works the same way).
//! Connections are kept per (endpoint, framing, TTwitter, TLS name) and reused; one is
//! checked before reuse, and a connection whose peer already closed it is dropped
//! without sending on it, so a stale pooled connection never costs a call. After a call
//! whose outcome is unknown (cancelled, timed out, a reply that does not match) the
//! connection is closed, never reused.
//!
//! With `attemptTTwitterUpgrade` each new framed connection first sends Finagle's
//! `__can__finagle__trace__v3__` probe; a server that answers with a REPLY gets every
//! later call with a TTwitter request header carrying the call's context.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use plexus_thrift::{Decoder, Limits, Message, MessageKind, ttwitter};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

use super::call::CallContext;
use crate::router::client::{Dial, Io, open};
use crate::router::error::{ErrorKind, ProxyError};
use crate::router::retry::Deadline;

/// Idle connections kept per endpoint and worker.
const MAX_IDLE_PER_ENDPOINT: usize = 64;

/// What a sent call came to.
#[derive(Debug)]
pub enum Delivered {
    /// The endpoint's reply (REPLY or EXCEPTION), as it sent it.
    Reply(Message),
    /// A ONEWAY call was written; no reply comes.
    Oneway,
}

/// A call that failed, and whether it certainly never reached the endpoint.
#[derive(Debug)]
pub struct CallError {
    /// What went wrong.
    pub error: ProxyError,
    /// False when not a byte of the call was written (it may be sent elsewhere).
    pub sent: bool,
}

impl CallError {
    pub(super) fn unsent(error: ProxyError) -> Self {
        CallError { error, sent: false }
    }

    pub(super) fn sent(error: ProxyError) -> Self {
        CallError { error, sent: true }
    }
}

/// How connections to one endpoint are made and used.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    /// TCP (and TLS) settings.
    pub dial: Dial<'a>,
    /// `thriftFramed` of the client.
    pub framed: bool,
    /// `attemptTTwitterUpgrade` of the client (framed connections only).
    pub ttwitter: bool,
    /// Limits on replies.
    pub limits: Limits,
}

type PoolKey = (SocketAddr, Option<Arc<str>>, bool, bool);

impl Target<'_> {
    fn key(&self) -> PoolKey {
        let tls = self.dial.tls.map(|t| {
            t.server_name
                .clone()
                .unwrap_or_else(|| Arc::from(self.dial.addr.ip().to_string()))
        });
        (
            self.dial.addr,
            tls,
            self.framed,
            self.ttwitter && self.framed,
        )
    }
}

/// One connection to an endpoint.
struct Conn {
    io: Box<dyn Io>,
    /// Bytes read past the last reply (none, on a healthy serial connection).
    buf: BytesMut,
    /// The server accepted the TTwitter upgrade.
    upgraded: bool,
}

thread_local! {
    static POOL: RefCell<HashMap<PoolKey, Vec<Conn>>> = RefCell::new(HashMap::new());
}

impl Conn {
    /// Whether the connection is still usable: its peer has not closed it and has sent
    /// nothing unasked. Polls the socket once without waiting.
    fn is_reusable(&mut self) -> bool {
        let mut byte = [0u8; 1];
        let mut read = ReadBuf::new(&mut byte);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut read),
            Poll::Pending
        )
    }
}

fn checkout(key: &PoolKey) -> Option<Conn> {
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        let idle = pool.get_mut(key)?;
        while let Some(mut c) = idle.pop() {
            if c.is_reusable() {
                return Some(c);
            }
        }
        None
    })
}

fn checkin(key: PoolKey, conn: Conn) {
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        let idle = pool.entry(key).or_default();
        if idle.len() < MAX_IDLE_PER_ENDPOINT {
            idle.push(conn);
        }
    });
}

fn upstream(addr: SocketAddr, what: impl std::fmt::Display) -> ProxyError {
    ProxyError::new(ErrorKind::Upstream, format!("{addr}: {what}"))
}

/// `payload` with the connection's framing; a payload too large for a frame length
/// (over 2 GiB) is refused before anything is sent.
fn frame(payload: &[u8], framed: bool, addr: SocketAddr) -> Result<BytesMut, CallError> {
    let mut out = BytesMut::with_capacity(payload.len() + 4);
    if !framed {
        out.extend_from_slice(payload);
    } else if let Err(e) = plexus_thrift::encode_frame(payload, &mut out) {
        return Err(CallError::unsent(ProxyError::new(
            ErrorKind::BadRequest,
            format!("{addr}: {e}"),
        )));
    }
    Ok(out)
}

/// Reads one whole frame or message: what `decode` finds in the buffer, reading more as
/// needed. `Ok(None)` when the peer closed before a byte of it arrived.
async fn read_one<T>(
    conn: &mut Conn,
    mut decode: impl FnMut(&mut BytesMut) -> Result<Option<T>, plexus_thrift::ThriftError>,
) -> Result<Option<T>, String> {
    loop {
        if let Some(t) = decode(&mut conn.buf).map_err(|e| e.to_string())? {
            return Ok(Some(t));
        }
        let n = conn
            .io
            .read_buf(&mut conn.buf)
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return if conn.buf.is_empty() {
                Ok(None)
            } else {
                Err("connection closed in the middle of a reply".into())
            };
        }
    }
}

/// Opens a connection, and performs the TTwitter upgrade when asked.
async fn connect(
    target: &Target<'_>,
    protocol: plexus_thrift::Protocol,
) -> Result<Conn, ProxyError> {
    let addr = target.dial.addr;
    let io = open(&target.dial, false).await?;
    let mut conn = Conn {
        io,
        buf: BytesMut::new(),
        upgraded: false,
    };
    if !(target.ttwitter && target.framed) {
        return Ok(conn);
    }
    let probe = ttwitter::upgrade_request(protocol);
    let failed = |why: String| {
        ProxyError::new(
            ErrorKind::Connect,
            format!("Unable to connect to {addr}: TTwitter upgrade: {why}"),
        )
    };
    conn.io
        .write_all(&frame(probe.bytes(), true, addr).map_err(|e| e.error)?)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let limits = target.limits;
    let mut decoder = Decoder::new(true, limits);
    let reply = tokio::time::timeout(
        target.dial.connect_timeout,
        read_one(&mut conn, |b| decoder.decode(b)),
    )
    .await
    .map_err(|_| failed("no answer to the probe".into()))?
    .map_err(failed)?
    .ok_or_else(|| failed("closed by the server".into()))?;
    conn.upgraded = ttwitter::is_upgrade_accepted(reply.header());
    tracing::debug!(endpoint = %addr, upgraded = conn.upgraded, "TTwitter upgrade");
    Ok(conn)
}

/// Sends one call on a pooled or new connection and reads its reply (none for ONEWAY).
/// `ctx` and `deadline` travel only on TTwitter-upgraded connections.
pub async fn call(
    target: &Target<'_>,
    msg: &Message,
    ctx: &CallContext,
    deadline: Option<Deadline>,
) -> Result<Delivered, CallError> {
    let key = target.key();
    let mut conn = match checkout(&key) {
        Some(c) => c,
        None => connect(target, msg.header().protocol)
            .await
            .map_err(CallError::unsent)?,
    };
    let addr = target.dial.addr;
    let payload = if conn.upgraded {
        ttwitter::wrap_request(&ctx.to_ttwitter(deadline), msg)
    } else {
        msg.bytes().clone()
    };
    // A write error may come after part of the call left: it counts as sent.
    conn.io
        .write_all(&frame(&payload, target.framed, addr)?)
        .await
        .map_err(|e| CallError::sent(upstream(addr, format!("write failed: {e}"))))?;
    if msg.header().kind == MessageKind::Oneway {
        checkin(key, conn);
        return Ok(Delivered::Oneway);
    }
    let reply = if conn.upgraded {
        let protocol = msg.header().protocol;
        let limits = target.limits;
        read_one(&mut conn, |b| plexus_thrift::decode_frame(b, &limits))
            .await
            .and_then(|frame| match frame {
                None => Ok(None),
                Some(payload) => ttwitter::split_reply(payload, protocol, &limits)
                    .map(|(_, m)| Some(m))
                    .map_err(|e| e.to_string()),
            })
    } else {
        let mut decoder = Decoder::new(target.framed, target.limits);
        read_one(&mut conn, |b| decoder.decode(b)).await
    };
    let reply = match reply {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Err(CallError::sent(upstream(
                addr,
                "connection closed before the reply",
            )));
        }
        Err(why) => return Err(CallError::sent(upstream(addr, why))),
    };
    let (h, r) = (msg.header(), reply.header());
    if r.seqid != h.seqid || r.kind.is_request() {
        return Err(CallError::sent(upstream(
            addr,
            format!(
                "reply {} {:?} seqid {} does not answer call {:?} seqid {}",
                r.kind, r.name, r.seqid, h.name, h.seqid
            ),
        )));
    }
    if conn.buf.is_empty() {
        checkin(key, conn);
    }
    Ok(Delivered::Reply(reply))
}
