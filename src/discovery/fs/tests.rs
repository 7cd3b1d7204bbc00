//! End-to-end tests of `io.l5d.fs` against real directories: lookups, live updates
//! through the actix watcher, supervision, and the admin view.

use std::fs;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::*;
use crate::naming::Addr;

fn path(s: &str) -> Path {
    Path::read(s).unwrap()
}

fn addrs(list: &[&str]) -> Addr {
    Addr::Bound(
        list.iter()
            .map(|a| Address::new(a.parse().unwrap()))
            .collect(),
    )
}

/// The address `/<name>` binds to, `None` for `Neg`; panics on anything else.
fn bound(namer: &FsNamer, name: &str) -> Option<Addr> {
    match namer.lookup(&path(&format!("/{name}"))) {
        Activity::Ok(NameTree::Neg) => None,
        Activity::Ok(NameTree::Leaf(Name::Bound(b))) => Some(b.addr),
        other => panic!("unexpected lookup result {other:?}"),
    }
}

fn namer_in(dir: &std::path::Path) -> (FsNamer, FsWatch, Epoch) {
    let epoch = Epoch::new();
    let (namer, watch) = FsNamer::new(dir, FsNamer::default_prefix(), epoch.clone());
    (namer, watch, epoch)
}

#[test]
fn lookups_bind_files_with_their_residual() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("web"),
        "127.0.0.1 8080\n127.0.1.10 8080 * 2.5\n",
    )
    .unwrap();
    fs::write(dir.path().join("empty"), "").unwrap();
    let (namer, watch, epoch) = namer_in(dir.path());
    assert_eq!(namer.lookup(&path("/web")), Activity::Pending);
    assert!(watch.scan_now().is_changed());
    assert_eq!(epoch.current(), 1);

    let Activity::Ok(NameTree::Leaf(Name::Bound(b))) = namer.lookup(&path("/web/a/b")) else {
        panic!("not bound");
    };
    assert_eq!(b.id, path("/#/io.l5d.fs/web"));
    assert_eq!(b.residual, path("/a/b"));
    assert_eq!(
        b.addr,
        Addr::Bound(vec![
            Address::new("127.0.0.1:8080".parse().unwrap()),
            Address::new("127.0.1.10:8080".parse().unwrap()).with_weight(2.5),
        ])
    );
    assert_eq!(bound(&namer, "empty"), Some(Addr::Bound(vec![])));
    assert_eq!(bound(&namer, "missing"), None);
    assert_eq!(namer.lookup(&Path::empty()), Activity::Ok(NameTree::Neg));
    assert_eq!(namer.admin_path(), ADMIN_PATH);
    // Nothing changed: no publication, no bump.
    assert!(!watch.scan_now().is_changed());
    assert_eq!(epoch.current(), 1);
}

#[test]
fn hidden_temporary_unsafe_and_non_regular_files_are_not_services() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        ".hidden", "web~", ".web.swp", "web.swp", "#web#", "4913", "a b", "é",
    ] {
        fs::write(dir.path().join(name), "127.0.0.1 1\n").unwrap();
    }
    fs::create_dir(dir.path().join("subdir")).unwrap();
    fs::write(dir.path().join("ok_1.a-b:c"), "127.0.0.1 1\n").unwrap();
    let (namer, watch, _) = namer_in(dir.path());
    watch.scan_now();
    assert_eq!(
        namer.snapshot().files.keys().collect::<Vec<_>>(),
        vec!["ok_1.a-b:c"]
    );
    assert!(is_service_file_name("web"));
    assert!(!is_service_file_name(""));
    assert!(!is_service_file_name("x/y"));
}

#[cfg(unix)]
#[test]
fn symlinks_are_followed_like_configmap_volumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("..data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("web"), "127.0.0.1 8080\n").unwrap();
    std::os::unix::fs::symlink("..data/web", dir.path().join("web")).unwrap();
    std::os::unix::fs::symlink("..data/gone", dir.path().join("dangling")).unwrap();
    let (namer, watch, _) = namer_in(dir.path());
    watch.scan_now();
    assert_eq!(bound(&namer, "web"), Some(addrs(&["127.0.0.1:8080"])));
    assert_eq!(bound(&namer, "dangling"), None);
    assert_eq!(namer.snapshot().files.len(), 1);
}

