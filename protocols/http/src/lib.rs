//! HTTP as Plexus routers speak it: what is specific to HTTP/1.1 (and, later, HTTP/2)
//! and nothing else.
//!
//! The router's phases (identify, bind, choose, service and client stacks) are
//! protocol-independent and live in the main crate; this crate supplies the HTTP pieces
//! they call: identifiers that turn a request into name segments, the proxy header
//! rules (hop-by-hop headers, `Via`, absolute-form requests, Linkerd's `l5d-*`
//! headers), and the error responses Plexus generates. It knows nothing about dtabs or
//! namers, so it can be tested on plain `http` values.

pub mod error;
pub mod forwarded;
pub mod headers;
pub mod identify;

pub use error::{ErrorResponse, encode_l5d_err};
pub use identify::{Identified, Identifier, IdentifyError, NameSpec};
