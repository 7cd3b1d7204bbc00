//! The simulator's objects and the history of their changes.
//!
//! A real API server stamps every change with a resource version and lets clients list
//! then watch from that version; a watch from a version it has forgotten is answered
//! with 410 Gone. This store reproduces just that contract, in memory, for tests and
//! the local demo: one global, monotonically increasing counter, a bounded history of
//! change events, and a `tokio::sync::watch` channel that wakes open watches when the
//! counter moves. It is a test tool, never a real cluster.

use std::collections::{BTreeMap, VecDeque};

use serde_json::Value;
use tokio::sync::watch;

use super::model::Kind;

/// The kind of change a watch event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// The object was created.
    Added,
    /// The object changed.
    Modified,
    /// The object was removed.
    Deleted,
}

impl EventType {
    /// The event's `type` field on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One recorded change, with the object as it was rendered at that version.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub(crate) rv: u64,
    pub(crate) kind: Kind,
    pub(crate) event_type: EventType,
    pub(crate) object: Value,
}

/// Identifies one stored object: its kind, namespace (empty when cluster scoped), name.
type Key = (Kind, String, String);

/// A stored object: its body without a resource version, and the version it last
/// changed at.
struct Stored {
    body: Value,
    rv: u64,
}

/// A label selector: comma-separated requirements, `k=v`, `k==v`, `k!=v`, `k` or `!k`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Selector {
    requirements: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
}

impl Selector {
    /// Parses a selector; `None` for a form the simulator does not understand.
    pub(crate) fn parse(text: &str) -> Option<Selector> {
        let mut requirements = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let requirement = if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = part.split_once("==") {
                Requirement::Equals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = part.split_once('=') {
                Requirement::Equals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some(k) = part.strip_prefix('!') {
                Requirement::NotExists(k.trim().to_owned())
            } else if part.contains([' ', '(', ')']) {
                return None;
            } else {
                Requirement::Exists(part.to_owned())
            };
            requirements.push(requirement);
        }
        Some(Selector { requirements })
    }

    fn matches(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => label(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::NotExists(k) => label(k).is_none(),
        })
    }
}

/// Which objects a list or watch covers.
#[derive(Clone, Debug)]
pub(crate) struct Filter {
    pub(crate) kind: Kind,
    /// `None` for all namespaces.
    pub(crate) namespace: Option<String>,
    /// `Some` for one named object.
    pub(crate) name: Option<String>,
    pub(crate) labels: Selector,
}

impl Filter {
    fn matches(&self, kind: Kind, object: &Value) -> bool {
        let field = |f: &str| object.pointer(f).and_then(Value::as_str).unwrap_or("");
        kind == self.kind
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| field("/metadata/namespace") == ns)
            && self
                .name
                .as_deref()
                .is_none_or(|n| field("/metadata/name") == n)
            && self.labels.matches(object)
    }
}

/// The answer to a watch asking for events its version no longer covers.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Expired {
    /// The oldest version a watch may still start from.
    pub(crate) oldest: u64,
}

/// The objects, the global resource version and the bounded history of changes.
pub(crate) struct Store {
    objects: BTreeMap<Key, Stored>,
    rv: u64,
    history: VecDeque<Event>,
    history_limit: usize,
    /// The newest version whose event was forgotten: watches must start at or after it.
    compacted: u64,
    rv_tx: watch::Sender<u64>,
}

impl Store {
    pub(crate) fn new(history_limit: usize) -> Store {
        Store {
            objects: BTreeMap::new(),
            rv: 0,
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            compacted: 0,
            rv_tx: watch::Sender::new(0),
        }
    }

    /// The current global resource version.
    pub(crate) fn rv(&self) -> u64 {
        self.rv
    }