#[test]
fn oversized_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let big = "127.0.0.1 8080\n".repeat((MAX_FILE_BYTES as usize / 15) + 1);
    fs::write(dir.path().join("big"), big).unwrap();
    let (namer, watch, _) = namer_in(dir.path());
    watch.scan_now();
    match bound(&namer, "big") {
        Some(Addr::Failed(msg)) => assert!(msg.contains("larger than"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn admin_state_shows_endpoints_errors_and_the_last_scan() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("web"), "127.0.0.1 8080 * 2\n").unwrap();
    fs::write(dir.path().join("bad"), "127.0.0.1 8080\n::1 http\n").unwrap();
    let (namer, watch, _) = namer_in(dir.path());
    watch.scan_now();
    let state = namer.state();
    assert!(state.ready && state.scans == 1 && state.last_scan_unix_ms.is_some());
    let json = namer.state_json();
    assert_eq!(
        json["files"]["web"]["addrs"],
        serde_json::json!([{"ip": "127.0.0.1", "port": 8080, "weight": 2.0}])
    );
    assert_eq!(json["files"]["bad"]["addrs"], serde_json::Value::Null);
    assert_eq!(json["files"]["bad"]["error"]["line"], 2);
    assert_eq!(
        json["files"]["bad"]["error"]["message"],
        "bad port `http`: expected a number from 1 to 65535"
    );
    assert_eq!(json["prefix"], "/#/io.l5d.fs");
    assert_eq!(json["dirError"], serde_json::Value::Null);
}

/// Creating, editing (valid, then malformed), deleting files and losing the directory,
/// each observed through explicit scans of the started, supervised watcher.
#[actix_rt::test]
async fn live_updates_keep_last_good_values() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("disco");
    fs::create_dir(&dir).unwrap();
    let (namer, watch, epoch) = namer_in(&dir);
    // Only the initial scan and ScanNow scan: no timer interferes.
    let addr = watch.with_interval(Duration::from_secs(3600)).start();
    let scan = || async { addr.send(ScanNow).await.unwrap().unwrap() };

    scan().await;
    assert_eq!(epoch.current(), 1, "the first scan makes the namer ready");
    assert_eq!(bound(&namer, "web"), None);

    fs::write(dir.join("web"), "127.0.0.1 8080\n").unwrap();
    let report = scan().await;
    assert_eq!(report.changes, vec![("web".to_string(), Change::Added)]);
    assert_eq!(epoch.current(), 2);
    assert_eq!(bound(&namer, "web"), Some(addrs(&["127.0.0.1:8080"])));

    // Same size, possibly the same mtime: still seen (recent mtimes are re-read).
    fs::write(dir.join("web"), "127.0.0.1 8081\n").unwrap();
    assert_eq!(
        scan().await.changes,
        vec![("web".to_string(), Change::Updated)]
    );
    assert_eq!(epoch.current(), 3);
    assert_eq!(bound(&namer, "web"), Some(addrs(&["127.0.0.1:8081"])));

    fs::write(dir.join("web"), "127.0.0.1 8082 extra\n").unwrap();
    let report = scan().await;
    assert!(
        matches!(&report.changes[..], [(f, Change::Rejected(FileProblem::Parse(e)))] if f == "web" && e.line == 1),
        "{report:?}"
    );
    assert_eq!(epoch.current(), 4);
    assert_eq!(
        bound(&namer, "web"),
        Some(addrs(&["127.0.0.1:8081"])),
        "the last good value is kept"
    );
    assert!(!scan().await.is_changed(), "the same error is not news");
    assert_eq!(epoch.current(), 4);

    // The directory disappears: logged, nothing changes.
    fs::write(dir.join("api"), "::1 9000\n").unwrap();
    scan().await;
    let before = epoch.current();
    fs::remove_dir_all(&dir).unwrap();
    let report = scan().await;
    assert!(report.dir_error.is_some() && !report.is_changed());
    assert_eq!(epoch.current(), before);
    assert_eq!(bound(&namer, "web"), Some(addrs(&["127.0.0.1:8081"])));
    assert!(namer.state().dir_error.is_some());

    // Back, without `web`: deleted files are Neg.
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("api"), "::1 9000\n").unwrap();
    let report = scan().await;
    assert_eq!(report.changes, vec![("web".to_string(), Change::Removed)]);
    assert_eq!(epoch.current(), before + 1);
    assert_eq!(bound(&namer, "web"), None);
    assert_eq!(bound(&namer, "api"), Some(addrs(&["[::1]:9000"])));
    assert_eq!(namer.state().dir_error, None);
}

/// The poll timer alone picks changes up: wait (bounded) for the epoch to move.
#[actix_rt::test]
async fn polling_publishes_changes_without_being_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (namer, watch, epoch) = namer_in(dir.path());
    let _addr = watch.with_interval(Duration::from_millis(5)).start();

    async fn wait_for(epoch: &Epoch, past: u64) {
        for _ in 0..2_000 {
            if epoch.current() > past {
                return;
            }
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("no change published after 2000 polls");
    }

    wait_for(&epoch, 0).await;
    let seen = epoch.current();
    fs::write(dir.path().join("web"), "127.0.0.1 8080\n").unwrap();
    wait_for(&epoch, seen).await;
    assert_eq!(bound(&namer, "web"), Some(addrs(&["127.0.0.1:8080"])));

    let seen = epoch.current();
    fs::remove_file(dir.path().join("web")).unwrap();
    wait_for(&epoch, seen).await;
    assert_eq!(bound(&namer, "web"), None);
}

/// A scan that panics restarts the watcher under its supervisor; lookups keep the last
/// published endpoints and the restarted watcher keeps watching.
#[actix_rt::test]
async fn a_panicking_scan_restarts_the_watcher_with_the_snapshot_kept() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("web"), "127.0.0.1 8080\n").unwrap();
    let (namer, watch, epoch) = namer_in(dir.path());
    let shared = Arc::clone(&namer.shared);
    let addr = watch.with_interval(Duration::from_secs(3600)).start();
    addr.send(ScanNow).await.unwrap();
    assert_eq!(epoch.current(), 1);

    shared.panic_next_scan.store(true, Ordering::SeqCst);
    assert_eq!(addr.send(ScanNow).await.unwrap(), None, "the scan failed");
    assert_eq!(bound(&namer, "web"), Some(addrs(&["127.0.0.1:8080"])));

    // The restart re-reads everything and finds nothing new.
    assert!(!addr.send(ScanNow).await.unwrap().unwrap().is_changed());
    assert_eq!(namer.state().restarts, 1);
    assert_eq!(epoch.current(), 1);

    fs::write(dir.path().join("web"), "127.0.0.1 9090\n").unwrap();
    assert!(addr.send(ScanNow).await.unwrap().unwrap().is_changed());
    assert_eq!(bound(&namer, "web"), Some(addrs(&["127.0.0.1:9090"])));
    assert_eq!(epoch.current(), 2);
}
