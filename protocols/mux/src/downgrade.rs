//! Telling Mux from plain Thrift on a ThriftMux port, so Finagle ThriftMux clients and
//! plain framed-Thrift clients can share it.
//!
//! Both start with a 4-byte big-endian length. The first frame is read as a Mux message,
//! as a ThriftMux server must: if it decodes, the connection speaks Mux, except that a
//! framed strict-binary Thrift CALL (`80 01 00 01`) or ONEWAY (`80 01 00 04`) reads as
//! an Rerr of tag 65537 or 65540, which can never open a Mux session, so those are
//! Thrift. Compact (`82 ..`, type −126) and non-strict binary (`00 ..`, type 0) fail to
//! decode and are Thrift too. Unframed Thrift cannot be framed at all (its first four
//! bytes read as a length of 2^31 or more); it is recognised and reported instead of
//! waiting for bytes that never come.

use thiserror::Error;

use crate::codec::{Frame, MIN_FRAME_SIZE, Message, frame_len, type_name};

/// What the first bytes of a connection are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detected {
    /// Not enough bytes to tell yet (the whole first frame is needed).
    NeedMore,
    /// A Mux session.
    Mux,
    /// Framed Thrift (TFramedTransport), any protocol.
    FramedThrift,
    /// Unframed (buffered) Thrift, strict binary or compact.
    UnframedThrift,
}

/// The first bytes are neither Mux nor Thrift.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DetectError {
    /// The length prefix is larger than the port accepts.
    #[error(
        "first frame length {size} exceeds the limit of {max} bytes (neither Mux nor framed Thrift)"
    )]
    TooLarge {
        /// The length read.
        size: u32,
        /// The limit.
        max: u32,
    },
    /// The length prefix is too small to hold a Mux or Thrift message.
    #[error("first frame length {size} is too small for Mux or Thrift")]
    TooSmall {
        /// The length read.
        size: u32,
    },
}

/// Looks at the first bytes received on a ThriftMux port. `max_frame` bounds the first
/// frame's length (the bytes the caller is willing to buffer before deciding).
pub fn detect(buf: &[u8], max_frame: u32) -> Result<Detected, DetectError> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(Detected::NeedMore);
    };
    let size = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if is_unframed_thrift(prefix) {
        return Ok(Detected::UnframedThrift);
    }
    if size < MIN_FRAME_SIZE {
        return Err(DetectError::TooSmall { size });
    }
    let total = match frame_len(buf, max_frame) {
        Ok(Some(total)) => total,
        Ok(None) => return Ok(Detected::NeedMore),
        Err(_) => {
            return Err(DetectError::TooLarge {
                size,
                max: max_frame,
            });
        }
    };
    let Some(first) = buf.get(4..total) else {
        return Ok(Detected::NeedMore);
    };
    let kind = first[0] as i8;
    let tag = (u32::from(first[1]) << 16) | (u32::from(first[2]) << 8) | u32::from(first[3]);
    let frame = Frame::new(kind, tag, bytes::Bytes::copy_from_slice(&first[4..]));
    if frame.more_follows() {
        // The first fragment of a longer message: a Mux type means Mux.
        return Ok(if type_name(kind) == "unknown" {
            Detected::FramedThrift
        } else {
            Detected::Mux
        });
    }
    Ok(match Message::decode(frame) {
        Ok(Message::Rerr {
            tag: 0x01_0001 | 0x01_0004,
            ..
        }) => Detected::FramedThrift,
        Ok(_) => Detected::Mux,
        Err(_) => Detected::FramedThrift,
    })
}

/// Whether four bytes start an unframed strict-binary (`80 01 00 0T`) or compact
/// (`82 T<<5|1`) Thrift message of type T in 1..=4.
fn is_unframed_thrift(p: &[u8]) -> bool {
    match p {
        [0x80, 0x01, 0x00, t] => (1..=4).contains(t),
        [0x82, b, ..] => b & 0x1f == 1 && (1..=4).contains(&(b >> 5)),
        _ => false,
    }
}
