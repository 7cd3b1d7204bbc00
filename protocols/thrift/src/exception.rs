//! `TApplicationException`: how a proxy reports its own failures (no route, connection
//! refused, timeout) to a Thrift client in a form every Thrift library understands.
//!
//! The reply is an EXCEPTION message with the request's name, seqid and protocol (clients
//! check both), whose body is the struct `{1: string message, 2: i32 type}`. For proxy
//! failures Plexus keeps the shape Finagle servers (and so Linkerd 1.x) used: type 6
//! (INTERNAL_ERROR) and the text `Internal error processing <method>: '<why>'`, which
//! users grep for. A ONEWAY request must never be answered; that is the caller's rule.

use std::fmt;

use bytes::BytesMut;

use crate::Limits;
use crate::error::ThriftError;
use crate::framing::Message;
use crate::header::{MessageHeader, MessageKind, Protocol};
use crate::wire::{Reader, TType, Writer};

/// The `type` of a `TApplicationException`, as numbered by Thrift.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExceptionKind {
    /// 0: anything else.
    Unknown,
    /// 1: the server has no such method.
    UnknownMethod,
    /// 2: a message type the receiver did not expect.
    InvalidMessageType,
    /// 3: a reply for another method.
    WrongMethodName,
    /// 4: a reply with an unexpected seqid.
    BadSequenceId,
    /// 5: a reply without a result.
    MissingResult,
    /// 6: the server (or proxy) failed while handling the request.
    InternalError,
    /// 7: the request could not be decoded.
    ProtocolError,
    /// 8: an unsupported transform (THeader).
    InvalidTransform,
    /// 9: an unsupported protocol.
    InvalidProtocol,
    /// 10: an unsupported client type.
    UnsupportedClientType,
    /// A number Thrift does not define, kept as received.
    Other(i32),
}

impl ExceptionKind {
    /// The wire number.
    pub fn code(self) -> i32 {
        match self {
            ExceptionKind::Unknown => 0,
            ExceptionKind::UnknownMethod => 1,
            ExceptionKind::InvalidMessageType => 2,
            ExceptionKind::WrongMethodName => 3,
            ExceptionKind::BadSequenceId => 4,
            ExceptionKind::MissingResult => 5,
            ExceptionKind::InternalError => 6,
            ExceptionKind::ProtocolError => 7,
            ExceptionKind::InvalidTransform => 8,
            ExceptionKind::InvalidProtocol => 9,
            ExceptionKind::UnsupportedClientType => 10,
            ExceptionKind::Other(code) => code,
        }
    }

    /// The kind for a wire number.
    pub fn from_code(code: i32) -> ExceptionKind {
        match code {
            0 => ExceptionKind::Unknown,
            1 => ExceptionKind::UnknownMethod,
            2 => ExceptionKind::InvalidMessageType,
            3 => ExceptionKind::WrongMethodName,
            4 => ExceptionKind::BadSequenceId,
            5 => ExceptionKind::MissingResult,
            6 => ExceptionKind::InternalError,
            7 => ExceptionKind::ProtocolError,
            8 => ExceptionKind::InvalidTransform,
            9 => ExceptionKind::InvalidProtocol,
            10 => ExceptionKind::UnsupportedClientType,
            other => ExceptionKind::Other(other),
        }
    }
}

/// A `TApplicationException`: `{1: string message, 2: i32 type}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplicationException {
    /// The human-readable message.
    pub message: String,
    /// The type.
    pub kind: ExceptionKind,
}

impl fmt::Display for ApplicationException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (TApplicationException type {})",
            self.message,
            self.kind.code()
        )
    }
}

impl ApplicationException {
    /// An exception of `kind` with `message`.
    pub fn new(kind: ExceptionKind, message: impl Into<String>) -> Self {
        ApplicationException {
            message: message.into(),
            kind,
        }
    }

    /// The INTERNAL_ERROR exception for a proxy failure while handling `method`, worded
    /// as Finagle servers word it: `Internal error processing <method>: '<why>'`.
    pub fn internal_error(method: &str, why: &str) -> Self {
        Self::new(
            ExceptionKind::InternalError,
            format!("Internal error processing {method}: '{why}'"),
        )
    }

    /// Appends the exception struct in `protocol`.
    pub fn encode_body(&self, protocol: Protocol, dst: &mut BytesMut) {
        let mut w = Writer::new(dst, protocol);
        w.struct_begin();
        w.field(TType::String, 1);
        w.binary(self.message.as_bytes());
        w.field(TType::I32, 2);
        w.i32(self.kind.code());
        w.struct_end();
    }

    /// Reads the exception struct from `body` (which must hold exactly it). Missing
    /// fields read as an empty message and type UNKNOWN; unknown fields are skipped.
    pub fn decode_body(body: &[u8], protocol: Protocol) -> Result<Self, ThriftError> {
        let mut r = Reader::new(body, protocol, Limits::default());
        let mut exc = ApplicationException::new(ExceptionKind::Unknown, "");
        r.struct_begin();
        while let Some(field) = r.field()? {
            match (field.id, field.ttype) {
                (1, TType::String) => {
                    exc.message = String::from_utf8_lossy(r.binary()?).into_owned();
                }
                (2, TType::I32) => exc.kind = ExceptionKind::from_code(r.i32()?),
                _ => r.skip_field(&field)?,
            }
        }
        if r.pos() != body.len() {
            return Err(ThriftError::TrailingBytes(body.len() - r.pos()));
        }
        Ok(exc)
    }

