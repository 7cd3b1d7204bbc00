//! The client side of a Mux session: handshake, request tags, replies, discards, drains.
//!
//! It opens with the probe `Rerr(1, "tinit check")`; a server that echoes it gets Tinit
//! and must answer Rinit, anything else means an old server and defaults. Requests
//! dispatched meanwhile wait and go out once the session is open. A request's tag stays
//! taken until its reply, its Rerr or its Rdiscarded arrives, so a tag is never reused
//! while the server may still answer it.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use super::{
    Core, Negotiated, PingError, Sent, SessionConfig, SessionError, TagAllocator, TlsPolicy,
    local_headers, negotiate,
};
use crate::codec::{
    CONTROL_TAG, DecodeError, EncodeError, Init, Message, Request, Response, TINIT_CHECK, VERSION,
};

/// What a client session tells its caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// The session is open; dispatched requests are being written.
    Ready(Negotiated),
    /// TLS was negotiated: write what `poll_transmit` yields, run a TLS client handshake
    /// on the connection (`unread` are bytes already received after Rinit, which belong
    /// to TLS), then call [`ClientSession::tls_established`] and feed decrypted bytes.
    StartTls {
        /// Received bytes that follow Rinit.
        unread: Bytes,
    },
    /// The reply to a request.
    Response {
        /// The request's tag.
        tag: u32,
        /// The reply.
        response: Response,
    },
    /// A request ended without a reply.
    RequestFailed {
        /// The request's tag.
        tag: u32,
        /// Why.
        error: RequestError,
    },
    /// The reply to [`ClientSession::ping`] (or an automatic ping).
    Pong {
        /// Round-trip time.
        rtt: Duration,
    },
    /// The server granted a lease.
    Lease {
        /// Its length.
        duration: Duration,
    },
    /// The server asked to drain: no new requests; the session finishes when the
    /// outstanding ones are answered.
    Draining,
    /// Drained and idle: write what `poll_transmit` yields and close.
    Finished,
    /// The session failed; every request still in flight got a `RequestFailed` first.
    Failed(SessionError),
}

/// Why a request ended without a reply.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RequestError {
    /// The server failed it with an Rerr.
    #[error("the server failed the request: {0}")]
    Rerr(String),
    /// It was never written; safe to send elsewhere.
    #[error("request not sent: {0}")]
    NotSent(&'static str),
    /// The session ended after it was written; it may or may not have been processed.
    #[error("the session ended before the reply")]
    Lost,
    /// The server discarded it without being asked.
    #[error("the server discarded the request")]
    Discarded,
}

impl RequestError {
    /// Whether the request certainly did not reach the server's application.
    pub fn is_retryable(&self) -> bool {
        matches!(self, RequestError::NotSent(_))
    }
}

/// Why [`ClientSession::dispatch`] refused a request (none of these wrote anything).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DispatchError {
    /// The session is closed.
    #[error("the mux session is closed")]
    Closed,
    /// The server asked to drain.
    #[error("the mux session is draining")]
    Draining,
    /// All 2^23 − 2 tags are in flight.
    #[error("no free mux tag")]
    TagsExhausted,
    /// The request cannot be encoded (a field too long).
    #[error("cannot encode the request: {0}")]
    Encode(#[from] EncodeError),
}

impl DispatchError {
    /// Whether another session may take the request.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, DispatchError::Encode(_))
    }
}

/// What [`ClientSession::discard`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiscardOutcome {
    /// The request had not been written: it is forgotten and its tag free.
    Forgotten,
    /// Tdiscarded is queued; the tag is freed when the server answers.
    Sent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Probe sent, waiting for the echo.
    Probing,
    /// Tinit sent, waiting for Rinit.
    Initializing,
    /// Rinit received with TLS negotiated; waiting for the caller's TLS handshake.
    SwitchingTls,
    Open,
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Queued, no byte written.
    Queued,
    /// Some fragments written.
    Writing,
    /// Completely written, waiting for the reply.
    Written,
    /// Tdiscarded sent, waiting for the reply or Rdiscarded.
    Discarded,
}

