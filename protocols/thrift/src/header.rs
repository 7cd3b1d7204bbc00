//! Reading and writing a Thrift message header (method name, message type, seqid) without
//! decoding the body, in the three encodings peers send: strict binary (`80 01 00 0T`),
//! old non-strict binary (name length first) and compact (`82 (T<<5 | 1)`).
//!
//! The header is all a router needs to identify a request and to answer it with an
//! exception; the protocol is recognised from the first byte. Reading distinguishes "the
//! buffer ends inside the header" ([`HeaderRead::NeedMore`], with the least total length
//! worth retrying at) from malformed input (an error), so an I/O loop neither spins nor
//! waits forever on garbage.

use std::fmt;

use bytes::{BufMut, BytesMut};

use crate::error::ThriftError;
use crate::wire::{Varint, put_varint, read_varint};

/// The Thrift protocol a message is encoded in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Binary protocol with the strict (versioned) message header every modern writer
    /// sends.
    Binary,
    /// Binary protocol with the old header that starts with the name length. Bodies are
    /// encoded exactly as in [`Protocol::Binary`].
    BinaryNonStrict,
    /// Compact protocol.
    Compact,
}

impl Protocol {
    /// Whether this is the compact protocol (bodies differ only between binary and
    /// compact).
    pub fn is_compact(self) -> bool {
        self == Protocol::Compact
    }

    /// A short lowercase name for logs and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Binary => "binary",
            Protocol::BinaryNonStrict => "binary (non-strict)",
            Protocol::Compact => "compact",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The message type of the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// A request expecting a reply (type 1).
    Call,
    /// A normal reply (type 2): the result struct.
    Reply,
    /// A failure reply (type 3): a `TApplicationException`.
    Exception,
    /// A request that gets no reply (type 4).
    Oneway,
}

impl MessageKind {
    /// The kind for a wire type number.
    pub fn from_u8(t: u8) -> Option<MessageKind> {
        match t {
            1 => Some(MessageKind::Call),
            2 => Some(MessageKind::Reply),
            3 => Some(MessageKind::Exception),
            4 => Some(MessageKind::Oneway),
            _ => None,
        }
    }

    /// The wire type number.
    pub fn as_u8(self) -> u8 {
        match self {
            MessageKind::Call => 1,
            MessageKind::Reply => 2,
            MessageKind::Exception => 3,
            MessageKind::Oneway => 4,
        }
    }

    /// Whether this is a request (CALL or ONEWAY) rather than a reply.
    pub fn is_request(self) -> bool {
        matches!(self, MessageKind::Call | MessageKind::Oneway)
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MessageKind::Call => "CALL",
            MessageKind::Reply => "REPLY",
            MessageKind::Exception => "EXCEPTION",
            MessageKind::Oneway => "ONEWAY",
        })
    }
}

/// A message header: everything before the body struct.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MessageHeader {
    /// The method name; `service:method` for multiplexed services.
    pub name: String,
    /// The message type.
    pub kind: MessageKind,
    /// The client-chosen sequence id, copied into the reply.
    pub seqid: i32,
    /// How the message is encoded.
    pub protocol: Protocol,
}

/// The outcome of [`read_header`] on a buffer that holds a header or its beginning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderRead {
    /// The header, and how many bytes it took (the body starts there).
    Complete {
        /// The header read.
        header: MessageHeader,
        /// Its length in bytes.
        len: usize,
    },
    /// The buffer ends inside the header; nothing can be decided before it holds at
    /// least `at_least` bytes.
    NeedMore {
        /// The least buffer length worth calling again with.
        at_least: usize,
    },
}

const STRICT_VERSION: u16 = 0x8001;
const COMPACT_ID: u8 = 0x82;
const COMPACT_VERSION: u8 = 1;

/// Reads the message header at the start of `buf`. Method names longer than
/// `max_name_bytes` are errors, so garbage cannot make a caller buffer without bound.
pub fn read_header(buf: &[u8], max_name_bytes: usize) -> Result<HeaderRead, ThriftError> {
    let Some(&first) = buf.first() else {
        return Ok(HeaderRead::NeedMore { at_least: 1 });
    };
    if first == COMPACT_ID {
        read_compact(buf, max_name_bytes)
    } else if first & 0x80 != 0 {
        read_strict(buf, max_name_bytes)
    } else {
        read_non_strict(buf, max_name_bytes)
    }
}

fn need(at_least: usize) -> Result<HeaderRead, ThriftError> {
    Ok(HeaderRead::NeedMore { at_least })
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn name_len(len: i64, max: usize) -> Result<usize, ThriftError> {
    usize::try_from(len)
        .ok()
        .filter(|&n| n <= max)
        .ok_or(ThriftError::NameTooLong { len, max })
}

fn name(bytes: &[u8]) -> Result<String, ThriftError> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| ThriftError::NameNotUtf8)
}

