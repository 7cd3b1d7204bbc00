//! The Mux wire format, so that sessions and tests share one exact reading of the bytes.
//!
//! A Mux frame is `size:4 type:1 tag:3 body`, where `size` counts the type, tag and body
//! bytes. [`Frame`] is that unit; [`Message`] gives each type number its body layout.
//! Messages longer than the peer's fragment size travel as several frames of one tag, all
//! but the last with the tag's top bit ([`FRAGMENT_BIT`]) set; [`Reassembler`] puts them
//! back together per tag and [`fragments`] splits them. [`Decoder`] ties a byte buffer,
//! the framer and the reassembler together for a session.
//!
//! Decoding never panics and never allocates by a length read from the wire: a frame is
//! only taken once all its bytes are buffered, bodies are slices of it, and sizes are
//! checked against [`Limits`] before anything is kept. Encoding writes the legacy type
//! numbers Finagle itself sends (127 for Rerr, −62 for Tdiscarded); decoding accepts
//! both numbers of each.

use std::collections::HashMap;
use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

/// Bytes of a frame header: the 4-byte size, the type byte and the 3-byte tag.
pub const HEADER_LEN: usize = 8;
/// The smallest legal value of the size field (type and tag, empty body).
pub const MIN_FRAME_SIZE: u32 = 4;
/// The largest size field any Mux peer accepts (Finagle's framer limit, 2^31 − 1).
pub const MAX_FRAME_SIZE: u32 = i32::MAX as u32;
/// Tag of messages that expect no reply (Tdiscarded, Tlease).
pub const MARKER_TAG: u32 = 0;
/// Tag Finagle uses for session control: pings, drains, the handshake.
pub const CONTROL_TAG: u32 = 1;
/// The first tag a client gives a request.
pub const MIN_REQUEST_TAG: u32 = 2;
/// The largest tag (23 bits).
pub const MAX_TAG: u32 = (1 << 23) - 1;
/// Top bit of the 24-bit wire tag: more fragments of this message follow.
pub const FRAGMENT_BIT: u32 = 1 << 23;
/// The only Mux version there is.
pub const VERSION: u16 = 1;
/// Body of the handshake probe `Rerr(1, "tinit check")`.
pub const TINIT_CHECK: &str = "tinit check";

/// Mux message type numbers (the type byte, as a signed number).
pub mod types {
    /// Treq, the pre-Tdispatch request.
    pub const TREQ: i8 = 1;
    /// Rreq, the reply to Treq.
    pub const RREQ: i8 = -1;
    /// Tdispatch, a request with contexts, dst and dtab.
    pub const TDISPATCH: i8 = 2;
    /// Rdispatch, the reply to Tdispatch.
    pub const RDISPATCH: i8 = -2;
    /// Tdrain: the server asks the client to stop sending.
    pub const TDRAIN: i8 = 64;
    /// Rdrain: the client's acknowledgement of Tdrain.
    pub const RDRAIN: i8 = -64;
    /// Tping.
    pub const TPING: i8 = 65;
    /// Rping.
    pub const RPING: i8 = -65;
    /// Tdiscarded as the specification numbers it.
    pub const TDISCARDED: i8 = 66;
    /// Tdiscarded's legacy number, the one Finagle sends (and Plexus sends).
    pub const TDISCARDED_LEGACY: i8 = -62;
    /// Rdiscarded.
    pub const RDISCARDED: i8 = -66;
    /// Tlease.
    pub const TLEASE: i8 = 67;
    /// Tinit.
    pub const TINIT: i8 = 68;
    /// Rinit.
    pub const RINIT: i8 = -68;
    /// Rerr as the specification numbers it.
    pub const RERR: i8 = -128;
    /// Rerr's legacy number, the one Finagle sends (and Plexus sends).
    pub const RERR_LEGACY: i8 = 127;
}

/// A readable name for a type number, for errors and logs.
pub fn type_name(kind: i8) -> &'static str {
    match kind {
        types::TREQ => "Treq",
        types::RREQ => "Rreq",
        types::TDISPATCH => "Tdispatch",
        types::RDISPATCH => "Rdispatch",
        types::TDRAIN => "Tdrain",
        types::RDRAIN => "Rdrain",
        types::TPING => "Tping",
        types::RPING => "Rping",
        types::TDISCARDED | types::TDISCARDED_LEGACY => "Tdiscarded",
        types::RDISCARDED => "Rdiscarded",
        types::TLEASE => "Tlease",
        types::TINIT => "Tinit",
        types::RINIT => "Rinit",
        types::RERR | types::RERR_LEGACY => "Rerr",
        _ => "unknown",
    }
}