    /// Reads the exception carried by an EXCEPTION message.
    pub fn from_message(msg: &Message) -> Result<Self, ThriftError> {
        if msg.header().kind != MessageKind::Exception {
            return Err(ThriftError::UnexpectedKind {
                expected: "an EXCEPTION",
                found: msg.header().kind,
            });
        }
        Self::decode_body(msg.body(), msg.header().protocol)
    }
}

/// The EXCEPTION message answering `request` with `exc`: same name, seqid and protocol.
/// The caller must not send it for a ONEWAY request.
pub fn exception_reply(request: &MessageHeader, exc: &ApplicationException) -> Message {
    let mut body = BytesMut::with_capacity(16 + exc.message.len());
    exc.encode_body(request.protocol, &mut body);
    Message::from_header_and_body(request.with_kind(MessageKind::Exception), &body)
}

/// The INTERNAL_ERROR reply for a proxy failure (`why`) while handling `request`.
pub fn internal_error_reply(request: &MessageHeader, why: &str) -> Message {
    exception_reply(
        request,
        &ApplicationException::internal_error(&request.name, why),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_reference_vector() {
        let req = MessageHeader::new("ping", MessageKind::Call, 7, Protocol::Binary);
        let exc = ApplicationException::new(ExceptionKind::InternalError, "no route");
        let msg = exception_reply(&req, &exc);
        #[rustfmt::skip]
        let want = [
            0x80, 0x01, 0x00, 0x03, 0, 0, 0, 4, b'p', b'i', b'n', b'g', 0, 0, 0, 7,
            0x0b, 0, 1, 0, 0, 0, 8, b'n', b'o', b' ', b'r', b'o', b'u', b't', b'e',
            0x08, 0, 2, 0, 0, 0, 6,
            0x00,
        ];
        assert_eq!(&msg.bytes()[..], &want[..]);
        assert_eq!(ApplicationException::from_message(&msg).unwrap(), exc);
    }

    #[test]
    fn compact_reference_vector() {
        let req = MessageHeader::new("ping", MessageKind::Call, 7, Protocol::Compact);
        let exc = ApplicationException::new(ExceptionKind::InternalError, "no route");
        let msg = exception_reply(&req, &exc);
        #[rustfmt::skip]
        let want = [
            0x82, 0x61, 0x07, 0x04, b'p', b'i', b'n', b'g',
            0x18, 0x08, b'n', b'o', b' ', b'r', b'o', b'u', b't', b'e',
            0x15, 0x0c,
            0x00,
        ];
        assert_eq!(&msg.bytes()[..], &want[..]);
        assert_eq!(ApplicationException::from_message(&msg).unwrap(), exc);
    }

    #[test]
    fn non_strict_requests_get_non_strict_replies() {
        let req = MessageHeader::new("Calc:add", MessageKind::Call, -3, Protocol::BinaryNonStrict);
        let msg = internal_error_reply(&req, "NoBrokersAvailable: /svc/Calc");
        assert_eq!(
            msg.header(),
            &MessageHeader::new(
                "Calc:add",
                MessageKind::Exception,
                -3,
                Protocol::BinaryNonStrict
            )
        );
        assert_eq!(&msg.bytes()[..4], &[0, 0, 0, 8]);
        let exc = ApplicationException::from_message(&msg).unwrap();
        assert_eq!(exc.kind, ExceptionKind::InternalError);
        assert_eq!(
            exc.message,
            "Internal error processing Calc:add: 'NoBrokersAvailable: /svc/Calc'"
        );
        // The message parses back whole.
        let again = Message::parse(msg.bytes().clone(), &Limits::default()).unwrap();
        assert_eq!(again, msg);
    }

    #[test]
    fn codes_round_trip() {
        for code in -1..=11 {
            assert_eq!(ExceptionKind::from_code(code).code(), code);
        }
        assert_eq!(ExceptionKind::from_code(6), ExceptionKind::InternalError);
        assert_eq!(ExceptionKind::from_code(11), ExceptionKind::Other(11));
    }

    #[test]
    fn decoding_skips_unknown_fields_and_tolerates_missing_ones() {
        // binary {3: i64 9, 2: i32 1}
        let body = [
            0x0a, 0, 3, 0, 0, 0, 0, 0, 0, 0, 9, 0x08, 0, 2, 0, 0, 0, 1, 0,
        ];
        let exc = ApplicationException::decode_body(&body, Protocol::Binary).unwrap();
        assert_eq!(
            exc,
            ApplicationException::new(ExceptionKind::UnknownMethod, "")
        );
        assert!(ApplicationException::decode_body(&body[..5], Protocol::Binary).is_err());
        let reply = Message::from_header_and_body(
            MessageHeader::new("ping", MessageKind::Reply, 1, Protocol::Binary),
            &[0],
        );
        assert!(matches!(
            ApplicationException::from_message(&reply),
            Err(ThriftError::UnexpectedKind { .. })
        ));
    }
}
