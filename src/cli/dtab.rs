//! `plexus path|dtab|nametree ...`: the dtab playground for terminals and scripts.
//!
//! Every command prints the canonical (Finagle `show`) form by default and a JSON
//! document with `--json`. Syntax errors are reported with Finagle's message, the line
//! and column, and a caret under the offending character.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{CliError, catalog, read_arg};
use crate::naming::{Activity, Addr, Bound, Dtab, NameTree, ParseError, Path, read_tree, shares};

#[derive(Args, Debug)]
pub(super) struct JsonFlag {
    /// Print JSON instead of the canonical text form.
    #[arg(long)]
    json: bool,
}

/// Where `bind` and `delegate` get their namers: a what-if catalog, or the router of a
/// real configuration (its namers read once, its dtab, its transformers).
#[derive(Args, Debug)]
pub(super) struct Source {
    /// A YAML service catalog standing in for the namers (see docs/dtabs.md).
    #[arg(long, conflicts_with = "config", required_unless_present = "config")]
    catalog: Option<PathBuf>,
    /// A Linkerd 1.x configuration: use its router's namers and transformers; the DTAB
    /// argument is appended to the router's dtab, like an l5d-dtab header (may be "").
    #[arg(long, requires = "router")]
    config: Option<PathBuf>,
    /// The label of the router in --config.
    #[arg(long, requires = "config")]
    router: Option<String>,
}

/// Namers, the dtab to use and transformers to apply, from a catalog or a router.
struct Resolver {
    namers: crate::naming::Namers,
    dtab: Dtab,
    transformers: Vec<std::sync::Arc<dyn crate::naming::Transformer>>,
}

impl Source {
    /// Reads the DTAB and PATH arguments (either may be `-`) and resolves the namers.
    fn resolve_args(&self, dtab: &str, path: &str) -> Result<(Resolver, Path), CliError> {
        let mut stdin = false;
        let dtab = parse_dtab(&read_arg(dtab, &mut stdin)?)?;
        let path = parse_path(&read_arg(path, &mut stdin)?)?;
        Ok((self.resolve(dtab)?, path))
    }

    fn resolve(&self, dtab: Dtab) -> Result<Resolver, CliError> {
        if let Some(catalog) = &self.catalog {
            return Ok(Resolver {
                namers: catalog::load(catalog)?,
                dtab,
                transformers: Vec::new(),
            });
        }
        let (Some(file), Some(label)) = (&self.config, &self.router) else {
            return Err(CliError::BadInput(
                "give --catalog FILE, or --config FILE --router LABEL".into(),
            ));
        };
        let name = file.display().to_string();
        let (config, _) = super::load_config(file)?;
        let routers = crate::runtime::offline_routers(&config)
            .map_err(|e| CliError::BadInput(format!("{name}: {e}")))?;
        let Some(router) = routers.iter().find(|r| r.label == *label) else {
            let labels: Vec<&str> = routers.iter().map(|r| r.label.as_str()).collect();
            return Err(CliError::BadInput(format!(
                "{name} has no router {label:?} (routers: {})",
                labels.join(", ")
            )));
        };
        Ok(Resolver {
            namers: router.namers.clone(),
            dtab: router.base_dtab.concat(&dtab),
            transformers: router.transformers.clone(),
        })
    }
}

