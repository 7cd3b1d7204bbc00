//! The one place that knows how a metric's Prometheus-style name plus labels maps to
//! Linkerd's scope tree, so `metrics.json`, `?tree=1` and the Prometheus text can never
//! disagree about where a series lives.
//!
//! Instrumentation names a metric by its scopes joined with `:` (`rt:client:service:success`)
//! and carries the dynamic scope ids as labels (`rt`, `client`, `service`). Linkerd's tree
//! puts each id right after the scope segment of the same name:
//! `rt/outgoing/client/#/io.l5d.fs/world/service/svc/world/success`. An id is one tree
//! node even when it contains `/` (Linkerd's dashboard lists `client` children by id).
//! Labels that name no scope (`exception`) are appended at the end, their value split on
//! `:` into nodes, which is how Finagle scopes an exception chain (`failures/A/B`).

/// Linkerd's flat (`metrics.json`) name for a metric name and its labels.
///
/// `linkerd_name("rt:service:requests", &[("rt", "outgoing"), ("service", "svc/world")])`
/// is `"rt/outgoing/service/svc/world/requests"`. Name segments are separated by `:` (a `/`
/// in a name also separates). A label whose key equals a name segment follows that
/// segment, with leading `/` trimmed from its value; the other labels follow the last
/// segment, sorted by key, each value split on `:`. A repeated label key keeps its first
/// value.
pub fn linkerd_name(name: &str, labels: &[(&str, &str)]) -> String {
    let owned: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    linkerd_path(name, &canonical_labels(name, owned)).join("/")
}

/// The segments of `name`: split on `:` and `/`, empty pieces dropped.
fn name_segments(name: &str) -> impl Iterator<Item = &str> {
    name.split([':', '/']).filter(|s| !s.is_empty())
}

/// Puts labels in the order that identifies a series: labels matching a name segment in
/// segment order, then the rest sorted by key. Later duplicates of a key are dropped, so
/// the same call site with its labels in another order lands on the same series.
pub(crate) fn canonical_labels(name: &str, labels: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut rest: Vec<(String, String)> = Vec::with_capacity(labels.len());
    for (k, v) in labels {
        if !rest.iter().any(|(seen, _)| *seen == k) {
            rest.push((k, v));
        }
    }
    let mut out = Vec::with_capacity(rest.len());
    for seg in name_segments(name) {
        if let Some(i) = rest.iter().position(|(k, _)| k == seg) {
            out.push(rest.remove(i));
        }
    }
    rest.sort();
    out.extend(rest);
    out
}

/// The tree path (one entry per node) of a series whose labels are already canonical.
pub(crate) fn linkerd_path(name: &str, labels: &[(String, String)]) -> Vec<String> {
    let mut used = vec![false; labels.len()];
    let mut path = Vec::with_capacity(name_segments(name).count() + labels.len());
    for seg in name_segments(name) {
        path.push(seg.to_owned());
        if let Some(i) = (0..labels.len()).find(|&i| !used[i] && labels[i].0 == seg) {
            used[i] = true;
            path.push(labels[i].1.trim_start_matches('/').to_owned());
        }
    }
    for (i, (_, v)) in labels.iter().enumerate() {
        if !used[i] {
            path.extend(v.split(':').map(str::to_owned));
        }
    }
    path
}

/// Strips a `q=a/b` selector off the front of a tree path, returning the path below it.
///
/// The selector is matched at `/` boundaries of the flat name, so it may end inside an id
/// that contains `/` (`q=rt/outgoing/client/$/inet`): the rest of that id then becomes the
/// first node of the result. `None` when the series is not under the selector.
pub(crate) fn strip_selector(path: &[String], selector: &str) -> Option<Vec<String>> {
    let mut q = selector;
    for (i, seg) in path.iter().enumerate() {
        if q.is_empty() {
            return Some(path[i..].to_vec());
        }
        if q == seg {
            q = "";
        } else if let Some(rest) = q
            .strip_prefix(seg.as_str())
            .and_then(|r| r.strip_prefix('/'))
        {
            q = rest;
        } else if let Some(rest) = seg.strip_prefix(q).and_then(|r| r.strip_prefix('/')) {
            let mut out = vec![rest.to_owned()];
            out.extend_from_slice(&path[i + 1..]);
            return Some(out);
        } else {
            return None;
        }
    }
    q.is_empty().then(Vec::new)
}

