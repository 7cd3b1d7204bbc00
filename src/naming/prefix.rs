//! Dentry prefixes: paths whose elements may be the `*` wildcard.
//!
//! A prefix of k elements matches a path of at least k elements when every prefix
//! element is `*` or byte-equal to the path's element at that position; what is left of
//! the path is the residual that a dentry appends to its destination.

use std::fmt;

use super::path::{Label, Path, write_label};

/// One element of a [`Prefix`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PrefixElem {
    /// A literal label (an escaped `\x2a` is a literal `*`).
    Label(Label),
    /// `*`: matches any one element.
    Any,
}

/// The left-hand side of a dentry, such as `/svc/*/web`.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    elems: Vec<PrefixElem>,
}

impl Prefix {
    /// Builds a prefix from its elements.
    pub fn new(elems: Vec<PrefixElem>) -> Self {
        Prefix { elems }
    }

    /// Parses prefix syntax (`/a/*/b`).
    pub fn read(s: &str) -> Result<Self, super::ParseError> {
        super::parse::read_prefix(s)
    }

    /// The elements, in order.
    pub fn elems(&self) -> &[PrefixElem] {
        &self.elems
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.elems.len()
    }

    /// Whether this is the empty prefix `/`, which matches every path.
    pub fn is_empty(&self) -> bool {
        self.elems.is_empty()
    }

    /// Whether the prefix matches `path`; if so, the residual is `path.drop(self.len())`.
    pub fn matches(&self, path: &Path) -> bool {
        path.len() >= self.elems.len()
            && self.elems.iter().zip(path.elems()).all(|(p, e)| match p {
                PrefixElem::Any => true,
                PrefixElem::Label(l) => l == e,
            })
    }

    /// The canonical text form.
    pub fn show(&self) -> String {
        self.to_string()
    }
}

impl From<&Path> for Prefix {
    fn from(path: &Path) -> Self {
        Prefix {
            elems: path
                .elems()
                .iter()
                .cloned()
                .map(PrefixElem::Label)
                .collect(),
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.elems.is_empty() {
            return f.write_str("/");
        }
        for e in &self.elems {
            f.write_str("/")?;
            match e {
                PrefixElem::Any => f.write_str("*")?,
                PrefixElem::Label(l) => write_label(f, l)?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Prefix({self})")
    }
}
