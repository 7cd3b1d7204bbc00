//! Service discovery: the namers that bind names to live endpoint sets.
//!
//! Each namer keeps a snapshot that the naming engine reads synchronously (see
//! [`crate::naming::Namer`]); a watch actor refreshes it in the background. Every
//! published change bumps the shared [`Epoch`], so cached bindings know to re-bind once
//! instead of re-binding on every request.

pub mod fs;
pub mod k8s;
pub mod transformers;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A counter of discovery changes, shared by every namer and binding cache of a process.
#[derive(Clone, Debug, Default)]
pub struct Epoch(Arc<AtomicU64>);

impl Epoch {
    /// A new counter at zero.
    pub fn new() -> Self {
        Epoch::default()
    }

    /// The current value; a binding computed at an older value may be stale.
    pub fn current(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Records that some namer published a change.
    pub fn bump(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}