fn kind(t: u8) -> Result<MessageKind, ThriftError> {
    MessageKind::from_u8(t).ok_or(ThriftError::BadMessageType(t))
}

fn read_strict(buf: &[u8], max: usize) -> Result<HeaderRead, ThriftError> {
    if buf.len() < 2 {
        return need(2);
    }
    let version = u16::from_be_bytes([buf[0], buf[1]]);
    if version != STRICT_VERSION {
        return Err(ThriftError::BadVersion(version));
    }
    if buf.len() < 8 {
        return need(8);
    }
    // buf[2] is unused; the type is the fourth byte.
    let kind = kind(buf[3])?;
    let n = name_len(i64::from(be_i32(&buf[4..8])), max)?;
    let len = 8 + n + 4;
    if buf.len() < len {
        return need(len);
    }
    Ok(HeaderRead::Complete {
        header: MessageHeader {
            name: name(&buf[8..8 + n])?,
            kind,
            seqid: be_i32(&buf[8 + n..len]),
            protocol: Protocol::Binary,
        },
        len,
    })
}

/// What some well-known non-Thrift openings are, for a clearer error than "name too long".
fn sniff(buf: &[u8]) -> Option<&'static str> {
    const HTTP: [&[u8]; 10] = [
        b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI", b"PATC", b"CONN", b"TRAC", b"PRI ",
    ];
    if buf.starts_with(&[0x16, 0x03]) {
        Some("this looks like a TLS ClientHello")
    } else if HTTP.iter().any(|m| buf.starts_with(m)) {
        Some("this looks like an HTTP request")
    } else if buf.len() >= 6 && buf[..2] == [0, 0] && buf[4..6] == [0x0f, 0xff] {
        Some("this looks like the THeader transport, which is not supported")
    } else if buf.len() >= 6
        && buf[..2] == [0, 0]
        && (buf[4..6] == [0x80, 0x01] || buf[4] == COMPACT_ID)
    {
        Some("this looks like framed Thrift on an unframed connection")
    } else {
        None
    }
}

fn read_non_strict(buf: &[u8], max: usize) -> Result<HeaderRead, ThriftError> {
    // The shortest header (empty name) is 9 bytes; waiting for them first means the
    // verdict never depends on how the bytes were split into reads.
    if buf.len() < 9 {
        return need(9);
    }
    if let Some(what) = sniff(buf) {
        return Err(ThriftError::NotThrift(what));
    }
    let n = name_len(i64::from(be_i32(buf)), max)?;
    let len = 4 + n + 1 + 4;
    if buf.len() < len {
        return need(len);
    }
    Ok(HeaderRead::Complete {
        header: MessageHeader {
            name: name(&buf[4..4 + n])?,
            kind: kind(buf[4 + n])?,
            seqid: be_i32(&buf[5 + n..len]),
            protocol: Protocol::BinaryNonStrict,
        },
        len,
    })
}

fn read_compact(buf: &[u8], max: usize) -> Result<HeaderRead, ThriftError> {
    if buf.len() < 2 {
        return need(2);
    }
    let version = buf[1] & 0x1f;
    if version != COMPACT_VERSION {
        return Err(ThriftError::BadCompactVersion(version));
    }
    let kind = kind(buf[1] >> 5)?;
    let mut pos = 2;
    // The seqid is the varint of the i32's bit pattern (no zigzag), before the name.
    let seqid = match read_varint(&buf[pos..], 5) {
        Varint::Done(v, n) => {
            pos += n;
            v as u32 as i32
        }
        Varint::NeedMore => return need(buf.len() + 1),
        Varint::Bad => return Err(ThriftError::BadVarint),
    };
    let n = match read_varint(&buf[pos..], 5) {
        Varint::Done(v, n) => {
            pos += n;
            name_len(i64::from(v as u32 as i32), max)?
        }
        Varint::NeedMore => return need(buf.len() + 1),
        Varint::Bad => return Err(ThriftError::BadVarint),
    };
    let len = pos + n;
    if buf.len() < len {
        return need(len);
    }
    Ok(HeaderRead::Complete {
        header: MessageHeader {
            name: name(&buf[pos..len])?,
            kind,
            seqid,
            protocol: Protocol::Compact,
        },
        len,
    })
}

impl MessageHeader {
    /// A header with the given fields.
    pub fn new(name: impl Into<String>, kind: MessageKind, seqid: i32, protocol: Protocol) -> Self {
        MessageHeader {
            name: name.into(),
            kind,
            seqid,
            protocol,
        }
    }

