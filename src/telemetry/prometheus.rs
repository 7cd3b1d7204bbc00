//! The Prometheus text exposition (format 0.0.4) of the registry, for `io.l5d.prometheus`.
//!
//! Names are Linkerd's (scopes joined by `:`, ids as labels: `rt:service:requests{rt="outgoing",
//! service="svc/world"}`) so existing dashboards and alerts keep working. Unlike Linkerd we
//! also write `# HELP` and `# TYPE` lines, grouping each family's series under them as
//! the format requires. Stats become summaries: quantiles 0 (min), 0.5 ... 0.9999 and 1
//! (max) over the last completed window (`NaN` when it saw no sample), while `_count` and
//! `_sum` are lifetime totals, as Prometheus' `rate()` expects; the window's mean is a
//! separate gauge family `<name>_avg`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Instant;

use super::names::{
    escape_help, escape_label_value, linkerd_path, prometheus_label_name, prometheus_name,
};
use super::registry::{Metric, Registry, SeriesId};

/// One `# TYPE` block.
struct Family {
    kind: &'static str,
    help: String,
    samples: String,
}

/// The quantile labels of a summary: 0 is the window's min, 1 its max.
const QUANTILES: [&str; 8] = ["0", "0.5", "0.9", "0.95", "0.99", "0.999", "0.9999", "1"];

