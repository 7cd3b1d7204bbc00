//! Cutting a connection's byte stream into whole Thrift messages, and writing them back,
//! for framed (`TFramedTransport`: a 4-byte big-endian length before each message) and
//! unframed ("buffered": messages back to back) transports.
//!
//! A framed message ends where its length says; an unframed one ends where its body
//! struct ends, which [`Decoder`] finds with a [`Skipper`] that it keeps between calls,
//! so a message that arrives in many reads is scanned once. Either way a [`Message`]
//! holds the message bytes exactly as received (no frame length), ready to be forwarded
//! without re-encoding, plus its parsed header.

use bytes::{BufMut, Bytes, BytesMut};

use crate::Limits;
use crate::error::ThriftError;
use crate::header::{HeaderRead, MessageHeader, read_header};
use crate::skip::{Skip, Skipper};

/// One whole Thrift message: its header, parsed, and its bytes as they travel (header
/// and body, without any frame length).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    header: MessageHeader,
    bytes: Bytes,
    body_start: usize,
}

impl Message {
    /// Reads a buffer that holds exactly one message (for example a frame's payload, or a
    /// ThriftMux dispatch body): the header is parsed and the body struct walked to check
    /// that it ends exactly at the end of `bytes`.
    pub fn parse(bytes: Bytes, limits: &Limits) -> Result<Message, ThriftError> {
        let (header, body_start) = match read_header(&bytes, limits.max_name_bytes)? {
            HeaderRead::Complete { header, len } => (header, len),
            HeaderRead::NeedMore { .. } => return Err(ThriftError::Truncated("message header")),
        };
        match Skipper::starting_at(header.protocol, *limits, body_start).skip(&bytes) {
            Skip::Complete(end) if end == bytes.len() => Ok(Message {
                header,
                bytes,
                body_start,
            }),
            Skip::Complete(end) => Err(ThriftError::TrailingBytes(bytes.len() - end)),
            Skip::NeedMore => Err(ThriftError::Truncated("message body")),
            Skip::Error(error) => Err(ThriftError::Body {
                header: Box::new(header),
                error,
            }),
        }
    }

    /// A message from a header and a body struct already encoded in the header's
    /// protocol (the body is not checked).
    pub fn from_header_and_body(header: MessageHeader, body: &[u8]) -> Message {
        let mut out = BytesMut::with_capacity(16 + header.name.len() + body.len());
        header.encode(&mut out);
        let body_start = out.len();
        out.put_slice(body);
        Message {
            header,
            bytes: out.freeze(),
            body_start,
        }
    }

    /// The parsed header.
    pub fn header(&self) -> &MessageHeader {
        &self.header
    }

    /// The whole message as received: header and body, no frame length.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The body struct's bytes (everything after the header).
    pub fn body(&self) -> &[u8] {
        &self.bytes[self.body_start..]
    }

    /// The message length in bytes (without frame length).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the message is empty: never, a message has at least a header.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The header and the bytes, taken apart.
    pub fn into_parts(self) -> (MessageHeader, Bytes) {
        (self.header, self.bytes)
    }
}

/// Where an unframed decode stands between calls.
#[derive(Clone, Debug)]
enum State {
    /// Between messages; the header is retried once the buffer holds `need` bytes.
    Header { need: usize },
    /// Inside a message's body.
    Body {
        header: MessageHeader,
        body_start: usize,
        skipper: Skipper,
    },
    /// An error happened: the stream is out of sync for good.
    Failed(ThriftError),
}

/// Turns a connection's read buffer into whole messages.
///
/// Call [`Decoder::decode`] after every read with the connection's buffer; it removes
/// each complete message from the front of the buffer and leaves partial ones in place.
/// After an error the stream cannot be resynchronised: every later call returns the same
/// error and the connection should be closed (after answering, when
/// [`ThriftError::header`] is known, with a `TApplicationException`).
#[derive(Clone, Debug)]
pub struct Decoder {
    framed: bool,
    limits: Limits,
    state: State,
}

impl Decoder {
    /// A decoder for a framed (`true`) or unframed connection.
    pub fn new(framed: bool, limits: Limits) -> Self {
        Decoder {
            framed,
            limits,
            state: State::Header { need: 1 },
        }
    }