    /// A receiver woken whenever the resource version moves.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.rv_tx.subscribe()
    }

    /// Creates or replaces an object; returns its version. An unchanged object records
    /// no event and keeps its version, as the real API server does for a no-op update.
    pub(crate) fn put(&mut self, kind: Kind, namespace: &str, name: &str, body: Value) -> u64 {
        let key = (kind, namespace.to_owned(), name.to_owned());
        let event_type = match self.objects.get(&key) {
            Some(old) if old.body == body => return old.rv,
            Some(_) => EventType::Modified,
            None => EventType::Added,
        };
        let rv = self.bump();
        let object = render(&body, rv);
        self.objects.insert(key, Stored { body, rv });
        self.record(rv, kind, event_type, object);
        rv
    }

    /// Removes an object; returns the deletion's version, `None` if it did not exist.
    pub(crate) fn delete(&mut self, kind: Kind, namespace: &str, name: &str) -> Option<u64> {
        let key = (kind, namespace.to_owned(), name.to_owned());
        let old = self.objects.remove(&key)?;
        let rv = self.bump();
        let object = render(&old.body, rv);
        self.record(rv, kind, EventType::Deleted, object);
        Some(rv)
    }

    /// One object, rendered with its version.
    pub(crate) fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<Value> {
        let key = (kind, namespace.to_owned(), name.to_owned());
        self.objects.get(&key).map(|s| render(&s.body, s.rv))
    }

    /// The objects a filter covers, in key order, with the current version.
    pub(crate) fn list(&self, filter: &Filter) -> (Vec<Value>, u64) {
        let items = self
            .objects
            .iter()
            .filter(|((kind, _, _), _)| *kind == filter.kind)
            .map(|(_, s)| render(&s.body, s.rv))
            .filter(|o| filter.matches(filter.kind, o))
            .collect();
        (items, self.rv)
    }

    /// The events a filter covers after version `after`, with the current version, or
    /// [`Expired`] when some of them have been forgotten.
    pub(crate) fn events_since(
        &self,
        after: u64,
        filter: &Filter,
    ) -> Result<(Vec<Event>, u64), Expired> {
        if after < self.compacted {
            return Err(Expired {
                oldest: self.compacted,
            });
        }
        let events = self
            .history
            .iter()
            .filter(|e| e.rv > after && filter.matches(e.kind, &e.object))
            .cloned()
            .collect();
        Ok((events, self.rv))
    }

    /// Forgets all but the newest `keep` events.
    pub(crate) fn compact(&mut self, keep: usize) {
        while self.history.len() > keep {
            if let Some(e) = self.history.pop_front() {
                self.compacted = e.rv;
            }
        }
    }

    fn bump(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn record(&mut self, rv: u64, kind: Kind, event_type: EventType, object: Value) {
        self.history.push_back(Event {
            rv,
            kind,
            event_type,
            object,
        });
        self.compact(self.history_limit);
        self.rv_tx.send_replace(rv);
    }
}

/// The object with `metadata.resourceVersion` set.
fn render(body: &Value, rv: u64) -> Value {
    let mut object = body.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
    object
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pods() -> Filter {
        Filter {
            kind: Kind::Pod,
            namespace: None,
            name: None,
            labels: Selector::default(),
        }
    }

    #[test]
    fn versions_grow_and_noop_updates_record_nothing() {
        let mut store = Store::new(10);
        let body = json!({"metadata": {"name": "a", "namespace": "ns"}});
        assert_eq!(store.put(Kind::Pod, "ns", "a", body.clone()), 1);
        assert_eq!(store.put(Kind::Pod, "ns", "a", body), 1);
        assert_eq!(store.delete(Kind::Pod, "ns", "a"), Some(2));
        assert_eq!(store.delete(Kind::Pod, "ns", "a"), None);
        let (events, rv) = store.events_since(0, &pods()).expect("not expired");
        assert_eq!(rv, 2);
        let types: Vec<_> = events.iter().map(|e| e.event_type).collect();
        assert_eq!(types, [EventType::Added, EventType::Deleted]);
    }

    #[test]
    fn bounded_history_expires_old_versions() {
        let mut store = Store::new(2);
        for i in 0..5 {
            store.put(Kind::Pod, "ns", &format!("p{i}"), json!({"metadata": {}}));
        }
        assert_eq!(
            store.events_since(2, &pods()).err(),
            Some(Expired { oldest: 3 })
        );
        let (events, _) = store.events_since(3, &pods()).expect("kept");
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn selectors_parse_and_match() {
        let object = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        let matches = |s: &str| Selector::parse(s).expect("parses").matches(&object);
        assert!(matches("app=web"));
        assert!(matches("app==web,tier"));
        assert!(matches("app!=db,!missing"));
        assert!(!matches("app=db"));
        assert!(!matches("missing"));
        assert!(matches(""));
        assert_eq!(Selector::parse("app in (web)"), None);
    }
}
