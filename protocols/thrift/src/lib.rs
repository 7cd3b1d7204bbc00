//! Thrift as Plexus routers carry it: a sans-I/O codec that finds message boundaries and
//! reads just enough of each message to route, answer and classify it, without the IDL.
//!
//! A Thrift router forwards bytes; it never transcodes them. What it must know about a
//! message is small: its header (method name, type, seqid, protocol), where it ends, and
//! for replies whether they report success. This crate provides exactly that, for strict
//! and old non-strict binary and for compact protocol, over framed (4-byte length) and
//! unframed ("buffered") transports:
//!
//! * [`header`] reads a message header without touching the body;
//! * [`skip`] walks a struct with a resumable state machine under [`Limits`], which is the
//!   only way to find the end of an unframed message;
//! * [`framing`] turns a byte buffer into whole [`Message`]s and back;
//! * [`exception`] builds the `TApplicationException` replies a proxy sends for its own
//!   failures, with the request's name, seqid and protocol;
//! * [`mod@classify`] tells success, declared exception and application exception apart;
//! * [`name`] splits `service:method` names and forms the Dst path segments the way
//!   Linkerd 1.x's thrift router does;
//! * [`ttwitter`] speaks Finagle's TTwitter upgrade (`__can__finagle__trace__v3__`) and its
//!   request and response header structs.
//!
//! Nothing here does I/O or spawns tasks: callers hand in bytes and get decisions back, so
//! every piece is tested on byte vectors. Nothing panics on input from the network, and no
//! allocation grows with a size the peer merely declares.

pub mod classify;
pub mod error;
pub mod exception;
pub mod framing;
pub mod header;
pub mod name;
pub mod skip;
pub mod ttwitter;
mod wire;

pub use classify::{ReplyClass, classify};
pub use error::ThriftError;
pub use exception::{ApplicationException, ExceptionKind, exception_reply, internal_error_reply};
pub use framing::{Decoder, Message, decode_frame, encode, encode_frame};
pub use header::{HeaderRead, MessageHeader, MessageKind, Protocol, read_header};
pub use name::{dst_segments, split_multiplexed};
pub use skip::{Skip, SkipError, SkipErrorKind, Skipper};

/// Bounds on what a peer can make the codec buffer or walk. Exceeding one is an error
/// (the connection should be closed), never a hang or an unbounded allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of structs and containers, the top-level struct counting as one.
    pub max_depth: usize,
    /// Largest message, header included (and, for framed transport, the largest frame).
    pub max_message_bytes: usize,
    /// Most elements one list, set or map may declare.
    pub max_container_elements: usize,
    /// Longest method name in a message header.
    pub max_name_bytes: usize,
}

impl Limits {
    /// Default nesting limit, the Apache Thrift libraries' recursion limit.
    pub const DEFAULT_MAX_DEPTH: usize = 64;
    /// Default message size limit: 16 MiB.
    pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
    /// Default container size limit: as many elements as the default message limit could
    /// hold at one byte each, so it only bites when lowered.
    pub const DEFAULT_MAX_CONTAINER_ELEMENTS: usize = Self::DEFAULT_MAX_MESSAGE_BYTES;
    /// Default method name limit: 64 KiB.
    pub const DEFAULT_MAX_NAME_BYTES: usize = 64 * 1024;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: Self::DEFAULT_MAX_DEPTH,
            max_message_bytes: Self::DEFAULT_MAX_MESSAGE_BYTES,
            max_container_elements: Self::DEFAULT_MAX_CONTAINER_ELEMENTS,
            max_name_bytes: Self::DEFAULT_MAX_NAME_BYTES,
        }
    }
}