    /// Whether this decoder expects frame lengths.
    pub fn is_framed(&self) -> bool {
        self.framed
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether part of a message has been seen and taken into account, for an unframed
    /// connection (a framed decoder keeps no state between calls: a partial frame is
    /// just the buffer being non-empty).
    pub fn in_message(&self) -> bool {
        matches!(self.state, State::Body { .. })
    }

    /// Takes the next whole message off the front of `buf`, or returns `Ok(None)` when
    /// the buffer does not hold one yet.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, ThriftError> {
        if let State::Failed(e) = &self.state {
            return Err(e.clone());
        }
        let result = if self.framed {
            self.decode_framed(buf)
        } else {
            self.decode_unframed(buf)
        };
        if let Err(e) = &result {
            self.state = State::Failed(e.clone());
        }
        result
    }

    fn decode_framed(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, ThriftError> {
        let Some(payload) = decode_frame(buf, &self.limits)? else {
            return Ok(None);
        };
        let (header, body_start) = match read_header(&payload, self.limits.max_name_bytes)? {
            // A body is at least a STOP byte.
            HeaderRead::Complete { header, len } if len < payload.len() => (header, len),
            _ => return Err(ThriftError::ShortFrame(payload.len())),
        };
        Ok(Some(Message {
            header,
            bytes: payload,
            body_start,
        }))
    }

    fn decode_unframed(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, ThriftError> {
        if let State::Header { need } = self.state {
            if buf.len() < need {
                return Ok(None);
            }
            match read_header(buf, self.limits.max_name_bytes)? {
                HeaderRead::NeedMore { at_least } => {
                    self.state = State::Header { need: at_least };
                    return Ok(None);
                }
                HeaderRead::Complete { header, len } => {
                    let skipper = Skipper::starting_at(header.protocol, self.limits, len);
                    self.state = State::Body {
                        header,
                        body_start: len,
                        skipper,
                    };
                }
            }
        }
        let State::Body { skipper, .. } = &mut self.state else {
            return Ok(None);
        };
        match skipper.skip(buf) {
            Skip::NeedMore => Ok(None),
            Skip::Complete(end) => {
                let State::Body {
                    header, body_start, ..
                } = std::mem::replace(&mut self.state, State::Header { need: 1 })
                else {
                    return Ok(None);
                };
                Ok(Some(Message {
                    header,
                    bytes: buf.split_to(end).freeze(),
                    body_start,
                }))
            }
            Skip::Error(error) => {
                let header = match &self.state {
                    State::Body { header, .. } => header.clone(),
                    _ => return Ok(None),
                };
                Err(ThriftError::Body {
                    header: Box::new(header),
                    error,
                })
            }
        }
    }
}

/// Takes one frame's payload (without its length) off the front of `buf`, or returns
/// `Ok(None)` until the whole frame is there. This is all a framed connection needs when
/// its frames are not plain messages (TTwitter-upgraded connections put a header struct
/// first; see [`crate::ttwitter`]).
pub fn decode_frame(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Bytes>, ThriftError> {
    let Some(len) = buf.get(..4) else {
        return Ok(None);
    };
    let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
    let len = match usize::try_from(len) {
        Ok(0) => return Err(ThriftError::EmptyFrame),
        Ok(len) if len > limits.max_message_bytes => {
            if let Some(what) = sniff_unframed(buf) {
                return Err(ThriftError::NotThrift(what));
            }
            return Err(ThriftError::FrameTooLarge {
                len,
                max: limits.max_message_bytes,
            });
        }
        Ok(len) => len,
        Err(_) => {
            if let Some(what) = sniff_unframed(buf) {
                return Err(ThriftError::NotThrift(what));
            }
            return Err(ThriftError::NegativeFrameLength(len));
        }
    };
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let mut frame = buf.split_to(4 + len);
    let _ = frame.split_to(4);
    Ok(Some(frame.freeze()))
}

/// What a frame length that makes no sense probably is.
fn sniff_unframed(buf: &[u8]) -> Option<&'static str> {
    if buf.starts_with(&[0x80, 0x01]) || buf.first() == Some(&0x82) {
        Some("this looks like unframed Thrift on a framed connection")
    } else if buf.starts_with(&[0x16, 0x03]) {
        Some("this looks like a TLS ClientHello")
    } else if buf.first().is_some_and(u8::is_ascii_uppercase) {
        Some("this looks like an HTTP request")
    } else {
        None
    }
}

/// Appends `msg` to `dst` as it travels on a framed (`true`) or unframed connection.
pub fn encode(msg: &Message, framed: bool, dst: &mut BytesMut) -> Result<(), ThriftError> {
    if framed {
        encode_frame(msg.bytes(), dst)
    } else {
        dst.put_slice(msg.bytes());
        Ok(())
    }
}

/// Appends `payload` with its 4-byte length in front.
pub fn encode_frame(payload: &[u8], dst: &mut BytesMut) -> Result<(), ThriftError> {
    let len =
        i32::try_from(payload.len()).map_err(|_| ThriftError::TooLargeToFrame(payload.len()))?;
    dst.reserve(4 + payload.len());
    dst.put_i32(len);
    dst.put_slice(payload);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::{MessageKind, Protocol};

    const PING_BINARY: [u8; 26] = [
        0x80, 0x01, 0x00, 0x01, 0, 0, 0, 4, b'p', b'i', b'n', b'g', 0, 0, 0, 1, 0x0b, 0, 1, 0, 0,
        0, 2, b'h', b'i', 0,
    ];
    const PING_COMPACT: [u8; 13] = [
        0x82, 0x21, 0x01, 0x04, b'p', b'i', b'n', b'g', 0x18, 0x02, b'h', b'i', 0,
    ];
    const PING_NON_STRICT: [u8; 23] = [
        0, 0, 0, 4, b'p', b'i', b'n', b'g', 0x01, 0, 0, 0, 1, 0x0b, 0, 1, 0, 0, 0, 2, b'h', b'i', 0,
    ];

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(payload);
        out
    }

    fn decode_all(framed: bool, wire: &[u8], chunk: usize) -> Vec<Message> {
        let mut d = Decoder::new(framed, Limits::default());
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in wire.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(m) = d.decode(&mut buf).unwrap() {
                out.push(m);
            }
        }
        assert!(buf.is_empty());
        assert!(!d.in_message());
        out
    }

