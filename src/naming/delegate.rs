//! The delegator: an explanation of how a path resolves, every branch expanded.
//!
//! Unlike binding, which stops at the first usable alternative, the explanation shows
//! each dentry that matched, what it rewrote the path to, what each namer answered and
//! where errors happened. It is what Linkerd's `/delegator.json` returns, and it is
//! serialised to the same JSON shape so existing dashboards and scripts can read it.

use std::cell::Cell;

use serde_json::{Map, Value, json};

use super::addr::{Addr, Bound, Name};
use super::bind::{MAX_DEPTH, MAX_FRAMES, MAX_STEPS, Namers, spend};
use super::dtab::{Dentry, Dtab};
use super::namer::{Activity, NamingError};
use super::path::Path;
use super::tree::NameTree;

/// One node of an explanation. `dentry` is the entry that produced the node (`None` at
/// the root); `path` is the path being resolved at that point.
#[derive(Clone, Debug, PartialEq)]
pub enum DelegateTree {
    /// Resolution failed here; the message says why.
    Exception {
        /// Path being resolved.
        path: Path,
        /// Entry that produced it.
        dentry: Option<Dentry>,
        /// What went wrong.
        message: String,
    },
    /// `$`: exists, no endpoints.
    Empty {
        /// Path being resolved.
        path: Path,
        /// Entry that produced it.
        dentry: Option<Dentry>,
    },
    /// `!`: resolution stops with a failure.
    Fail {
        /// Path being resolved.
        path: Path,
        /// Entry that produced it.
        dentry: Option<Dentry>,
    },
    /// `~`: nothing here.
    Neg {
        /// Path being resolved (empty for an explicit `~`).
        path: Path,
        /// Entry that produced it.
        dentry: Option<Dentry>,
    },
    /// The path was rewritten once; `child` explains the result.
    Delegate {
        /// Path being resolved.
        path: Path,
        /// Entry that produced it.
        dentry: Option<Dentry>,
        /// The explanation of the rewrite.
        child: Box<DelegateTree>,
    },
    /// A namer bound the path.
    Leaf {
        /// The path handed to the namer (with its residual).
        path: Path,
        /// Entry that produced it.
        dentry: Option<Dentry>,
        /// What it was bound to.
        bound: Bound,
    },
    /// Alternatives, in the order binding tries them.
    Alt {
        /// Path being resolved.
        path: Path,
        /// Entry that produced it.
        dentry: Option<Dentry>,
        /// The alternatives.
        children: Vec<DelegateTree>,
    },
    /// A weighted union.
    Union {
        /// Path being resolved.
        path: Path,
        /// Entry that produced it.
        dentry: Option<Dentry>,
        /// The members and their weights.
        children: Vec<(f64, DelegateTree)>,
    },
    /// A transformer rewrote a bound name (e.g. to the destination host's proxy).
    Transformation {
        /// Path being resolved.
        path: Path,
        /// The transformer's name.
        name: String,
        /// The bound name before the transformation.
        bound: Bound,
        /// What it became.
        child: Box<DelegateTree>,
    },
}

/// Why no explanation could be produced at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DelegateError {
    /// A namer has not answered yet; ask again when it has.
    #[error("a namer has not answered yet")]
    Pending,
    /// Resolution failed outside any alternative (e.g. the depth limit).
    #[error("{0}")]
    Failed(String),
}

type Expand = Result<DelegateTree, DelegateError>;

/// What one explanation carries through its recursion: the dtab and the work left.
struct Walk<'a> {
    dtab: &'a Dtab,
    steps: Cell<usize>,
}

const MAX_DEPTH_MESSAGE: &str = "Max recursion level reached.";

/// Stack for explanation threads: deep enough for every tree the frame bound admits,
/// in debug builds too.
const EXPLAIN_STACK: usize = 64 << 20;

impl DelegateTree {
    /// The path at this node.
    pub fn path(&self) -> &Path {
        match self {
            DelegateTree::Exception { path, .. }
            | DelegateTree::Empty { path, .. }
            | DelegateTree::Fail { path, .. }
            | DelegateTree::Neg { path, .. }
            | DelegateTree::Delegate { path, .. }
            | DelegateTree::Leaf { path, .. }
            | DelegateTree::Alt { path, .. }
            | DelegateTree::Union { path, .. }
            | DelegateTree::Transformation { path, .. } => path,
        }
    }

