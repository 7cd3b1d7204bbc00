//! Transformers: rewrites of a bound tree after binding (Linkerd's name tree
//! transformers), and how they show in the delegator's explanation.
//!
//! A transformer sees the bound tree an interpreter produced and returns another one,
//! typically with the same shape and rewritten leaves: other ports, fewer addresses, or
//! a different destination altogether. Rewritten leaves get ids under `/%/…`, so the
//! client id says that a transformer was involved (`/%/io.l5d.port/4141/#/io.l5d.fs/web`).

use super::addr::Bound;
use super::delegate::DelegateTree;
use super::tree::{NameTree, Weighted};

/// A bound-tree rewrite.
pub trait Transformer: Send + Sync {
    /// The name the delegator shows (Linkerd's transformer class name, e.g.
    /// `PortTransformer`).
    fn name(&self) -> &str;

    /// Rewrites one bound leaf into a tree (usually a leaf; `Neg` drops it).
    fn transform_leaf(&self, bound: &Bound) -> NameTree<Bound>;

    /// Rewrites a whole bound tree; by default leaf by leaf, then simplified.
    fn transform(&self, tree: &NameTree<Bound>) -> NameTree<Bound> {
        map_leaves(tree, &mut |b| self.transform_leaf(b)).simplified()
    }
}

/// Replaces every leaf with the tree `f` gives for it, keeping the rest of the shape.
pub fn map_leaves(
    tree: &NameTree<Bound>,
    f: &mut impl FnMut(&Bound) -> NameTree<Bound>,
) -> NameTree<Bound> {
    match tree {
        NameTree::Leaf(b) => f(b),
        NameTree::Alt(ts) => NameTree::Alt(ts.iter().map(|t| map_leaves(t, f)).collect()),
        NameTree::Union(ws) => NameTree::Union(
            ws.iter()
                .map(|w| Weighted {
                    weight: w.weight,
                    tree: map_leaves(&w.tree, f),
                })
                .collect(),
        ),
        NameTree::Neg => NameTree::Neg,
        NameTree::Fail => NameTree::Fail,
        NameTree::Empty => NameTree::Empty,
    }
}

/// Applies transformers in order.
pub fn transform_all(
    tree: NameTree<Bound>,
    transformers: &[std::sync::Arc<dyn Transformer>],
) -> NameTree<Bound> {
    transformers.iter().fold(tree, |t, x| x.transform(&t))
}

/// Shows a transformer in an explanation: every bound leaf becomes a `Transformation`
/// node holding the leaf as it was and what the transformer made of it.
pub fn transform_explanation(tree: DelegateTree, t: &dyn Transformer) -> DelegateTree {
    match tree {
        DelegateTree::Leaf {
            path,
            dentry,
            bound,
        } => {
            let after = t.transform(&NameTree::Leaf(bound.clone()));
            let child = explain_bound(&after, &path, &dentry);
            DelegateTree::Transformation {
                path,
                name: t.name().to_string(),
                bound,
                child: Box::new(child),
            }
        }
        DelegateTree::Delegate {
            path,
            dentry,
            child,
        } => DelegateTree::Delegate {
            path,
            dentry,
            child: Box::new(transform_explanation(*child, t)),
        },
        DelegateTree::Alt {
            path,
            dentry,
            children,
        } => DelegateTree::Alt {
            path,
            dentry,
            children: children
                .into_iter()
                .map(|c| transform_explanation(c, t))
                .collect(),
        },
        DelegateTree::Union {
            path,
            dentry,
            children,
        } => DelegateTree::Union {
            path,
            dentry,
            children: children
                .into_iter()
                .map(|(w, c)| (w, transform_explanation(c, t)))
                .collect(),
        },
        DelegateTree::Transformation {
            path,
            name,
            bound,
            child,
        } => DelegateTree::Transformation {
            path,
            name,
            bound,
            child: Box::new(transform_explanation(*child, t)),
        },
        other => other,
    }
}

/// A bound tree as explanation nodes at `path` (what a transformer produced).
fn explain_bound(
    tree: &NameTree<Bound>,
    path: &super::Path,
    dentry: &Option<super::Dentry>,
) -> DelegateTree {
    let (path, dentry) = (path.clone(), dentry.clone());
    match tree {
        NameTree::Leaf(b) => DelegateTree::Leaf {
            path,
            dentry,
            bound: b.clone(),
        },
        NameTree::Neg => DelegateTree::Neg { path, dentry },
        NameTree::Fail => DelegateTree::Fail { path, dentry },
        NameTree::Empty => DelegateTree::Empty { path, dentry },
        NameTree::Alt(ts) => DelegateTree::Alt {
            children: ts
                .iter()
                .map(|t| explain_bound(t, &path, &dentry))
                .collect(),
            path,
            dentry,
        },
        NameTree::Union(ws) => DelegateTree::Union {
            children: ws
                .iter()
                .map(|w| (w.weight, explain_bound(&w.tree, &path, &dentry)))
                .collect(),
            path,
            dentry,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming::{Addr, Address, Path};

    /// Moves every address to port 1 and prefixes the id, like io.l5d.port.
    struct ToPortOne;

    impl Transformer for ToPortOne {
        fn name(&self) -> &str {
            "PortTransformer"
        }
        fn transform_leaf(&self, b: &Bound) -> NameTree<Bound> {
            let addr = match &b.addr {
                Addr::Bound(a) => Addr::Bound(
                    a.iter()
                        .map(|x| Address::new((x.addr.ip(), 1).into()))
                        .collect(),
                ),
                other => other.clone(),
            };
            let id = Path::from_strs(["%", "port"]).concat(&b.id);
            NameTree::Leaf(Bound {
                id,
                residual: b.residual.clone(),
                addr,
            })
        }
    }

    fn leaf(id: &str) -> NameTree<Bound> {
        NameTree::Leaf(Bound::new(
            Path::read(id).unwrap(),
            Addr::Bound(vec![Address::new(([127, 0, 0, 1], 80).into())]),
        ))
    }

    #[test]
    fn leaves_are_rewritten_and_the_shape_kept() {
        let tree = NameTree::Union(vec![
            Weighted {
                weight: 3.0,
                tree: leaf("/a"),
            },
            Weighted {
                weight: 1.0,
                tree: leaf("/b"),
            },
        ]);
        let out = ToPortOne.transform(&tree);
        assert_eq!(out.show(), "3.00*/%/port/a & /%/port/b");
        let NameTree::Union(ws) = out else {
            panic!("union")
        };
        assert_eq!(
            ws[0].tree.leaves()[0].addr,
            Addr::Bound(vec![Address::new(([127, 0, 0, 1], 1).into())])
        );
    }

    #[test]
    fn explanations_show_a_transformation_node_per_leaf() {
        let before = match leaf("/#/x") {
            NameTree::Leaf(b) => b,
            _ => unreachable!(),
        };
        let tree = DelegateTree::Leaf {
            path: Path::read("/#/x").unwrap(),
            dentry: None,
            bound: before,
        };
        let json = transform_explanation(tree, &ToPortOne).to_json();
        assert_eq!(json["type"], "transformation");
        assert_eq!(json["name"], "PortTransformer");
        assert_eq!(json["bound"]["id"], "/#/x");
        assert_eq!(json["tree"]["type"], "leaf");
        assert_eq!(json["tree"]["bound"]["id"], "/%/port/#/x");
        assert_eq!(json["tree"]["bound"]["addr"]["addrs"][0]["port"], 1);
    }
}