/// Why bytes could not be read as Mux.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The size field is below 4, so there is no room for the type and tag.
    #[error("mux frame size {size} is smaller than the 4-byte type and tag")]
    FrameTooSmall {
        /// The size field.
        size: u32,
    },
    /// The size field is above the configured maximum.
    #[error("mux frame size {size} exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The size field.
        size: u32,
        /// The limit.
        max: u32,
    },
    /// The type byte is not a Mux message type.
    #[error("unknown mux message type {kind} (tag {tag})")]
    UnknownType {
        /// The type byte.
        kind: i8,
        /// The message's tag.
        tag: u32,
    },
    /// The body ends before a field is complete.
    #[error("{} (tag {tag}) is truncated: no room for {field}", type_name(*.kind))]
    Truncated {
        /// The type byte.
        kind: i8,
        /// The message's tag.
        tag: u32,
        /// The field being read.
        field: &'static str,
    },
    /// A field that must be UTF-8 (a `dst` or dtab entry) is not.
    #[error("{} (tag {tag}): {field} is not UTF-8", type_name(*.kind))]
    InvalidUtf8 {
        /// The type byte.
        kind: i8,
        /// The message's tag.
        tag: u32,
        /// The field.
        field: &'static str,
    },
    /// A field holds a value the protocol does not allow.
    #[error("{} (tag {tag}): invalid {field} {value}", type_name(*.kind))]
    InvalidValue {
        /// The type byte.
        kind: i8,
        /// The message's tag.
        tag: u32,
        /// The field.
        field: &'static str,
        /// The value read.
        value: u64,
    },
    /// [`Message::decode`] was given one fragment of a longer message.
    #[error("{} (tag {tag}) is a fragment; reassemble it first", type_name(*.kind))]
    Fragment {
        /// The type byte.
        kind: i8,
        /// The message's tag (without the fragment bit).
        tag: u32,
    },
    /// The fragments of one tag do not all have the same type.
    #[error("fragments of tag {tag} mix message types {first} and {next}")]
    FragmentTypeMismatch {
        /// The tag.
        tag: u32,
        /// The type of the first fragment.
        first: i8,
        /// The type of the fragment that differs.
        next: i8,
    },
    /// A reassembled message would exceed the configured maximum.
    #[error("mux message of tag {tag} exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// The tag.
        tag: u32,
        /// The limit.
        max: usize,
    },
    /// All partial messages together would exceed the configured maximum.
    #[error("partial mux messages would hold more than {max} bytes")]
    TooMuchBuffered {
        /// The limit.
        max: usize,
    },
}

impl DecodeError {
    /// The tag of the message the error is about; `None` for framing errors, after which
    /// the byte stream cannot be followed any more.
    pub fn tag(&self) -> Option<u32> {
        match self {
            DecodeError::UnknownType { tag, .. }
            | DecodeError::Truncated { tag, .. }
            | DecodeError::InvalidUtf8 { tag, .. }
            | DecodeError::InvalidValue { tag, .. }
            | DecodeError::Fragment { tag, .. }
            | DecodeError::FragmentTypeMismatch { tag, .. }
            | DecodeError::MessageTooLarge { tag, .. } => Some(*tag),
            DecodeError::FrameTooSmall { .. }
            | DecodeError::FrameTooLarge { .. }
            | DecodeError::TooMuchBuffered { .. } => None,
        }
    }
}

/// Why a message could not be encoded.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// A tag does not fit (message tags are 23 bits, wire tags 24).
    #[error("tag {tag} is out of range")]
    TagOutOfRange {
        /// The tag.
        tag: u32,
    },
    /// A length-prefixed field, or a count, is larger than its prefix can say.
    #[error("{field} has length {len}, more than the {max} its length prefix allows")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length (or the count).
        len: usize,
        /// The largest allowed.
        max: usize,
    },
    /// The frame would exceed 2^31 − 1 bytes.
    #[error("mux frame of {size} bytes exceeds the protocol limit")]
    FrameTooLarge {
        /// The size field it would need.
        size: usize,
    },
}

/// One Mux frame: a whole message, or one fragment of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The type byte.
    pub kind: i8,
    /// The 24-bit wire tag, including [`FRAGMENT_BIT`].
    pub tag: u32,
    /// Everything after the tag.
    pub body: Bytes,
}