/// A client's Mux session over one connection.
#[derive(Debug)]
pub struct ClientSession {
    core: Core,
    phase: Phase,
    tags: TagAllocator,
    requests: HashMap<u32, State>,
    events: VecDeque<ClientEvent>,
    negotiated: Option<Negotiated>,
    draining: bool,
    lease_until: Option<Instant>,
}

impl ClientSession {
    /// A new session; its first bytes (the handshake probe) are ready to write.
    pub fn new(config: SessionConfig, _now: Instant) -> Self {
        let mut core = Core::new(config);
        core.send_control(Message::Rerr {
            tag: CONTROL_TAG,
            message: TINIT_CHECK.into(),
        });
        ClientSession {
            core,
            phase: Phase::Probing,
            tags: TagAllocator::new(),
            requests: HashMap::new(),
            events: VecDeque::new(),
            negotiated: None,
            draining: false,
            lease_until: None,
        }
    }

    /// Feeds bytes received from the server.
    pub fn receive(&mut self, data: &[u8], now: Instant) {
        if self.phase == Phase::Closed {
            tracing::debug!(len = data.len(), "mux client: input after close ignored");
            return;
        }
        self.core.decoder.extend(data);
        self.process(now);
    }

    /// The server closed the connection.
    pub fn receive_eof(&mut self, _now: Instant) {
        if self.phase == Phase::Closed {
            return;
        }
        if self.requests.is_empty() {
            self.finish();
        } else {
            let in_flight = self.requests.len();
            self.fail(SessionError::PeerClosed { in_flight });
        }
    }

    /// Appends the next frame to write to `dst`; false when there is nothing to write.
    /// Call it until it returns false after every input.
    pub fn poll_transmit(&mut self, dst: &mut BytesMut) -> bool {
        let allow_data = matches!(self.phase, Phase::Open | Phase::Closed);
        match self.core.poll_transmit(dst, allow_data) {
            None => false,
            Some(Sent::Control) => true,
            Some(Sent::Data { tag, first, last }) => {
                if let Some(state) = self.requests.get_mut(&tag) {
                    if first && *state == State::Queued {
                        *state = State::Writing;
                    }
                    if last && *state == State::Writing {
                        *state = State::Written;
                    }
                }
                true
            }
        }
    }

