//! Interop with an independent Thrift implementation, the Apache `thrift` crate: messages
//! it writes (binary strict and non-strict, compact; framed and unframed) decode with
//! this crate's `Decoder` to the same headers and lengths, and what this crate writes
//! (exception replies, the TTwitter probe and headers) reads back with the `thrift` crate.

mod common;

use std::io::Cursor;

use bytes::{Bytes, BytesMut};
use common::{Ty, Value, struct_value, type_of};
use plexus_thrift::ttwitter::{Delegation, RequestContext, RequestHeader};
use plexus_thrift::{
    ApplicationException, Decoder, ExceptionKind, Limits, MessageHeader, MessageKind, Protocol,
    exception_reply, internal_error_reply, ttwitter,
};
use proptest::collection::vec;
use proptest::prelude::*;
use thrift::protocol::{
    TBinaryInputProtocol, TBinaryOutputProtocol, TCompactInputProtocol, TCompactOutputProtocol,
    TFieldIdentifier, TInputProtocol, TListIdentifier, TMapIdentifier, TMessageIdentifier,
    TMessageType, TOutputProtocol, TSetIdentifier, TStructIdentifier, TType,
};
use thrift::transport::TFramedWriteTransport;

fn ttype(t: &Ty) -> TType {
    match t {
        Ty::Bool => TType::Bool,
        Ty::Byte => TType::I08,
        Ty::I16 => TType::I16,
        Ty::I32 => TType::I32,
        Ty::I64 => TType::I64,
        Ty::Double => TType::Double,
        Ty::Str => TType::String,
        Ty::Uuid => TType::Uuid,
        Ty::Struct(_) => TType::Struct,
        Ty::List(_) => TType::List,
        Ty::Set(_) => TType::Set,
        Ty::Map(..) => TType::Map,
    }
}

/// Writes `v` with the `thrift` crate's protocol (values without UUIDs).
fn write_value(o: &mut dyn TOutputProtocol, v: &Value) -> thrift::Result<()> {
    match v {
        Value::Bool(b) => o.write_bool(*b),
        Value::Byte(b) => o.write_i8(*b),
        Value::I16(i) => o.write_i16(*i),
        Value::I32(i) => o.write_i32(*i),
        Value::I64(i) => o.write_i64(*i),
        Value::Double(d) => o.write_double(*d),
        Value::Str(s) => o.write_bytes(s),
        Value::Uuid(_) => unreachable!("generated without UUIDs"),
        Value::Struct(fields) => {
            o.write_struct_begin(&TStructIdentifier::new("S"))?;
            for (id, fv) in fields {
                o.write_field_begin(&TFieldIdentifier::new("f", ttype(&type_of(fv)), *id))?;
                write_value(o, fv)?;
                o.write_field_end()?;
            }
            o.write_field_stop()?;
            o.write_struct_end()
        }
        Value::List(t, vs) => {
            o.write_list_begin(&TListIdentifier::new(ttype(t), vs.len() as i32))?;
            for v in vs {
                write_value(o, v)?;
            }
            o.write_list_end()
        }
        Value::Set(t, vs) => {
            o.write_set_begin(&TSetIdentifier::new(ttype(t), vs.len() as i32))?;
            for v in vs {
                write_value(o, v)?;
            }
            o.write_set_end()
        }
        Value::Map(k, v, kvs) => {
            o.write_map_begin(&TMapIdentifier::new(ttype(k), ttype(v), kvs.len() as i32))?;
            for (kv, vv) in kvs {
                write_value(o, kv)?;
                write_value(o, vv)?;
            }
            o.write_map_end()
        }
    }
}

fn message_type(kind: u8) -> TMessageType {
    match kind {
        1 => TMessageType::Call,
        2 => TMessageType::Reply,
        3 => TMessageType::Exception,
        _ => TMessageType::OneWay,
    }
}

fn write_message(
    o: &mut dyn TOutputProtocol,
    name: &str,
    kind: u8,
    seqid: i32,
    body: &Value,
) -> thrift::Result<()> {
    o.write_message_begin(&TMessageIdentifier::new(name, message_type(kind), seqid))?;
    write_value(o, body)?;
    o.write_message_end()?;
    o.flush()
}

/// 0: binary strict, 1: binary non-strict, 2: compact.
const PROTOCOLS: [Protocol; 3] = [
    Protocol::Binary,
    Protocol::BinaryNonStrict,
    Protocol::Compact,
];