impl Frame {
    /// A frame of the given type, wire tag and body.
    pub fn new(kind: i8, tag: u32, body: Bytes) -> Self {
        Frame { kind, tag, body }
    }

    /// The message tag (the wire tag without [`FRAGMENT_BIT`]).
    pub fn id(&self) -> u32 {
        self.tag & MAX_TAG
    }

    /// Whether more fragments of this message follow.
    pub fn more_follows(&self) -> bool {
        self.tag & FRAGMENT_BIT != 0
    }

    /// Bytes this frame takes on the wire, header included.
    pub fn wire_len(&self) -> usize {
        HEADER_LEN + self.body.len()
    }

    /// Appends the frame's bytes to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        if self.tag > MAX_TAG | FRAGMENT_BIT {
            return Err(EncodeError::TagOutOfRange { tag: self.tag });
        }
        let size = 4 + self.body.len();
        if size > MAX_FRAME_SIZE as usize {
            return Err(EncodeError::FrameTooLarge { size });
        }
        dst.reserve(4 + size);
        dst.put_u32(size as u32);
        dst.put_i8(self.kind);
        dst.put_uint(u64::from(self.tag), 3);
        dst.put_slice(&self.body);
        Ok(())
    }

    /// Takes one frame off the front of `src` once all of it is there (`Ok(None)` until
    /// then). `max_size` bounds the size field, so a peer cannot make the caller buffer
    /// more than that for one frame.
    pub fn decode(src: &mut BytesMut, max_size: u32) -> Result<Option<Frame>, DecodeError> {
        let Some(total) = frame_len(src, max_size)? else {
            return Ok(None);
        };
        if src.len() < total {
            return Ok(None);
        }
        let mut frame = src.split_to(total).freeze();
        frame.advance(4);
        let kind = frame.get_i8();
        let tag = read_u24(&frame[..3]);
        frame.advance(3);
        Ok(Some(Frame {
            kind,
            tag,
            body: frame,
        }))
    }
}

/// The total length (size field included) of the frame at the start of `src`, once its
/// size field has arrived; checks the size against `max_size`.
pub fn frame_len(src: &[u8], max_size: u32) -> Result<Option<usize>, DecodeError> {
    let Some(prefix) = src.get(..4) else {
        return Ok(None);
    };
    let size = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if size < MIN_FRAME_SIZE {
        return Err(DecodeError::FrameTooSmall { size });
    }
    let max = max_size.min(MAX_FRAME_SIZE);
    if size > max {
        return Err(DecodeError::FrameTooLarge { size, max });
    }
    Ok(Some(4 + size as usize))
}

fn read_u24(b: &[u8]) -> u32 {
    (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2])
}

/// The outcome of a request: Rdispatch's and Rreq's status byte with its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Status 0: the application's reply.
    Ok(Bytes),
    /// Status 1: the request failed; a description.
    Error(String),
    /// Status 2: not processed, safe to send elsewhere.
    Nack,
}

impl Reply {
    fn status(&self) -> u8 {
        match self {
            Reply::Ok(_) => 0,
            Reply::Error(_) => 1,
            Reply::Nack => 2,
        }
    }
}

/// A request as Tdispatch carries it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// Broadcast contexts (key, value), in order; see [`crate::context`].
    pub contexts: Vec<(Bytes, Bytes)>,
    /// The destination path (Finagle path syntax), empty for none.
    pub dst: String,
    /// Dtab entries (prefix, destination name tree).
    pub dtab: Vec<(String, String)>,
    /// The payload (for ThriftMux, a whole Thrift message).
    pub body: Bytes,
}

/// A response as Rdispatch carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Contexts (key, value), e.g. [`crate::context::MUX_FAILURE`].
    pub contexts: Vec<(Bytes, Bytes)>,
    /// The outcome.
    pub reply: Reply,
}

impl Response {
    /// A successful reply without contexts.
    pub fn ok(body: Bytes) -> Self {
        Response {
            contexts: Vec::new(),
            reply: Reply::Ok(body),
        }
    }

    /// An error reply without contexts.
    pub fn error(message: impl Into<String>) -> Self {
        Response {
            contexts: Vec::new(),
            reply: Reply::Error(message.into()),
        }
    }

    /// A nack without contexts.
    pub fn nack() -> Self {
        Response {
            contexts: Vec::new(),
            reply: Reply::Nack,
        }
    }
}

