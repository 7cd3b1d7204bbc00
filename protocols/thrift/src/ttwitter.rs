//! Finagle's TTwitter protocol upgrade: how Finagle Thrift clients and servers carry
//! trace ids, client id, broadcast contexts (deadline, retries), the destination path and
//! dtab delegations alongside plain Thrift messages.
//!
//! Once per connection, before its first request, a client sends a CALL named
//! [`UPGRADE_METHOD`] (seqid 0, an empty `ConnectionOptions` struct). A TTwitter server
//! answers a REPLY (an empty `UpgradeReply`); a plain server answers an EXCEPTION
//! (unknown method) and the connection stays plain. After an upgrade every request frame
//! is a [`RequestHeader`] struct followed by the message, and every reply frame a
//! [`ResponseHeader`] struct followed by the reply, both in the connection's protocol.
//! Only framed connections can upgrade (an unframed reader expects a message header
//! first). Replies to ONEWAY requests do not exist, so there is no header to send.
//!
//! The structs are encoded and decoded here by field id, from the field table of
//! Finagle's `tracing.thrift`; unknown fields and fields of an unexpected type are
//! skipped, as generated Thrift code does.

use bytes::{BufMut, Bytes, BytesMut};

use crate::Limits;
use crate::error::ThriftError;
use crate::framing::Message;
use crate::header::{MessageHeader, MessageKind, Protocol};
use crate::wire::{Field, Reader, TType, Writer};

/// The method name of the upgrade probe.
pub const UPGRADE_METHOD: &str = "__can__finagle__trace__v3__";

/// The upgrade probe a client sends once on a new connection: a CALL of
/// [`UPGRADE_METHOD`], seqid 0, with an empty `ConnectionOptions` struct.
pub fn upgrade_request(protocol: Protocol) -> Message {
    Message::from_header_and_body(
        MessageHeader::new(UPGRADE_METHOD, MessageKind::Call, 0, protocol),
        &[0],
    )
}

/// Whether a request is the upgrade probe (a server then answers [`upgrade_reply`]
/// instead of routing it).
pub fn is_upgrade_request(header: &MessageHeader) -> bool {
    header.kind == MessageKind::Call && header.name == UPGRADE_METHOD
}

/// A TTwitter server's answer to the probe: a REPLY with the probe's name, seqid and
/// protocol and an empty `UpgradeReply` struct.
pub fn upgrade_reply(request: &MessageHeader) -> Message {
    Message::from_header_and_body(request.with_kind(MessageKind::Reply), &[0])
}

/// Whether the answer to the probe accepts the upgrade: a REPLY (a plain server answers
/// an EXCEPTION for the unknown method).
pub fn is_upgrade_accepted(reply: &MessageHeader) -> bool {
    reply.kind == MessageKind::Reply && reply.name == UPGRADE_METHOD
}

/// A broadcast context entry: `RequestContext {1: binary key, 2: binary value}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// The context key, e.g. `com.twitter.finagle.Deadline`.
    pub key: Bytes,
    /// The context value, in the context's own encoding.
    pub value: Bytes,
}

/// A dtab entry carried with a request: `Delegation {1: string src, 2: string dst}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delegation {
    /// The prefix, e.g. `/svc`.
    pub src: String,
    /// The name tree it delegates to, e.g. `/#/io.l5d.fs`.
    pub dst: String,
}

/// The header a TTwitter client puts before every request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestHeader {
    /// 1: the trace id (low 64 bits).
    pub trace_id: i64,
    /// 2: the span id.
    pub span_id: i64,
    /// 3: the parent span id.
    pub parent_span_id: Option<i64>,
    /// 5: the sampling decision; absent means undecided.
    pub sampled: Option<bool>,
    /// 6: the client id (`ClientId {1: string name}`).
    pub client_id: Option<String>,
    /// 7: trace flags (bit 0 debug, bit 1 sampling known, bit 2 sampled).
    pub flags: Option<i64>,
    /// 8: broadcast contexts.
    pub contexts: Vec<RequestContext>,
    /// 9: the destination, a Finagle path (the Dst after the router's prefix).
    pub dest: Option<String>,
    /// 10: dtab delegations for this request.
    pub delegations: Vec<Delegation>,
    /// 11: the high 64 bits of a 128-bit trace id.
    pub trace_id_high: Option<i64>,
}