    /// The entry that produced this node, if any.
    pub fn dentry(&self) -> Option<&Dentry> {
        match self {
            DelegateTree::Exception { dentry, .. }
            | DelegateTree::Empty { dentry, .. }
            | DelegateTree::Fail { dentry, .. }
            | DelegateTree::Neg { dentry, .. }
            | DelegateTree::Delegate { dentry, .. }
            | DelegateTree::Leaf { dentry, .. }
            | DelegateTree::Alt { dentry, .. }
            | DelegateTree::Union { dentry, .. } => dentry.as_ref(),
            DelegateTree::Transformation { .. } => None,
        }
    }

    fn with_dentry(mut self, d: Option<Dentry>) -> Self {
        match &mut self {
            DelegateTree::Exception { dentry, .. }
            | DelegateTree::Empty { dentry, .. }
            | DelegateTree::Fail { dentry, .. }
            | DelegateTree::Neg { dentry, .. }
            | DelegateTree::Delegate { dentry, .. }
            | DelegateTree::Leaf { dentry, .. }
            | DelegateTree::Alt { dentry, .. }
            | DelegateTree::Union { dentry, .. } => *dentry = d,
            DelegateTree::Transformation { .. } => {}
        }
        self
    }

    /// Collapses rewrites that did not change the path and splices nested alternatives
    /// of the same path, as Linkerd does before answering.
    pub fn simplified(self) -> DelegateTree {
        match self {
            DelegateTree::Delegate {
                path,
                dentry,
                child,
            } => {
                let child = child.simplified();
                let terminal = matches!(
                    child,
                    DelegateTree::Neg { .. }
                        | DelegateTree::Fail { .. }
                        | DelegateTree::Empty { .. }
                );
                if !terminal && *child.path() == path {
                    child.with_dentry(dentry)
                } else {
                    DelegateTree::Delegate {
                        path,
                        dentry,
                        child: Box::new(child),
                    }
                }
            }
            DelegateTree::Alt {
                path,
                dentry,
                mut children,
            } => match children.len() {
                0 => DelegateTree::Neg { path, dentry },
                1 => {
                    let child = Box::new(children.remove(0));
                    DelegateTree::Delegate {
                        path,
                        dentry,
                        child,
                    }
                    .simplified()
                }
                _ => {
                    let mut out = Vec::with_capacity(children.len());
                    for child in children {
                        match child.simplified() {
                            DelegateTree::Alt {
                                path: p,
                                children: grand,
                                ..
                            } if p == path => out.extend(grand),
                            other => out.push(other),
                        }
                    }
                    DelegateTree::Alt {
                        path,
                        dentry,
                        children: out,
                    }
                }
            },
            DelegateTree::Union {
                path,
                dentry,
                mut children,
            } => match children.len() {
                0 => DelegateTree::Neg { path, dentry },
                1 => {
                    let child = Box::new(children.remove(0).1);
                    DelegateTree::Delegate {
                        path,
                        dentry,
                        child,
                    }
                    .simplified()
                }
                _ => DelegateTree::Union {
                    path,
                    dentry,
                    children: children
                        .into_iter()
                        .map(|(w, c)| (w, c.simplified()))
                        .collect(),
                },
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
                child: Box::new(child.simplified()),
            },
            other => other,
        }
    }