/// The body of Tinit and Rinit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Init {
    /// The protocol version (1).
    pub version: u16,
    /// Headers (key, value) such as `mux-framer` and `tls`.
    pub headers: Vec<(Bytes, Bytes)>,
}

impl Init {
    /// The value of the first header named `key`.
    pub fn header(&self, key: &str) -> Option<&Bytes> {
        self.headers
            .iter()
            .find(|(k, _)| k.as_ref() == key.as_bytes())
            .map(|(_, v)| v)
    }
}

/// A whole Mux message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// The pre-Tdispatch request: `n:1 (key:1 len:1 value){n}` then the payload.
    Treq {
        /// Tag.
        tag: u32,
        /// Keys: 1 = trace id (span, parent, trace: 24 bytes), 2 = trace flags (1 byte).
        keys: Vec<(u8, Bytes)>,
        /// Payload.
        body: Bytes,
    },
    /// Reply to Treq: `status:1` then payload.
    Rreq {
        /// Tag.
        tag: u32,
        /// Outcome.
        reply: Reply,
    },
    /// A request with contexts, dst and dtab.
    Tdispatch {
        /// Tag.
        tag: u32,
        /// The request.
        request: Request,
    },
    /// Reply to Tdispatch.
    Rdispatch {
        /// Tag.
        tag: u32,
        /// The response.
        response: Response,
    },
    /// The server asks the client to drain.
    Tdrain {
        /// Tag (Finagle: 1).
        tag: u32,
    },
    /// The client's acknowledgement of Tdrain.
    Rdrain {
        /// Tag of the Tdrain.
        tag: u32,
    },
    /// Ping.
    Tping {
        /// Tag (Finagle: 1).
        tag: u32,
    },
    /// Ping reply.
    Rping {
        /// Tag of the Tping.
        tag: u32,
    },
    /// Cancellation of a request (a marker, sent on tag 0).
    Tdiscarded {
        /// The tag of the request to cancel.
        discard_tag: u32,
        /// Why.
        reason: String,
    },
    /// The server dropped a discarded request; frees its tag.
    Rdiscarded {
        /// The discarded request's tag.
        tag: u32,
    },
    /// A lease from the server (a marker, sent on tag 0).
    Tlease {
        /// Unit of `amount`: 0 = milliseconds, the only one defined.
        unit: u8,
        /// Length of the lease.
        amount: u64,
    },
    /// Handshake request.
    Tinit {
        /// Tag (Finagle: 1).
        tag: u32,
        /// Version and headers.
        init: Init,
    },
    /// Handshake reply.
    Rinit {
        /// Tag of the Tinit.
        tag: u32,
        /// Accepted version and headers.
        init: Init,
    },
    /// Session-level failure of the T message with this tag (also the handshake probe).
    Rerr {
        /// Tag.
        tag: u32,
        /// Description.
        message: String,
    },
}

impl Message {
    /// The type number [`encode`](Self::encode) writes: the legacy numbers for Rerr and
    /// Tdiscarded, as Finagle expects.
    pub fn kind(&self) -> i8 {
        match self {
            Message::Treq { .. } => types::TREQ,
            Message::Rreq { .. } => types::RREQ,
            Message::Tdispatch { .. } => types::TDISPATCH,
            Message::Rdispatch { .. } => types::RDISPATCH,
            Message::Tdrain { .. } => types::TDRAIN,
            Message::Rdrain { .. } => types::RDRAIN,
            Message::Tping { .. } => types::TPING,
            Message::Rping { .. } => types::RPING,
            Message::Tdiscarded { .. } => types::TDISCARDED_LEGACY,
            Message::Rdiscarded { .. } => types::RDISCARDED,
            Message::Tlease { .. } => types::TLEASE,
            Message::Tinit { .. } => types::TINIT,
            Message::Rinit { .. } => types::RINIT,
            Message::Rerr { .. } => types::RERR_LEGACY,
        }
    }

    /// The message's frame tag ([`MARKER_TAG`] for Tdiscarded and Tlease).
    pub fn tag(&self) -> u32 {
        match self {
            Message::Treq { tag, .. }
            | Message::Rreq { tag, .. }
            | Message::Tdispatch { tag, .. }
            | Message::Rdispatch { tag, .. }
            | Message::Tdrain { tag }
            | Message::Rdrain { tag }
            | Message::Tping { tag }
            | Message::Rping { tag }
            | Message::Rdiscarded { tag }
            | Message::Tinit { tag, .. }
            | Message::Rinit { tag, .. }
            | Message::Rerr { tag, .. } => *tag,
            Message::Tdiscarded { .. } | Message::Tlease { .. } => MARKER_TAG,
        }
    }

