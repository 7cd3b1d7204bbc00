//! Binding: delegating a path through a dtab and the namers down to bound names.
//!
//! This is Linkerd's default interpreter (`ConfiguredNamersInterpreter`) over Finagle's
//! `Namer.bind`: every path is looked up in the dtab first; only when no entry matches
//! are the configured namers asked, in configuration order, then the system namer. It is
//! synchronous and reads snapshots, so a caller can re-run it whenever discovery changes.

use std::sync::Arc;

use super::addr::{Bound, Name};
use super::dtab::Dtab;
use super::namer::{Activity, Namer, NamingError};
use super::path::Path;
use super::system::SystemNamer;
use super::tree::{NameTree, Weighted};

/// The most lookups one binding may chain (Finagle's `namerMaxDepth`).
pub const MAX_DEPTH: usize = 100;

/// A bound on nested tree levels while binding (and explaining), so hostile input cannot exhaust the
/// stack. Real dtabs stay far below it.
pub(crate) const MAX_FRAMES: usize = 250;

/// A bound on the work of one binding or explanation: nodes visited. Unions bind every
/// member, so a few entries like `/=>/a & /a` multiply into billions of branches before
/// the depth limit; Finagle would spin, Plexus stops and says why.
pub(crate) const MAX_STEPS: usize = 10_000;

/// Counts one step of work against [`MAX_STEPS`].
pub(crate) fn spend(steps: &std::cell::Cell<usize>) -> bool {
    let left = steps.get();
    if left == 0 {
        return false;
    }
    steps.set(left - 1);
    true
}

/// The namers of one router (or of the command-line tools): configured namers mounted
/// at their prefixes, tried in order, and the system namer.
#[derive(Clone, Default)]
pub struct Namers {
    configured: Vec<(Path, Arc<dyn Namer>)>,
    system: SystemNamer,
}

impl std::fmt::Debug for Namers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.configured.iter().map(|(p, _)| p))
            .finish()
    }
}

impl Namers {
    /// No configured namers; the system namer with `system`'s resolver.
    pub fn new(system: SystemNamer) -> Self {
        Namers {
            configured: Vec::new(),
            system,
        }
    }

    /// Mounts a namer at `prefix` (e.g. `/#/io.l5d.fs`) after the ones already mounted.
    pub fn mount(mut self, prefix: Path, namer: Arc<dyn Namer>) -> Self {
        self.configured.push((prefix, namer));
        self
    }

    /// The mounted prefixes, in the order they are tried.
    pub fn prefixes(&self) -> impl Iterator<Item = &Path> {
        self.configured.iter().map(|(p, _)| p)
    }

    /// Asks the namers (not the dtab): each configured namer whose prefix `path` starts
    /// with, in order, until one answers something other than `Neg`; then `/$/`.
    pub fn lookup_namers(&self, path: &Path) -> Activity<NameTree<Name>> {
        for (prefix, namer) in &self.configured {
            if path.starts_with(prefix) {
                match namer.lookup(&path.drop(prefix.len())) {
                    Activity::Ok(NameTree::Neg) => continue,
                    other => return other,
                }
            }
        }
        self.system.lookup(path)
    }

    /// One lookup step of binding: the dtab's rewrite when it is anything but the plain
    /// `Neg` of "no entry matched", otherwise the namers' answer.
    fn lookup(&self, dtab: &Dtab, path: &Path) -> Activity<NameTree<Name>> {
        match dtab.lookup(path) {
            NameTree::Neg => self.lookup_namers(path),
            tree => Activity::Ok(tree.map(&mut |p| Name::Path(p.clone()))),
        }
    }

    /// Binds `path` through `dtab`. The result has no `Alt` nodes, simplified unions and
    /// bound leaves; `Neg`, `Fail` or `Empty` at the top mean the request cannot be sent.
    pub fn bind(&self, dtab: &Dtab, path: &Path) -> Activity<NameTree<Bound>> {
        let steps = std::cell::Cell::new(MAX_STEPS);
        self.bind_tree(
            dtab,
            &NameTree::Leaf(Name::Path(path.clone())),
            0,
            0,
            &steps,
        )
    }

