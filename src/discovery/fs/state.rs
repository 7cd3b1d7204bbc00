//! The sans-I/O heart of `io.l5d.fs`: last good endpoints per file, and change detection.
//!
//! The watcher turns each poll of the directory into a [`DirScan`] (names, stamps and
//! the contents of files that needed reading); [`FsCore::apply`] folds it into the
//! [`FsSnapshot`] and says what changed. Keeping this free of I/O and clocks makes the
//! rules testable in isolation: a malformed or unreadable file keeps its last good
//! endpoints, a deleted file disappears (its lookups become `Neg`), and a directory that
//! cannot be listed changes nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use super::parse::{FsParseError, parse_endpoint_bytes};
use crate::naming::{Addr, Address};

/// How long after a file's mtime a read of it is not trusted to have seen its final
/// contents. A second write within the file system's timestamp granularity (up to 2 s
/// on FAT, 1 s on some network file systems) may leave size and mtime unchanged, so
/// such "racy" files are re-read on every poll until a read happens this long after
/// their mtime (the same trick as git's racily-clean index entries).
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

/// The metadata that tells whether a file must be read again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    /// The size in bytes.
    pub len: u64,
    /// The modification time, when the platform reports one.
    pub modified: Option<SystemTime>,
}

/// What one poll found for one eligible file.
#[derive(Clone, Debug, PartialEq)]
pub enum FileScan {
    /// Not read: [`FsCore::needs_read`] said the last read is still current.
    Unchanged(FileStamp),
    /// The file's current contents.
    Read {
        /// Its metadata when it was read.
        stamp: FileStamp,
        /// Its bytes.
        contents: Vec<u8>,
    },
    /// The file exists but could not be read; the message says why.
    Unreadable(String),
}

/// One poll of the directory.
#[derive(Clone, Debug, PartialEq)]
pub struct DirScan {
    /// When the poll started (before any file was read).
    pub at: SystemTime,
    /// Every eligible file by name, or why the directory could not be listed.
    pub files: Result<BTreeMap<String, FileScan>, String>,
}

/// Why a file's current contents are not being served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileProblem {
    /// The contents do not parse.
    Parse(FsParseError),
    /// The file could not be read.
    Read(String),
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileProblem::Parse(e) => write!(f, "{e}"),
            FileProblem::Read(e) => write!(f, "unreadable: {e}"),
        }
    }
}

/// What the namer knows about one service file.
#[derive(Clone, Debug, PartialEq)]
pub struct FileEntry {
    /// The last good endpoints; `None` if the file has never parsed.
    pub addrs: Option<Vec<Address>>,
    /// Why the current contents are not the ones served, if they are not.
    pub problem: Option<FileProblem>,
}

impl FileEntry {
    /// The address a lookup of this file binds to: the last good endpoints, or a
    /// failure if the file never had good contents.
    pub fn addr(&self) -> Addr {
        match (&self.addrs, &self.problem) {
            (Some(addrs), _) => Addr::Bound(addrs.clone()),
            (None, Some(problem)) => Addr::Failed(problem.to_string()),
            (None, None) => Addr::Pending,
        }
    }
}

/// The published state: every service file the namer serves.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FsSnapshot {
    /// Whether a scan has completed; lookups are pending until then.
    pub ready: bool,
    /// The service files by name.
    pub files: BTreeMap<String, FileEntry>,
}

impl FsSnapshot {
    /// The address of service `name`, or `None` if there is no such file (`Neg`).
    pub fn addr(&self, name: &str) -> Option<Addr> {
        self.files.get(name).map(FileEntry::addr)
    }
}

/// How one file changed in a scan.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// A new file with good contents.
    Added,
    /// Its endpoints were replaced.
    Updated,
    /// Its contents are good again and the endpoints are the ones already served.
    Recovered,
    /// Its contents were refused; the last good endpoints (if any) are kept.
    Rejected(FileProblem),
    /// It was deleted; lookups of it are `Neg` now.
    Removed,
}

/// What a scan changed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScanReport {
    /// Whether this was the first scan (lookups stop being pending).
    pub became_ready: bool,
    /// Per-file changes, in name order.
    pub changes: Vec<(String, Change)>,
    /// Why the directory could not be listed, if it could not (nothing else changed).
    pub dir_error: Option<String>,
}

impl ScanReport {
    /// Whether the snapshot changed, i.e. must be published (and the epoch bumped).
    pub fn is_changed(&self) -> bool {
        self.became_ready || !self.changes.is_empty()
    }
}