/// Formats a float the way Prometheus parses it (`NaN`, `+Inf`, `-Inf`).
fn float(out: &mut String, x: f64) {
    if x.is_nan() {
        out.push_str("NaN");
    } else if x.is_infinite() {
        out.push_str(if x > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{x}");
    }
}

/// `{k="v",...}` for a series, with an optional extra label last; empty when no labels.
fn label_set(id: &SeriesId, extra: Option<(&str, &str)>) -> String {
    let mut out = String::new();
    let pairs = id
        .labels
        .iter()
        .map(|(k, v)| (prometheus_label_name(k), v.as_str()))
        .chain(extra.map(|(k, v)| (k.to_owned(), v)));
    for (i, (k, v)) in pairs.enumerate() {
        out.push(if i == 0 { '{' } else { ',' });
        out.push_str(&k);
        out.push_str("=\"");
        escape_label_value(&mut out, v);
        out.push('"');
    }
    if !out.is_empty() {
        out.push('}');
    }
    out
}

/// Default help text: where the family sits in Linkerd's tree, ids as `{label}`.
fn default_help(id: &SeriesId) -> String {
    let placeholders: Vec<(String, String)> = id
        .labels
        .iter()
        .map(|(k, _)| (k.clone(), format!("{{{k}}}")))
        .collect();
    format!(
        "Linkerd metric {}",
        linkerd_path(&id.name, &placeholders).join("/")
    )
}

impl Registry {
    /// The body of the Prometheus scrape endpoint, each metric name prefixed with `prefix`
    /// (the telemeter's `prefix`, usually empty).
    ///
    /// Output is sorted by family, then by labels. Stats report the last completed window
    /// as of `now` (see [`rotate`](Registry::rotate), which this calls first). Should two
    /// names collide once sanitised with different types, or with a summary's `_count`,
    /// `_sum` or `_avg` series, the family sorted first is kept and the other left out, so
    /// the text always parses.
    pub fn prometheus(&self, prefix: &str, now: Instant) -> String {
        self.rotate(now);
        let mut families: BTreeMap<String, Family> = BTreeMap::new();
        let mut averages: BTreeMap<String, Family> = BTreeMap::new();
        self.with_series(|all| {
            for (id, series) in all {
                let name = prometheus_name(prefix, &id.name);
                let kind = match series.metric {
                    Metric::Counter(_) => "counter",
                    Metric::Gauge(_) => "gauge",
                    Metric::Histogram(_) => "summary",
                };
                let family = families.entry(name.clone()).or_insert_with(|| Family {
                    kind,
                    help: self.help(&id.name).unwrap_or_else(|| default_help(id)),
                    samples: String::new(),
                });
                if family.kind != kind {
                    continue;
                }
                let out = &mut family.samples;
                match &series.metric {
                    Metric::Counter(c) => {
                        let _ = writeln!(out, "{name}{} {}", label_set(id, None), c.get());
                    }
                    Metric::Gauge(g) => {
                        let _ = write!(out, "{name}{} ", label_set(id, None));
                        float(out, g.get());
                        out.push('\n');
                    }
                    Metric::Histogram(h) => {
                        let w = h.last_window();
                        let values = [w.min, w.p50, w.p90, w.p95, w.p99, w.p9990, w.p9999, w.max];
                        for (q, v) in QUANTILES.iter().zip(values) {
                            let _ = write!(out, "{name}{} ", label_set(id, Some(("quantile", q))));
                            if w.count == 0 {
                                out.push_str("NaN\n");
                            } else {
                                let _ = writeln!(out, "{v}");
                            }
                        }
                        let labels = label_set(id, None);
                        let (count, sum) = h.totals();
                        let _ = writeln!(out, "{name}_sum{labels} {sum}");
                        let _ = writeln!(out, "{name}_count{labels} {count}");
                        let avg_name = format!("{name}_avg");
                        let avg = averages.entry(avg_name.clone()).or_insert_with(|| Family {
                            kind: "gauge",
                            help: format!("Mean of {name} over the last window"),
                            samples: String::new(),
                        });
                        let _ = write!(avg.samples, "{avg_name}{labels} ");
                        float(
                            &mut avg.samples,
                            if w.count == 0 { f64::NAN } else { w.avg() },
                        );
                        avg.samples.push('\n');
                    }
                }
            }
        });
        // Sample names each summary owns besides its family name.
        let taken: BTreeSet<String> = families
            .iter()
            .filter(|(_, f)| f.kind == "summary")
            .flat_map(|(n, _)| [format!("{n}_sum"), format!("{n}_count")])
            .collect();
        families.retain(|name, _| !taken.contains(name));
        for (name, avg) in averages {
            if !taken.contains(&name) {
                families.entry(name).or_insert(avg);
            }
        }
        let mut out = String::new();
        for (name, family) in families {
            let _ = write!(out, "# HELP {name} ");
            escape_help(&mut out, &family.help);
            let _ = writeln!(out, "\n# TYPE {name} {}", family.kind);
            out.push_str(&family.samples);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use metrics::{counter, describe_counter, gauge, histogram};

    use super::*;

    #[test]
    fn known_set_exactly() {
        let reg = Registry::new();
        let t0 = Instant::now();
        reg.rotate(t0);
        metrics::with_local_recorder(&reg, || {
            describe_counter!("rt:server:requests", "Requests received by a server.");
            counter!("rt:server:requests", "rt" => "outgoing", "server" => "0.0.0.0/4140")
                .increment(7);
            counter!("rt:service:failures", "rt" => "outgoing", "service" => "svc/world",
                "exception" => "A:B")
            .increment(1);
            gauge!("rt:client:connections", "client" => "#/io.l5d.fs/x\"y\\z", "rt" => "outgoing")
                .set(1.5);
            gauge!("process:fds").set(f64::INFINITY);
            let lat = histogram!("rt:service:request_latency_ms", "rt" => "outgoing",
                "service" => "svc/world");
            for v in [1.0, 2.0, 3.0, 4.0] {
                lat.record(v);
            }
            histogram!("idle_ms").record(1.0);
        });
        let text = reg.prometheus("", t0 + Duration::from_secs(61));
        let want = r##"# HELP idle_ms Linkerd metric idle_ms
# TYPE idle_ms summary
idle_ms{quantile="0"} 1
idle_ms{quantile="0.5"} 1
idle_ms{quantile="0.9"} 1
idle_ms{quantile="0.95"} 1
idle_ms{quantile="0.99"} 1
idle_ms{quantile="0.999"} 1
idle_ms{quantile="0.9999"} 1
idle_ms{quantile="1"} 1
idle_ms_sum 1
idle_ms_count 1
# HELP idle_ms_avg Mean of idle_ms over the last window
# TYPE idle_ms_avg gauge
idle_ms_avg 1
# HELP process:fds Linkerd metric process/fds
# TYPE process:fds gauge
process:fds +Inf
# HELP rt:client:connections Linkerd metric rt/{rt}/client/{client}/connections
# TYPE rt:client:connections gauge
rt:client:connections{rt="outgoing",client="#/io.l5d.fs/x\"y\\z"} 1.5
# HELP rt:server:requests Requests received by a server.
# TYPE rt:server:requests counter
rt:server:requests{rt="outgoing",server="0.0.0.0/4140"} 7
# HELP rt:service:failures Linkerd metric rt/{rt}/service/{service}/failures/{exception}
# TYPE rt:service:failures counter
rt:service:failures{rt="outgoing",service="svc/world",exception="A:B"} 1
# HELP rt:service:request_latency_ms Linkerd metric rt/{rt}/service/{service}/request_latency_ms
# TYPE rt:service:request_latency_ms summary
rt:service:request_latency_ms{rt="outgoing",service="svc/world",quantile="0"} 1
rt:service:request_latency_ms{rt="outgoing",service="svc/world",quantile="0.5"} 2
rt:service:request_latency_ms{rt="outgoing",service="svc/world",quantile="0.9"} 4
rt:service:request_latency_ms{rt="outgoing",service="svc/world",quantile="0.95"} 4
rt:service:request_latency_ms{rt="outgoing",service="svc/world",quantile="0.99"} 4
rt:service:request_latency_ms{rt="outgoing",service="svc/world",quantile="0.999"} 4
rt:service:request_latency_ms{rt="outgoing",service="svc/world",quantile="0.9999"} 4
rt:service:request_latency_ms{rt="outgoing",service="svc/world",quantile="1"} 4
rt:service:request_latency_ms_sum{rt="outgoing",service="svc/world"} 10
rt:service:request_latency_ms_count{rt="outgoing",service="svc/world"} 4
# HELP rt:service:request_latency_ms_avg Mean of rt:service:request_latency_ms over the last window
# TYPE rt:service:request_latency_ms_avg gauge
rt:service:request_latency_ms_avg{rt="outgoing",service="svc/world"} 2.5
"##;
        assert_eq!(text, want);
    }

    #[test]
    fn prefix_empty_windows_and_collisions() {
        let reg = Registry::new();
        let t0 = Instant::now();
        metrics::with_local_recorder(&reg, || {
            histogram!("lat").record(3.0);
            counter!("lat_count").increment(1); // owned by the summary: left out
            counter!("a/b").increment(1);
            gauge!("a_b").set(1.0); // same family name, other type: left out
        });
        let text = reg.prometheus("l5d_", t0);
        assert!(text.contains("l5d_a_b 1\n"), "{text}");
        assert!(!text.contains("gauge\nl5d_a_b"), "{text}");
        assert!(text.contains("l5d_lat{quantile=\"0.5\"} NaN\n"), "{text}");
        assert!(text.contains("l5d_lat_count 1\n"), "{text}");
        assert!(text.contains("l5d_lat_avg NaN\n"), "{text}");
        assert_eq!(text.matches("l5d_lat_count").count(), 1, "{text}");
        assert_eq!(Registry::new().prometheus("", t0), "");
    }
}
