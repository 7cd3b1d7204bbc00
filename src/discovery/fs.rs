//! `io.l5d.fs`: service discovery from a directory of files, as in Linkerd 1.x.
//!
//! Each regular file in `rootDir` is a service named by its file name and lists that
//! service's endpoints, one `host port [* weight]` per line (see [`parse_endpoints`]).
//! Mounted at `/#/io.l5d.fs`, a lookup of `/<file>/<rest...>` binds to
//! `/#/io.l5d.fs/<file>` with residual `/<rest...>`; a missing file is `Neg`, an empty
//! one is bound with no endpoints. File names that are not plain path elements
//! (`[A-Za-z0-9_:.#$%-]` only), hidden files and editor leftovers (`*~`, `*.swp`,
//! `#name#`, vim's `4913` probe) are ignored.
//!
//! The namer is split in three: a pure parser ([`parse_endpoints`]), a pure core that
//! keeps the last good endpoints of every file and reports what a directory scan changed
//! ([`FsCore`]), and [`FsWatch`], an actix actor that polls the directory (every 250 ms
//! by default) and publishes snapshots through an [`ArcSwap`] so that
//! [`Namer::lookup`] never locks. A malformed or unreadable file is logged and keeps
//! its last good endpoints; a deleted file becomes `Neg`; a missing or unreadable
//! `rootDir` is logged and changes nothing. Each scan that changes the snapshot bumps
//! the shared [`Epoch`] exactly once.
//!
//! Host names other than `localhost` are refused rather than resolved, which keeps the
//! file's meaning independent of DNS; use `/$/inet/<host>/<port>` for DNS names.
//!
//! **Restarts.** The watcher runs under [`actix::Supervisor`]. If a scan panics, the
//! actor stops itself and the supervisor restarts it: `restarting` discards the
//! watcher's read cache (file stamps), `started` re-arms the poll timer and scans at
//! once. The published snapshot lives in the `Arc` shared with [`FsNamer`], not in the
//! actor, so lookups keep answering from the last good endpoints throughout; the first
//! scan after a restart re-reads every file and publishes (and bumps the epoch) only if
//! something really changed. Supervision needs a live address: keep the one that
//! [`FsWatch::start`] returns.

mod parse;
mod state;
#[cfg(test)]
mod tests;
mod watch;

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
#[cfg(test)]
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

pub use parse::{FsParseError, FsParseErrorKind, parse_endpoint_bytes, parse_endpoints};
pub use state::{
    Change, DirScan, FileEntry, FileProblem, FileScan, FileStamp, FsCore, FsSnapshot, RACY_WINDOW,
    ScanReport,
};
pub use watch::{FsWatch, ScanNow, is_service_file_name};

use super::Epoch;
use crate::naming::{Activity, Address, Bound, Name, NameTree, Namer, Path};

/// How often the directory is polled unless configured otherwise.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Files larger than this are refused (kept at their last good endpoints).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// The admin endpoint that shows the state of the default-mounted namer.
pub const ADMIN_PATH: &str = "/namer_state/io.l5d.fs.json";

/// What the namer and its watcher share; the snapshot survives watcher restarts.
struct Shared {
    root_dir: PathBuf,
    prefix: Path,
    epoch: Epoch,
    /// What lookups read; replaced whole by the watcher.
    snapshot: ArcSwap<FsSnapshot>,
    /// When and how the last scan went (admin only; never bumps the epoch).
    status: ArcSwap<ScanStatus>,
    /// The watcher's working copy; `None` means "rebuild from `snapshot`". The lock
    /// also serialises scans.
    core: Mutex<Option<FsCore>>,
    restarts: AtomicU64,
    /// Makes the next scan panic, to test supervision.
    #[cfg(test)]
    panic_next_scan: AtomicBool,
}

/// The outcome of the latest scan, for the admin view.
#[derive(Clone, Debug, Default)]
struct ScanStatus {
    last_scan: Option<SystemTime>,
    scans: u64,
    dir_error: Option<String>,
}

/// The `io.l5d.fs` namer: answers lookups from the snapshot its [`FsWatch`] publishes.
#[derive(Clone)]
pub struct FsNamer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FsNamer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsNamer")
            .field("root_dir", &self.shared.root_dir)
            .field("prefix", &self.shared.prefix)
            .finish_non_exhaustive()
    }
}

impl FsNamer {
    /// Linkerd's default mount point, `/#/io.l5d.fs`.
    pub fn default_prefix() -> Path {
        Path::from_strs(["#", "io.l5d.fs"])
    }

    /// A namer over `root_dir` mounted at `prefix`, and the watcher that keeps it fresh
    /// (polling every [`DEFAULT_POLL_INTERVAL`]; start it with [`FsWatch::start`]).
    /// Lookups are pending until the first scan; if `root_dir` cannot be listed then,
    /// every lookup is `Neg` until it can. No I/O happens here.
    pub fn new(root_dir: impl Into<PathBuf>, prefix: Path, epoch: Epoch) -> (FsNamer, FsWatch) {
        let shared = Arc::new(Shared {
            root_dir: root_dir.into(),
            prefix,
            epoch,
            snapshot: ArcSwap::from_pointee(FsSnapshot::default()),
            status: ArcSwap::from_pointee(ScanStatus::default()),
            core: Mutex::new(None),
            restarts: AtomicU64::new(0),
            #[cfg(test)]
            panic_next_scan: AtomicBool::new(false),
        });
        (
            FsNamer {
                shared: Arc::clone(&shared),
            },
            FsWatch::new(shared, DEFAULT_POLL_INTERVAL),
        )
    }