    /// The `/delegator.json` encoding.
    pub fn to_json(&self) -> Value {
        let mut extra = Map::new();
        let obj = &mut extra;
        let (kind, path) = match self {
            DelegateTree::Exception { path, message, .. } => {
                obj.insert("message".into(), json!(message));
                ("exception", path.show())
            }
            DelegateTree::Empty { path, .. } => ("empty", path.show()),
            DelegateTree::Fail { path, .. } => {
                let fail_path = Path::from_strs(["$", "fail"]);
                (
                    "fail",
                    if path.starts_with(&fail_path) {
                        path.show()
                    } else {
                        "!".to_string()
                    },
                )
            }
            DelegateTree::Neg { path, .. } => (
                "neg",
                if path.is_empty() {
                    "~".to_string()
                } else {
                    path.show()
                },
            ),
            DelegateTree::Delegate { path, child, .. } => {
                obj.insert("delegate".into(), child.to_json());
                ("delegate", path.show())
            }
            DelegateTree::Leaf { path, bound, .. } => {
                obj.insert("bound".into(), bound_json(bound));
                ("leaf", path.show())
            }
            DelegateTree::Alt { path, children, .. } => {
                obj.insert(
                    "alt".into(),
                    Value::Array(children.iter().map(DelegateTree::to_json).collect()),
                );
                ("alt", path.show())
            }
            DelegateTree::Union { path, children, .. } => {
                let members = children
                    .iter()
                    .map(|(w, c)| json!({"weight": w, "tree": c.to_json()}))
                    .collect();
                obj.insert("union".into(), Value::Array(members));
                ("union", path.show())
            }
            DelegateTree::Transformation {
                path,
                name,
                bound,
                child,
            } => {
                obj.insert("name".into(), json!(name));
                obj.insert("bound".into(), bound_json(bound));
                obj.insert("tree".into(), child.to_json());
                ("transformation", path.show())
            }
        };
        let mut node = Map::new();
        node.insert("type".into(), json!(kind));
        node.insert("path".into(), json!(path));
        if let Some(d) = self.dentry() {
            node.insert(
                "dentry".into(),
                json!({"prefix": d.prefix.show(), "dst": d.dst.show()}),
            );
        }
        node.extend(extra);
        Value::Object(node)
    }

    /// A readable, indented rendering for terminals.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out, 0, None);
        out
    }

    fn render_into(&self, out: &mut String, indent: usize, weight: Option<f64>) {
        use std::fmt::Write;
        let pad = "  ".repeat(indent);
        let weight = weight
            .map(|w| format!("{}* ", super::weight::format_weight(w)))
            .unwrap_or_default();
        let via = self
            .dentry()
            .map(|d| format!("  (via {d})"))
            .unwrap_or_default();
        let path = |p: &Path| {
            if p.is_empty() {
                "~".to_string()
            } else {
                p.show()
            }
        };
        let _ = match self {
            DelegateTree::Exception {
                path: p, message, ..
            } => {
                writeln!(out, "{pad}{weight}{}{via}  error: {message}", path(p))
            }
            DelegateTree::Empty { path: p, .. } => {
                writeln!(out, "{pad}{weight}{}{via}  $ (empty)", path(p))
            }
            DelegateTree::Fail { path: p, .. } => {
                writeln!(out, "{pad}{weight}{}{via}  ! (fail)", path(p))
            }
            DelegateTree::Neg { path: p, .. } => {
                writeln!(out, "{pad}{weight}{}{via}  ~ (neg)", path(p))
            }
            DelegateTree::Delegate { path: p, child, .. } => {
                let _ = writeln!(out, "{pad}{weight}{}{via}", path(p));
                child.render_into(out, indent + 1, None);
                Ok(())
            }
            DelegateTree::Leaf { path: p, bound, .. } => {
                writeln!(
                    out,
                    "{pad}{weight}{}{via}  => {}",
                    path(p),
                    describe_bound(bound)
                )
            }
            DelegateTree::Alt {
                path: p, children, ..
            } => {
                let _ = writeln!(
                    out,
                    "{pad}{weight}{}{via}  alternatives (first usable wins):",
                    path(p)
                );
                children
                    .iter()
                    .for_each(|c| c.render_into(out, indent + 1, None));
                Ok(())
            }
            DelegateTree::Union {
                path: p, children, ..
            } => {
                let _ = writeln!(out, "{pad}{weight}{}{via}  union:", path(p));
                children
                    .iter()
                    .for_each(|(w, c)| c.render_into(out, indent + 1, Some(*w)));
                Ok(())
            }
            DelegateTree::Transformation {
                path: p,
                name,
                bound,
                child,
            } => {
                let _ = writeln!(
                    out,
                    "{pad}{weight}{}  transformed by {name} from {}",
                    path(p),
                    describe_bound(bound)
                );
                child.render_into(out, indent + 1, None);
                Ok(())
            }
        };
    }
}

