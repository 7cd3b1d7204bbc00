//! `NameTree<T>`: the values dtabs rewrite names into and namers bind them to.
//!
//! Leaves hold names (paths before binding, bound names after); `Alt` is ordered
//! fail-over, `Union` a weighted load-balancing set, and `Neg` / `Fail` / `Empty` say
//! "nothing here", "stop" and "exists but has no endpoints". Show, `simplified` and
//! `eval` follow Finagle's definitions exactly, including their corner cases.

use std::fmt;

use super::weight::format_weight;

/// A name tree; see the module documentation.
#[derive(Clone, Debug, PartialEq)]
pub enum NameTree<T> {
    /// A name.
    Leaf(T),
    /// `a | b`: the first non-negative child.
    Alt(Vec<NameTree<T>>),
    /// `w1 * a & w2 * b`: every child, weighted.
    Union(Vec<Weighted<T>>),
    /// `~`: no binding here; alternation moves on.
    Neg,
    /// `!`: binding fails here; alternation stops.
    Fail,
    /// `$`: bound, but with no endpoints.
    Empty,
}

/// A union member and its weight.
#[derive(Clone, Debug, PartialEq)]
pub struct Weighted<T> {
    /// The weight; 1.0 unless written.
    pub weight: f64,
    /// The member.
    pub tree: NameTree<T>,
}

impl<T> Weighted<T> {
    /// The weight of a union member that has none written.
    pub const DEFAULT_WEIGHT: f64 = 1.0;

    /// A member with the default weight.
    pub fn new(tree: NameTree<T>) -> Self {
        Weighted {
            weight: Self::DEFAULT_WEIGHT,
            tree,
        }
    }
}

/// What [`NameTree::eval`] found.
#[derive(Clone, Debug, PartialEq)]
enum Eval<T> {
    Neg,
    Fail,
    Leaves(Vec<T>),
}

impl<T> NameTree<T> {
    /// Maps every leaf through `f`, keeping the shape.
    pub fn map<U>(&self, f: &mut impl FnMut(&T) -> U) -> NameTree<U> {
        match self {
            NameTree::Leaf(v) => NameTree::Leaf(f(v)),
            NameTree::Alt(ts) => NameTree::Alt(ts.iter().map(|t| t.map(f)).collect()),
            NameTree::Union(ws) => NameTree::Union(
                ws.iter()
                    .map(|w| Weighted {
                        weight: w.weight,
                        tree: w.tree.map(f),
                    })
                    .collect(),
            ),
            NameTree::Neg => NameTree::Neg,
            NameTree::Fail => NameTree::Fail,
            NameTree::Empty => NameTree::Empty,
        }
    }

    /// Every leaf, depth first, left to right.
    pub fn leaves(&self) -> Vec<&T> {
        let mut out = Vec::new();
        self.collect_leaves(&mut out);
        out
    }

    fn collect_leaves<'a>(&'a self, out: &mut Vec<&'a T>) {
        match self {
            NameTree::Leaf(v) => out.push(v),
            NameTree::Alt(ts) => ts.iter().for_each(|t| t.collect_leaves(out)),
            NameTree::Union(ws) => ws.iter().for_each(|w| w.tree.collect_leaves(out)),
            NameTree::Neg | NameTree::Fail | NameTree::Empty => {}
        }
    }
}

impl<T: Clone + PartialEq> NameTree<T> {
    /// The evaluation-equivalent simplified tree (a fixpoint): `Neg` children vanish,
    /// an `Alt` stops at its first `Fail`, a `Union` drops `Neg` and `Fail` members,
    /// and single-child nodes collapse. Weights are kept as they are.
    pub fn simplified(&self) -> NameTree<T> {
        match self {
            NameTree::Alt(ts) => {
                let mut kept = Vec::with_capacity(ts.len());
                for t in ts {
                    match t.simplified() {
                        NameTree::Neg => {}
                        NameTree::Fail => {
                            kept.push(NameTree::Fail);
                            break;
                        }
                        t => kept.push(t),
                    }
                }
                match kept.len() {
                    0 => NameTree::Neg,
                    1 => kept.pop().unwrap_or(NameTree::Neg),
                    _ => NameTree::Alt(kept),
                }
            }
            NameTree::Union(ws) => {
                let mut kept: Vec<Weighted<T>> = ws
                    .iter()
                    .filter_map(|w| match w.tree.simplified() {
                        NameTree::Neg | NameTree::Fail => None,
                        tree => Some(Weighted {
                            weight: w.weight,
                            tree,
                        }),
                    })
                    .collect();
                match kept.len() {
                    0 => NameTree::Neg,
                    1 => kept.pop().map(|w| w.tree).unwrap_or(NameTree::Neg),
                    _ => NameTree::Union(kept),
                }
            }
            other => other.clone(),
        }
    }