    fn bind_tree(
        &self,
        dtab: &Dtab,
        tree: &NameTree<Name>,
        depth: usize,
        frames: usize,
        steps: &std::cell::Cell<usize>,
    ) -> Activity<NameTree<Bound>> {
        if depth > MAX_DEPTH {
            return Activity::Failed(NamingError::MaxDepth(MAX_DEPTH));
        }
        if frames > MAX_FRAMES {
            return Activity::Failed(NamingError::TooDeep(MAX_FRAMES));
        }
        if !spend(steps) {
            return Activity::Failed(NamingError::TooComplex(MAX_STEPS));
        }
        let frames = frames + 1;
        match tree {
            NameTree::Leaf(Name::Path(path)) => match self.lookup(dtab, path) {
                Activity::Ok(next) => self.bind_tree(dtab, &next, depth + 1, frames, steps),
                Activity::Pending => Activity::Pending,
                Activity::Failed(e) => Activity::Failed(e),
            },
            NameTree::Leaf(Name::Bound(bound)) => Activity::Ok(NameTree::Leaf(bound.clone())),
            NameTree::Neg => Activity::Ok(NameTree::Neg),
            NameTree::Fail => Activity::Ok(NameTree::Fail),
            NameTree::Empty => Activity::Ok(NameTree::Empty),
            NameTree::Alt(branches) => {
                for branch in branches {
                    match self.bind_tree(dtab, branch, depth, frames, steps) {
                        Activity::Ok(NameTree::Neg) => continue,
                        // A reached branch that fails, fails the alternation (no fall-through).
                        other => return other,
                    }
                }
                Activity::Ok(NameTree::Neg)
            }
            NameTree::Union(members) if members.len() <= 1 => match members.first() {
                Some(only) => self.bind_tree(dtab, &only.tree, depth, frames, steps),
                None => Activity::Ok(NameTree::Neg),
            },
            NameTree::Union(members) => {
                let mut ok = Vec::with_capacity(members.len());
                let mut first_problem = None;
                for member in members {
                    match self.bind_tree(dtab, &member.tree, depth, frames, steps) {
                        Activity::Ok(tree) => ok.push(Weighted {
                            weight: member.weight,
                            tree,
                        }),
                        // Running out of budget stops the whole binding: dropping the
                        // branch would silently bind part of the tree.
                        exhausted @ Activity::Failed(NamingError::TooComplex(_)) => {
                            return exhausted;
                        }
                        problem => {
                            first_problem.get_or_insert(problem);
                        }
                    }
                }
                if ok.is_empty() {
                    first_problem.unwrap_or(Activity::Ok(NameTree::Neg))
                } else {
                    // Failed members are dropped; Neg and Fail vanish in simplification.
                    Activity::Ok(NameTree::Union(ok).simplified())
                }
            }
        }
    }
}

/// Picks where one request goes in a bound tree: unions choose a member with probability
/// `weight / sum` over their members (uniformly when every weight is zero), recursively.
/// `draw` yields uniform numbers in `[0, 1)`. `None` means the request must fail: the
/// tree (or the chosen member) is `Neg`, `Fail` or `Empty`.
pub fn choose<'a>(tree: &'a NameTree<Bound>, draw: &mut impl FnMut() -> f64) -> Option<&'a Bound> {
    match tree {
        NameTree::Leaf(bound) => Some(bound),
        NameTree::Union(members) if !members.is_empty() => {
            let total: f64 = members.iter().map(|m| m.weight.max(0.0)).sum();
            let x = draw().clamp(0.0, 1.0);
            let index = if total > 0.0 && total.is_finite() {
                let mut target = x * total;
                members
                    .iter()
                    .position(|m| {
                        target -= m.weight.max(0.0);
                        target < 0.0
                    })
                    // Rounding can leave `target` at zero: take the last positive member.
                    .unwrap_or_else(|| members.iter().rposition(|m| m.weight > 0.0).unwrap_or(0))
            } else {
                ((x * members.len() as f64) as usize).min(members.len() - 1)
            };
            choose(&members[index].tree, draw)
        }
        NameTree::Alt(branches) => branches.first().and_then(|b| choose(b, draw)),
        _ => None,
    }
}

