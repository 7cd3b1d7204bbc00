//! `/admin/metrics.json`: the registry in Linkerd's flat and tree JSON shapes.
//!
//! Linkerd's dashboard and many scripts read this endpoint, so its shapes are copied
//! exactly. Flat: `{"rt/outgoing/service/svc/world/requests": 12, ...}`, stats expanded
//! to `name.count` and, when the window saw samples, `.max .min .p50 .p90 .p95 .p99 .p9990
//! .p9999 .sum .avg`. Tree (`?tree=1`): nested objects whose nodes carry their own metric
//! as `"counter": n`, `"gauge": x` or the `"stat.count"`... keys next to their children.
//! `?q=a/b` selects a subtree and names keys relative to it. Counters and gauges are read
//! live; stats summarise the last completed window.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{Map, Value};

use super::histogram::Summary;
use super::names::strip_selector;
use super::registry::{Metric, NotFound, Registry};

/// A value read from a series.
enum Leaf {
    Counter(u64),
    Gauge(f64),
    Stat(Summary),
}

impl Leaf {
    fn read(metric: &Metric) -> Self {
        match metric {
            Metric::Counter(c) => Leaf::Counter(c.get()),
            Metric::Gauge(g) => Leaf::Gauge(g.get()),
            Metric::Histogram(h) => Leaf::Stat(h.last_window()),
        }
    }

    /// Writes the leaf's fields into `out`; `name` is the flat key (or `counter`,
    /// `gauge`, `stat` in a tree node).
    fn write(&self, out: &mut Map<String, Value>, name: &str) {
        match self {
            Leaf::Counter(n) => {
                out.insert(name.to_owned(), Value::from(*n));
            }
            Leaf::Gauge(x) => {
                out.insert(name.to_owned(), float(*x));
            }
            Leaf::Stat(s) => {
                out.insert(format!("{name}.count"), Value::from(s.count));
                if s.count == 0 {
                    return;
                }
                let fields = [
                    ("max", s.max),
                    ("min", s.min),
                    ("p50", s.p50),
                    ("p90", s.p90),
                    ("p95", s.p95),
                    ("p99", s.p99),
                    ("p9990", s.p9990),
                    ("p9999", s.p9999),
                    ("sum", s.sum),
                ];
                for (field, v) in fields {
                    out.insert(format!("{name}.{field}"), Value::from(v));
                }
                out.insert(format!("{name}.avg"), float(s.avg()));
            }
        }
    }
}