    /// This header with another message type, e.g. the reply header for a request.
    pub fn with_kind(&self, kind: MessageKind) -> Self {
        MessageHeader {
            kind,
            ..self.clone()
        }
    }

    /// The name bytes written: all of them, unless the name exceeds 2 GiB.
    fn name_bytes(&self) -> &[u8] {
        let b = self.name.as_bytes();
        &b[..b.len().min(i32::MAX as usize)]
    }

    /// Appends the header in its protocol's encoding.
    pub fn encode(&self, dst: &mut BytesMut) {
        let name = self.name_bytes();
        let name_len = name.len() as u32;
        match self.protocol {
            Protocol::Binary => {
                dst.reserve(12 + name.len());
                dst.put_u16(STRICT_VERSION);
                dst.put_u8(0);
                dst.put_u8(self.kind.as_u8());
                dst.put_u32(name_len);
                dst.put_slice(name);
                dst.put_i32(self.seqid);
            }
            Protocol::BinaryNonStrict => {
                dst.reserve(9 + name.len());
                dst.put_u32(name_len);
                dst.put_slice(name);
                dst.put_u8(self.kind.as_u8());
                dst.put_i32(self.seqid);
            }
            Protocol::Compact => {
                dst.reserve(12 + name.len());
                dst.put_u8(COMPACT_ID);
                dst.put_u8((self.kind.as_u8() << 5) | COMPACT_VERSION);
                put_varint(dst, u64::from(self.seqid as u32));
                put_varint(dst, u64::from(name_len));
                dst.put_slice(name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 64 * 1024;

    fn complete(buf: &[u8]) -> (MessageHeader, usize) {
        match read_header(buf, MAX) {
            Ok(HeaderRead::Complete { header, len }) => (header, len),
            other => panic!("{other:?}"),
        }
    }

    fn ping(kind: MessageKind, seqid: i32, protocol: Protocol) -> MessageHeader {
        MessageHeader::new("ping", kind, seqid, protocol)
    }

    /// Every prefix shorter than the header asks for more, with a hint that grows and
    /// never exceeds the header's length.
    fn check_prefixes(buf: &[u8], len: usize) {
        let mut last = 0;
        for cut in 0..len {
            match read_header(&buf[..cut], MAX) {
                Ok(HeaderRead::NeedMore { at_least }) => {
                    assert!(at_least > cut && at_least <= len, "cut {cut}: {at_least}");
                    assert!(at_least >= last);
                    last = at_least;
                }
                other => panic!("cut {cut}: {other:?}"),
            }
        }
    }

    fn round_trip(h: &MessageHeader, wire: &[u8]) {
        let mut out = BytesMut::new();
        h.encode(&mut out);
        assert_eq!(&out[..], wire);
    }

    #[test]
    fn strict_binary_call_and_oneway() {
        let call = [
            0x80, 0x01, 0x00, 0x01, 0, 0, 0, 4, b'p', b'i', b'n', b'g', 0, 0, 0, 1, 0x0b, 0,
        ];
        assert_eq!(
            complete(&call),
            (ping(MessageKind::Call, 1, Protocol::Binary), 16)
        );
        check_prefixes(&call, 16);
        round_trip(&ping(MessageKind::Call, 1, Protocol::Binary), &call[..16]);
        let mut oneway = call;
        oneway[3] = 4;
        assert_eq!(complete(&oneway).0.kind, MessageKind::Oneway);
        // The unused third byte is ignored.
        let mut odd = call;
        odd[2] = 0x7f;
        assert_eq!(
            complete(&odd).0,
            ping(MessageKind::Call, 1, Protocol::Binary)
        );
    }

    #[test]
    fn strict_binary_reply_and_exception() {
        for (t, kind) in [(2, MessageKind::Reply), (3, MessageKind::Exception)] {
            let buf = [
                0x80, 0x01, 0x00, t, 0, 0, 0, 4, b'p', b'i', b'n', b'g', 0, 0, 0, 7,
            ];
            assert_eq!(complete(&buf), (ping(kind, 7, Protocol::Binary), 16));
        }
    }

    #[test]
    fn non_strict_binary() {
        let buf = [0, 0, 0, 4, b'p', b'i', b'n', b'g', 0x01, 0, 0, 0, 1, 0x0b];
        assert_eq!(
            complete(&buf),
            (ping(MessageKind::Call, 1, Protocol::BinaryNonStrict), 13)
        );
        check_prefixes(&buf, 13);
        round_trip(
            &ping(MessageKind::Call, 1, Protocol::BinaryNonStrict),
            &buf[..13],
        );
        let neg = [
            0, 0, 0, 4, b'p', b'i', b'n', b'g', 0x02, 0xff, 0xff, 0xff, 0xfe,
        ];
        assert_eq!(
            complete(&neg).0,
            ping(MessageKind::Reply, -2, Protocol::BinaryNonStrict)
        );
    }

    #[test]
    fn compact_all_kinds() {
        for (b, kind) in [
            (0x21, MessageKind::Call),
            (0x41, MessageKind::Reply),
            (0x61, MessageKind::Exception),
            (0x81, MessageKind::Oneway),
        ] {
            let buf = [0x82, b, 0x01, 0x04, b'p', b'i', b'n', b'g', 0x18];
            assert_eq!(complete(&buf), (ping(kind, 1, Protocol::Compact), 8));
            check_prefixes(&buf, 8);
            round_trip(&ping(kind, 1, Protocol::Compact), &buf[..8]);
        }
    }

    #[test]
    fn compact_negative_seqid_takes_five_bytes() {
        let buf = [
            0x82, 0x21, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x04, b'p', b'i', b'n', b'g', 0x00,
        ];
        assert_eq!(
            complete(&buf),
            (ping(MessageKind::Call, -1, Protocol::Compact), 12)
        );
        check_prefixes(&buf, 12);
        round_trip(&ping(MessageKind::Call, -1, Protocol::Compact), &buf[..12]);
    }

    #[test]
    fn multiplexed_names_are_kept_whole() {
        let mut buf = BytesMut::new();
        let h = MessageHeader::new("Calc:add", MessageKind::Call, 9, Protocol::Binary);
        h.encode(&mut buf);
        assert_eq!(complete(&buf), (h, 20));
    }

    #[test]
    fn malformed_headers_are_errors() {
        let e = |buf: &[u8]| read_header(buf, MAX).unwrap_err();
        assert_eq!(e(&[0x80, 0x02]), ThriftError::BadVersion(0x8002));
        assert_eq!(e(&[0xff, 0x01]), ThriftError::BadVersion(0xff01));
        assert_eq!(
            e(&[0x80, 0x01, 0, 5, 0, 0, 0, 0]),
            ThriftError::BadMessageType(5)
        );
        assert_eq!(
            e(&[0x80, 0x01, 0, 0, 0, 0, 0, 0]),
            ThriftError::BadMessageType(0)
        );
        assert_eq!(
            e(&[0x80, 0x01, 0, 1, 0xff, 0xff, 0xff, 0xff]),
            ThriftError::NameTooLong { len: -1, max: MAX }
        );
        assert_eq!(
            e(&[0x80, 0x01, 0, 1, 0, 1, 0, 1]),
            ThriftError::NameTooLong {
                len: 65537,
                max: MAX
            }
        );
        assert_eq!(
            e(&[0x80, 0x01, 0, 1, 0, 0, 0, 1, 0xc3, 0, 0, 0, 0]),
            ThriftError::NameNotUtf8
        );
        assert_eq!(e(&[0x82, 0x22]), ThriftError::BadCompactVersion(2));
        assert_eq!(e(&[0x82, 0xa1]), ThriftError::BadMessageType(5));
        assert_eq!(
            e(&[0x82, 0x21, 0x80, 0x80, 0x80, 0x80, 0x80]),
            ThriftError::BadVarint
        );
        assert_eq!(e(&[0x82, 0x21, 0x01, 0xff, 0xff, 0xff, 0xff, 0x0f]), {
            ThriftError::NameTooLong { len: -1, max: MAX }
        });
        assert_eq!(
            e(&[0, 0, 0, 0, 9, 0, 0, 0, 0]),
            ThriftError::BadMessageType(9)
        );
        assert_eq!(
            e(&[0, 0x10, 0, 0, 0, 0, 0, 0, 0]),
            ThriftError::NameTooLong {
                len: 0x10_0000,
                max: MAX
            }
        );
    }

    #[test]
    fn other_protocols_get_a_hint() {
        for buf in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc"[..],
            b"GET / HTTP/1.1\r\n",
            b"PRI * HTTP/2.0\r\n",
            &[0, 0, 0, 0x20, 0x0f, 0xff, 0, 0, 0][..],
            &[0, 0, 0, 0x1a, 0x80, 0x01, 0, 1, 0][..],
            &[0, 0, 0, 0x1a, 0x82, 0x21, 1, 4, b'p'][..],
        ] {
            assert!(
                matches!(read_header(buf, MAX), Err(ThriftError::NotThrift(_))),
                "{buf:?}"
            );
        }
    }

    #[test]
    fn a_name_may_be_empty() {
        let buf = [0x80, 0x01, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3];
        assert_eq!(complete(&buf).0.name, "");
    }
}
