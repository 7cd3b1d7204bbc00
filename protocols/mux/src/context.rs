//! The broadcast contexts Finagle peers put in Tdispatch and Rdispatch, so the router
//! can carry deadlines, retries and failure flags across a Mux hop without knowing the
//! byte layouts.
//!
//! Contexts are (key, value) byte pairs; keys are Finagle's names. Values this module
//! cannot read are left alone by callers (they travel as they are).

use bytes::{BufMut, Bytes, BytesMut};

/// Deadline: `timestamp_ns:8 deadline_ns:8` (i64 BE, nanoseconds since the epoch).
pub const DEADLINE: &str = "com.twitter.finagle.Deadline";
/// Trace ids: `span:8 parent:8 trace:8 flags:8 [trace_high:8]`.
pub const TRACE_CONTEXT: &str = "com.twitter.finagle.tracing.TraceContext";
/// The calling client's name, UTF-8 (empty = none).
pub const CLIENT_ID: &str = "com.twitter.finagle.thrift.ClientIdContext";
/// Requeue attempt number, i32 BE.
pub const RETRIES: &str = "com.twitter.finagle.Retries";
/// Present (empty) on a backup request.
pub const BACKUP_REQUEST: &str = "com.twitter.finagle.BackupRequest";
/// ThriftMux request application headers.
pub const REQUEST_HEADERS: &str = "com.twitter.finagle.thrift.Request.headers";
/// ThriftMux response application headers.
pub const RESPONSE_HEADERS: &str = "com.twitter.finagle.thrift.Response.headers";
/// Failure flags of an Rdispatch, u64 BE (see [`MuxFailure`]).
pub const MUX_FAILURE: &str = "MuxFailure";

/// The value of the first context named `key`.
pub fn find<'a>(contexts: &'a [(Bytes, Bytes)], key: &str) -> Option<&'a Bytes> {
    contexts
        .iter()
        .find(|(k, _)| k.as_ref() == key.as_bytes())
        .map(|(_, v)| v)
}

/// The `MuxFailure` flags of a failed response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MuxFailure(pub u64);

impl MuxFailure {
    /// Safe to send again.
    pub const RETRYABLE: u64 = 1;
    /// Not attempted (nacked).
    pub const REJECTED: u64 = 2;
    /// Must not be sent again.
    pub const NON_RETRYABLE: u64 = 4;

    /// Reads a context value (8 bytes).
    pub fn decode(value: &[u8]) -> Option<Self> {
        let b: [u8; 8] = value.try_into().ok()?;
        Some(MuxFailure(u64::from_be_bytes(b)))
    }

    /// The context value.
    pub fn encode(self) -> Bytes {
        Bytes::copy_from_slice(&self.0.to_be_bytes())
    }

    /// The (key, value) pair to put in a response's contexts.
    pub fn context(self) -> (Bytes, Bytes) {
        (Bytes::from_static(MUX_FAILURE.as_bytes()), self.encode())
    }

    /// Whether the request may be sent elsewhere: Retryable or Rejected, and not
    /// NonRetryable.
    pub fn is_retryable(self) -> bool {
        self.0 & Self::NON_RETRYABLE == 0 && self.0 & (Self::RETRYABLE | Self::REJECTED) != 0
    }
}

/// A request deadline as Finagle sends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    /// When the deadline was set, nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    /// When the request expires, nanoseconds since the Unix epoch.
    pub deadline_ns: i64,
}

impl Deadline {
    /// Reads a context value (16 bytes).
    pub fn decode(value: &[u8]) -> Option<Self> {
        let b: [u8; 16] = value.try_into().ok()?;
        let (ts, dl) = b.split_at(8);
        Some(Deadline {
            timestamp_ns: i64::from_be_bytes(ts.try_into().ok()?),
            deadline_ns: i64::from_be_bytes(dl.try_into().ok()?),
        })
    }

    /// The context value.
    pub fn encode(self) -> Bytes {
        let mut b = BytesMut::with_capacity(16);
        b.put_i64(self.timestamp_ns);
        b.put_i64(self.deadline_ns);
        b.freeze()
    }
}

/// Reads a `com.twitter.finagle.Retries` value.
pub fn decode_retries(value: &[u8]) -> Option<i32> {
    Some(i32::from_be_bytes(value.try_into().ok()?))
}

/// A `com.twitter.finagle.Retries` value.
pub fn encode_retries(attempt: i32) -> Bytes {
    Bytes::copy_from_slice(&attempt.to_be_bytes())
}