    /// Finagle's default evaluation: `None` when the tree is negative (or fails),
    /// otherwise the set of leaf values (empty for `$`), without duplicates, in first-seen
    /// order. Alternation takes its first non-negative child and stops at a failing one;
    /// a union is every non-negative child together. Weights are ignored.
    pub fn eval(&self) -> Option<Vec<T>> {
        match self.eval_inner() {
            Eval::Leaves(mut vs) => {
                let mut seen: Vec<T> = Vec::with_capacity(vs.len());
                vs.retain(|v| {
                    let new = !seen.contains(v);
                    if new {
                        seen.push(v.clone());
                    }
                    new
                });
                Some(vs)
            }
            Eval::Neg | Eval::Fail => None,
        }
    }

    fn eval_inner(&self) -> Eval<T> {
        match self {
            NameTree::Leaf(v) => Eval::Leaves(vec![v.clone()]),
            NameTree::Empty => Eval::Leaves(Vec::new()),
            NameTree::Neg => Eval::Neg,
            NameTree::Fail => Eval::Fail,
            NameTree::Alt(ts) => {
                for t in ts {
                    match t.eval_inner() {
                        Eval::Neg => continue,
                        other => return other,
                    }
                }
                Eval::Neg
            }
            NameTree::Union(ws) => {
                let mut any = false;
                let mut out = Vec::new();
                for w in ws {
                    if let Eval::Leaves(vs) = w.tree.eval_inner() {
                        any = true;
                        out.extend(vs);
                    }
                }
                if any { Eval::Leaves(out) } else { Eval::Neg }
            }
        }
    }
}

impl<T: fmt::Display> NameTree<T> {
    /// The canonical text form (Finagle's `NameTree.show`), e.g. `/a & 0.50*/b | /c`.
    pub fn show(&self) -> String {
        self.to_string()
    }

    /// Top-level context: an `Alt`'s children separated by ` | `.
    fn fmt_top(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameTree::Union(ws) if ws.len() == 1 => ws[0].tree.fmt_top(f),
            NameTree::Alt(ts) if ts.len() == 1 => ts[0].fmt_top(f),
            NameTree::Alt(ts) => {
                for (i, t) in ts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" | ")?;
                    }
                    t.fmt_operand(f)?;
                }
                Ok(())
            }
            _ => self.fmt_operand(f),
        }
    }

    /// Operand context: a `Union`'s members separated by ` & `, with weights.
    fn fmt_operand(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameTree::Union(ws) if ws.len() == 1 => ws[0].tree.fmt_operand(f),
            NameTree::Alt(ts) if ts.len() == 1 => ts[0].fmt_operand(f),
            NameTree::Union(ws) => {
                for (i, w) in ws.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" & ")?;
                    }
                    if w.weight != Weighted::<T>::DEFAULT_WEIGHT {
                        write!(f, "{}*", format_weight(w.weight))?;
                    }
                    w.tree.fmt_simple(f)?;
                }
                Ok(())
            }
            NameTree::Alt(_) => self.fmt_parens(f),
            _ => self.fmt_simple(f),
        }
    }

    /// Simple context: leaves and symbols; compound nodes in parentheses.
    fn fmt_simple(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameTree::Union(ws) if ws.len() == 1 => ws[0].tree.fmt_simple(f),
            NameTree::Alt(ts) if ts.len() == 1 => ts[0].fmt_simple(f),
            NameTree::Union(_) | NameTree::Alt(_) => self.fmt_parens(f),
            NameTree::Leaf(v) => write!(f, "{v}"),
            NameTree::Fail => f.write_str("!"),
            NameTree::Neg => f.write_str("~"),
            NameTree::Empty => f.write_str("$"),
        }
    }

    fn fmt_parens(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(")?;
        self.fmt_top(f)?;
        f.write_str(")")
    }
}

impl<T: fmt::Display> fmt::Display for NameTree<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_top(f)
    }
}
