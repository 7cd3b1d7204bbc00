//! The `io.l5d.fs` watcher: the actor that polls the directory and publishes snapshots.
//!
//! This is the only part of the namer that touches the file system. Each poll lists
//! `rootDir`, stats every eligible file and reads those whose size or mtime changed (or
//! whose mtime is too recent to trust), all on tokio's blocking pool so the actix
//! arbiter never waits on the disk. The result goes through the pure [`FsCore`];
//! changes are published to the shared [`ArcSwap`](arc_swap::ArcSwap), logged, and
//! announced with one [`Epoch`](crate::discovery::Epoch) bump per changing scan.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::Path as FsPath;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, SystemTime};

use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, AtomicResponse, Context, Handler, Message,
    Supervised, Supervisor, WrapFuture,
};
use tokio::task::JoinError;

use super::state::{Change, DirScan, FileProblem, FileScan, FileStamp, FsCore, ScanReport};
use super::{MAX_FILE_BYTES, ScanStatus, Shared};

/// Whether a directory entry named `name` is a service: a non-empty plain path element
/// (`[A-Za-z0-9_:.#$%-]`) that is not hidden (`.name`, which also covers Kubernetes
/// ConfigMap internals) nor an editor leftover (`name~`, `*.swp`, `*.swx`, `#name#`,
/// vim's `4913` write probe).
pub fn is_service_file_name(name: &str) -> bool {
    let plain = name.bytes().all(|b| {
        b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'.' | b'#' | b'$' | b'%' | b'-')
    });
    let leftover = name.starts_with('.')
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || (name.len() > 1 && name.starts_with('#') && name.ends_with('#'))
        || name == "4913";
    !name.is_empty() && plain && !leftover
}

/// The actor that keeps an [`FsNamer`](super::FsNamer) fresh; see the module docs.
pub struct FsWatch {
    shared: Arc<Shared>,
    interval: Duration,
}

impl std::fmt::Debug for FsWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsWatch")
            .field("root_dir", &self.shared.root_dir)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl FsWatch {
    pub(super) fn new(shared: Arc<Shared>, interval: Duration) -> Self {
        FsWatch { shared, interval }
    }

    /// The same watcher polling every `interval` (at least 1 ms).
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The poll interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Scans the directory on the calling thread, publishes any change and says what
    /// changed. Blocks on file I/O: meant for tests and for a first scan before
    /// [`FsWatch::start`]; a started watcher scans on its own (or on [`ScanNow`]).
    pub fn scan_now(&self) -> ScanReport {
        scan(&self.shared)
    }

    /// Starts the watcher under an [`actix::Supervisor`] on the current arbiter. It
    /// scans at once and then every interval. Keep the address: a watcher whose
    /// addresses are all gone is not restarted after a failure.
    pub fn start(self) -> actix::Addr<FsWatch> {
        Supervisor::start(|_| self)
    }

    /// One scan on the blocking pool, run with `ctx.wait` so that scans never overlap
    /// and messages wait for the scan in progress. A scan that panicked stops the actor
    /// so that the supervisor restarts it; it then yields `None`.
    fn scan_in_background(
        &self,
    ) -> impl actix::ActorFuture<Self, Output = Option<ScanReport>> + 'static {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || scan(&shared))
            .into_actor(self)
            .map(|result: Result<ScanReport, JoinError>, _act, ctx: &mut Context<Self>| {
                match result {
                    Ok(report) => Some(report),
                    Err(e) => {
                        tracing::error!(
                            error = %e,
                            "io.l5d.fs: directory scan failed; restarting the watcher, last good endpoints kept"
                        );
                        ctx.stop();
                        None
                    }
                }
            })
    }
}

impl Actor for FsWatch {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.wait(self.scan_in_background().map(|_, _, _| ()));
        ctx.run_interval(self.interval, |act, ctx| {
            ctx.wait(act.scan_in_background().map(|_, _, _| ()));
        });
    }
}

impl Supervised for FsWatch {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.shared.restarts.fetch_add(1, Ordering::Relaxed);
        // The read cache may be half-updated: rebuild it from the published snapshot.
        *lock_core(&self.shared) = None;
        tracing::warn!(
            root_dir = %self.shared.root_dir.display(),
            "io.l5d.fs: watcher restarted; serving the last published endpoints"
        );
    }
}

/// Asks a started [`FsWatch`] to scan now; answers what changed, or `None` if the scan
/// failed and the watcher is restarting. Queued behind any scan in progress.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScanNow;

impl Message for ScanNow {
    type Result = Option<ScanReport>;
}