    #[test]
    fn framed_reference_vector_has_length_0x1a() {
        let wire = framed(&PING_BINARY);
        assert_eq!(&wire[..4], &[0, 0, 0, 0x1a]);
        for chunk in [1, 3, 7, wire.len()] {
            let msgs = decode_all(true, &wire, chunk);
            assert_eq!(msgs.len(), 1);
            assert_eq!(msgs[0].bytes(), &PING_BINARY[..]);
            assert_eq!(msgs[0].body(), &PING_BINARY[16..]);
            assert_eq!(
                msgs[0].header(),
                &MessageHeader::new("ping", MessageKind::Call, 1, Protocol::Binary)
            );
        }
    }

    #[test]
    fn unframed_messages_back_to_back_in_any_chunking() {
        let mut wire = Vec::new();
        for m in [
            &PING_BINARY[..],
            &PING_COMPACT,
            &PING_NON_STRICT,
            &PING_BINARY,
        ] {
            wire.extend_from_slice(m);
        }
        for chunk in 1..=wire.len() {
            let msgs = decode_all(false, &wire, chunk);
            let protocols: Vec<_> = msgs.iter().map(|m| m.header().protocol).collect();
            assert_eq!(
                protocols,
                [
                    Protocol::Binary,
                    Protocol::Compact,
                    Protocol::BinaryNonStrict,
                    Protocol::Binary
                ]
            );
            assert_eq!(msgs[1].bytes(), &PING_COMPACT[..]);
            assert_eq!(msgs[2].body(), &PING_NON_STRICT[13..]);
        }
    }