    /// The message type's name.
    pub fn name(&self) -> &'static str {
        type_name(self.kind())
    }

    /// Appends the body (everything after the tag) to `dst`.
    pub fn encode_body(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            Message::Treq { keys, body, .. } => {
                check_len("Treq keys", keys.len(), u8::MAX as usize)?;
                dst.put_u8(keys.len() as u8);
                for (key, value) in keys {
                    check_len("Treq key value", value.len(), u8::MAX as usize)?;
                    dst.put_u8(*key);
                    dst.put_u8(value.len() as u8);
                    dst.put_slice(value);
                }
                dst.put_slice(body);
            }
            Message::Rreq { reply, .. } => put_reply(dst, reply),
            Message::Tdispatch { request, .. } => {
                put_contexts(dst, &request.contexts)?;
                put_str2(dst, "dst", request.dst.as_bytes())?;
                check_len("dtab entries", request.dtab.len(), u16::MAX as usize)?;
                dst.put_u16(request.dtab.len() as u16);
                for (src, to) in &request.dtab {
                    put_str2(dst, "dtab prefix", src.as_bytes())?;
                    put_str2(dst, "dtab destination", to.as_bytes())?;
                }
                dst.put_slice(&request.body);
            }
            Message::Rdispatch { response, .. } => {
                dst.put_u8(response.reply.status());
                put_contexts(dst, &response.contexts)?;
                put_reply_payload(dst, &response.reply);
            }
            Message::Tdrain { .. }
            | Message::Rdrain { .. }
            | Message::Tping { .. }
            | Message::Rping { .. }
            | Message::Rdiscarded { .. } => {}
            Message::Tdiscarded {
                discard_tag,
                reason,
            } => {
                check_tag(*discard_tag)?;
                dst.put_uint(u64::from(*discard_tag), 3);
                dst.put_slice(reason.as_bytes());
            }
            Message::Tlease { unit, amount } => {
                dst.put_u8(*unit);
                dst.put_u64(*amount);
            }
            Message::Tinit { init, .. } | Message::Rinit { init, .. } => {
                dst.put_u16(init.version);
                for (key, value) in &init.headers {
                    check_len("init header key", key.len(), u32::MAX as usize)?;
                    check_len("init header value", value.len(), u32::MAX as usize)?;
                    dst.put_u32(key.len() as u32);
                    dst.put_slice(key);
                    dst.put_u32(value.len() as u32);
                    dst.put_slice(value);
                }
            }
            Message::Rerr { message, .. } => dst.put_slice(message.as_bytes()),
        }
        Ok(())
    }

    /// The message as one (unfragmented) frame.
    pub fn to_frame(&self) -> Result<Frame, EncodeError> {
        check_tag(self.tag())?;
        let mut body = BytesMut::new();
        self.encode_body(&mut body)?;
        if body.len() + 4 > MAX_FRAME_SIZE as usize {
            return Err(EncodeError::FrameTooLarge {
                size: body.len() + 4,
            });
        }
        Ok(Frame::new(self.kind(), self.tag(), body.freeze()))
    }

    /// Appends the message as one frame to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        self.to_frame()?.encode(dst)
    }

    /// Reads a whole (reassembled) message frame. Accepts both numbers of Rerr and
    /// Tdiscarded. Error texts that are not UTF-8 are read lossily; `dst` and dtab entries
    /// must be UTF-8.
    pub fn decode(frame: Frame) -> Result<Message, DecodeError> {
        let kind = frame.kind;
        let tag = frame.id();
        if frame.more_follows() {
            return Err(DecodeError::Fragment { kind, tag });
        }
        let mut r = Reader {
            buf: frame.body,
            kind,
            tag,
        };
        let message = match kind {
            types::TREQ => {
                let n = r.u8("Treq key count")?;
                let mut keys = Vec::with_capacity(usize::from(n).min(r.buf.len() / 2));
                for _ in 0..n {
                    let key = r.u8("Treq key")?;
                    let len = r.u8("Treq key length")?;
                    keys.push((key, r.bytes(usize::from(len), "Treq key value")?));
                }
                Message::Treq {
                    tag,
                    keys,
                    body: r.buf,
                }
            }
            types::RREQ => Message::Rreq {
                tag,
                reply: r.reply()?,
            },
            types::TDISPATCH => {
                let contexts = r.contexts()?;
                let dst = r.utf8_2("dst")?;
                let n = r.u16("dtab entry count")?;
                let mut dtab = Vec::with_capacity(usize::from(n).min(r.buf.len() / 4));
                for _ in 0..n {
                    let src = r.utf8_2("dtab prefix")?;
                    let to = r.utf8_2("dtab destination")?;
                    dtab.push((src, to));
                }
                Message::Tdispatch {
                    tag,
                    request: Request {
                        contexts,
                        dst,
                        dtab,
                        body: r.buf,
                    },
                }
            }
            types::RDISPATCH => {
                let status = r.u8("status")?;
                let contexts = r.contexts()?;
                let reply = r.reply_payload(status)?;
                Message::Rdispatch {
                    tag,
                    response: Response { contexts, reply },
                }
            }
            types::TDRAIN => Message::Tdrain { tag },
            types::RDRAIN => Message::Rdrain { tag },
            types::TPING => Message::Tping { tag },
            types::RPING => Message::Rping { tag },
            types::TDISCARDED | types::TDISCARDED_LEGACY => {
                let b = r.bytes(3, "discarded tag")?;
                let discard_tag = read_u24(&b);
                if discard_tag > MAX_TAG {
                    return Err(DecodeError::InvalidValue {
                        kind,
                        tag,
                        field: "discarded tag",
                        value: u64::from(discard_tag),
                    });
                }
                Message::Tdiscarded {
                    discard_tag,
                    reason: lossy(&r.buf),
                }
            }
            types::RDISCARDED => Message::Rdiscarded { tag },
            types::TLEASE => {
                let unit = r.u8("lease unit")?;
                let amount = r.u64("lease length")?;
                Message::Tlease { unit, amount }
            }
            types::TINIT | types::RINIT => {
                let version = r.u16("version")?;
                let mut headers = Vec::new();
                while r.buf.has_remaining() {
                    let klen = r.u32("header key length")? as usize;
                    let key = r.bytes(klen, "header key")?;
                    let vlen = r.u32("header value length")? as usize;
                    let value = r.bytes(vlen, "header value")?;
                    headers.push((key, value));
                }
                let init = Init { version, headers };
                if kind == types::TINIT {
                    Message::Tinit { tag, init }
                } else {
                    Message::Rinit { tag, init }
                }
            }
            types::RERR | types::RERR_LEGACY => Message::Rerr {
                tag,
                message: lossy(&r.buf),
            },
            _ => return Err(DecodeError::UnknownType { kind, tag }),
        };
        Ok(message)
    }
}