impl Handler<ScanNow> for FsWatch {
    type Result = AtomicResponse<Self, Option<ScanReport>>;

    fn handle(&mut self, _msg: ScanNow, _ctx: &mut Self::Context) -> Self::Result {
        AtomicResponse::new(Box::pin(self.scan_in_background()))
    }
}

/// Locks the core, recovering from a scan that panicked while holding it: the working
/// copy is then discarded and rebuilt from the published snapshot.
fn lock_core(shared: &Shared) -> MutexGuard<'_, Option<FsCore>> {
    match shared.core.lock() {
        Ok(guard) => guard,
        Err(poisoned) => {
            let mut guard = poisoned.into_inner();
            *guard = None;
            shared.core.clear_poison();
            guard
        }
    }
}

/// One complete scan: list, read, apply, publish, log.
fn scan(shared: &Shared) -> ScanReport {
    let mut guard = lock_core(shared);
    let core = guard.get_or_insert_with(|| FsCore::new((**shared.snapshot.load()).clone()));
    #[cfg(test)]
    if shared.panic_next_scan.swap(false, Ordering::SeqCst) {
        panic!("io.l5d.fs: injected scan failure");
    }
    let at = SystemTime::now();
    let files = list(&shared.root_dir, core);
    let report = core.apply(DirScan { at, files });
    if report.is_changed() {
        shared.snapshot.store(Arc::new(core.snapshot().clone()));
        shared.epoch.bump();
    }
    let previous = shared.status.load();
    log(shared, &report, previous.dir_error.as_deref());
    shared.status.store(Arc::new(ScanStatus {
        last_scan: Some(at),
        scans: previous.scans.saturating_add(1),
        dir_error: report.dir_error.clone(),
    }));
    report
}

/// Lists `root` and reads the eligible files that `core` needs; an error means the
/// listing is incomplete, so nothing may be concluded from it.
fn list(root: &FsPath, core: &FsCore) -> Result<BTreeMap<String, FileScan>, String> {
    let describe = |e: io::Error| format!("cannot list rootDir {}: {e}", root.display());
    let mut files = BTreeMap::new();
    for entry in fs::read_dir(root).map_err(describe)? {
        let entry = entry.map_err(describe)?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !is_service_file_name(&name) {
            continue;
        }
        let path = entry.path();
        // Follows symlinks, as Kubernetes ConfigMap volumes need.
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            // Deleted since listing, or a dangling symlink: not a service.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                files.insert(name, FileScan::Unreadable(e.to_string()));
                continue;
            }
        };
        if !meta.is_file() {
            continue;
        }
        let stamp = FileStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
        };
        if !core.needs_read(&name, &stamp) {
            files.insert(name, FileScan::Unchanged(stamp));
            continue;
        }
        let scan = match read_capped(&path) {
            Ok(contents) => FileScan::Read { stamp, contents },
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => FileScan::Unreadable(e.to_string()),
        };
        files.insert(name, scan);
    }
    Ok(files)
}

/// Reads a file of at most [`MAX_FILE_BYTES`].
fn read_capped(path: &FsPath) -> io::Result<Vec<u8>> {
    let mut contents = Vec::new();
    fs::File::open(path)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut contents)?;
    if contents.len() as u64 > MAX_FILE_BYTES {
        return Err(io::Error::other(format!(
            "larger than {MAX_FILE_BYTES} bytes"
        )));
    }
    Ok(contents)
}

fn log(shared: &Shared, report: &ScanReport, previous_dir_error: Option<&str>) {
    let root = shared.root_dir.display();
    match (&report.dir_error, previous_dir_error) {
        (Some(e), prev) if prev != Some(e.as_str()) => tracing::warn!(
            root_dir = %root,
            error = %e,
            "io.l5d.fs: cannot list rootDir; keeping the last good endpoints"
        ),
        (None, Some(_)) => tracing::info!(root_dir = %root, "io.l5d.fs: rootDir readable again"),
        _ => {}
    }
    for (file, change) in &report.changes {
        match change {
            Change::Rejected(FileProblem::Parse(e)) => tracing::warn!(
                root_dir = %root,
                file = %file,
                line = e.line,
                reason = %e.kind,
                "io.l5d.fs: malformed service file; keeping its last good endpoints"
            ),
            Change::Rejected(FileProblem::Read(e)) => tracing::warn!(
                root_dir = %root,
                file = %file,
                reason = %e,
                "io.l5d.fs: unreadable service file; keeping its last good endpoints"
            ),
            other => {
                tracing::info!(root_dir = %root, file = %file, change = ?other, "io.l5d.fs: service file changed")
            }
        }
    }
}