/// The header a TTwitter server puts before every reply. Its `spans` (field 1) are
/// skipped when read and never written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseHeader {
    /// 2: contexts sent back to the client.
    pub contexts: Vec<RequestContext>,
}

fn write_contexts(w: &mut Writer<'_>, id: i16, contexts: &[RequestContext]) {
    w.field(TType::List, id);
    w.list_begin(TType::Struct, contexts.len());
    for c in contexts {
        w.struct_begin();
        w.field(TType::String, 1);
        w.binary(&c.key);
        w.field(TType::String, 2);
        w.binary(&c.value);
        w.struct_end();
    }
}

/// Reads a `list<struct>` field with `elem` reading each struct's fields; a list of any
/// other element type is skipped whole.
fn read_struct_list<T: Default>(
    r: &mut Reader<'_>,
    field: &Field,
    mut elem: impl FnMut(&mut Reader<'_>, &Field, &mut T) -> Result<(), ThriftError>,
) -> Result<Vec<T>, ThriftError> {
    if field.ttype != TType::List {
        r.skip_field(field)?;
        return Ok(Vec::new());
    }
    let (elem_type, count) = r.list_begin()?;
    let mut out = Vec::new();
    for _ in 0..count {
        if elem_type != TType::Struct {
            r.skip(elem_type)?;
            continue;
        }
        let mut value = T::default();
        r.struct_begin();
        while let Some(f) = r.field()? {
            elem(r, &f, &mut value)?;
        }
        out.push(value);
    }
    Ok(out)
}

fn read_context(r: &mut Reader<'_>, f: &Field, c: &mut RequestContext) -> Result<(), ThriftError> {
    match (f.id, f.ttype) {
        (1, TType::String) => c.key = Bytes::copy_from_slice(r.binary()?),
        (2, TType::String) => c.value = Bytes::copy_from_slice(r.binary()?),
        _ => r.skip_field(f)?,
    }
    Ok(())
}

fn read_delegation(r: &mut Reader<'_>, f: &Field, d: &mut Delegation) -> Result<(), ThriftError> {
    match (f.id, f.ttype) {
        (1, TType::String) => d.src = r.string("Delegation.src")?,
        (2, TType::String) => d.dst = r.string("Delegation.dst")?,
        _ => r.skip_field(f)?,
    }
    Ok(())
}

impl RequestHeader {
    /// Appends the struct in `protocol`. Trace and span ids and the contexts list are
    /// always written (they are not optional in the IDL), the rest when set.
    pub fn encode(&self, protocol: Protocol, dst: &mut BytesMut) {
        let mut w = Writer::new(dst, protocol);
        w.struct_begin();
        w.field(TType::I64, 1);
        w.i64(self.trace_id);
        w.field(TType::I64, 2);
        w.i64(self.span_id);
        if let Some(parent) = self.parent_span_id {
            w.field(TType::I64, 3);
            w.i64(parent);
        }
        if let Some(sampled) = self.sampled {
            w.bool_field(5, sampled);
        }
        if let Some(name) = &self.client_id {
            w.field(TType::Struct, 6);
            w.struct_begin();
            w.field(TType::String, 1);
            w.binary(name.as_bytes());
            w.struct_end();
        }
        if let Some(flags) = self.flags {
            w.field(TType::I64, 7);
            w.i64(flags);
        }
        write_contexts(&mut w, 8, &self.contexts);
        if let Some(dest) = &self.dest {
            w.field(TType::String, 9);
            w.binary(dest.as_bytes());
        }
        if !self.delegations.is_empty() {
            w.field(TType::List, 10);
            w.list_begin(TType::Struct, self.delegations.len());
            for d in &self.delegations {
                w.struct_begin();
                w.field(TType::String, 1);
                w.binary(d.src.as_bytes());
                w.field(TType::String, 2);
                w.binary(d.dst.as_bytes());
                w.struct_end();
            }
        }
        if let Some(high) = self.trace_id_high {
            w.field(TType::I64, 11);
            w.i64(high);
        }
        w.struct_end();
    }

    /// Reads the struct at the start of `buf` and returns it with its length.
    pub fn decode(
        buf: &[u8],
        protocol: Protocol,
        limits: &Limits,
    ) -> Result<(RequestHeader, usize), ThriftError> {
        let mut r = Reader::new(buf, protocol, *limits);
        let mut h = RequestHeader::default();
        r.struct_begin();
        while let Some(f) = r.field()? {
            match (f.id, f.ttype) {
                (1, TType::I64) => h.trace_id = r.i64()?,
                (2, TType::I64) => h.span_id = r.i64()?,
                (3, TType::I64) => h.parent_span_id = Some(r.i64()?),
                (5, TType::Bool) => h.sampled = Some(r.bool(&f)?),
                (6, TType::Struct) => {
                    r.struct_begin();
                    let mut name = None;
                    while let Some(cf) = r.field()? {
                        match (cf.id, cf.ttype) {
                            (1, TType::String) => name = Some(r.string("ClientId.name")?),
                            _ => r.skip_field(&cf)?,
                        }
                    }
                    h.client_id = name;
                }
                (7, TType::I64) => h.flags = Some(r.i64()?),
                (8, _) => h.contexts = read_struct_list(&mut r, &f, read_context)?,
                (9, TType::String) => h.dest = Some(r.string("RequestHeader.dest")?),
                (10, _) => h.delegations = read_struct_list(&mut r, &f, read_delegation)?,
                (11, TType::I64) => h.trace_id_high = Some(r.i64()?),
                _ => r.skip_field(&f)?,
            }
        }
        Ok((h, r.pos()))
    }
}

impl ResponseHeader {
    /// Appends the struct in `protocol`: a lone STOP byte when there are no contexts.
    pub fn encode(&self, protocol: Protocol, dst: &mut BytesMut) {
        let mut w = Writer::new(dst, protocol);
        w.struct_begin();
        if !self.contexts.is_empty() {
            write_contexts(&mut w, 2, &self.contexts);
        }
        w.struct_end();
    }

    /// Reads the struct at the start of `buf` and returns it with its length.
    pub fn decode(
        buf: &[u8],
        protocol: Protocol,
        limits: &Limits,
    ) -> Result<(ResponseHeader, usize), ThriftError> {
        let mut r = Reader::new(buf, protocol, *limits);
        let mut h = ResponseHeader::default();
        r.struct_begin();
        while let Some(f) = r.field()? {
            match f.id {
                2 => h.contexts = read_struct_list(&mut r, &f, read_context)?,
                _ => r.skip_field(&f)?,
            }
        }
        Ok((h, r.pos()))
    }
}

/// Splits the payload of a frame received on an upgraded connection into its
/// [`RequestHeader`] and the message after it (which must fill the rest exactly).
/// `protocol` is the connection's, as seen on the upgrade probe.
pub fn split_request(
    payload: Bytes,
    protocol: Protocol,
    limits: &Limits,
) -> Result<(RequestHeader, Message), ThriftError> {
    let (header, len) = RequestHeader::decode(&payload, protocol, limits)?;
    Ok((header, Message::parse(payload.slice(len..), limits)?))
}

/// The payload of a request frame for an upgraded connection: `header` then `msg`, the
/// header in the message's protocol.
pub fn wrap_request(header: &RequestHeader, msg: &Message) -> Bytes {
    let mut out = BytesMut::with_capacity(64 + msg.len());
    header.encode(msg.header().protocol, &mut out);
    out.put_slice(msg.bytes());
    out.freeze()
}

/// Splits the payload of a reply frame received on an upgraded connection into its
/// [`ResponseHeader`] and the reply message.
pub fn split_reply(
    payload: Bytes,
    protocol: Protocol,
    limits: &Limits,
) -> Result<(ResponseHeader, Message), ThriftError> {
    let (header, len) = ResponseHeader::decode(&payload, protocol, limits)?;
    Ok((header, Message::parse(payload.slice(len..), limits)?))
}

/// The payload of a reply frame for an upgraded connection: an empty [`ResponseHeader`]
/// (one STOP byte, in either protocol) then `reply`.
pub fn wrap_reply(reply: &Message) -> Bytes {
    let mut out = BytesMut::with_capacity(1 + reply.len());
    ResponseHeader::default().encode(reply.header().protocol, &mut out);
    out.put_slice(reply.bytes());
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn probe_reference_vector() {
        let probe = upgrade_request(Protocol::Binary);
        let want = unhex(
            "80 01 00 01 00 00 00 1b 5f5f63616e5f5f66696e61676c655f5f74726163655f5f76335f5f
             00 00 00 00 00",
        );
        assert_eq!(&probe.bytes()[..], &want[..]);
        assert_eq!(probe.len() + 4, 0x28 + 4);
        assert!(is_upgrade_request(probe.header()));
        let reply = upgrade_reply(probe.header());
        assert_eq!(reply.header().kind, MessageKind::Reply);
        assert_eq!(reply.header().seqid, 0);
        assert_eq!(reply.body(), &[0]);
        assert!(is_upgrade_accepted(reply.header()));
        let refused = crate::exception::exception_reply(
            probe.header(),
            &crate::ApplicationException::new(crate::ExceptionKind::UnknownMethod, "nope"),
        );
        assert!(!is_upgrade_accepted(refused.header()));
        // Compact probes work the same way.
        let c = upgrade_request(Protocol::Compact);
        assert!(is_upgrade_request(c.header()));
        assert_eq!(
            upgrade_reply(c.header()).header().protocol,
            Protocol::Compact
        );
        let not_probe =
            MessageHeader::new(UPGRADE_METHOD, MessageKind::Oneway, 0, Protocol::Binary);
        assert!(!is_upgrade_request(&not_probe));
    }

    fn example() -> RequestHeader {
        RequestHeader {
            trace_id: 1,
            span_id: 2,
            flags: Some(0),
            dest: Some("/svc/echo".into()),
            delegations: vec![Delegation {
                src: "/svc".into(),
                dst: "/#/io.l5d.fs".into(),
            }],
            ..RequestHeader::default()
        }
    }

    #[test]
    fn request_header_reference_vector() {
        let want = unhex(
            "0a 0001 0000000000000001 | 0a 0002 0000000000000002 | 0a 0007 0000000000000000 |
             0f 0008 0c 00000000 | 0b 0009 00000009 2f7376632f6563686f |
             0f 000a 0c 00000001 0b 0001 00000004 2f737663 0b 0002 0000000c 2f232f696f2e6c35642e6673 00 |
             00",
        );
        let mut out = BytesMut::new();
        example().encode(Protocol::Binary, &mut out);
        assert_eq!(&out[..], &want[..]);
        let (h, len) = RequestHeader::decode(&want, Protocol::Binary, &Limits::default()).unwrap();
        assert_eq!((h, len), (example(), want.len()));
    }

    fn full() -> RequestHeader {
        RequestHeader {
            trace_id: -5,
            span_id: i64::MAX,
            parent_span_id: Some(77),
            sampled: Some(true),
            client_id: Some("hello".into()),
            flags: Some(6),
            contexts: vec![
                RequestContext {
                    key: Bytes::from_static(b"com.twitter.finagle.Deadline"),
                    value: Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2]),
                },
                RequestContext {
                    key: Bytes::from_static(b"com.twitter.finagle.Retries"),
                    value: Bytes::from_static(&[0, 0, 0, 1]),
                },
            ],
            dest: Some("/s/users".into()),
            delegations: vec![
                Delegation {
                    src: "/a".into(),
                    dst: "/b".into(),
                },
                Delegation {
                    src: "/c".into(),
                    dst: "/d | /e".into(),
                },
            ],
            trace_id_high: Some(-1),
        }
    }

    #[test]
    fn request_headers_round_trip_in_both_protocols() {
        for protocol in [Protocol::Binary, Protocol::Compact] {
            for h in [RequestHeader::default(), example(), full()] {
                let mut out = BytesMut::new();
                h.encode(protocol, &mut out);
                out.put_slice(&[0xaa, 0xbb]);
                let (back, len) =
                    RequestHeader::decode(&out, protocol, &Limits::default()).unwrap();
                assert_eq!(back, h, "{protocol}");
                assert_eq!(len, out.len() - 2);
                for cut in 0..len {
                    assert!(
                        RequestHeader::decode(&out[..cut], protocol, &Limits::default()).is_err()
                    );
                }
            }
        }
        let mut out = BytesMut::new();
        RequestHeader {
            sampled: Some(false),
            ..RequestHeader::default()
        }
        .encode(Protocol::Compact, &mut out);
        // Compact bools live in the field header: 5 - 2 = delta 3, type 2 (false).
        assert_eq!(&out[..], &[0x16, 0x00, 0x16, 0x00, 0x32, 0x39, 0x0c, 0x00]);
    }

    #[test]
    fn unknown_and_mistyped_fields_are_skipped() {
        // {1: i64 7, 4: string "x", 9: i32 5 (wrong type), 8: list<i32>[1], 12: struct {}}
        let buf = unhex(
            "0a 0001 0000000000000007 0b 0004 00000001 78 08 0009 00000005
             0f 0008 08 00000001 00000001 0c 000c 00 00",
        );
        let (h, len) = RequestHeader::decode(&buf, Protocol::Binary, &Limits::default()).unwrap();
        assert_eq!(len, buf.len());
        assert_eq!(
            h,
            RequestHeader {
                trace_id: 7,
                ..RequestHeader::default()
            }
        );
    }

    #[test]
    fn split_and_wrap_requests() {
        let msg = Message::from_header_and_body(
            MessageHeader::new("ping", MessageKind::Call, 3, Protocol::Binary),
            &[0x0b, 0, 1, 0, 0, 0, 2, b'h', b'i', 0],
        );
        let payload = wrap_request(&full(), &msg);
        let (h, m) = split_request(payload.clone(), Protocol::Binary, &Limits::default()).unwrap();
        assert_eq!((h, m), (full(), msg.clone()));
        // A payload cut inside the message, or with junk after it, is refused.
        let cut = payload.slice(..payload.len() - 1);
        assert!(split_request(cut, Protocol::Binary, &Limits::default()).is_err());
        let mut long = BytesMut::from(&payload[..]);
        long.put_u8(0);
        assert_eq!(
            split_request(long.freeze(), Protocol::Binary, &Limits::default()).unwrap_err(),
            ThriftError::TrailingBytes(1)
        );
    }

    #[test]
    fn wrap_and_split_replies() {
        for protocol in [Protocol::Binary, Protocol::Compact] {
            let reply = Message::from_header_and_body(
                MessageHeader::new("ping", MessageKind::Reply, 3, protocol),
                &[0],
            );
            let payload = wrap_reply(&reply);
            assert_eq!(payload[0], 0);
            assert_eq!(&payload[1..], &reply.bytes()[..]);
            let (h, m) = split_reply(payload, protocol, &Limits::default()).unwrap();
            assert_eq!((h, m), (ResponseHeader::default(), reply.clone()));
            // Contexts and spans from a server.
            let rh = ResponseHeader {
                contexts: full().contexts,
            };
            let mut out = BytesMut::new();
            {
                // spans first: field 1, list<struct> of one empty span
                let mut w = Writer::new(&mut out, protocol);
                w.struct_begin();
                w.field(TType::List, 1);
                w.list_begin(TType::Struct, 1);
                w.struct_begin();
                w.struct_end();
                write_contexts(&mut w, 2, &rh.contexts);
                w.struct_end();
            }
            out.put_slice(reply.bytes());
            let (h, m) = split_reply(out.freeze(), protocol, &Limits::default()).unwrap();
            assert_eq!((h, m), (rh, reply));
        }
    }
}
