//! Mux sessions without I/O: the client and server state machines of one connection.
//!
//! A session is fed what the connection produced (received bytes, end of stream, the
//! current time) and what the application wants (dispatch, respond, ping, drain,
//! discard); it answers with bytes to write ([`ClientSession::poll_transmit`]), events for
//! the application (`poll_event`) and the next instant it wants to be woken at
//! (`poll_timeout`). It never reads a clock or touches a socket, so every behaviour is
//! testable in memory and deterministic; a tokio task wraps it in the router.
//!
//! What both roles share lives here: the configuration, the handshake headers and the
//! opportunistic-TLS decision, the errors, and the connection core (decoder, write
//! scheduler, pings). Control frames (pings, drains, discards, errors) are written before
//! any pending request or response data, and Tdispatch/Rdispatch bodies are cut into
//! fragments the peer accepts and interleaved across tags, so an Rping never waits behind
//! a large reply.

mod client;
mod server;
mod tags;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use crate::codec::{Decoder, FRAGMENT_BIT, Frame, Limits, Message, types};

pub use client::{ClientEvent, ClientSession, DiscardOutcome, DispatchError, RequestError};
pub use server::{RespondError, ServerEvent, ServerSession};
pub use tags::TagAllocator;

/// Tinit/Rinit header: the largest fragment body the sender wants to receive (u32 BE).
pub const MUX_FRAMER_HEADER: &str = "mux-framer";
/// Tinit/Rinit header: the sender's opportunistic-TLS policy.
pub const TLS_HEADER: &str = "tls";

/// How a session is set up; the same for both roles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Limits on what the peer may make this side buffer.
    pub limits: Limits,
    /// The `mux-framer` value sent: the largest fragment this side wants to receive.
    /// Default 64 KiB.
    pub max_read_fragment: u32,
    /// The largest fragment this side writes when the peer sent `mux-framer` (the
    /// smaller of this and the peer's value is used). Without the header nothing is
    /// fragmented. Default 64 KiB.
    pub max_write_fragment: u32,
    /// The opportunistic-TLS policy sent in the `tls` header. Default off.
    pub tls: TlsPolicy,
    /// Whether the connection is already TLS (then the `tls` header decides nothing).
    pub transport_is_tls: bool,
    /// Send a Tping this long after the previous Rping (first one: this long after the
    /// session opens). Default: none (pings only on request).
    pub ping_interval: Option<Duration>,
    /// Fail the session when an Rping takes longer than this. Default: no limit.
    pub ping_timeout: Option<Duration>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            limits: Limits::default(),
            max_read_fragment: 64 << 10,
            max_write_fragment: 64 << 10,
            tls: TlsPolicy::Off,
            transport_is_tls: false,
            ping_interval: None,
            ping_timeout: None,
        }
    }
}

/// A side's opportunistic-TLS policy (the `tls` handshake header).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TlsPolicy {
    /// No TLS.
    #[default]
    Off,
    /// TLS if the peer can.
    Desired,
    /// TLS or no session.
    Required,
}

impl TlsPolicy {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsPolicy::Off => "off",
            TlsPolicy::Desired => "desired",
            TlsPolicy::Required => "required",
        }
    }

    /// Reads a header value; unknown values read as off.
    pub fn from_header(value: &[u8]) -> Self {
        match value {
            b"desired" => TlsPolicy::Desired,
            b"required" => TlsPolicy::Required,
            _ => TlsPolicy::Off,
        }
    }
}

/// Whether two policies lead to TLS: off with off or desired is cleartext, desired or
/// required on both sides is TLS, required against off fails.
pub fn negotiate_tls(local: TlsPolicy, remote: TlsPolicy) -> Result<bool, SessionError> {
    use TlsPolicy::*;
    match (local, remote) {
        (Required, Off) | (Off, Required) => Err(SessionError::TlsIncompatible { local, remote }),
        (Off, _) | (_, Off) => Ok(false),
        _ => Ok(true),
    }
}

/// What the handshake settled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// Whether Tinit/Rinit took place (false: an old peer, defaults apply).
    pub handshake: bool,
    /// The peer's Tinit/Rinit headers, as sent.
    pub peer_headers: Vec<(Bytes, Bytes)>,
    /// The peer's `mux-framer` value.
    pub peer_max_fragment: Option<u32>,
    /// The fragment size this side writes with (`None`: whole messages).
    pub write_fragment: Option<u32>,
    /// Whether the connection switched to TLS after the handshake.
    pub tls: bool,
}

