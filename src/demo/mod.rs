//! `plexus demo`: the Kubernetes tutorials on one machine.
//!
//! Starts a three-node cluster simulation on loopback: the simulated Kubernetes API
//! ([`crate::sim`], a development tool, never a real cluster), one `plexus run` per node
//! with the tutorial's DaemonSet configuration (only the addresses differ), and the
//! tutorial's hello, world-v1, world-v2 and api apps spread over the nodes
//! ([`layout`]). It prints a walk-through with real answers, then keeps everything
//! running until Ctrl-C (or SIGTERM), when it stops every process it started and frees
//! every port. A second demo while one runs, or a port already taken, is refused with a
//! message that says which ([`run`]).

pub mod layout;
mod run;

pub use layout::Layout;
pub use run::{DemoOptions, run};

/// The demo's Thrift call, `Greeter.greet("plexus")` with `seqid`, in strict binary, as
/// `helloworld-client -protocol thrift` makes it. The walk-through sends it to the
/// thrift-hello app, and `cargo bench --bench mesh` loads the Thrift routers with it.
pub fn greet_call(seqid: i32) -> plexus_thrift::Message {
    use plexus_thrift::{Message, MessageHeader, MessageKind, Protocol};
    let name = b"plexus";
    // Field 1, a string: type 11, id 1, length, bytes; then the struct's stop byte.
    let mut args = vec![0x0b, 0x00, 0x01];
    args.extend_from_slice(&(name.len() as u32).to_be_bytes());
    args.extend_from_slice(name);
    args.push(0);
    Message::from_header_and_body(
        MessageHeader::new("greet", MessageKind::Call, seqid, Protocol::Binary),
        &args,
    )
}