/// The share of requests each bound id receives under [`choose`], summed over the tree
/// (identical ids in different branches add up), in first-seen order. The shares of
/// branches that would fail (`Empty`) are not listed, so the total can be below 1.
pub fn shares(tree: &NameTree<Bound>) -> Vec<(Path, f64)> {
    fn walk(tree: &NameTree<Bound>, share: f64, out: &mut Vec<(Path, f64)>) {
        match tree {
            NameTree::Leaf(b) => match out.iter_mut().find(|(id, _)| *id == b.id) {
                Some((_, s)) => *s += share,
                None => out.push((b.id.clone(), share)),
            },
            NameTree::Union(members) => {
                let total: f64 = members.iter().map(|m| m.weight.max(0.0)).sum();
                for m in members {
                    let p = if total > 0.0 && total.is_finite() {
                        m.weight.max(0.0) / total
                    } else {
                        1.0 / members.len() as f64
                    };
                    walk(&m.tree, share * p, out);
                }
            }
            NameTree::Alt(branches) => {
                if let Some(b) = branches.first() {
                    walk(b, share, out)
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(tree, 1.0, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming::{Addr, Address};

    fn bound(id: &str) -> Bound {
        Bound::new(
            Path::read(id).unwrap(),
            Addr::Bound(vec![Address::new(([127, 0, 0, 1], 80).into())]),
        )
    }

    #[test]
    fn deeply_nested_chains_fail_cleanly_instead_of_exhausting_the_stack() {
        // 99 chained rewrites, each wrapped in 10 levels of alternation: within the
        // lookup limit, but far deeper than any real dtab.
        let nest = |inner: String| (0..10).fold(inner, |t, _| format!("({t} | /z)"));
        let dtab: String = (0..99)
            .map(|i| format!("/a{i}=>{};", nest(format!("/a{}", i + 1))))
            .collect::<String>()
            + "/a99=>/$/nil";
        let dtab = Dtab::read(&dtab).unwrap();
        let namers = Namers::default();
        assert_eq!(
            namers.bind(&dtab, &Path::read("/a0").unwrap()),
            Activity::Failed(NamingError::TooDeep(MAX_FRAMES))
        );
        // The explanation shows where it gave up instead of crashing.
        let explained = namers.delegate(&dtab, &Path::read("/a0").unwrap()).unwrap();
        assert!(
            explained
                .to_json()
                .to_string()
                .contains("nested more than 250 levels deep")
        );
        // A flat chain of 99 rewrites plus the namer lookup (100 lookups) binds.
        let flat: String = (0..98)
            .map(|i| format!("/a{i}=>/a{};", i + 1))
            .collect::<String>()
            + "/a98=>/$/nil";
        let flat = Dtab::read(&flat).unwrap();
        assert_eq!(
            namers.bind(&flat, &Path::read("/a0").unwrap()),
            Activity::Ok(NameTree::Empty)
        );
    }

    #[test]
    fn unions_that_multiply_are_cut_off_instead_of_spinning() {
        let namers = Namers::default();
        let x = Path::read("/x").unwrap();
        // Every lookup doubles the work: 2^100 branches before the depth limit.
        let looping = Dtab::read("/=>/a & /a").unwrap();
        // (Its first branch reaches the depth limit first, which is the error reported.)
        assert!(matches!(
            namers.bind(&looping, &x),
            Activity::Failed(NamingError::TooComplex(_) | NamingError::MaxDepth(_))
        ));
        // A chain that doubles 30 times without looping.
        let chain: String = (0..30)
            .map(|i| format!("/p{i}=>/p{} & /p{};", i + 1, i + 1))
            .collect::<String>()
            + "/p30=>/$/nil";
        let chain = Dtab::read(&chain).unwrap();
        let bound = namers.bind(&chain, &Path::read("/p0").unwrap());
        assert!(
            matches!(bound, Activity::Failed(NamingError::TooComplex(MAX_STEPS))),
            "not cut off"
        );
        // The delegator stops too, and says why.
        let explained = namers.delegate(&Dtab::read("/=>/a | /b").unwrap(), &x);
        assert!(
            format!("{explained:?}").contains("too complex")
                || explained
                    .as_ref()
                    .is_ok_and(|t| t.to_json().to_string().contains("too complex")),
            "{explained:?}"
        );
        assert!(
            namers
                .delegate(&chain, &Path::read("/p0").unwrap())
                .is_ok_and(|t| t.to_json().to_string().contains("too complex"))
        );
    }

    #[test]
    fn deeply_nested_explanations_do_not_overflow_the_callers_stack() {
        // Test threads have 2 MiB stacks; the explanation runs on its own thread.
        let tree = (0..40).fold("/a".to_string(), |t, _| format!("~&({t})"));
        let dtab = Dtab::read(&format!("/a=>{tree}")).unwrap();
        assert!(
            Namers::default()
                .delegate(&dtab, &Path::read("/a").unwrap())
                .is_ok()
        );
        let alts: String = (0..20)
            .map(|i| {
                format!(
                    "/a{i}=>{};",
                    (0..99).fold(format!("/a{}", i + 1), |t, _| format!("(~ | {t})"))
                )
            })
            .collect();
        let dtab = Dtab::read(&alts).unwrap();
        assert!(
            Namers::default()
                .delegate(&dtab, &Path::read("/a0").unwrap())
                .is_ok()
        );
    }

    #[test]
    fn choose_follows_weights_per_union() {
        let tree = NameTree::Union(vec![
            Weighted {
                weight: 3.0,
                tree: NameTree::Leaf(bound("/a")),
            },
            Weighted {
                weight: 1.0,
                tree: NameTree::Leaf(bound("/b")),
            },
        ]);
        let pick = |x: f64| choose(&tree, &mut || x).map(|b| b.id.show());
        assert_eq!(pick(0.0).as_deref(), Some("/a"));
        assert_eq!(pick(0.74).as_deref(), Some("/a"));
        assert_eq!(pick(0.76).as_deref(), Some("/b"));
        assert_eq!(pick(0.999_999).as_deref(), Some("/b"));
        assert_eq!(
            shares(&tree),
            vec![
                (Path::read("/a").unwrap(), 0.75),
                (Path::read("/b").unwrap(), 0.25)
            ]
        );
    }

    #[test]
    fn zero_weights_are_uniform_and_empty_members_fail() {
        let tree = NameTree::Union(vec![
            Weighted {
                weight: 0.0,
                tree: NameTree::Leaf(bound("/a")),
            },
            Weighted {
                weight: 0.0,
                tree: NameTree::Empty,
            },
        ]);
        assert_eq!(
            choose(&tree, &mut || 0.2).map(|b| b.id.show()).as_deref(),
            Some("/a")
        );
        assert_eq!(choose(&tree, &mut || 0.7), None);
        assert_eq!(shares(&tree), vec![(Path::read("/a").unwrap(), 0.5)]);
        assert_eq!(choose(&NameTree::Neg, &mut || 0.5), None);
        assert_eq!(choose(&NameTree::Fail, &mut || 0.5), None);
    }
}