/// Writes one message with the `thrift` crate into `out`, framed or not.
fn thrift_crate_writes(
    variant: u8,
    framed: bool,
    msg: &(String, u8, i32, Value),
    out: &mut Vec<u8>,
) {
    let (name, kind, seqid, body) = msg;
    let result = if framed {
        let transport = TFramedWriteTransport::new(&mut *out);
        match variant {
            2 => write_message(
                &mut TCompactOutputProtocol::new(transport),
                name,
                *kind,
                *seqid,
                body,
            ),
            v => write_message(
                &mut TBinaryOutputProtocol::new(transport, v == 0),
                name,
                *kind,
                *seqid,
                body,
            ),
        }
    } else {
        match variant {
            2 => write_message(
                &mut TCompactOutputProtocol::new(&mut *out),
                name,
                *kind,
                *seqid,
                body,
            ),
            v => write_message(
                &mut TBinaryOutputProtocol::new(&mut *out, v == 0),
                name,
                *kind,
                *seqid,
                body,
            ),
        }
    };
    result.expect("the thrift crate writes to memory");
}

/// Where the `thrift` crate thinks a message starting at `buf` ends.
fn thrift_crate_message_len(buf: &[u8], protocol: Protocol) -> usize {
    let mut cursor = Cursor::new(buf);
    let mut i: Box<dyn TInputProtocol + '_> = match protocol {
        Protocol::Compact => Box::new(TCompactInputProtocol::new(&mut cursor)),
        _ => Box::new(TBinaryInputProtocol::new(&mut cursor, false)),
    };
    i.read_message_begin().unwrap();
    i.skip(TType::Struct).unwrap();
    i.read_message_end().unwrap();
    drop(i);
    cursor.position() as usize
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn messages_written_by_the_thrift_crate_decode(
        msgs in vec(("[a-zA-Z0-9_:]{0,16}", 1u8..=4, any::<i32>(), struct_value(false)), 1..4),
        variant in 0u8..3,
        framed in any::<bool>(),
        chunk in 1usize..50,
    ) {
        let protocol = PROTOCOLS[usize::from(variant)];
        let mut wire = Vec::new();
        let mut lengths = Vec::new();
        for m in &msgs {
            let before = wire.len();
            thrift_crate_writes(variant, framed, m, &mut wire);
            let frame = if framed { 4 } else { 0 };
            let len = wire.len() - before - frame;
            // The oracle agrees on where the message ends.
            prop_assert_eq!(thrift_crate_message_len(&wire[before + frame..], protocol), len);
            lengths.push(len);
        }
        let mut d = Decoder::new(framed, Limits::default());
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in wire.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(m) = d.decode(&mut buf).map_err(|e| TestCaseError::fail(e.to_string()))? {
                got.push(m);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got.len(), msgs.len());
        for ((m, (name, kind, seqid, _)), len) in got.iter().zip(&msgs).zip(&lengths) {
            let want = MessageHeader::new(name.clone(), MessageKind::from_u8(*kind).unwrap(), *seqid, protocol);
            prop_assert_eq!(m.header(), &want);
            prop_assert_eq!(m.len(), *len);
        }
    }

    #[test]
    fn the_test_encoder_agrees_with_the_thrift_crate_in_binary(v in struct_value(false)) {
        // Checks the independent test encoder that the property tests rely on.
        let mut ours = Vec::new();
        common::encode(&v, false, &mut ours);
        let mut theirs = Vec::new();
        write_value(&mut TBinaryOutputProtocol::new(&mut theirs, true), &v).unwrap();
        prop_assert_eq!(ours, theirs);
    }
}

fn read_exception(
    bytes: &[u8],
    protocol: Protocol,
) -> (TMessageIdentifier, thrift::ApplicationError) {
    let mut cursor = Cursor::new(bytes);
    let mut i: Box<dyn TInputProtocol + '_> = match protocol {
        Protocol::Compact => Box::new(TCompactInputProtocol::new(&mut cursor)),
        _ => Box::new(TBinaryInputProtocol::new(&mut cursor, false)),
    };
    let id = i.read_message_begin().unwrap();
    let e = thrift::Error::read_application_error_from_in_protocol(&mut *i).unwrap();
    i.read_message_end().unwrap();
    drop(i);
    assert_eq!(cursor.position() as usize, bytes.len());
    (id, e)
}

#[test]
fn exception_replies_read_back_with_the_thrift_crate() {
    for protocol in PROTOCOLS {
        let request = MessageHeader::new("Calc:add", MessageKind::Call, -77, protocol);
        let reply = internal_error_reply(&request, "no hosts are available for /svc/Calc");
        let (id, e) = read_exception(reply.bytes(), protocol);
        assert_eq!(id.name, "Calc:add");
        assert_eq!(id.message_type, TMessageType::Exception);
        assert_eq!(id.sequence_number, -77);
        assert_eq!(e.kind, thrift::ApplicationErrorKind::InternalError);
        assert_eq!(
            e.message,
            "Internal error processing Calc:add: 'no hosts are available for /svc/Calc'"
        );
        let protocol_error = ApplicationException::new(ExceptionKind::ProtocolError, "bad body");
        let reply = exception_reply(&request, &protocol_error);
        assert_eq!(
            read_exception(reply.bytes(), protocol).1.kind,
            thrift::ApplicationErrorKind::ProtocolError
        );
    }
}