/// Why a session ended abnormally. After it, the caller writes what `poll_transmit`
/// still yields (perhaps an Rerr telling the peer why) and closes the connection.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SessionError {
    /// The peer's bytes are not Mux, or break a limit.
    #[error("undecodable mux input: {0}")]
    Decode(#[from] crate::codec::DecodeError),
    /// The peer used a tag that is already in flight.
    #[error("the peer reused tag {0} while it was in flight")]
    DuplicateTag(u32),
    /// The peer sent a request on a tag that cannot carry one.
    #[error("the peer sent a request on tag {0}")]
    InvalidTag(u32),
    /// The peer answered a request before it was completely written.
    #[error("the peer answered tag {0} before the request was written")]
    EarlyResponse(u32),
    /// The peer asked for (or answered with) another Mux version.
    #[error("unsupported mux version {0}")]
    UnsupportedVersion(u16),
    /// The server refused Tinit with an Rerr.
    #[error("the server rejected the mux handshake: {0}")]
    HandshakeRejected(String),
    /// The handshake was answered with something else.
    #[error("unexpected {0} during the mux handshake")]
    UnexpectedHandshake(&'static str),
    /// A handshake header has a value that cannot be read.
    #[error("bad mux handshake header {key}: {reason}")]
    BadHeader {
        /// The header.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// One side requires TLS and the other has it off.
    #[error("incompatible TLS policies: this side {}, the peer {}", .local.as_str(), .remote.as_str())]
    TlsIncompatible {
        /// This side's policy.
        local: TlsPolicy,
        /// The peer's policy.
        remote: TlsPolicy,
    },
    /// TLS is required but the peer did not negotiate.
    #[error("TLS is required but the peer did not negotiate the mux session")]
    TlsRequired,
    /// An Rping did not arrive in time.
    #[error("no ping reply within {0:?}")]
    PingTimeout(Duration),
    /// The drain deadline passed with requests still in flight.
    #[error("drain deadline passed with {in_flight} requests in flight")]
    DrainTimeout {
        /// Requests still in flight.
        in_flight: usize,
    },
    /// A Tlease with a unit other than milliseconds.
    #[error("lease with unknown unit {0}")]
    LeaseUnit(u8),
    /// The connection ended with requests in flight.
    #[error("connection closed by the peer with {in_flight} requests in flight")]
    PeerClosed {
        /// Requests in flight.
        in_flight: usize,
    },
}

/// Why [`ClientSession::ping`] or [`ServerSession::ping`] sent nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum PingError {
    /// The session is not open (handshake running, or closed).
    #[error("the mux session is not open")]
    NotOpen,
    /// A ping is already waiting for its reply.
    #[error("a ping is already outstanding")]
    Outstanding,
}

/// The handshake headers this side sends.
fn local_headers(config: &SessionConfig) -> Vec<(Bytes, Bytes)> {
    vec![
        (
            Bytes::from_static(MUX_FRAMER_HEADER.as_bytes()),
            Bytes::copy_from_slice(&advertised_fragment(config).to_be_bytes()),
        ),
        (
            Bytes::from_static(TLS_HEADER.as_bytes()),
            Bytes::from_static(config.tls.as_str().as_bytes()),
        ),
    ]
}

/// The `mux-framer` value: the configured read fragment, within what the decoder takes.
fn advertised_fragment(config: &SessionConfig) -> u32 {
    let frame_limit = config.limits.max_frame.saturating_sub(4).max(1);
    config.max_read_fragment.clamp(1, frame_limit)
}

/// Reads the peer's handshake headers into what the session uses, the TLS decision included.
fn negotiate(
    config: &SessionConfig,
    peer_headers: Vec<(Bytes, Bytes)>,
) -> Result<Negotiated, SessionError> {
    let mut peer_max_fragment = None;
    let mut remote_tls = TlsPolicy::Off;
    for (key, value) in &peer_headers {
        if key.as_ref() == MUX_FRAMER_HEADER.as_bytes() {
            let b: [u8; 4] = value
                .as_ref()
                .try_into()
                .map_err(|_| SessionError::BadHeader {
                    key: MUX_FRAMER_HEADER,
                    reason: format!("{} bytes, expected 4", value.len()),
                })?;
            let n = u32::from_be_bytes(b);
            if n == 0 {
                return Err(SessionError::BadHeader {
                    key: MUX_FRAMER_HEADER,
                    reason: "zero".into(),
                });
            }
            peer_max_fragment = Some(n);
        } else if key.as_ref() == TLS_HEADER.as_bytes() {
            remote_tls = TlsPolicy::from_header(value);
        }
    }
    let tls = if config.transport_is_tls {
        false
    } else {
        negotiate_tls(config.tls, remote_tls)?
    };
    Ok(Negotiated {
        handshake: true,
        peer_headers,
        peer_max_fragment,
        write_fragment: peer_max_fragment.map(|p| p.min(config.max_write_fragment.max(1))),
        tls,
    })
}

/// A message body waiting to be written, perhaps in fragments.
#[derive(Debug)]
struct Outgoing {
    kind: i8,
    tag: u32,
    rest: Bytes,
    started: bool,
    fragmentable: bool,
}

/// What [`Core::poll_transmit`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sent {
    Control,
    Data { tag: u32, first: bool, last: bool },
}