fn check_tag(tag: u32) -> Result<(), EncodeError> {
    if tag > MAX_TAG {
        Err(EncodeError::TagOutOfRange { tag })
    } else {
        Ok(())
    }
}

fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), EncodeError> {
    if len > max {
        Err(EncodeError::TooLong { field, len, max })
    } else {
        Ok(())
    }
}

fn put_str2(dst: &mut BytesMut, field: &'static str, value: &[u8]) -> Result<(), EncodeError> {
    check_len(field, value.len(), u16::MAX as usize)?;
    dst.put_u16(value.len() as u16);
    dst.put_slice(value);
    Ok(())
}

fn put_contexts(dst: &mut BytesMut, contexts: &[(Bytes, Bytes)]) -> Result<(), EncodeError> {
    check_len("contexts", contexts.len(), u16::MAX as usize)?;
    dst.put_u16(contexts.len() as u16);
    for (key, value) in contexts {
        put_str2(dst, "context key", key)?;
        put_str2(dst, "context value", value)?;
    }
    Ok(())
}

fn put_reply(dst: &mut BytesMut, reply: &Reply) {
    dst.put_u8(reply.status());
    put_reply_payload(dst, reply);
}

fn put_reply_payload(dst: &mut BytesMut, reply: &Reply) {
    match reply {
        Reply::Ok(body) => dst.put_slice(body),
        Reply::Error(message) => dst.put_slice(message.as_bytes()),
        Reply::Nack => {}
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A bounds-checked reader over a message body.
struct Reader {
    buf: Bytes,
    kind: i8,
    tag: u32,
}

impl Reader {
    fn need(&self, n: usize, field: &'static str) -> Result<(), DecodeError> {
        if self.buf.len() < n {
            Err(DecodeError::Truncated {
                kind: self.kind,
                tag: self.tag,
                field,
            })
        } else {
            Ok(())
        }
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        self.need(1, field)?;
        Ok(self.buf.get_u8())
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        self.need(2, field)?;
        Ok(self.buf.get_u16())
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.need(4, field)?;
        Ok(self.buf.get_u32())
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        self.need(8, field)?;
        Ok(self.buf.get_u64())
    }

    fn bytes(&mut self, n: usize, field: &'static str) -> Result<Bytes, DecodeError> {
        self.need(n, field)?;
        Ok(self.buf.split_to(n))
    }

    fn bytes2(&mut self, field: &'static str) -> Result<Bytes, DecodeError> {
        let n = self.u16(field)?;
        self.bytes(usize::from(n), field)
    }

    fn utf8_2(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let b = self.bytes2(field)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::InvalidUtf8 {
            kind: self.kind,
            tag: self.tag,
            field,
        })
    }

    fn contexts(&mut self) -> Result<Vec<(Bytes, Bytes)>, DecodeError> {
        let n = self.u16("context count")?;
        let mut contexts = Vec::with_capacity(usize::from(n).min(self.buf.len() / 4));
        for _ in 0..n {
            let key = self.bytes2("context key")?;
            let value = self.bytes2("context value")?;
            contexts.push((key, value));
        }
        Ok(contexts)
    }

    fn reply(&mut self) -> Result<Reply, DecodeError> {
        let status = self.u8("status")?;
        self.reply_payload(status)
    }

    fn reply_payload(&mut self, status: u8) -> Result<Reply, DecodeError> {
        let rest = std::mem::take(&mut self.buf);
        match status {
            0 => Ok(Reply::Ok(rest)),
            1 => Ok(Reply::Error(lossy(&rest))),
            2 => Ok(Reply::Nack),
            other => Err(DecodeError::InvalidValue {
                kind: self.kind,
                tag: self.tag,
                field: "status",
                value: u64::from(other),
            }),
        }
    }
}

/// Splits a whole message frame into frames whose bodies hold at most `max_body` bytes
/// (at least 1), setting [`FRAGMENT_BIT`] on all but the last. A body that fits is one
/// frame, returned as is.
pub fn fragments(frame: Frame, max_body: usize) -> Fragments {
    Fragments {
        kind: frame.kind,
        tag: frame.id(),
        rest: Some(frame.body),
        max_body: max_body.max(1),
    }
}

/// Iterator returned by [`fragments`].
#[derive(Debug)]
pub struct Fragments {
    kind: i8,
    tag: u32,
    rest: Option<Bytes>,
    max_body: usize,
}

impl Iterator for Fragments {
    type Item = Frame;

    fn next(&mut self) -> Option<Frame> {
        let mut rest = self.rest.take()?;
        if rest.len() <= self.max_body {
            return Some(Frame::new(self.kind, self.tag, rest));
        }
        let head = rest.split_to(self.max_body);
        self.rest = Some(rest);
        Some(Frame::new(self.kind, self.tag | FRAGMENT_BIT, head))
    }
}

/// Size limits for reading a peer's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest size field accepted for one frame (fragment). Default 16 MiB.
    pub max_frame: u32,
    /// Largest body of a reassembled message. Default 16 MiB.
    pub max_message: usize,
    /// Largest total of all partially received messages. Default 64 MiB.
    pub max_buffered: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: 16 << 20,
            max_message: 16 << 20,
            max_buffered: 64 << 20,
        }
    }
}

