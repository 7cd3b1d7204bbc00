//! Classifying a Thrift reply without the IDL, so success-rate metrics, failure accrual
//! and retry decisions can see application failures (Linkerd 1.x counted every reply,
//! even an EXCEPTION, as a success).
//!
//! An EXCEPTION message is a `TApplicationException`. A REPLY carries the method's result
//! struct, which sets exactly one field: id 0 (`success`) for a normal return, or the id
//! of one of the exceptions the IDL declares in `throws`; a `void` method that returned
//! normally sends an empty struct. So the first field header of the reply body tells
//! which, a few bytes past the message header.

use crate::Limits;
use crate::error::ThriftError;
use crate::framing::Message;
use crate::header::{MessageKind, Protocol};
use crate::wire::Reader;

/// What a reply says about the call it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplyClass {
    /// A normal return (field 0, or nothing for a `void` method).
    Success,
    /// One of the method's declared exceptions, by its field id in the result struct.
    DeclaredException {
        /// The field id (≥ 1 from any IDL compiler).
        field_id: i16,
    },
    /// An EXCEPTION message: a `TApplicationException` from the server (or a proxy).
    ApplicationException,
}

impl ReplyClass {
    /// Whether the call succeeded.
    pub fn is_success(self) -> bool {
        self == ReplyClass::Success
    }
}

/// Classifies a REPLY or EXCEPTION message; a request is an error.
pub fn classify(msg: &Message) -> Result<ReplyClass, ThriftError> {
    let h = msg.header();
    classify_body(h.kind, h.protocol, msg.body())
}

/// Classifies a reply from its message type, protocol and body bytes (only the first
/// field header is read).
pub fn classify_body(
    kind: MessageKind,
    protocol: Protocol,
    body: &[u8],
) -> Result<ReplyClass, ThriftError> {
    match kind {
        MessageKind::Exception => Ok(ReplyClass::ApplicationException),
        MessageKind::Call | MessageKind::Oneway => Err(ThriftError::UnexpectedKind {
            expected: "a REPLY or an EXCEPTION",
            found: kind,
        }),
        MessageKind::Reply => {
            let mut r = Reader::new(body, protocol, Limits::default());
            r.struct_begin();
            Ok(match r.field()? {
                None => ReplyClass::Success,
                Some(f) if f.id == 0 => ReplyClass::Success,
                Some(f) => ReplyClass::DeclaredException { field_id: f.id },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn class(wire: &'static [u8]) -> Result<ReplyClass, ThriftError> {
        classify(&Message::parse(
            Bytes::from_static(wire),
            &Limits::default(),
        )?)
    }

    #[test]
    fn reference_vectors() {
        // binary REPLY success "ok"
        assert_eq!(
            class(&[
                0x80, 0x01, 0, 2, 0, 0, 0, 4, b'p', b'i', b'n', b'g', 0, 0, 0, 1, 0x0b, 0, 0, 0, 0,
                0, 2, b'o', b'k', 0
            ]),
            Ok(ReplyClass::Success)
        );
        // binary REPLY void
        assert_eq!(
            class(&[
                0x80, 0x01, 0, 2, 0, 0, 0, 4, b'p', b'i', b'n', b'g', 0, 0, 0, 1, 0
            ]),
            Ok(ReplyClass::Success)
        );
        // binary REPLY declared exception field 1
        assert_eq!(
            class(&[
                0x80, 0x01, 0, 2, 0, 0, 0, 4, b'p', b'i', b'n', b'g', 0, 0, 0, 1, 0x0c, 0, 1, 0x0b,
                0, 1, 0, 0, 0, 3, b'b', b'a', b'd', 0, 0
            ]),
            Ok(ReplyClass::DeclaredException { field_id: 1 })
        );
        // compact REPLY success (long-form field 0) and declared exception
        assert_eq!(
            class(&[
                0x82, 0x41, 1, 4, b'p', b'i', b'n', b'g', 0x08, 0x00, 2, b'o', b'k', 0
            ]),
            Ok(ReplyClass::Success)
        );
        assert_eq!(
            class(&[
                0x82, 0x41, 1, 4, b'p', b'i', b'n', b'g', 0x1c, 0x18, 3, b'b', b'a', b'd', 0, 0
            ]),
            Ok(ReplyClass::DeclaredException { field_id: 1 })
        );
        // compact EXCEPTION
        assert_eq!(
            class(&[
                0x82, 0x61, 7, 4, b'p', b'i', b'n', b'g', 0x18, 8, b'n', b'o', b' ', b'r', b'o',
                b'u', b't', b'e', 0x15, 0x0c, 0
            ]),
            Ok(ReplyClass::ApplicationException)
        );
    }

    #[test]
    fn declared_exceptions_with_large_ids_in_compact() {
        // field 20 (delta 20 > 15: long form)
        let body = [0x0c, 0x28, 0x00, 0x00];
        assert_eq!(
            classify_body(MessageKind::Reply, Protocol::Compact, &body),
            Ok(ReplyClass::DeclaredException { field_id: 20 })
        );
        assert!(!ReplyClass::DeclaredException { field_id: 20 }.is_success());
    }

    #[test]
    fn requests_and_garbage_are_errors() {
        assert!(matches!(
            classify_body(MessageKind::Call, Protocol::Binary, &[0]),
            Err(ThriftError::UnexpectedKind { .. })
        ));
        assert!(classify_body(MessageKind::Reply, Protocol::Binary, &[]).is_err());
        assert!(classify_body(MessageKind::Reply, Protocol::Binary, &[0x0b, 0]).is_err());
        assert!(classify_body(MessageKind::Reply, Protocol::Binary, &[0x01, 0, 0]).is_err());
    }
}