/// A Prometheus metric name: `prefix + name`, every char outside `[a-zA-Z0-9:_]` replaced
/// by `_`, and a leading digit guarded with `_`.
pub(crate) fn prometheus_name(prefix: &str, name: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + name.len() + 1);
    for c in prefix.chars().chain(name.chars()) {
        if out.is_empty() && c.is_ascii_digit() {
            out.push('_');
        }
        out.push(if c.is_ascii_alphanumeric() || c == ':' || c == '_' {
            c
        } else {
            '_'
        });
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// A Prometheus label name: like a metric name but without `:`.
pub(crate) fn prometheus_label_name(key: &str) -> String {
    prometheus_name("", key).replace(':', "_")
}

/// Appends a label value escaped for the text format (`\\`, `\"`, `\n`).
pub(crate) fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends `# HELP` text escaped for the text format (`\\`, `\n`).
pub(crate) fn escape_help(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_counter() {
        assert_eq!(
            linkerd_name(
                "rt:service:requests",
                &[("rt", "outgoing"), ("service", "svc/world")]
            ),
            "rt/outgoing/service/svc/world/requests"
        );
    }

    #[test]
    fn server_counter() {
        assert_eq!(
            linkerd_name(
                "rt:server:requests",
                &[("rt", "outgoing"), ("server", "0.0.0.0/4140")]
            ),
            "rt/outgoing/server/0.0.0.0/4140/requests"
        );
    }

    #[test]
    fn client_service_breakdown_in_any_label_order() {
        let want = "rt/outgoing/client/#/io.l5d.fs/world/service/svc/world/success";
        let name = "rt:client:service:success";
        assert_eq!(
            linkerd_name(
                name,
                &[
                    ("rt", "outgoing"),
                    ("client", "#/io.l5d.fs/world"),
                    ("service", "svc/world")
                ]
            ),
            want
        );
        assert_eq!(
            linkerd_name(
                name,
                &[
                    ("service", "svc/world"),
                    ("client", "#/io.l5d.fs/world"),
                    ("rt", "outgoing")
                ]
            ),
            want
        );
    }

    #[test]
    fn status_code_and_histogram() {
        assert_eq!(
            linkerd_name(
                "rt:server:status:200",
                &[("rt", "in"), ("server", "0.0.0.0/4141")]
            ),
            "rt/in/server/0.0.0.0/4141/status/200"
        );
        assert_eq!(
            linkerd_name(
                "rt:service:request_latency_ms",
                &[("rt", "outgoing"), ("service", "svc/world")]
            ),
            "rt/outgoing/service/svc/world/request_latency_ms"
        );
    }

    #[test]
    fn unmatched_labels_are_appended_split_on_colons() {
        let labels = [("rt", "outgoing"), ("service", "svc/world")];
        let mut l = labels.to_vec();
        l.push(("exception", "ConnectionFailed"));
        assert_eq!(
            linkerd_name("rt:service:failures", &l),
            "rt/outgoing/service/svc/world/failures/ConnectionFailed"
        );
        let mut l = labels.to_vec();
        l.push(("exception", "A:B"));
        assert_eq!(
            linkerd_name("rt:service:failures", &l),
            "rt/outgoing/service/svc/world/failures/A/B"
        );
        // Several unmatched labels follow in key order.
        assert_eq!(linkerd_name("x:y", &[("z", "1"), ("a", "2")]), "x/y/2/1");
    }

    #[test]
    fn names_without_labels_and_odd_inputs() {
        assert_eq!(linkerd_name("process:uptime_ms", &[]), "process/uptime_ms");
        assert_eq!(linkerd_name("jvm/uptime", &[]), "jvm/uptime");
        assert_eq!(linkerd_name("a::b:", &[]), "a/b");
        // A leading slash on an id is not doubled; a repeated key keeps its first value.
        assert_eq!(
            linkerd_name(
                "rt:service:requests",
                &[("rt", "o"), ("service", "/svc/a"), ("rt", "x")]
            ),
            "rt/o/service/svc/a/requests"
        );
    }

    #[test]
    fn ids_are_single_tree_nodes() {
        let labels = canonical_labels(
            "rt:client:connections",
            vec![
                ("client".into(), "$/inet/127.1/9091".into()),
                ("rt".into(), "r".into()),
            ],
        );
        assert_eq!(labels[0].0, "rt");
        assert_eq!(
            linkerd_path("rt:client:connections", &labels),
            ["rt", "r", "client", "$/inet/127.1/9091", "connections"]
        );
    }

    #[test]
    fn selectors() {
        let path: Vec<String> = ["rt", "r", "client", "$/inet/127.1/9091", "connections"]
            .map(String::from)
            .to_vec();
        assert_eq!(strip_selector(&path, ""), Some(path.clone()));
        assert_eq!(
            strip_selector(&path, "rt/r"),
            Some(vec![
                "client".into(),
                "$/inet/127.1/9091".into(),
                "connections".into()
            ])
        );
        assert_eq!(
            strip_selector(&path, "rt/r/client/$/inet"),
            Some(vec!["127.1/9091".into(), "connections".into()])
        );
        assert_eq!(
            strip_selector(&path, "rt/r/client/$/inet/127.1/9091/connections"),
            Some(vec![])
        );
        assert_eq!(strip_selector(&path, "rt/re"), None);
        assert_eq!(strip_selector(&path, "rt/r/client/$/in"), None);
        assert_eq!(
            strip_selector(&path, "rt/r/client/$/inet/127.1/9091/connections/x"),
            None
        );
    }

    #[test]
    fn prometheus_names() {
        assert_eq!(
            prometheus_name("", "rt:service:requests"),
            "rt:service:requests"
        );
        assert_eq!(
            prometheus_name("l5d_", "jvm/heap.used-x"),
            "l5d_jvm_heap_used_x"
        );
        assert_eq!(prometheus_name("", "9lives"), "_9lives");
        assert_eq!(prometheus_label_name("a:b-c"), "a_b_c");
        let mut s = String::new();
        escape_label_value(&mut s, "a\\b\"c\nd");
        assert_eq!(s, r#"a\\b\"c\nd"#);
    }
}