    /// The next event for the caller.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase != Phase::Open {
            return None;
        }
        self.core.poll_timeout()
    }

    /// Runs timers due at `now` (automatic pings, the ping timeout).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase != Phase::Open {
            return;
        }
        if let Err(e) = self.core.handle_timeout(now) {
            self.fail(e);
        }
    }

    /// The caller finished the TLS handshake that [`ClientEvent::StartTls`] asked for.
    pub fn tls_established(&mut self, now: Instant) {
        if self.phase != Phase::SwitchingTls {
            tracing::warn!(phase = ?self.phase, "mux client: tls_established without StartTls");
            return;
        }
        let negotiated = self.negotiated.clone().unwrap_or_default();
        self.open(negotiated, now);
        self.process(now);
    }

    /// Sends a request; returns its tag, which names it in later events.
    pub fn dispatch(&mut self, request: Request) -> Result<u32, DispatchError> {
        if self.phase == Phase::Closed {
            return Err(DispatchError::Closed);
        }
        if self.draining {
            return Err(DispatchError::Draining);
        }
        let tag = self.tags.allocate().ok_or(DispatchError::TagsExhausted)?;
        let frame = match (Message::Tdispatch { tag, request }).to_frame() {
            Ok(frame) => frame,
            Err(e) => {
                self.tags.release(tag);
                return Err(e.into());
            }
        };
        self.requests.insert(tag, State::Queued);
        self.core.send_data(frame);
        Ok(tag)
    }

    /// Cancels a request. `None` if the tag is not in flight (answered, or already
    /// discarded).
    pub fn discard(&mut self, tag: u32, reason: &str) -> Option<DiscardOutcome> {
        let state = *self.requests.get(&tag)?;
        match state {
            State::Discarded => None,
            State::Queued => {
                self.core.remove_data(tag);
                self.forget(tag);
                self.check_finished();
                Some(DiscardOutcome::Forgotten)
            }
            State::Writing | State::Written => {
                // The unwritten rest of the message is dropped; the server drops the
                // fragments it has.
                self.core.remove_data(tag);
                self.requests.insert(tag, State::Discarded);
                self.core.send_control(Message::Tdiscarded {
                    discard_tag: tag,
                    reason: reason.into(),
                });
                Some(DiscardOutcome::Sent)
            }
        }
    }

    /// Sends a Tping; its reply comes as [`ClientEvent::Pong`].
    pub fn ping(&mut self, now: Instant) -> Result<(), PingError> {
        if self.phase != Phase::Open {
            return Err(PingError::NotOpen);
        }
        self.core.ping(now)
    }

    /// Requests in flight (tags taken).
    pub fn in_flight(&self) -> usize {
        self.requests.len()
    }

    /// Whether the session is over (finished or failed).
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether the server asked to drain.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Whether the session is open (handshake done).
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// What the handshake settled, once it is done.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// What is left of the server's lease, if it sent one.
    pub fn lease_remaining(&self, now: Instant) -> Option<Duration> {
        self.lease_until
            .map(|until| until.saturating_duration_since(now))
    }

    fn process(&mut self, now: Instant) {
        while matches!(
            self.phase,
            Phase::Probing | Phase::Initializing | Phase::Open
        ) {
            match self.core.decoder.next_message() {
                Ok(Some(message)) => self.on_message(message, now),
                Ok(None) => break,
                Err(DecodeError::UnknownType { kind, tag }) => self.core.unexpected(kind, tag),
                Err(e) => self.fail(e.into()),
            }
        }
    }

    fn on_message(&mut self, message: Message, now: Instant) {
        match self.phase {
            Phase::Probing => match message {
                Message::Rerr { message: text, .. } if text == TINIT_CHECK => {
                    self.core.send_control(Message::Tinit {
                        tag: CONTROL_TAG,
                        init: Init {
                            version: VERSION,
                            headers: local_headers(&self.core.config),
                        },
                    });
                    self.phase = Phase::Initializing;
                }
                Message::Rerr {
                    tag: CONTROL_TAG, ..
                } => {
                    // An old server refusing the probe.
                    self.open_without_handshake(now);
                }
                other => {
                    self.open_without_handshake(now);
                    if self.phase == Phase::Open {
                        self.on_open_message(other, now);
                    }
                }
            },
            Phase::Initializing => match message {
                Message::Rinit { init, .. } => self.on_rinit(init, now),
                Message::Rerr { message, .. } => {
                    self.fail(SessionError::HandshakeRejected(message))
                }
                other => self.fail(SessionError::UnexpectedHandshake(other.name())),
            },
            Phase::Open => self.on_open_message(message, now),
            Phase::SwitchingTls | Phase::Closed => {}
        }
    }

    fn on_rinit(&mut self, init: Init, now: Instant) {
        if init.version != VERSION {
            self.fail(SessionError::UnsupportedVersion(init.version));
            return;
        }
        match negotiate(&self.core.config, init.headers) {
            Err(e) => self.fail(e),
            Ok(negotiated) if negotiated.tls => {
                self.negotiated = Some(negotiated);
                self.phase = Phase::SwitchingTls;
                let unread = self.core.decoder.take_unread();
                self.events.push_back(ClientEvent::StartTls { unread });
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
        tracing::debug!(?negotiated, "mux client: session open");
        self.core.open(&negotiated, now);
        self.negotiated = Some(negotiated.clone());
        self.phase = Phase::Open;
        self.events.push_back(ClientEvent::Ready(negotiated));
    }

    fn on_open_message(&mut self, message: Message, now: Instant) {
        match message {
            Message::Rdispatch { tag, response } => self.on_reply(tag, Ok(response)),
            Message::Rreq { tag, reply } => self.on_reply(
                tag,
                Ok(Response {
                    contexts: Vec::new(),
                    reply,
                }),
            ),
            Message::Rerr { tag, message } => self.on_reply(tag, Err(RequestError::Rerr(message))),
            Message::Rdiscarded { tag } => self.on_reply(tag, Err(RequestError::Discarded)),
            Message::Tping { tag } => self.core.send_control(Message::Rping { tag }),
            Message::Rping { .. } => {
                if let Some(rtt) = self.core.on_rping(now) {
                    self.events.push_back(ClientEvent::Pong { rtt });
                }
            }
            Message::Tdrain { tag } => self.on_drain(tag),
            Message::Tlease { unit: 0, amount } => {
                let duration = Duration::from_millis(amount);
                self.lease_until = now.checked_add(duration);
                self.events.push_back(ClientEvent::Lease { duration });
            }
            Message::Tlease { unit, .. } => self.fail(SessionError::LeaseUnit(unit)),
            Message::Tdiscarded { discard_tag, .. } => {
                tracing::debug!(
                    discard_tag,
                    "mux client: Tdiscarded from the server ignored"
                );
            }
            Message::Rinit { .. } | Message::Rdrain { .. } => {
                tracing::debug!(%message, "mux client: unexpected reply ignored");
            }
            Message::Treq { tag, .. }
            | Message::Tdispatch { tag, .. }
            | Message::Tinit { tag, .. } => {
                let kind = message.kind();
                self.core.unexpected(kind, tag);
            }
        }
    }

    fn on_reply(&mut self, tag: u32, outcome: Result<Response, RequestError>) {
        let Some(state) = self.requests.get(&tag).copied() else {
            tracing::debug!(tag, "mux client: reply for a tag not in flight ignored");
            return;
        };
        match state {
            State::Queued | State::Writing => {
                self.fail(SessionError::EarlyResponse(tag));
                return;
            }
            State::Discarded => self.forget(tag),
            State::Written => {
                self.forget(tag);
                self.events.push_back(match outcome {
                    Ok(response) => ClientEvent::Response { tag, response },
                    Err(error) => ClientEvent::RequestFailed { tag, error },
                });
            }
        }
        self.check_finished();
    }

    fn on_drain(&mut self, tag: u32) {
        self.core.send_control(Message::Rdrain { tag });
        if self.draining {
            return;
        }
        self.draining = true;
        // Requests not started would only be nacked by the server: fail them here.
        let mut queued: Vec<u32> = self
            .requests
            .iter()
            .filter(|(_, s)| **s == State::Queued)
            .map(|(t, _)| *t)
            .collect();
        queued.sort_unstable();
        for tag in queued {
            self.core.remove_data(tag);
            self.forget(tag);
            self.events.push_back(ClientEvent::RequestFailed {
                tag,
                error: RequestError::NotSent("the server is draining the session"),
            });
        }
        self.events.push_back(ClientEvent::Draining);
        self.check_finished();
    }

    fn forget(&mut self, tag: u32) {
        self.requests.remove(&tag);
        self.tags.release(tag);
    }

    fn check_finished(&mut self) {
        if self.draining && self.requests.is_empty() && self.phase == Phase::Open {
            self.finish();
        }
    }

    fn finish(&mut self) {
        self.phase = Phase::Closed;
        self.core.stop();
        self.events.push_back(ClientEvent::Finished);
    }

    fn fail(&mut self, error: SessionError) {
        if self.phase == Phase::Closed {
            return;
        }
        tracing::debug!(error = %error, "mux client: session failed");
        self.phase = Phase::Closed;
        self.core.stop();
        self.core.data.clear();
        let mut tags: Vec<(u32, State)> = self.requests.drain().collect();
        tags.sort_unstable_by_key(|(tag, _)| *tag);
        for (tag, state) in tags {
            self.tags.release(tag);
            let error = match state {
                State::Queued => RequestError::NotSent("the mux session failed"),
                State::Writing | State::Written => RequestError::Lost,
                State::Discarded => continue,
            };
            self.events
                .push_back(ClientEvent::RequestFailed { tag, error });
        }
        self.events.push_back(ClientEvent::Failed(error));
    }
}