#[derive(Debug)]
struct Partial {
    kind: i8,
    body: BytesMut,
}

/// Reassembles fragmented messages, per tag, within a message and a total size limit.
#[derive(Debug)]
pub struct Reassembler {
    max_message: usize,
    max_buffered: usize,
    partials: HashMap<u32, Partial>,
    buffered: usize,
}

impl Reassembler {
    /// A reassembler with these limits on one message and on all partial ones together.
    pub fn new(max_message: usize, max_buffered: usize) -> Self {
        Reassembler {
            max_message,
            max_buffered,
            partials: HashMap::new(),
            buffered: 0,
        }
    }

    /// Takes one frame; returns the whole message (a frame without [`FRAGMENT_BIT`]) when
    /// the frame completes one. Frames of other tags may come between the fragments of a
    /// message.
    pub fn push(&mut self, frame: Frame) -> Result<Option<Frame>, DecodeError> {
        let tag = frame.id();
        let more = frame.more_follows();
        let Some(partial) = self.partials.get_mut(&tag) else {
            if frame.body.len() > self.max_message {
                return Err(DecodeError::MessageTooLarge {
                    tag,
                    max: self.max_message,
                });
            }
            if !more {
                return Ok(Some(frame));
            }
            if self.buffered + frame.body.len() > self.max_buffered {
                return Err(DecodeError::TooMuchBuffered {
                    max: self.max_buffered,
                });
            }
            self.buffered += frame.body.len();
            self.partials.insert(
                tag,
                Partial {
                    kind: frame.kind,
                    body: BytesMut::from(frame.body.as_ref()),
                },
            );
            return Ok(None);
        };
        if partial.kind != frame.kind {
            return Err(DecodeError::FragmentTypeMismatch {
                tag,
                first: partial.kind,
                next: frame.kind,
            });
        }
        if partial.body.len() + frame.body.len() > self.max_message {
            return Err(DecodeError::MessageTooLarge {
                tag,
                max: self.max_message,
            });
        }
        if more {
            if self.buffered + frame.body.len() > self.max_buffered {
                return Err(DecodeError::TooMuchBuffered {
                    max: self.max_buffered,
                });
            }
            self.buffered += frame.body.len();
            partial.body.extend_from_slice(&frame.body);
            return Ok(None);
        }
        let Some(mut done) = self.partials.remove(&tag) else {
            return Ok(None);
        };
        self.buffered -= done.body.len();
        done.body.extend_from_slice(&frame.body);
        Ok(Some(Frame::new(done.kind, tag, done.body.freeze())))
    }