/// The role-independent part of a session: input decoding, the write scheduler and pings.
#[derive(Debug)]
struct Core {
    config: SessionConfig,
    decoder: Decoder,
    control: VecDeque<Frame>,
    data: VecDeque<Outgoing>,
    write_fragment: Option<usize>,
    ping_sent: Option<Instant>,
    next_ping: Option<Instant>,
}

impl Core {
    fn new(config: SessionConfig) -> Self {
        Core {
            decoder: Decoder::new(config.limits),
            config,
            control: VecDeque::new(),
            data: VecDeque::new(),
            write_fragment: None,
            ping_sent: None,
            next_ping: None,
        }
    }

    /// Queues a control message (written before any data).
    fn send_control(&mut self, message: Message) {
        match message.to_frame() {
            Ok(frame) => self.control.push_back(frame),
            Err(e) => tracing::error!(%message, error = %e, "mux: cannot encode a control message"),
        }
    }

    /// Queues an encoded request or response.
    fn send_data(&mut self, frame: Frame) {
        let fragmentable = matches!(frame.kind, types::TDISPATCH | types::RDISPATCH);
        self.data.push_back(Outgoing {
            kind: frame.kind,
            tag: frame.id(),
            rest: frame.body,
            started: false,
            fragmentable,
        });
    }

    /// Removes the unwritten rest of `tag`'s message; `Some(started)` if there was one.
    fn remove_data(&mut self, tag: u32) -> Option<bool> {
        let i = self.data.iter().position(|o| o.tag == tag)?;
        self.data.remove(i).map(|o| o.started)
    }

    /// Unexpected T message: answer Rerr (never answer R messages or markers).
    fn unexpected(&mut self, kind: i8, tag: u32) {
        tracing::debug!(kind, tag, "mux: unexpected message");
        if kind > 0 && tag != 0 {
            self.send_control(Message::Rerr {
                tag,
                message: format!("Unexpected mux message type {kind}"),
            });
        }
    }

    fn poll_transmit(&mut self, dst: &mut BytesMut, allow_data: bool) -> Option<Sent> {
        if let Some(frame) = self.control.pop_front() {
            if let Err(e) = frame.encode(dst) {
                tracing::error!(error = %e, "mux: cannot encode a control frame");
            }
            return Some(Sent::Control);
        }
        if !allow_data {
            return None;
        }
        let mut out = self.data.pop_front()?;
        let first = !out.started;
        out.started = true;
        let limit = self.write_fragment.filter(|_| out.fragmentable);
        let (body, last) = match limit {
            Some(max) if out.rest.len() > max => (out.rest.split_to(max), false),
            _ => (std::mem::take(&mut out.rest), true),
        };
        let tag = if last {
            out.tag
        } else {
            out.tag | FRAGMENT_BIT
        };
        if let Err(e) = Frame::new(out.kind, tag, body).encode(dst) {
            tracing::error!(error = %e, "mux: cannot encode a data frame");
        }
        let tag = out.tag;
        if !last {
            self.data.push_back(out);
        }
        Some(Sent::Data { tag, first, last })
    }

    fn open(&mut self, negotiated: &Negotiated, now: Instant) {
        self.write_fragment = negotiated.write_fragment.map(|n| n as usize);
        self.next_ping = self.config.ping_interval.and_then(|i| now.checked_add(i));
    }

    fn ping(&mut self, now: Instant) -> Result<(), PingError> {
        if self.ping_sent.is_some() {
            return Err(PingError::Outstanding);
        }
        self.send_control(Message::Tping {
            tag: crate::codec::CONTROL_TAG,
        });
        self.ping_sent = Some(now);
        self.next_ping = None;
        Ok(())
    }

    /// An Rping arrived: the round-trip time of our outstanding ping, if any.
    fn on_rping(&mut self, now: Instant) -> Option<Duration> {
        let sent = self.ping_sent.take()?;
        self.next_ping = self.config.ping_interval.and_then(|i| now.checked_add(i));
        Some(now.saturating_duration_since(sent))
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match (self.ping_sent, self.config.ping_timeout) {
            (Some(sent), Some(timeout)) => sent.checked_add(timeout),
            (Some(_), None) => None,
            (None, _) => self.next_ping,
        }
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
        if let (Some(sent), Some(timeout)) = (self.ping_sent, self.config.ping_timeout)
            && sent.checked_add(timeout).is_some_and(|due| now >= due)
        {
            return Err(SessionError::PingTimeout(timeout));
        }
        if self.ping_sent.is_none() && self.next_ping.is_some_and(|at| now >= at) {
            let _ = self.ping(now);
        }
        Ok(())
    }

    /// Stops all timers (the session is over).
    fn stop(&mut self) {
        self.ping_sent = None;
        self.next_ping = None;
    }
}

fn min_instant(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