/// `bound /#/io.l5d.fs/web (residual /x): 10.0.0.1:80, 10.0.0.2:80`.
fn describe_bound(b: &Bound) -> String {
    let residual = if b.residual.is_empty() {
        String::new()
    } else {
        format!(" (residual {})", b.residual)
    };
    format!("bound {}{residual}: {}", b.id, b.addr)
}

/// The JSON of an address snapshot: `{"type": "bound", "addrs": [...], "meta": {}}` etc.
pub fn addr_json(addr: &Addr) -> Value {
    match addr {
        Addr::Pending => json!({"type": "pending"}),
        Addr::Neg => json!({"type": "neg"}),
        Addr::Failed(cause) => json!({"type": "failed", "cause": cause}),
        Addr::Bound(addrs) => {
            let addrs: Vec<Value> = addrs
                .iter()
                .map(|a| {
                    let mut meta: Map<String, Value> =
                        a.meta.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
                    if a.weight != 1.0 {
                        meta.insert(super::addr::WEIGHT_META_KEY.into(), json!(a.weight));
                    }
                    json!({"ip": a.addr.ip().to_string(), "port": a.addr.port(), "meta": meta})
                })
                .collect();
            json!({"type": "bound", "addrs": addrs, "meta": {}})
        }
    }
}

/// The JSON of a bound name: `{"addr": ..., "id": "/#/...", "path": "/residual"}`.
pub fn bound_json(b: &Bound) -> Value {
    json!({"addr": addr_json(&b.addr), "id": b.id.show(), "path": b.residual.show()})
}