#[derive(Subcommand, Debug)]
pub(super) enum PathCommand {
    /// Show a path's canonical form and its elements.
    Show {
        /// The path (`-` reads standard input).
        path: String,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum NameTreeCommand {
    /// Show a name tree's canonical form.
    Show {
        /// The name tree (`-` reads standard input).
        tree: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Show a name tree simplified (evaluation-equivalent, fixpoint).
    Simplify {
        /// The name tree (`-` reads standard input).
        tree: String,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum DtabCommand {
    /// Show a dtab's canonical form and its entries.
    Show {
        /// The dtab (`-` reads standard input).
        dtab: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Look a path up in a dtab: every matching entry, last first.
    Lookup {
        /// The dtab (`-` reads standard input).
        dtab: String,
        /// The path to look up.
        path: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Bind a path through a dtab and a catalog of services, as a router would.
    Bind {
        /// The dtab (`-` reads standard input).
        dtab: String,
        /// The path to bind.
        path: String,
        #[command(flatten)]
        source: Source,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Explain how a path resolves, every branch expanded (the delegator).
    Delegate {
        /// The dtab (`-` reads standard input).
        dtab: String,
        /// The path to explain.
        path: String,
        #[command(flatten)]
        source: Source,
        #[command(flatten)]
        out: JsonFlag,
    },
}

/// Describes a syntax error for a terminal: Finagle's message, then the line with a caret.
fn syntax_error(what: &str, input: &str, e: &ParseError) -> CliError {
    let offset = e.offset();
    let before: String = input.chars().take(offset).collect();
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    let line = input[line_start..].lines().next().unwrap_or("");
    let caret = " ".repeat(column - 1);
    CliError::BadInput(format!(
        "invalid {what}: {e}\n  at line {line_no}, column {column} (offset {offset}):\n    {line}\n    {caret}^"
    ))
}

fn parse_path(input: &str) -> Result<Path, CliError> {
    Path::read(input).map_err(|e| syntax_error("path", input, &e))
}

fn parse_dtab(input: &str) -> Result<Dtab, CliError> {
    Dtab::read(input).map_err(|e| syntax_error("dtab", input, &e))
}

fn parse_tree(input: &str) -> Result<NameTree<Path>, CliError> {
    read_tree(input).map_err(|e| syntax_error("name tree", input, &e))
}

fn to_json(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

pub(super) fn run_path(cmd: PathCommand) -> Result<String, CliError> {
    let PathCommand::Show { path, out } = cmd;
    let path = parse_path(&read_arg(&path, &mut false)?)?;
    if !out.json {
        return Ok(path.show());
    }
    let hex: Vec<String> = path
        .elems()
        .iter()
        .map(|e| e.iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    Ok(to_json(
        &json!({"show": path.show(), "elems": path.elems_lossy(), "elems_hex": hex}),
    ))
}

pub(super) fn run_nametree(cmd: NameTreeCommand) -> Result<String, CliError> {
    let (tree, out, simplify) = match cmd {
        NameTreeCommand::Show { tree, out } => (tree, out, false),
        NameTreeCommand::Simplify { tree, out } => (tree, out, true),
    };
    let tree = parse_tree(&read_arg(&tree, &mut false)?)?;
    let simplified = tree.simplified();
    if out.json {
        let eval = tree
            .eval()
            .map(|leaves| leaves.iter().map(Path::show).collect::<Vec<_>>());
        return Ok(to_json(
            &json!({"show": tree.show(), "simplified": simplified.show(), "eval": eval}),
        ));
    }
    Ok(if simplify {
        simplified.show()
    } else {
        tree.show()
    })
}

pub(super) fn run_dtab(cmd: DtabCommand) -> Result<String, CliError> {
    let mut stdin = false;
    match cmd {
        DtabCommand::Show { dtab, out } => {
            let dtab = parse_dtab(&read_arg(&dtab, &mut stdin)?)?;
            if !out.json {
                return Ok(dtab.show());
            }
            let entries: Vec<Value> = dtab
                .entries()
                .iter()
                .map(|e| json!({"prefix": e.prefix.show(), "dst": e.dst.show()}))
                .collect();
            Ok(to_json(&json!({"show": dtab.show(), "entries": entries})))
        }
        DtabCommand::Lookup { dtab, path, out } => {
            let dtab = parse_dtab(&read_arg(&dtab, &mut stdin)?)?;
            let path = parse_path(&read_arg(&path, &mut stdin)?)?;
            let tree = dtab.lookup(&path);
            if out.json {
                return Ok(to_json(
                    &json!({"show": tree.show(), "simplified": tree.simplified().show()}),
                ));
            }
            Ok(tree.show())
        }
        DtabCommand::Bind {
            dtab,
            path,
            source,
            out,
        } => {
            let (r, path) = source.resolve_args(&dtab, &path)?;
            match r.namers.bind(&r.dtab, &path) {
                Activity::Ok(tree) => {
                    let tree = crate::naming::transform_all(tree, &r.transformers);
                    Ok(if out.json {
                        to_json(&bound_json(&tree))
                    } else {
                        bound_text(&tree)
                    })
                }
                Activity::Pending => Err(CliError::Failed(
                    "binding is pending: a namer has not answered".into(),
                )),
                Activity::Failed(e) => Err(CliError::Failed(format!("binding {path} failed: {e}"))),
            }
        }
        DtabCommand::Delegate {
            dtab,
            path,
            source,
            out,
        } => {
            let (r, path) = source.resolve_args(&dtab, &path)?;
            let tree = r
                .namers
                .delegate(&r.dtab, &path)
                .map_err(|e| CliError::Failed(format!("delegating {path} failed: {e}")))?;
            let tree = r.transformers.iter().fold(tree, |t, x| {
                crate::naming::transform_explanation(t, x.as_ref())
            });
            Ok(if out.json {
                to_json(&tree.to_json())
            } else {
                tree.render().trim_end().to_string()
            })
        }
    }
}

fn addr_strings(addr: &Addr) -> Vec<String> {
    match addr {
        Addr::Bound(addrs) => addrs.iter().map(|a| a.addr.to_string()).collect(),
        _ => Vec::new(),
    }
}

fn addr_state(addr: &Addr) -> String {
    match addr {
        Addr::Bound(_) => "bound".into(),
        Addr::Pending => "pending".into(),
        Addr::Neg => "neg".into(),
        Addr::Failed(m) => format!("failed: {m}"),
    }
}

/// `{"tree": show, "leaves": [{"id", "residual", "addrs", "state", "share"}]}`.
fn bound_json(tree: &NameTree<Bound>) -> Value {
    let shares = shares(tree);
    let mut seen = Vec::new();
    let leaves: Vec<Value> = tree
        .leaves()
        .into_iter()
        .filter(|b| {
            let new = !seen.contains(&&b.id);
            seen.push(&b.id);
            new
        })
        .map(|b| {
            let share = shares
                .iter()
                .find(|(id, _)| *id == b.id)
                .map_or(0.0, |(_, s)| *s);
            json!({
                "id": b.id.show(),
                "residual": b.residual.show(),
                "addrs": addr_strings(&b.addr),
                "state": addr_state(&b.addr),
                "share": share,
            })
        })
        .collect();
    json!({"tree": tree.show(), "leaves": leaves})
}

fn bound_text(tree: &NameTree<Bound>) -> String {
    let mut out = tree.show();
    let shares = shares(tree);
    for (id, share) in &shares {
        let Some(b) = tree.leaves().into_iter().find(|b| b.id == *id) else {
            continue;
        };
        let addrs = &b.addr;
        let residual = if b.residual.is_empty() {
            String::new()
        } else {
            format!(" residual {}", b.residual)
        };
        out.push_str(&format!(
            "\n  {id}{residual} ({:.1}% of requests): {addrs}",
            share * 100.0
        ));
    }
    out
}
