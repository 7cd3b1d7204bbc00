//! The one error type of the Thrift codec, so a router can log a clear reason and decide
//! between answering with a `TApplicationException` (the header was readable) and just
//! closing the connection.

use crate::header::{MessageHeader, MessageKind};
use crate::skip::SkipError;

/// Why bytes could not be read (or written) as Thrift. Every variant means the stream is
/// out of sync: the connection should be closed after, at most, an error reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ThriftError {
    /// The first bytes are recognisably something else.
    #[error("not a Thrift message: {0}")]
    NotThrift(&'static str),
    /// A strict binary header whose version word is not `0x8001`.
    #[error("unsupported binary protocol version {0:#06x}")]
    BadVersion(u16),
    /// A compact header whose version is not 1.
    #[error("unsupported compact protocol version {0}")]
    BadCompactVersion(u8),
    /// A message type outside CALL (1), REPLY (2), EXCEPTION (3), ONEWAY (4).
    #[error("invalid message type {0}")]
    BadMessageType(u8),
    /// A method name length that is negative or above [`crate::Limits::max_name_bytes`].
    #[error("method name length {len} is outside 0..={max}")]
    NameTooLong {
        /// The declared length.
        len: i64,
        /// The limit in force.
        max: usize,
    },
    /// A method name that is not UTF-8.
    #[error("method name is not UTF-8")]
    NameNotUtf8,
    /// A varint longer than its type allows.
    #[error("malformed varint in the message header")]
    BadVarint,
    /// A frame length with the sign bit set.
    #[error("negative frame length {0}")]
    NegativeFrameLength(i32),
    /// A frame length of zero: a frame always holds a message.
    #[error("empty frame")]
    EmptyFrame,
    /// A frame length above [`crate::Limits::max_message_bytes`].
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The declared length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// A message header (or header and the body's first byte) that does not fit in the
    /// frame holding it.
    #[error("a frame of {0} bytes is too short for the message it starts")]
    ShortFrame(usize),
    /// A message whose header was read but whose body is malformed or too large; the
    /// header is kept so the caller can answer with a `TApplicationException`.
    #[error("malformed body of {} (seqid {}): {error}", header.name, header.seqid)]
    Body {
        /// The message's header.
        header: Box<MessageHeader>,
        /// What is wrong with the body.
        error: SkipError,
    },
    /// A malformed struct outside a message body (TTwitter headers, a struct read whole).
    #[error("malformed struct: {0}")]
    Malformed(SkipError),
    /// Bytes that should hold a whole value end early.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// Bytes left over after a message that should fill its buffer exactly.
    #[error("{0} unexpected bytes after the message")]
    TrailingBytes(usize),
    /// A message of the wrong type for the operation.
    #[error("expected {expected}, got a {found} message")]
    UnexpectedKind {
        /// What the operation accepts.
        expected: &'static str,
        /// What it got.
        found: MessageKind,
    },
    /// A string field that must be UTF-8 is not.
    #[error("field {0} is not UTF-8")]
    NotUtf8(&'static str),
    /// A TTwitter `dest` that is not a Finagle path.
    #[error("invalid TTwitter dest {dest:?}: {why}")]
    BadDest {
        /// The dest as received.
        dest: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A message too large to write in a 4-byte frame length.
    #[error("a message of {0} bytes cannot be framed")]
    TooLargeToFrame(usize),
}

impl ThriftError {
    /// The header of the message this error is about, when it was readable: a server can
    /// then answer with a `TApplicationException` (PROTOCOL_ERROR) before closing.
    pub fn header(&self) -> Option<&MessageHeader> {
        match self {
            ThriftError::Body { header, .. } => Some(header),
            _ => None,
        }
    }
}