#[test]
fn exceptions_written_by_the_thrift_crate_decode() {
    let e = thrift::ApplicationError::new(thrift::ApplicationErrorKind::UnknownMethod, "what?");
    for variant in 0..3u8 {
        let mut buf = Vec::new();
        {
            let mut o: Box<dyn TOutputProtocol> = match variant {
                2 => Box::new(TCompactOutputProtocol::new(&mut buf)),
                v => Box::new(TBinaryOutputProtocol::new(&mut buf, v == 0)),
            };
            o.write_message_begin(&TMessageIdentifier::new("ping", TMessageType::Exception, 4))
                .unwrap();
            thrift::Error::write_application_error_to_out_protocol(&e, &mut *o).unwrap();
            o.write_message_end().unwrap();
            o.flush().unwrap();
        }
        let msg = plexus_thrift::Message::parse(Bytes::from(buf), &Limits::default()).unwrap();
        assert_eq!(msg.header().protocol, PROTOCOLS[usize::from(variant)]);
        assert_eq!(
            plexus_thrift::classify(&msg).unwrap(),
            plexus_thrift::ReplyClass::ApplicationException
        );
        let exc = ApplicationException::from_message(&msg).unwrap();
        assert_eq!(
            exc,
            ApplicationException::new(ExceptionKind::UnknownMethod, "what?")
        );
    }
}

#[test]
fn ttwitter_request_headers_read_back_with_the_thrift_crate() {
    let header = RequestHeader {
        trace_id: 11,
        span_id: 12,
        parent_span_id: Some(13),
        sampled: Some(true),
        client_id: Some("hello".into()),
        flags: Some(2),
        contexts: vec![RequestContext {
            key: Bytes::from_static(b"com.twitter.finagle.Retries"),
            value: Bytes::from_static(&[0, 0, 0, 2]),
        }],
        dest: Some("/s/users".into()),
        delegations: vec![Delegation {
            src: "/svc".into(),
            dst: "/#/io.l5d.fs".into(),
        }],
        trace_id_high: Some(14),
    };
    for protocol in [Protocol::Binary, Protocol::Compact] {
        let msg = ttwitter::upgrade_request(protocol);
        let payload = ttwitter::wrap_request(&header, &msg);
        // Read the header struct field by field with the thrift crate.
        let mut cursor = Cursor::new(&payload[..]);
        let mut i: Box<dyn TInputProtocol + '_> = match protocol {
            Protocol::Compact => Box::new(TCompactInputProtocol::new(&mut cursor)),
            _ => Box::new(TBinaryInputProtocol::new(&mut cursor, true)),
        };
        i.read_struct_begin().unwrap();
        let mut seen = Vec::new();
        loop {
            let f = i.read_field_begin().unwrap();
            if f.field_type == TType::Stop {
                break;
            }
            let id = f.id.unwrap();
            seen.push(id);
            match id {
                1 => assert_eq!(i.read_i64().unwrap(), 11),
                5 => assert!(i.read_bool().unwrap()),
                9 => assert_eq!(i.read_string().unwrap(), "/s/users"),
                11 => assert_eq!(i.read_i64().unwrap(), 14),
                10 => {
                    let l = i.read_list_begin().unwrap();
                    assert_eq!((l.element_type, l.size), (TType::Struct, 1));
                    i.read_struct_begin().unwrap();
                    let f = i.read_field_begin().unwrap();
                    assert_eq!(f.id, Some(1));
                    assert_eq!(i.read_string().unwrap(), "/svc");
                    let f = i.read_field_begin().unwrap();
                    assert_eq!(f.id, Some(2));
                    assert_eq!(i.read_string().unwrap(), "/#/io.l5d.fs");
                    assert_eq!(i.read_field_begin().unwrap().field_type, TType::Stop);
                    i.read_struct_end().unwrap();
                    i.read_list_end().unwrap();
                }
                _ => i.skip(f.field_type).unwrap(),
            }
            i.read_field_end().unwrap();
        }
        i.read_struct_end().unwrap();
        // Then the message follows.
        let m = i.read_message_begin().unwrap();
        assert_eq!(m.name, ttwitter::UPGRADE_METHOD);
        i.skip(TType::Struct).unwrap();
        drop(i);
        assert_eq!(cursor.position() as usize, payload.len());
        assert_eq!(seen, [1, 2, 3, 5, 6, 7, 8, 9, 10, 11]);
        // And this crate splits it back.
        let (h, m) = ttwitter::split_request(payload, protocol, &Limits::default()).unwrap();
        assert_eq!((h, m), (header.clone(), msg));
    }
}
