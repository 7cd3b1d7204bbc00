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