/// A JSON number for an `f64`; `null` for NaN and infinities, which JSON cannot hold.
fn float(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// A node of the `?tree=1` output.
#[derive(Default)]
struct Node {
    leaf: Option<Leaf>,
    children: BTreeMap<String, Node>,
}

impl Node {
    fn insert(&mut self, path: Vec<String>, leaf: Leaf) {
        let node = path
            .into_iter()
            .fold(self, |node, seg| node.children.entry(seg).or_default());
        node.leaf = Some(leaf);
    }

    fn into_value(self) -> Value {
        let mut out = Map::new();
        match &self.leaf {
            Some(leaf @ Leaf::Counter(_)) => leaf.write(&mut out, "counter"),
            Some(leaf @ Leaf::Gauge(_)) => leaf.write(&mut out, "gauge"),
            Some(leaf @ Leaf::Stat(_)) => leaf.write(&mut out, "stat"),
            None => {}
        }
        for (name, child) in self.children {
            out.insert(name, child.into_value());
        }
        Value::Object(out)
    }
}

impl Registry {
    /// The body of `/admin/metrics.json`.
    ///
    /// `q` selects the subtree under a `/`-separated prefix (`rt/outgoing/service/svc/world`)
    /// and names keys relative to it, as Linkerd does; a selector under which no metric
    /// lives is [`NotFound`] (the admin server answers 404). `tree` gives the nested form of
    /// `?tree=1`. Stats report the last completed window as of `now` (see
    /// [`rotate`](Registry::rotate), which this calls first).
    pub fn metrics_json(
        &self,
        q: Option<&str>,
        tree: bool,
        now: Instant,
    ) -> Result<Value, NotFound> {
        self.rotate(now);
        let selector = q.unwrap_or("").trim_matches('/');
        let leaves: Vec<(Vec<String>, Leaf)> = self.with_series(|all| {
            all.values()
                .filter_map(|s| Some((strip_selector(&s.path, selector)?, Leaf::read(&s.metric))))
                .collect()
        });
        if leaves.is_empty() && !selector.is_empty() {
            return Err(NotFound {
                prefix: q.unwrap_or_default().to_owned(),
            });
        }
        if tree {
            let mut root = Node::default();
            for (path, leaf) in leaves {
                root.insert(path, leaf);
            }
            return Ok(root.into_value());
        }
        let flat: BTreeMap<String, Leaf> = leaves
            .into_iter()
            .map(|(path, leaf)| (path.join("/"), leaf))
            .collect();
        let mut out = Map::new();
        for (name, leaf) in &flat {
            leaf.write(&mut out, name);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use metrics::{counter, gauge, histogram};
    use serde_json::json;

    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    /// A registry with a service, a server and a client scope, and the time it opened.
    fn sample() -> (Registry, Instant) {
        let reg = Registry::new();
        let t0 = Instant::now();
        reg.rotate(t0);
        metrics::with_local_recorder(&reg, || {
            let svc = [("rt", "outgoing"), ("service", "svc/world")];
            counter!("rt:service:requests", &svc).increment(12);
            counter!("rt:service:failures", &svc).increment(1);
            counter!("rt:service:failures", "rt" => "outgoing", "service" => "svc/world",
                "exception" => "ConnectionFailed")
            .increment(1);
            histogram!("rt:service:request_latency_ms", &svc).record(5.0);
            histogram!("rt:service:request_latency_ms", &svc).record(7.0);
            gauge!("rt:server:connections", "rt" => "outgoing", "server" => "0.0.0.0/4140")
                .set(2.0);
            counter!("rt:client:service:success", "rt" => "outgoing",
                "client" => "#/io.l5d.fs/world", "service" => "svc/world")
            .increment(3);
        });
        (reg, t0)
    }

    #[test]
    fn flat_before_and_after_the_first_window() {
        let (reg, t0) = sample();
        let early = reg.metrics_json(None, false, t0 + MINUTE / 2).unwrap();
        assert_eq!(
            early,
            json!({
                "rt/outgoing/client/#/io.l5d.fs/world/service/svc/world/success": 3,
                "rt/outgoing/server/0.0.0.0/4140/connections": 2.0,
                "rt/outgoing/service/svc/world/failures": 1,
                "rt/outgoing/service/svc/world/failures/ConnectionFailed": 1,
                "rt/outgoing/service/svc/world/request_latency_ms.count": 0,
                "rt/outgoing/service/svc/world/requests": 12,
            })
        );
        let later = reg.metrics_json(None, false, t0 + MINUTE).unwrap();
        let keys: Vec<&str> = later
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let stat = "rt/outgoing/service/svc/world/request_latency_ms";
        let suffixes = [
            "count", "max", "min", "p50", "p90", "p95", "p99", "p9990", "p9999", "sum", "avg",
        ];
        let want: Vec<String> = suffixes.iter().map(|s| format!("{stat}.{s}")).collect();
        assert_eq!(
            keys[4..15],
            want.iter().map(String::as_str).collect::<Vec<_>>()[..]
        );
        assert_eq!(later[format!("{stat}.count")], 2);
        assert_eq!(later[format!("{stat}.p50")], 5);
        assert_eq!(later[format!("{stat}.max")], 7);
        assert_eq!(later[format!("{stat}.sum")], 12);
        assert_eq!(later[format!("{stat}.avg")], 6.0);
    }

    #[test]
    fn subtree_selector() {
        let (reg, t0) = sample();
        let sub = reg
            .metrics_json(Some("rt/outgoing/service/svc/world"), false, t0)
            .unwrap();
        assert_eq!(
            sub,
            json!({
                "failures": 1,
                "failures/ConnectionFailed": 1,
                "request_latency_ms.count": 0,
                "requests": 12,
            })
        );
        // Selectors may stop inside an id and may carry slashes around them.
        let sub = reg
            .metrics_json(Some("/rt/outgoing/client/#/"), false, t0)
            .unwrap();
        assert_eq!(sub, json!({"io.l5d.fs/world/service/svc/world/success": 3}));
        // The metric itself: Linkerd's empty relative name.
        let leaf = reg
            .metrics_json(Some("rt/outgoing/service/svc/world/requests"), false, t0)
            .unwrap();
        assert_eq!(leaf, json!({"": 12}));
        let err = reg
            .metrics_json(Some("rt/incoming"), false, t0)
            .unwrap_err();
        assert_eq!(err.prefix, "rt/incoming");
        assert_eq!(err.to_string(), "no metrics under \"rt/incoming\"");
        assert!(reg.metrics_json(Some("rt/out"), true, t0).is_err());
    }

    #[test]
    fn tree_shape() {
        let (reg, t0) = sample();
        let tree = reg.metrics_json(None, true, t0 + MINUTE).unwrap();
        assert_eq!(
            tree,
            json!({"rt": {"outgoing": {
                "client": {"#/io.l5d.fs/world": {"service": {"svc/world": {
                    "success": {"counter": 3}
                }}}},
                "server": {"0.0.0.0/4140": {"connections": {"gauge": 2.0}}},
                "service": {"svc/world": {
                    "failures": {"counter": 1, "ConnectionFailed": {"counter": 1}},
                    "request_latency_ms": {
                        "stat.count": 2, "stat.max": 7, "stat.min": 5, "stat.p50": 5,
                        "stat.p90": 7, "stat.p95": 7, "stat.p99": 7, "stat.p9990": 7,
                        "stat.p9999": 7, "stat.sum": 12, "stat.avg": 6.0
                    },
                    "requests": {"counter": 12}
                }}
            }}})
        );
        let sub = reg
            .metrics_json(Some("rt/outgoing/server"), true, t0)
            .unwrap();
        assert_eq!(
            sub,
            json!({"0.0.0.0/4140": {"connections": {"gauge": 2.0}}})
        );
        let leaf = reg
            .metrics_json(Some("rt/outgoing/service/svc/world/requests"), true, t0)
            .unwrap();
        assert_eq!(leaf, json!({"counter": 12}));
    }

    #[test]
    fn empty_registry_and_odd_gauges() {
        let reg = Registry::new();
        let now = Instant::now();
        assert_eq!(reg.metrics_json(None, false, now).unwrap(), json!({}));
        assert_eq!(reg.metrics_json(Some("/"), true, now).unwrap(), json!({}));
        assert!(reg.metrics_json(Some("rt"), false, now).is_err());
        metrics::with_local_recorder(&reg, || gauge!("g").set(f64::NAN));
        assert_eq!(
            reg.metrics_json(None, false, now).unwrap(),
            json!({"g": null})
        );
    }
}
