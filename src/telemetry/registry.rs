//! The registry: where `counter!`/`gauge!`/`histogram!` land, and what the exporters read.
//!
//! [`Registry`] implements [`metrics::Recorder`]. Registering a series takes a lock and
//! allocates (callers do it once per client or service and keep the handle); the handles
//! it returns write straight into atomics, so recording never locks or allocates. Series
//! are kept in a `BTreeMap` keyed by name and canonical labels, which makes every export
//! sorted and diffable. Time is always passed in (`now`): the registry owns the
//! snapshot-window clock for histograms but never reads a clock itself.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};

use super::histogram::AtomicHistogram;
use super::names;

/// `/admin/metrics.json` was asked for a subtree (`?q=`) that holds no metric.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no metrics under {prefix:?}")]
pub struct NotFound {
    /// The selector as given.
    pub prefix: String,
}

/// A monotonic counter.
#[derive(Debug, Default)]
pub(crate) struct AtomicCounter(AtomicU64);

impl AtomicCounter {
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

impl metrics::CounterFn for AtomicCounter {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Relaxed);
    }

    /// Counters only move forward: an older absolute value never rewinds one.
    fn absolute(&self, value: u64) {
        self.0.fetch_max(value, Relaxed);
    }
}

/// A gauge holding an `f64` as bits.
#[derive(Debug, Default)]
pub(crate) struct AtomicGauge(AtomicU64);

impl AtomicGauge {
    pub(crate) fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Relaxed))
    }

    fn add(&self, delta: f64) {
        // Never fails: the closure always returns Some.
        let _ = self.0.fetch_update(Relaxed, Relaxed, |bits| {
            Some((f64::from_bits(bits) + delta).to_bits())
        });
    }
}

impl metrics::GaugeFn for AtomicGauge {
    fn increment(&self, value: f64) {
        self.add(value);
    }

    fn decrement(&self, value: f64) {
        self.add(-value);
    }

    fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Relaxed);
    }
}

/// The value side of a series.
#[derive(Clone)]
pub(crate) enum Metric {
    Counter(Arc<AtomicCounter>),
    Gauge(Arc<AtomicGauge>),
    Histogram(Arc<AtomicHistogram>),
}

/// The three kinds of series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn make(self) -> Metric {
        match self {
            Kind::Counter => Metric::Counter(Default::default()),
            Kind::Gauge => Metric::Gauge(Default::default()),
            Kind::Histogram => Metric::Histogram(Arc::new(AtomicHistogram::new())),
        }
    }
}

impl Metric {
    fn kind(&self) -> Kind {
        match self {
            Metric::Counter(_) => Kind::Counter,
            Metric::Gauge(_) => Kind::Gauge,
            Metric::Histogram(_) => Kind::Histogram,
        }
    }
}

/// Identity of a series: its name and canonical labels (see [`names::canonical_labels`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SeriesId {
    pub(crate) name: String,
    pub(crate) labels: Vec<(String, String)>,
}

/// A registered series.
pub(crate) struct Series {
    pub(crate) metric: Metric,
    /// Linkerd tree path, computed once at registration.
    pub(crate) path: Vec<String>,
}

/// When the current histogram window opened; `None` until the first `now` is seen.
struct Clock {
    window: Duration,
    opened: Option<Instant>,
}

struct Inner {
    series: RwLock<BTreeMap<SeriesId, Series>>,
    help: RwLock<HashMap<String, String>>,
    clock: Mutex<Clock>,
}

/// All of a process's metrics, shared by every handle and exporter.
///
/// Cloning is cheap (an `Arc`). Install it with `metrics::set_global_recorder(registry.clone())`
/// in the binary, or `metrics::with_local_recorder` in tests, and keep a clone for the admin
/// server's [`metrics_json`](Registry::metrics_json) and [`prometheus`](Registry::prometheus).
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("series", &read(&self.inner.series).len())
            .finish()
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

impl Registry {
    /// Linkerd's histogram snapshot interval: stats report the last completed minute.
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

    /// An empty registry with one-minute histogram windows.
    pub fn new() -> Self {
        Self::with_window(Self::DEFAULT_WINDOW)
    }

