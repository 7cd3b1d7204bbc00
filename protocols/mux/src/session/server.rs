//! The server side of a Mux session: answering the handshake, taking requests, replying,
//! cancelling on Tdiscarded and draining gracefully.
//!
//! A first message that is the probe `Rerr("tinit check")` is echoed and Tinit is
//! answered with Rinit; any other first message means a client that does not negotiate,
//! and the session just serves it. Drain follows Finagle: Tdrain, the client's Rdrain,
//! nacks for anything that arrives after it, and the end once every request is answered.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use super::{
    Core, Negotiated, PingError, Sent, SessionConfig, SessionError, TlsPolicy, local_headers,
    min_instant, negotiate,
};
use crate::codec::{
    CONTROL_TAG, DecodeError, EncodeError, Init, MARKER_TAG, Message, Reply, Request, Response,
    TINIT_CHECK, VERSION,
};
use crate::context::TRACE_CONTEXT;

/// What a server session tells its caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerEvent {
    /// The session is open.
    Ready(Negotiated),
    /// TLS was negotiated: write what `poll_transmit` yields (it ends with Rinit), run a
    /// TLS server handshake on the connection (`unread` are bytes already received after
    /// Tinit, which belong to TLS), then call [`ServerSession::tls_established`] and feed
    /// decrypted bytes.
    StartTls {
        /// Received bytes that follow Tinit.
        unread: Bytes,
    },
    /// A request to serve; answer it with [`ServerSession::respond`].
    Request {
        /// Its tag.
        tag: u32,
        /// The request.
        request: Request,
        /// Whether it came as a legacy Treq (its trace keys are given as a
        /// `TraceContext` context; the reply goes back as Rreq, without contexts).
        legacy: bool,
    },
    /// The client discarded a request: stop working on it; it needs no reply.
    Cancelled {
        /// Its tag.
        tag: u32,
        /// The client's reason.
        reason: String,
    },
    /// The reply to [`ServerSession::ping`] (or an automatic ping).
    Pong {
        /// Round-trip time.
        rtt: Duration,
    },
    /// Drained (or the client went away idle): write what `poll_transmit` yields and
    /// close.
    Finished,
    /// The session failed; requests in flight will never be answered (cancel them).
    Failed(SessionError),
}

/// Why [`ServerSession::respond`] wrote nothing.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RespondError {
    /// The tag is not in flight (discarded, answered, or the session ended).
    #[error("tag {0} is not in flight")]
    UnknownTag(u32),
    /// The response cannot be encoded (a field too long); the request is still in
    /// flight and can be answered with something else.
    #[error("cannot encode the response: {0}")]
    Encode(#[from] EncodeError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Nothing received yet.
    AwaitingFirst,
    /// The probe was echoed; Tinit expected.
    AwaitingTinit,
    /// Rinit queued with TLS negotiated; waiting for the caller's TLS handshake.
    SwitchingTls,
    Open,
    Closed,
}

#[derive(Clone, Copy, Debug)]
struct Drain {
    deadline: Option<Instant>,
    acknowledged: bool,
}

/// A server's Mux session over one connection.
#[derive(Debug)]
pub struct ServerSession {
    core: Core,
    phase: Phase,
    /// Requests handed to the caller and not answered: tag → came as Treq.
    in_flight: HashMap<u32, bool>,
    events: VecDeque<ServerEvent>,
    negotiated: Option<Negotiated>,
    drain: Option<Drain>,
}

impl ServerSession {
    /// A new session, waiting for the client's first message.
    pub fn new(config: SessionConfig, _now: Instant) -> Self {
        ServerSession {
            core: Core::new(config),
            phase: Phase::AwaitingFirst,
            in_flight: HashMap::new(),
            events: VecDeque::new(),
            negotiated: None,
            drain: None,
        }
    }

    /// Feeds bytes received from the client.
    pub fn receive(&mut self, data: &[u8], now: Instant) {
        if self.phase == Phase::Closed {
            tracing::debug!(len = data.len(), "mux server: input after close ignored");
            return;
        }
        self.core.decoder.extend(data);
        self.process(now);
    }