    #[test]
    fn framed_messages_back_to_back() {
        let mut wire = framed(&PING_COMPACT);
        wire.extend(framed(&PING_NON_STRICT));
        let msgs = decode_all(true, &wire, 5);
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].header().protocol, Protocol::Compact);
        assert_eq!(msgs[1].header().protocol, Protocol::BinaryNonStrict);
    }

    #[test]
    fn encode_round_trips() {
        let msg = Message::parse(Bytes::from_static(&PING_BINARY), &Limits::default()).unwrap();
        let mut out = BytesMut::new();
        encode(&msg, true, &mut out).unwrap();
        assert_eq!(&out[..], &framed(&PING_BINARY)[..]);
        out.clear();
        encode(&msg, false, &mut out).unwrap();
        assert_eq!(&out[..], &PING_BINARY[..]);
    }

    #[test]
    fn frame_errors() {
        let l = Limits {
            max_message_bytes: 100,
            ..Limits::default()
        };
        let err = |wire: &[u8]| {
            Decoder::new(true, l)
                .decode(&mut BytesMut::from(wire))
                .unwrap_err()
        };
        assert_eq!(err(&[0, 0, 0, 0]), ThriftError::EmptyFrame);
        assert_eq!(
            err(&[0, 0, 0, 101]),
            ThriftError::FrameTooLarge { len: 101, max: 100 }
        );
        assert_eq!(
            err(&[0xff, 0, 0, 0]),
            ThriftError::NegativeFrameLength(-16777216)
        );
        assert!(matches!(err(&PING_BINARY), ThriftError::NotThrift(_)));
        assert!(matches!(err(&PING_COMPACT), ThriftError::NotThrift(_)));
        assert!(matches!(
            err(b"GET / HTTP/1.1\r\n"),
            ThriftError::NotThrift(_)
        ));
        // A frame too short for its header, or with no body byte.
        assert_eq!(
            err(&framed(&PING_BINARY[..10])),
            ThriftError::ShortFrame(10)
        );
        assert_eq!(
            err(&framed(&PING_BINARY[..16])),
            ThriftError::ShortFrame(16)
        );
        assert_eq!(
            err(&framed(&[0x80, 0x02, 0, 1])),
            ThriftError::BadVersion(0x8002)
        );
    }

    #[test]
    fn unframed_errors_keep_the_header_and_stick() {
        let mut wire = PING_BINARY[..16].to_vec();
        wire.extend_from_slice(&[0x01, 0, 1]); // type 1 (VOID) is not a wire type
        let mut d = Decoder::new(false, Limits::default());
        let mut buf = BytesMut::from(&wire[..]);
        let e = d.decode(&mut buf).unwrap_err();
        let h = e.header().unwrap();
        assert_eq!((h.name.as_str(), h.seqid), ("ping", 1));
        assert_eq!(d.decode(&mut buf).unwrap_err(), e);
        let e = Decoder::new(false, Limits::default())
            .decode(&mut BytesMut::from(&framed(&PING_BINARY)[..]))
            .unwrap_err();
        assert!(matches!(e, ThriftError::NotThrift(_)), "{e}");
        assert!(e.header().is_none());
    }

    #[test]
    fn unframed_size_limit_closes_instead_of_buffering() {
        let l = Limits {
            max_message_bytes: 64,
            ..Limits::default()
        };
        let mut d = Decoder::new(false, l);
        // A CALL whose body is an endless run of byte fields.
        let mut buf = BytesMut::from(&PING_BINARY[..16]);
        let mut result = Ok(None);
        for _ in 0..100 {
            buf.extend_from_slice(&[0x03, 0, 1, 7]);
            result = d.decode(&mut buf);
            if result.is_err() {
                break;
            }
        }
        assert!(buf.len() <= 68, "{}", buf.len());
        assert!(
            matches!(result, Err(ThriftError::Body { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn a_partial_header_waits_for_its_length() {
        let mut d = Decoder::new(false, Limits::default());
        let mut buf = BytesMut::from(&PING_BINARY[..9]);
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        assert!(!d.in_message());
        buf.extend_from_slice(&PING_BINARY[9..20]);
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        assert!(d.in_message());
        buf.extend_from_slice(&PING_BINARY[20..]);
        assert_eq!(
            d.decode(&mut buf).unwrap().unwrap().len(),
            PING_BINARY.len()
        );
    }

    #[test]
    fn parse_checks_the_exact_length() {
        let l = Limits::default();
        let mut long = PING_COMPACT.to_vec();
        long.push(0);
        assert_eq!(
            Message::parse(Bytes::from(long), &l).unwrap_err(),
            ThriftError::TrailingBytes(1)
        );
        assert_eq!(
            Message::parse(Bytes::copy_from_slice(&PING_COMPACT[..12]), &l).unwrap_err(),
            ThriftError::Truncated("message body")
        );
        let m = Message::parse(Bytes::from_static(&PING_COMPACT), &l).unwrap();
        assert_eq!(m.body(), &PING_COMPACT[8..]);
        let built = Message::from_header_and_body(m.header().clone(), m.body());
        assert_eq!(built, m);
    }
}