    /// An empty registry whose histogram windows last `window` (Linkerd's
    /// `histogramSnapshotInterval`). A zero window is treated as one millisecond.
    pub fn with_window(window: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                series: RwLock::new(BTreeMap::new()),
                help: RwLock::new(HashMap::new()),
                clock: Mutex::new(Clock {
                    window: window.max(Duration::from_millis(1)),
                    opened: None,
                }),
            }),
        }
    }

    /// Closes the current histogram window if it has lasted a full window by `now`.
    ///
    /// The first call only opens the first window. Windows stay on the grid set by that
    /// first call; when more than one window has passed since the last rotation, the
    /// samples of the whole gap are reported as the last window. Call it at least once a
    /// window (from a ticker in the admin server) for exact minute windows; the exporters
    /// call it too. A `now` earlier than the window's start changes nothing.
    pub fn rotate(&self, now: Instant) {
        let mut clock = self
            .inner
            .clock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(opened) = clock.opened else {
            clock.opened = Some(now);
            return;
        };
        let elapsed = now.saturating_duration_since(opened);
        if elapsed < clock.window {
            return;
        }
        let windows = (elapsed.as_nanos() / clock.window.as_nanos()) as u32;
        clock.opened = Some(opened + clock.window * windows);
        // Rotating under the clock lock keeps concurrent rotations from interleaving.
        for series in read(&self.inner.series).values() {
            if let Metric::Histogram(h) = &series.metric {
                h.rotate();
            }
        }
    }

    /// Stops exporting every series whose labels include all of `labels` (used when an
    /// idle client or service is evicted); returns how many were dropped.
    ///
    /// Handles already given out keep working but are no longer exported; registering the
    /// same series again starts it from zero. An empty `labels` matches every series.
    pub fn remove_matching(&self, labels: &[(&str, &str)]) -> usize {
        let mut series = write(&self.inner.series);
        let before = series.len();
        series.retain(|id, _| {
            !labels
                .iter()
                .all(|(k, v)| id.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        });
        before - series.len()
    }

    /// Runs `f` over the series table, sorted by name and labels, under the read lock.
    pub(crate) fn with_series<R>(&self, f: impl FnOnce(&BTreeMap<SeriesId, Series>) -> R) -> R {
        f(&read(&self.inner.series))
    }

    /// The description given with `describe_*!` for a metric name.
    pub(crate) fn help(&self, name: &str) -> Option<String> {
        read(&self.inner.help).get(name).cloned()
    }

    /// Finds or creates a series of `kind`; `None` when it exists with another kind.
    fn register(&self, key: &Key, kind: Kind) -> Option<Metric> {
        let labels = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        let name = key.name();
        let id = SeriesId {
            name: name.to_owned(),
            labels: names::canonical_labels(name, labels),
        };
        let found = read(&self.inner.series).get(&id).map(|s| s.metric.clone());
        let metric = match found {
            Some(m) => m,
            None => {
                let mut series = write(&self.inner.series);
                let path = names::linkerd_path(&id.name, &id.labels);
                let entry = series.entry(id.clone()).or_insert_with(|| Series {
                    metric: kind.make(),
                    path,
                });
                entry.metric.clone()
            }
        };
        if metric.kind() == kind {
            Some(metric)
        } else {
            tracing::warn!(
                name = %id.name,
                registered = ?metric.kind(),
                requested = ?kind,
                "metric registered with two kinds; the second is not exported"
            );
            None
        }
    }

    fn describe(&self, key: KeyName, description: SharedString) {
        write(&self.inner.help).insert(key.as_str().to_owned(), description.into_owned());
    }
}

impl metrics::Recorder for Registry {
    fn describe_counter(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.describe(key, description);
    }

    fn describe_gauge(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.describe(key, description);
    }

    fn describe_histogram(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.describe(key, description);
    }

    fn register_counter(&self, key: &Key, _metadata: &Metadata<'_>) -> Counter {
        match self.register(key, Kind::Counter) {
            Some(Metric::Counter(c)) => Counter::from_arc(c),
            _ => Counter::from_arc(Arc::new(AtomicCounter::default())),
        }
    }

    fn register_gauge(&self, key: &Key, _metadata: &Metadata<'_>) -> Gauge {
        match self.register(key, Kind::Gauge) {
            Some(Metric::Gauge(g)) => Gauge::from_arc(g),
            _ => Gauge::from_arc(Arc::new(AtomicGauge::default())),
        }
    }

    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> Histogram {
        match self.register(key, Kind::Histogram) {
            Some(Metric::Histogram(h)) => Histogram::from_arc(h),
            _ => Histogram::from_arc(Arc::new(AtomicHistogram::new())),
        }
    }
}