impl Namers {
    /// Explains how `path` resolves through `dtab` and these namers, every branch
    /// expanded, simplified as Linkerd's delegator does.
    ///
    /// The explanation runs on a helper thread with a large stack, so hostile trees that
    /// nest deeply cannot overflow the caller's (explanations are for people and tools,
    /// never on the request path), and its work is bounded like binding's.
    pub fn delegate(&self, dtab: &Dtab, path: &Path) -> Result<DelegateTree, DelegateError> {
        let explain = || {
            Ok(self
                .step(
                    &Walk {
                        dtab,
                        steps: Cell::new(MAX_STEPS),
                    },
                    None,
                    path,
                    1,
                    0,
                )?
                .simplified())
        };
        std::thread::scope(|scope| {
            match std::thread::Builder::new()
                .name("delegate".into())
                .stack_size(EXPLAIN_STACK)
                .spawn_scoped(scope, explain)
            {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|_| Err(DelegateError::Failed("explanation failed".into()))),
                // No thread to be had: explain on this one.
                Err(_) => explain(),
            }
        })
    }

    /// Looks `q` up in the dtab (every matching entry, last first) or, when nothing
    /// matches, in the namers; `d` is the entry that produced `q`. The result is expanded
    /// at `depth`.
    fn step(
        &self,
        walk: &Walk<'_>,
        d: Option<&Dentry>,
        q: &Path,
        depth: usize,
        frames: usize,
    ) -> Expand {
        if depth > MAX_DEPTH {
            return Err(DelegateError::Failed(MAX_DEPTH_MESSAGE.into()));
        }
        if frames > MAX_FRAMES {
            return Err(DelegateError::Failed(
                NamingError::TooDeep(MAX_FRAMES).to_string(),
            ));
        }
        if !spend(&walk.steps) {
            return Err(DelegateError::Failed(
                NamingError::TooComplex(MAX_STEPS).to_string(),
            ));
        }
        let frames = frames + 1;
        let matches: Vec<(&Dentry, NameTree<Path>)> = walk
            .dtab
            .entries()
            .iter()
            .rev()
            .filter_map(|e| e.rewrite(q).map(|t| (e, t)))
            .collect();
        let owned_d = d.cloned();
        match matches.len() {
            0 => match self.lookup_namers(q) {
                Activity::Ok(NameTree::Neg) => Ok(DelegateTree::Neg {
                    path: q.clone(),
                    dentry: owned_d,
                }),
                Activity::Ok(tree) => self.expand(walk, q, d, &tree, depth, frames),
                Activity::Failed(e) => Ok(DelegateTree::Exception {
                    path: q.clone(),
                    dentry: owned_d,
                    message: e.to_string(),
                }),
                Activity::Pending => Err(DelegateError::Pending),
            },
            1 => {
                let (e, tree) = &matches[0];
                let child = self.expand(walk, q, Some(e), &as_names(tree), depth, frames)?;
                Ok(DelegateTree::Delegate {
                    path: q.clone(),
                    dentry: owned_d,
                    child: Box::new(child),
                })
            }
            _ => {
                let mut children = Vec::with_capacity(matches.len());
                for (e, tree) in &matches {
                    children.push(self.guard(
                        q,
                        d,
                        self.expand(walk, q, Some(e), &as_names(tree), depth, frames),
                    )?);
                }
                Ok(DelegateTree::Alt {
                    path: q.clone(),
                    dentry: owned_d,
                    children,
                })
            }
        }
    }

    /// Converts `tree` (what `e` or a namer produced for `q`) into explanation nodes and
    /// expands every unbound leaf with another step.
    fn expand(
        &self,
        walk: &Walk<'_>,
        q: &Path,
        e: Option<&Dentry>,
        tree: &NameTree<Name>,
        depth: usize,
        frames: usize,
    ) -> Expand {
        if !spend(&walk.steps) {
            return Err(DelegateError::Failed(
                NamingError::TooComplex(MAX_STEPS).to_string(),
            ));
        }
        let dentry = e.cloned();
        Ok(match tree {
            NameTree::Empty => DelegateTree::Empty {
                path: q.clone(),
                dentry,
            },
            NameTree::Fail => DelegateTree::Fail {
                path: q.clone(),
                dentry,
            },
            NameTree::Neg => DelegateTree::Neg {
                path: Path::empty(),
                dentry,
            },
            NameTree::Leaf(Name::Bound(bound)) => DelegateTree::Leaf {
                path: q.clone(),
                dentry,
                bound: bound.clone(),
            },
            NameTree::Leaf(Name::Path(next)) => {
                return self.step(walk, e, next, depth + 1, frames);
            }
            NameTree::Alt(branches) => match branches.len() {
                0 => DelegateTree::Neg {
                    path: q.clone(),
                    dentry,
                },
                1 => {
                    let child = self.expand(walk, q, e, &branches[0], depth, frames + 1)?;
                    DelegateTree::Delegate {
                        path: q.clone(),
                        dentry,
                        child: Box::new(child),
                    }
                }
                _ => {
                    let mut children = Vec::with_capacity(branches.len());
                    for b in branches {
                        children.push(self.guard(
                            q,
                            e,
                            self.expand(walk, q, e, b, depth, frames + 1),
                        )?);
                    }
                    DelegateTree::Alt {
                        path: q.clone(),
                        dentry,
                        children,
                    }
                }
            },
            NameTree::Union(members) => match members.len() {
                0 => DelegateTree::Neg {
                    path: q.clone(),
                    dentry,
                },
                1 => {
                    let child = self.expand(walk, q, e, &members[0].tree, depth, frames + 1)?;
                    DelegateTree::Delegate {
                        path: q.clone(),
                        dentry,
                        child: Box::new(child),
                    }
                }
                _ => {
                    let mut children = Vec::with_capacity(members.len());
                    for m in members {
                        let child =
                            self.guard(q, e, self.expand(walk, q, e, &m.tree, depth, frames + 1))?;
                        children.push((m.weight, child));
                    }
                    DelegateTree::Union {
                        path: q.clone(),
                        dentry,
                        children,
                    }
                }
            },
        })
    }

    /// Inside an alternative or union, a failed branch becomes an `Exception` node that
    /// carries the enclosing node's path and entry; waiting for a namer stays a wait.
    fn guard(&self, q: &Path, d: Option<&Dentry>, branch: Expand) -> Expand {
        match branch {
            Err(DelegateError::Failed(message)) => Ok(DelegateTree::Exception {
                path: q.clone(),
                dentry: d.cloned(),
                message,
            }),
            other => other,
        }
    }
}

fn as_names(tree: &NameTree<Path>) -> NameTree<Name> {
    tree.map(&mut |p| Name::Path(p.clone()))
}