    /// Drops the partial message of `tag`, if any (e.g. when it is discarded).
    pub fn discard(&mut self, tag: u32) -> bool {
        match self.partials.remove(&tag) {
            Some(p) => {
                self.buffered -= p.body.len();
                true
            }
            None => false,
        }
    }

    /// Whether a message of `tag` is partly received.
    pub fn is_partial(&self, tag: u32) -> bool {
        self.partials.contains_key(&tag)
    }

    /// How many messages are partly received.
    pub fn pending(&self) -> usize {
        self.partials.len()
    }

    /// Bytes held by partial messages.
    pub fn buffered(&self) -> usize {
        self.buffered
    }
}

/// Bytes in, whole message frames out: a buffer, the framer and a [`Reassembler`].
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    buf: BytesMut,
    reassembler: Reassembler,
}

impl Decoder {
    /// A decoder with these limits.
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            buf: BytesMut::new(),
            reassembler: Reassembler::new(limits.max_message, limits.max_buffered),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Appends received bytes.
    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole message frame (fragments reassembled), if enough bytes are buffered.
    /// After an error without a [tag](DecodeError::tag) the stream cannot be followed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, DecodeError> {
        loop {
            let Some(frame) = Frame::decode(&mut self.buf, self.limits.max_frame)? else {
                return Ok(None);
            };
            if let Some(whole) = self.reassembler.push(frame)? {
                return Ok(Some(whole));
            }
        }
    }

    /// The next whole message, if enough bytes are buffered.
    pub fn next_message(&mut self) -> Result<Option<Message>, DecodeError> {
        match self.next_frame()? {
            Some(frame) => Message::decode(frame).map(Some),
            None => Ok(None),
        }
    }

    /// Drops the partial message of `tag`, if any.
    pub fn discard(&mut self, tag: u32) -> bool {
        self.reassembler.discard(tag)
    }

    /// Whether a message of `tag` is partly received.
    pub fn is_partial(&self, tag: u32) -> bool {
        self.reassembler.is_partial(tag)
    }

    /// Whether nothing is buffered: no partial frame and no partial message.
    pub fn is_idle(&self) -> bool {
        self.buf.is_empty() && self.reassembler.pending() == 0
    }

    /// Takes the bytes received but not yet framed (e.g. the start of a TLS handshake
    /// that follows the Mux handshake on the same connection).
    pub fn take_unread(&mut self) -> Bytes {
        self.buf.split().freeze()
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::Tdiscarded { discard_tag, .. } => {
                write!(f, "Tdiscarded(tag {discard_tag})")
            }
            Message::Tlease { unit, amount } => write!(f, "Tlease(unit {unit}, {amount})"),
            other => write!(f, "{}(tag {})", other.name(), other.tag()),
        }
    }
}