/// The snapshot plus the per-file stamps of the last reads: everything the watcher needs
/// to turn polls into changes. The stamps are only a cache: a core rebuilt from a
/// published snapshot re-reads every file once and reports no change if none happened.
#[derive(Clone, Debug, Default)]
pub struct FsCore {
    snapshot: FsSnapshot,
    /// Each file's stamp when it was last read and parsed, and when that read began.
    stamps: BTreeMap<String, (FileStamp, SystemTime)>,
}

impl FsCore {
    /// A core that continues from `snapshot` (e.g. the one published before a restart).
    pub fn new(snapshot: FsSnapshot) -> Self {
        FsCore {
            snapshot,
            stamps: BTreeMap::new(),
        }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> &FsSnapshot {
        &self.snapshot
    }

    /// Whether a file whose metadata is now `stamp` must be read: it is new, changed,
    /// failed to read last time, or was last read too soon after its mtime to be sure
    /// (see [`RACY_WINDOW`]).
    pub fn needs_read(&self, name: &str, stamp: &FileStamp) -> bool {
        let Some((seen, read_at)) = self.stamps.get(name) else {
            return true;
        };
        if seen != stamp {
            return true;
        }
        match seen.modified.map(|m| read_at.duration_since(m)) {
            Some(Ok(age)) => age < RACY_WINDOW,
            // No mtime, or an mtime in the future: never trust the stamp.
            _ => true,
        }
    }

    /// Folds a scan into the snapshot and reports what changed.
    pub fn apply(&mut self, scan: DirScan) -> ScanReport {
        let mut report = ScanReport {
            became_ready: !self.snapshot.ready,
            ..ScanReport::default()
        };
        self.snapshot.ready = true;
        let files = match scan.files {
            Ok(files) => files,
            Err(e) => {
                report.dir_error = Some(e);
                return report;
            }
        };
        let gone: Vec<String> = self
            .snapshot
            .files
            .keys()
            .filter(|name| !files.contains_key(*name))
            .cloned()
            .collect();
        let mut changes: BTreeMap<String, Change> = BTreeMap::new();
        for name in gone {
            self.snapshot.files.remove(&name);
            changes.insert(name, Change::Removed);
        }
        self.stamps.retain(|name, _| files.contains_key(name));
        for (name, file) in files {
            let change = match file {
                FileScan::Unchanged(_) => None,
                FileScan::Read { stamp, contents } => {
                    self.stamps.insert(name.clone(), (stamp, scan.at));
                    match parse_endpoint_bytes(&contents) {
                        Ok(addrs) => self.set_good(&name, addrs),
                        Err(e) => self.set_problem(&name, FileProblem::Parse(e)),
                    }
                }
                FileScan::Unreadable(e) => {
                    self.stamps.remove(&name);
                    self.set_problem(&name, FileProblem::Read(e))
                }
            };
            if let Some(change) = change {
                changes.insert(name, change);
            }
        }
        report.changes = changes.into_iter().collect();
        report
    }

    fn set_good(&mut self, name: &str, addrs: Vec<Address>) -> Option<Change> {
        let Some(entry) = self.snapshot.files.get_mut(name) else {
            let entry = FileEntry {
                addrs: Some(addrs),
                problem: None,
            };
            self.snapshot.files.insert(name.to_string(), entry);
            return Some(Change::Added);
        };
        let had_problem = entry.problem.take().is_some();
        if entry.addrs.as_ref() == Some(&addrs) {
            return had_problem.then_some(Change::Recovered);
        }
        let added = entry.addrs.is_none();
        entry.addrs = Some(addrs);
        Some(if added {
            Change::Added
        } else {
            Change::Updated
        })
    }

    fn set_problem(&mut self, name: &str, problem: FileProblem) -> Option<Change> {
        let entry = self
            .snapshot
            .files
            .entry(name.to_string())
            .or_insert(FileEntry {
                addrs: None,
                problem: None,
            });
        if entry.problem.as_ref() == Some(&problem) {
            return None;
        }
        entry.problem = Some(problem.clone());
        Some(Change::Rejected(problem))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::fs::FsParseErrorKind;
    use proptest::prelude::*;

    const T0: Duration = Duration::from_secs(1_000_000);

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + T0 + Duration::from_secs(secs)
    }

    fn stamp(len: u64, mtime: u64) -> FileStamp {
        FileStamp {
            len,
            modified: Some(at(mtime)),
        }
    }

    fn read(len: u64, mtime: u64, contents: &str) -> FileScan {
        FileScan::Read {
            stamp: stamp(len, mtime),
            contents: contents.as_bytes().to_vec(),
        }
    }

    fn scan(secs: u64, files: Vec<(&str, FileScan)>) -> DirScan {
        DirScan {
            at: at(secs),
            files: Ok(files.into_iter().map(|(n, f)| (n.to_string(), f)).collect()),
        }
    }

    fn bound(addrs: &[&str]) -> Addr {
        Addr::Bound(
            addrs
                .iter()
                .map(|a| Address::new(a.parse().unwrap()))
                .collect(),
        )
    }

    #[test]
    fn first_scan_adds_files_and_becomes_ready() {
        let mut core = FsCore::default();
        assert!(!core.snapshot().ready);
        let report = core.apply(scan(
            10,
            vec![
                ("web", read(15, 1, "127.0.0.1 8080")),
                ("empty", read(0, 1, "")),
            ],
        ));
        assert!(report.became_ready && report.is_changed());
        assert_eq!(
            report.changes,
            vec![
                ("empty".to_string(), Change::Added),
                ("web".to_string(), Change::Added)
            ]
        );
        assert_eq!(
            core.snapshot().addr("web"),
            Some(bound(&["127.0.0.1:8080"]))
        );
        assert_eq!(core.snapshot().addr("empty"), Some(Addr::Bound(vec![])));
        assert_eq!(core.snapshot().addr("nope"), None);
        // An empty directory still makes the namer ready.
        let mut empty = FsCore::default();
        assert!(empty.apply(scan(10, vec![])).is_changed());
        assert!(!empty.apply(scan(11, vec![])).is_changed());
    }

    #[test]
    fn same_contents_are_no_change_and_edits_replace() {
        let mut core = FsCore::default();
        core.apply(scan(10, vec![("web", read(15, 1, "127.0.0.1 8080"))]));
        let same = core.apply(scan(11, vec![("web", read(15, 1, "127.0.0.1 8080\n"))]));
        assert!(!same.is_changed());
        let unchanged = core.apply(scan(12, vec![("web", FileScan::Unchanged(stamp(15, 1)))]));
        assert!(!unchanged.is_changed());
        let edit = core.apply(scan(13, vec![("web", read(30, 12, "127.0.0.1 8081"))]));
        assert_eq!(edit.changes, vec![("web".to_string(), Change::Updated)]);
        assert_eq!(
            core.snapshot().addr("web"),
            Some(bound(&["127.0.0.1:8081"]))
        );
    }

    #[test]
    fn malformed_contents_keep_the_last_good_endpoints_until_fixed() {
        let mut core = FsCore::default();
        core.apply(scan(10, vec![("web", read(15, 1, "127.0.0.1 8080"))]));
        let bad = core.apply(scan(11, vec![("web", read(9, 11, "127.0.0.1 x"))]));
        let expected = FileProblem::Parse(FsParseError {
            line: 1,
            kind: FsParseErrorKind::BadPort("x".into()),
        });
        assert_eq!(
            bad.changes,
            vec![("web".to_string(), Change::Rejected(expected.clone()))]
        );
        assert_eq!(
            core.snapshot().addr("web"),
            Some(bound(&["127.0.0.1:8080"]))
        );
        assert_eq!(core.snapshot().files["web"].problem, Some(expected));
        // Reading the same bad contents again is not news.
        assert!(
            !core
                .apply(scan(12, vec![("web", read(9, 11, "127.0.0.1 x"))]))
                .is_changed()
        );
        // Fixed with the old endpoints: recovered, nothing to re-bind but the problem is gone.
        let fixed = core.apply(scan(13, vec![("web", read(15, 13, "127.0.0.1 8080"))]));
        assert_eq!(fixed.changes, vec![("web".to_string(), Change::Recovered)]);
        assert_eq!(core.snapshot().files["web"].problem, None);
    }

    #[test]
    fn a_file_that_never_parsed_fails_until_it_does() {
        let mut core = FsCore::default();
        let report = core.apply(scan(10, vec![("web", read(3, 1, "bad"))]));
        assert!(matches!(report.changes[0].1, Change::Rejected(_)));
        assert_eq!(
            core.snapshot().addr("web"),
            Some(Addr::Failed(
                "line 1: expected `host port [* weight]`, found only `bad`".into()
            ))
        );
        let good = core.apply(scan(11, vec![("web", read(15, 11, "127.0.0.1 8080"))]));
        assert_eq!(good.changes, vec![("web".to_string(), Change::Added)]);
    }

    #[test]
    fn deleted_files_disappear_and_unlistable_directories_change_nothing() {
        let mut core = FsCore::default();
        core.apply(scan(
            10,
            vec![
                ("a", read(15, 1, "127.0.0.1 8080")),
                ("b", read(15, 1, "127.0.0.1 8081")),
            ],
        ));
        let missing = core.apply(DirScan {
            at: at(11),
            files: Err("No such file or directory".into()),
        });
        assert!(!missing.is_changed());
        assert_eq!(
            missing.dir_error.as_deref(),
            Some("No such file or directory")
        );
        assert_eq!(core.snapshot().addr("a"), Some(bound(&["127.0.0.1:8080"])));
        let deleted = core.apply(scan(12, vec![("b", FileScan::Unchanged(stamp(15, 1)))]));
        assert_eq!(deleted.changes, vec![("a".to_string(), Change::Removed)]);
        assert_eq!(core.snapshot().addr("a"), None);
        // Re-created: read again even with the old stamp.
        assert!(core.needs_read("a", &stamp(15, 1)));
    }

    #[test]
    fn unreadable_files_keep_their_endpoints_and_are_retried() {
        let mut core = FsCore::default();
        core.apply(scan(10, vec![("a", read(15, 1, "127.0.0.1 8080"))]));
        assert!(!core.needs_read("a", &stamp(15, 1)));
        let denied = core.apply(scan(11, vec![("a", FileScan::Unreadable("denied".into()))]));
        assert_eq!(
            denied.changes,
            vec![(
                "a".to_string(),
                Change::Rejected(FileProblem::Read("denied".into()))
            )]
        );
        assert_eq!(core.snapshot().addr("a"), Some(bound(&["127.0.0.1:8080"])));
        assert!(core.needs_read("a", &stamp(15, 1)));
    }

    #[test]
    fn stamps_decide_rereads_and_recent_mtimes_are_not_trusted() {
        let mut core = FsCore::default();
        core.apply(scan(10, vec![("old", read(15, 1, "127.0.0.1 8080"))]));
        core.apply(scan(
            10,
            vec![
                ("old", FileScan::Unchanged(stamp(15, 1))),
                ("new", read(15, 9, "127.0.0.1 8080")),
            ],
        ));
        assert!(!core.needs_read("old", &stamp(15, 1)));
        assert!(core.needs_read("old", &stamp(16, 1)), "size changed");
        assert!(core.needs_read("old", &stamp(15, 2)), "mtime changed");
        assert!(
            core.needs_read("new", &stamp(15, 9)),
            "read 1 s after its mtime"
        );
        assert!(core.needs_read("unknown", &stamp(1, 1)));
        let no_mtime = FileStamp {
            len: 1,
            modified: None,
        };
        core.apply(scan(
            20,
            vec![
                ("old", FileScan::Unchanged(stamp(15, 1))),
                ("new", FileScan::Unchanged(stamp(15, 9))),
                (
                    "n",
                    FileScan::Read {
                        stamp: no_mtime,
                        contents: vec![],
                    },
                ),
            ],
        ));
        assert!(core.needs_read("n", &no_mtime));
        // A core rebuilt from the published snapshot re-reads, then finds no change.
        let mut rebuilt = FsCore::new(core.snapshot().clone());
        assert!(rebuilt.needs_read("old", &stamp(15, 1)));
        let again = rebuilt.apply(scan(
            21,
            vec![
                ("old", read(15, 1, "127.0.0.1 8080")),
                ("new", read(15, 9, "127.0.0.1 8080")),
                ("n", read(0, 0, "")),
            ],
        ));
        assert!(!again.is_changed());
    }

    fn contents() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            Just(""),
            Just("127.0.0.1 8080"),
            Just("127.0.0.1 8081\n10.0.0.1 80 * 2"),
            Just("127.0.0.1 nope"),
            Just("bad"),
        ]
    }

    proptest! {
        /// Whatever the sequence of scans, the snapshot serves the last contents that
        /// parsed for every present file, and a scan reports a change exactly when the
        /// snapshot differs.
        #[test]
        fn snapshot_tracks_last_good_contents(
            scans in proptest::collection::vec(
                proptest::collection::btree_map("[abc]", contents(), 0..3), 1..12)
        ) {
            let mut core = FsCore::default();
            let mut last_good: BTreeMap<String, Vec<Address>> = BTreeMap::new();
            for (i, files) in scans.iter().enumerate() {
                last_good.retain(|name, _| files.contains_key(name));
                let before = core.snapshot().clone();
                let dir: Vec<(&str, FileScan)> = files
                    .iter()
                    .map(|(n, c)| (n.as_str(), read(c.len() as u64, 0, c)))
                    .collect();
                let report = core.apply(scan(i as u64, dir));
                prop_assert_eq!(report.is_changed(), &before != core.snapshot());
                for (name, text) in files {
                    if let Ok(addrs) = super::super::parse_endpoints(text) {
                        last_good.insert(name.clone(), addrs);
                    }
                    let expected = match last_good.get(name) {
                        Some(addrs) => Addr::Bound(addrs.clone()),
                        None => core.snapshot().addr(name).filter(|a| matches!(a, Addr::Failed(_))).unwrap_or(Addr::Pending),
                    };
                    prop_assert_eq!(core.snapshot().addr(name), Some(expected));
                }
                prop_assert_eq!(core.snapshot().files.len(), files.len());
            }
        }
    }
}
