//! Delegation tables: ordered rewrite rules `prefix => tree`, and their lookup.
//!
//! Precedence is positional, not longest-prefix: a lookup collects every matching entry,
//! last first, into one alternation. That is what makes a per-request override appended
//! at the end of a dtab win over the router's base dtab.

use std::fmt;
use std::sync::Arc;

use super::path::Path;
use super::prefix::Prefix;
use super::tree::NameTree;

/// One dtab entry, `prefix => dst`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dentry {
    /// What the entry matches.
    pub prefix: Prefix,
    /// What a matching path is rewritten to (the residual is appended to every leaf).
    pub dst: NameTree<Path>,
}

impl Dentry {
    /// Builds an entry.
    pub fn new(prefix: Prefix, dst: NameTree<Path>) -> Self {
        Dentry { prefix, dst }
    }

    /// Parses one entry (`/svc => /#/io.l5d.fs`).
    pub fn read(s: &str) -> Result<Self, super::ParseError> {
        super::parse::read_dentry(s)
    }

    /// If the prefix matches, the destination with the residual appended to every leaf.
    pub fn rewrite(&self, path: &Path) -> Option<NameTree<Path>> {
        if !self.prefix.matches(path) {
            return None;
        }
        let residual = path.drop(self.prefix.len());
        Some(if residual.is_empty() {
            self.dst.clone()
        } else {
            self.dst.map(&mut |p| p.concat(&residual))
        })
    }

    /// The canonical text form, `prefix=>tree`.
    pub fn show(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Dentry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=>{}", self.prefix, self.dst)
    }
}

/// A delegation table. Cloning is cheap: the entries are shared.
#[derive(Clone, Default, PartialEq)]
pub struct Dtab {
    entries: Arc<[Dentry]>,
}

impl Dtab {
    /// Builds a dtab from its entries, in order.
    pub fn new(entries: Vec<Dentry>) -> Self {
        Dtab {
            entries: entries.into(),
        }
    }

    /// The empty dtab.
    pub fn empty() -> Self {
        Dtab::default()
    }

    /// Parses dtab text: entries separated by `;`, a trailing `;` allowed.
    pub fn read(s: &str) -> Result<Self, super::ParseError> {
        super::parse::read_dtab(s)
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[Dentry] {
        &self.entries
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `self ++ other`: the entries of `self` followed by those of `other` (later wins).
    pub fn concat(&self, other: &Dtab) -> Dtab {
        if other.is_empty() {
            return self.clone();
        }
        if self.is_empty() {
            return other.clone();
        }
        Dtab {
            entries: self
                .entries
                .iter()
                .chain(other.entries.iter())
                .cloned()
                .collect(),
        }
    }

    /// Every matching entry's rewrite, last entry first: `Neg` when none matches, the
    /// rewrite itself when one does, otherwise their `Alt` (not simplified).
    pub fn lookup(&self, path: &Path) -> NameTree<Path> {
        let mut matches: Vec<NameTree<Path>> = self
            .entries
            .iter()
            .rev()
            .filter_map(|e| e.rewrite(path))
            .collect();
        match matches.len() {
            0 => NameTree::Neg,
            1 => matches.pop().unwrap_or(NameTree::Neg),
            _ => NameTree::Alt(matches),
        }
    }

    /// The canonical text form: entries joined by `;`, no spaces, no trailing `;`.
    pub fn show(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Dtab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Dtab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dtab({self})")
    }
}

impl std::str::FromStr for Dtab {
    type Err = super::ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Dtab::read(s)
    }
}
