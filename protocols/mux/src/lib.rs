//! Mux, the session protocol under ThriftMux, for Plexus: the wire format and the
//! client and server session state machines, without I/O.
//!
//! Plexus carries Thrift between two Plexus peers over one multiplexed ThriftMux
//! session, and serves Finagle ThriftMux clients and servers. This crate is the protocol
//! part of that, independent of sockets, runtimes and routing:
//!
//! - [`codec`]: frames ↔ bytes, every message type with its body, fragments and their
//!   reassembly under size limits; Finagle's legacy type numbers accepted and sent;
//! - [`session`]: [`ClientSession`] and [`ServerSession`], sans-I/O state machines for
//!   one connection (handshake with the `mux-framer` and `tls` headers, request tags,
//!   pings, drains, discards, leases), fed bytes and the current time and giving bytes
//!   to write and events;
//! - [`downgrade`]: how a ThriftMux port tells plain framed Thrift from Mux on the first
//!   frame;
//! - [`context`]: the well-known Tdispatch/Rdispatch contexts (deadline, retries,
//!   `MuxFailure`, …).
//!
//! The router wraps a session in a tokio task: read bytes → [`ClientSession::receive`],
//! then drain `poll_event` and write what `poll_transmit` yields; sleep until
//! `poll_timeout` and call `handle_timeout`.

pub mod codec;
pub mod context;
pub mod downgrade;
pub mod session;

pub use codec::{DecodeError, EncodeError, Frame, Limits, Message, Reply, Request, Response};
pub use downgrade::{Detected, detect};
pub use session::{
    ClientEvent, ClientSession, Negotiated, ServerEvent, ServerSession, SessionConfig,
    SessionError, TlsPolicy,
};