    /// Where this namer is mounted.
    pub fn prefix(&self) -> &Path {
        &self.shared.prefix
    }

    /// The watched directory.
    pub fn root_dir(&self) -> &FsPath {
        &self.shared.root_dir
    }

    /// The current published snapshot.
    pub fn snapshot(&self) -> Arc<FsSnapshot> {
        self.shared.snapshot.load_full()
    }

    /// The admin path of this namer's state: `/namer_state/<prefix without /#>.json`,
    /// i.e. [`ADMIN_PATH`] for the default mount point.
    pub fn admin_path(&self) -> String {
        let prefix = &self.shared.prefix;
        let elems = if prefix.elem_str(0) == Some("#") {
            prefix.drop(1)
        } else {
            prefix.clone()
        };
        format!("/namer_state/{}.json", elems.elems_lossy().join("/"))
    }

    /// A serialisable view of the state: every file's endpoints or error, and how the
    /// latest scan went.
    pub fn state(&self) -> FsState {
        let snapshot = self.shared.snapshot.load();
        let status = self.shared.status.load();
        let files = snapshot
            .files
            .iter()
            .map(|(name, entry)| (name.clone(), FileState::new(entry)))
            .collect();
        FsState {
            root_dir: self.shared.root_dir.display().to_string(),
            prefix: self.shared.prefix.show(),
            ready: snapshot.ready,
            last_scan_unix_ms: status.last_scan.and_then(unix_ms),
            scans: status.scans,
            restarts: self
                .shared
                .restarts
                .load(std::sync::atomic::Ordering::Relaxed),
            dir_error: status.dir_error.clone(),
            files,
        }
    }

    /// [`FsNamer::state`] as JSON, for the admin endpoint.
    pub fn state_json(&self) -> serde_json::Value {
        serde_json::to_value(self.state())
            .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
    }
}

fn unix_ms(t: SystemTime) -> Option<u64> {
    let ms = t.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_millis();
    u64::try_from(ms).ok()
}

impl Namer for FsNamer {
    fn lookup(&self, path: &Path) -> Activity<NameTree<Name>> {
        let snapshot = self.shared.snapshot.load();
        if !snapshot.ready {
            return Activity::Pending;
        }
        let Some(addr) = path.elem_str(0).and_then(|name| snapshot.addr(name)) else {
            return Activity::Ok(NameTree::Neg);
        };
        Activity::Ok(NameTree::Leaf(Name::Bound(Bound {
            id: self.shared.prefix.concat(&path.take(1)),
            residual: path.drop(1),
            addr,
        })))
    }
}

/// The admin view of an [`FsNamer`] (`/namer_state/io.l5d.fs.json`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FsState {
    /// The watched directory.
    pub root_dir: String,
    /// The mount point.
    pub prefix: String,
    /// Whether a scan has completed (lookups are pending until then).
    pub ready: bool,
    /// When the latest scan started, in milliseconds since the Unix epoch.
    pub last_scan_unix_ms: Option<u64>,
    /// How many scans have run.
    pub scans: u64,
    /// How many times the watcher was restarted by its supervisor.
    pub restarts: u64,
    /// Why the latest scan could not list the directory (last good values are served).
    pub dir_error: Option<String>,
    /// Every service file by name.
    pub files: BTreeMap<String, FileState>,
}

/// One service file in [`FsState`].
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FileState {
    /// The endpoints served: the last good contents, or `None` if they never parsed.
    pub addrs: Option<Vec<EndpointState>>,
    /// Why the current contents are not the ones served.
    pub error: Option<FileErrorState>,
}

impl FileState {
    fn new(entry: &FileEntry) -> Self {
        FileState {
            addrs: entry
                .addrs
                .as_ref()
                .map(|addrs| addrs.iter().map(EndpointState::new).collect()),
            error: entry.problem.as_ref().map(|problem| FileErrorState {
                line: match problem {
                    FileProblem::Parse(e) => Some(e.line),
                    FileProblem::Read(_) => None,
                },
                message: match problem {
                    FileProblem::Parse(e) => e.kind.to_string(),
                    FileProblem::Read(e) => e.clone(),
                },
            }),
        }
    }
}

/// One endpoint in [`FileState`].
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EndpointState {
    /// The IP address.
    pub ip: String,
    /// The port.
    pub port: u16,
    /// The load-balancer weight.
    pub weight: f64,
}

impl EndpointState {
    fn new(a: &Address) -> Self {
        EndpointState {
            ip: a.addr.ip().to_string(),
            port: a.addr.port(),
            weight: a.weight,
        }
    }
}

/// Why a file's contents are refused, in [`FileState`].
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FileErrorState {
    /// The offending line, for parse errors.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}