    /// The client closed the connection.
    pub fn receive_eof(&mut self, _now: Instant) {
        if self.phase == Phase::Closed {
            return;
        }
        if self.in_flight.is_empty() {
            self.finish();
        } else {
            let in_flight = self.in_flight.len();
            self.fail(SessionError::PeerClosed { in_flight });
        }
    }

    /// Appends the next frame to write to `dst`; false when there is nothing to write.
    /// Call it until it returns false after every input.
    pub fn poll_transmit(&mut self, dst: &mut BytesMut) -> bool {
        let allow_data = matches!(self.phase, Phase::Open | Phase::Closed);
        matches!(
            self.core.poll_transmit(dst, allow_data),
            Some(Sent::Control | Sent::Data { .. })
        )
    }

    /// The next event for the caller.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase != Phase::Open {
            return None;
        }
        min_instant(
            self.core.poll_timeout(),
            self.drain.and_then(|d| d.deadline),
        )
    }

    /// Runs timers due at `now` (automatic pings, the ping timeout, the drain deadline).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase != Phase::Open {
            return;
        }
        if let Some(deadline) = self.drain.and_then(|d| d.deadline)
            && now >= deadline
        {
            if self.in_flight.is_empty() {
                self.finish();
            } else {
                let in_flight = self.in_flight.len();
                self.fail(SessionError::DrainTimeout { in_flight });
            }
            return;
        }
        if let Err(e) = self.core.handle_timeout(now) {
            self.fail(e);
        }
    }

    /// The caller finished the TLS handshake that [`ServerEvent::StartTls`] asked for.
    pub fn tls_established(&mut self, now: Instant) {
        if self.phase != Phase::SwitchingTls {
            tracing::warn!(phase = ?self.phase, "mux server: tls_established without StartTls");
            return;
        }
        let negotiated = self.negotiated.clone().unwrap_or_default();
        self.open(negotiated, now);
        self.process(now);
    }

    /// Answers the request of `tag`.
    pub fn respond(&mut self, tag: u32, response: Response) -> Result<(), RespondError> {
        let legacy = *self
            .in_flight
            .get(&tag)
            .ok_or(RespondError::UnknownTag(tag))?;
        let message = if legacy {
            Message::Rreq {
                tag,
                reply: response.reply,
            }
        } else {
            Message::Rdispatch { tag, response }
        };
        let frame = message.to_frame()?;
        self.in_flight.remove(&tag);
        self.core.send_data(frame);
        self.check_finished();
        Ok(())
    }

    /// Starts a graceful close: Tdrain now; after the client's Rdrain new requests are
    /// nacked; [`ServerEvent::Finished`] once all are answered, or
    /// [`SessionError::DrainTimeout`] at `deadline` if some are not.
    pub fn drain(&mut self, deadline: Option<Instant>) {
        match self.phase {
            Phase::Closed => {}
            Phase::Open => {
                if self.drain.is_none() {
                    self.drain = Some(Drain {
                        deadline,
                        acknowledged: false,
                    });
                    self.core.send_control(Message::Tdrain { tag: CONTROL_TAG });
                }
            }
            // Nothing can be in flight before the session is open.
            Phase::AwaitingFirst | Phase::AwaitingTinit | Phase::SwitchingTls => self.finish(),
        }
    }

    /// Sends a Tping; its reply comes as [`ServerEvent::Pong`].
    pub fn ping(&mut self, now: Instant) -> Result<(), PingError> {
        if self.phase != Phase::Open {
            return Err(PingError::NotOpen);
        }
        self.core.ping(now)
    }

    /// Requests handed out and not answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether the session is over (finished or failed).
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether the session is open (handshake done).
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Whether a drain was started.
    pub fn is_draining(&self) -> bool {
        self.drain.is_some()
    }

    /// What the handshake settled, once it is done.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    fn process(&mut self, now: Instant) {
        while matches!(
            self.phase,
            Phase::AwaitingFirst | Phase::AwaitingTinit | Phase::Open
        ) {
            match self.core.decoder.next_message() {
                Ok(Some(message)) => self.on_message(message, now),
                Ok(None) => break,
                Err(DecodeError::UnknownType { kind, tag }) => {
                    if self.phase == Phase::AwaitingFirst {
                        self.open_without_handshake(now);
                    }
                    self.core.unexpected(kind, tag);
                }
                Err(e) => self.fail(e.into()),
            }
        }
    }

    fn on_message(&mut self, message: Message, now: Instant) {
        match self.phase {
            Phase::AwaitingFirst => match message {
                Message::Rerr { tag, message } if message == TINIT_CHECK => {
                    self.core.send_control(Message::Rerr { tag, message });
                    self.phase = Phase::AwaitingTinit;
                }
                other => {
                    self.open_without_handshake(now);
                    if self.phase == Phase::Open {
                        self.on_open_message(other, now);
                    }
                }
            },
            Phase::AwaitingTinit => match message {
                Message::Tinit { tag, init } => self.on_tinit(tag, init, now),
                other => {
                    self.open_without_handshake(now);
                    if self.phase == Phase::Open {
                        self.on_open_message(other, now);
                    }
                }
            },
            Phase::Open => self.on_open_message(message, now),
            Phase::SwitchingTls | Phase::Closed => {}
        }
    }

    fn on_tinit(&mut self, tag: u32, init: Init, now: Instant) {
        if init.version != VERSION {
            self.core.send_control(Message::Rerr {
                tag,
                message: format!("Unsupported Mux version: {}", init.version),
            });
            self.fail(SessionError::UnsupportedVersion(init.version));
            return;
        }
        let negotiated = negotiate(&self.core.config, init.headers);
        let reply = match &negotiated {
            Err(e @ SessionError::BadHeader { .. }) => Message::Rerr {
                tag,
                message: e.to_string(),
            },
            // Rinit goes out even when the TLS policies clash, so the client can tell why.
            _ => Message::Rinit {
                tag,
                init: Init {
                    version: VERSION,
                    headers: local_headers(&self.core.config),
                },
            },
        };
        self.core.send_control(reply);
        match negotiated {
            Err(e) => self.fail(e),
            Ok(negotiated) if negotiated.tls => {
                self.negotiated = Some(negotiated);
                self.phase = Phase::SwitchingTls;
                let unread = self.core.decoder.take_unread();
                self.events.push_back(ServerEvent::StartTls { unread });
            }
            Ok(negotiated) => self.open(negotiated, now),
        }
    }

    fn open_without_handshake(&mut self, now: Instant) {
        let config = &self.core.config;
        if config.tls == TlsPolicy::Required && !config.transport_is_tls {
            self.fail(SessionError::TlsRequired);
            return;
        }
        self.open(Negotiated::default(), now);
    }

    fn open(&mut self, negotiated: Negotiated, now: Instant) {
        tracing::debug!(?negotiated, "mux server: session open");
        self.core.open(&negotiated, now);
        self.negotiated = Some(negotiated.clone());
        self.phase = Phase::Open;
        self.events.push_back(ServerEvent::Ready(negotiated));
    }

    fn on_open_message(&mut self, message: Message, now: Instant) {
        match message {
            Message::Tdispatch { tag, request } => self.on_request(tag, request, false),
            Message::Treq { tag, keys, body } => {
                let request = Request {
                    contexts: treq_trace_context(&keys).into_iter().collect(),
                    body,
                    ..Request::default()
                };
                self.on_request(tag, request, true);
            }
            Message::Tping { tag } => self.core.send_control(Message::Rping { tag }),
            Message::Rping { .. } => {
                if let Some(rtt) = self.core.on_rping(now) {
                    self.events.push_back(ServerEvent::Pong { rtt });
                }
            }
            Message::Tdiscarded {
                discard_tag,
                reason,
            } => self.on_discard(discard_tag, reason),
            Message::Rdrain { .. } => {
                if let Some(drain) = &mut self.drain {
                    drain.acknowledged = true;
                    self.check_finished();
                } else {
                    tracing::debug!("mux server: Rdrain without Tdrain ignored");
                }
            }
            Message::Tlease { .. } => {
                tracing::debug!("mux server: Tlease from a client ignored");
            }
            Message::Rerr { tag, message } => {
                tracing::debug!(tag, %message, "mux server: Rerr from the client ignored");
            }
            Message::Tdrain { tag } | Message::Tinit { tag, .. } => {
                let kind = message.kind();
                self.core.unexpected(kind, tag);
            }
            Message::Rreq { .. }
            | Message::Rdispatch { .. }
            | Message::Rdiscarded { .. }
            | Message::Rinit { .. } => {
                tracing::debug!(%message, "mux server: unexpected reply ignored");
            }
        }
    }

    fn on_request(&mut self, tag: u32, request: Request, legacy: bool) {
        if tag == MARKER_TAG {
            self.fail(SessionError::InvalidTag(tag));
            return;
        }
        // A tag whose reply is not yet written is still in flight for the client.
        if self.in_flight.contains_key(&tag) || self.core.data.iter().any(|o| o.tag == tag) {
            self.core.send_control(Message::Rerr {
                tag,
                message: format!("duplicate tag {tag}"),
            });
            self.fail(SessionError::DuplicateTag(tag));
            return;
        }
        if self.drain.is_some_and(|d| d.acknowledged) {
            let nack = if legacy {
                Message::Rreq {
                    tag,
                    reply: Reply::Nack,
                }
            } else {
                Message::Rdispatch {
                    tag,
                    response: Response::nack(),
                }
            };
            match nack.to_frame() {
                Ok(frame) => self.core.send_data(frame),
                Err(e) => tracing::error!(error = %e, "mux server: cannot encode a nack"),
            }
            return;
        }
        self.in_flight.insert(tag, legacy);
        self.events.push_back(ServerEvent::Request {
            tag,
            request,
            legacy,
        });
    }

    fn on_discard(&mut self, tag: u32, reason: String) {
        if self.core.decoder.discard(tag) {
            // Only part of the request had arrived: the client wrote no more of it.
            self.core.send_control(Message::Rdiscarded { tag });
        } else if self.in_flight.remove(&tag).is_some() {
            self.core.send_control(Message::Rdiscarded { tag });
            self.events
                .push_back(ServerEvent::Cancelled { tag, reason });
            self.check_finished();
        } else {
            // Already answered (the reply frees the tag) or unknown.
            tracing::debug!(
                tag,
                "mux server: Tdiscarded for a tag not in flight ignored"
            );
        }
    }

    fn check_finished(&mut self) {
        if self.drain.is_some_and(|d| d.acknowledged)
            && self.in_flight.is_empty()
            && self.phase == Phase::Open
        {
            self.finish();
        }
    }

    fn finish(&mut self) {
        self.phase = Phase::Closed;
        self.core.stop();
        self.events.push_back(ServerEvent::Finished);
    }

    fn fail(&mut self, error: SessionError) {
        if self.phase == Phase::Closed {
            return;
        }
        tracing::debug!(error = %error, "mux server: session failed");
        self.phase = Phase::Closed;
        self.core.stop();
        self.core.data.clear();
        self.in_flight.clear();
        self.events.push_back(ServerEvent::Failed(error));
    }
}

/// The `TraceContext` context (`span parent trace flags`, 8 bytes each) for a Treq's
/// trace keys: key 1 = `span parent trace` (24 bytes), key 2 = flags (1 byte).
fn treq_trace_context(keys: &[(u8, Bytes)]) -> Option<(Bytes, Bytes)> {
    let ids = keys.iter().find(|(k, v)| *k == 1 && v.len() == 24)?;
    let flags = keys
        .iter()
        .find(|(k, v)| *k == 2 && v.len() == 1)
        .map_or(0, |(_, v)| u64::from(v[0]));
    let mut value = BytesMut::with_capacity(32);
    value.put_slice(&ids.1);
    value.put_u64(flags);
    Some((Bytes::from_static(TRACE_CONTEXT.as_bytes()), value.freeze()))
}
