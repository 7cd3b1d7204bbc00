//! Finagle's naming model, exactly as Linkerd 1.x users know it.
//!
//! Requests are routed by name: an identifier turns a request into a path such as
//! `/svc/hello`, a dtab rewrites it, and namers bind it to endpoints. This module holds
//! the whole model (paths, dtabs, name trees, lookup, binding, the delegator's
//! explanation and the `/$/` system namers) as plain data and functions: no I/O, no
//! async, no clocks. Discovery plugs in through the [`Namer`] trait by publishing
//! snapshots; everything here can therefore be re-run whenever a snapshot changes and
//! tested in microseconds. The exact semantics, quirks included, are Finagle's.

mod addr;
mod bind;
mod delegate;
mod dtab;
mod header;
mod namer;
mod parse;
mod path;
mod prefix;
mod system;
mod transform;
mod tree;
mod weight;

pub use addr::{Addr, Address, Bound, Name, WEIGHT_META_KEY};
pub use bind::{MAX_DEPTH, Namers, choose, shares};
pub use delegate::{DelegateError, DelegateTree, addr_json, bound_json};
pub use dtab::{Dentry, Dtab};
pub use header::{CTX_DTAB_HEADER, DTAB_HEADER, HeaderDtabError, ctx_dtab_value, local_dtab};
pub use namer::{Activity, LiteralResolver, Namer, NamingError, Resolve, StaticNamer};
pub use parse::ParseError;
pub use path::{Label, Path};
pub use prefix::{Prefix, PrefixElem};
pub use system::{SYSTEM_NAMER_CLASSES, SystemNamer};
pub use transform::{Transformer, map_leaves, transform_all, transform_explanation};
pub use tree::{NameTree, Weighted};

/// Parses a name tree (`/a & 0.5*/b | ~`).
pub fn read_tree(s: &str) -> Result<NameTree<Path>, ParseError> {
    parse::read_tree(s)
}
