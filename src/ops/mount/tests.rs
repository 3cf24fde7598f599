//! Unit tests of the mount's view, without FUSE: lazy listing, exact
//! ranges across chunk boundaries, and the snapshot-per-directory layout.

use std::sync::Arc;

use super::view::{Kind, Layout, ROOT, View};
use crate::capture::{self, CaptureOptions, Outcome};
use crate::store::{SnapshotRecord, Store};
use crate::util::progress::NoProgress;
use crate::util::testing::noise;

fn snapshot(store: &Store, ws: &std::path::Path) -> SnapshotRecord {
    let r = capture::capture(store, ws, &CaptureOptions::default(), &NoProgress).unwrap();
    let (Outcome::Written(id) | Outcome::Unchanged(id)) = r.outcome;
    SnapshotRecord { id, snap: r.snapshot }
}

fn setup() -> (tempfile::TempDir, Arc<Store>, SnapshotRecord, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(ws.join("sub/deeper")).unwrap();
    let big = noise(3 << 20, 11);
    std::fs::write(ws.join("sub/big.bin"), &big).unwrap();
    std::fs::write(ws.join("a.txt"), b"hello\n").unwrap();
    std::os::unix::fs::symlink("a.txt", ws.join("link")).unwrap();
    let store = Arc::new(Store::open_or_create(&dir.path().join("store")).unwrap());
    let ws = std::fs::canonicalize(ws).unwrap();
    let rec = snapshot(&store, &ws);
    (dir, store, rec, big)
}

#[test]
fn lists_lazily_and_reads_exact_ranges() {
    let (_dir, store, rec, big) = setup();
    let view = View::new(store, Layout::One(Box::new(rec)));
    assert_eq!(view.stats().dirs_loaded, 0, "nothing is read up front");
    let sub = view.lookup(ROOT, b"sub").unwrap().unwrap();
    assert_eq!(sub.kind, Kind::Dir);
    assert_eq!(view.stats().dirs_loaded, 1, "only the root was read");
    let f = view.lookup(sub.ino, b"big.bin").unwrap().unwrap();
    assert_eq!((f.kind, f.size), (Kind::File, big.len() as u64));
    assert_eq!(view.stats().dirs_loaded, 2);
    assert_eq!(view.path(f.ino), b"sub/big.bin");
    assert!(view.lookup(sub.ino, b"nope").unwrap().is_none());
    for (off, len) in [
        (0u64, 10u32),
        (65_530, 20),
        (1 << 20, 300_000),
        (big.len() as u64 - 3, 100),
    ] {
        let got = view.read(f.ino, off, len).unwrap().unwrap();
        let end = (off as usize + len as usize).min(big.len());
        assert_eq!(got, &big[off as usize..end], "at {off}");
    }
    assert_eq!(view.read(f.ino, big.len() as u64 + 5, 10).unwrap().unwrap(), b"");
    let before = view.stats().chunks_decoded;
    view.read(f.ino, 1 << 20, 100).unwrap();
    assert_eq!(
        view.stats().chunks_decoded,
        before,
        "the chunk came from the cache"
    );
    let link = view.lookup(ROOT, b"link").unwrap().unwrap();
    assert_eq!(view.readlink(link.ino).unwrap(), b"a.txt");
    assert!(
        view.read(sub.ino, 0, 1).unwrap().is_none(),
        "a directory has no content"
    );
}

#[test]
fn many_snapshots_get_a_directory_each_and_latest() {
    let (dir, store, a, _) = setup();
    std::fs::write(dir.path().join("ws/a.txt"), b"changed\n").unwrap();
    let ws = std::fs::canonicalize(dir.path().join("ws")).unwrap();
    let b = snapshot(&store, &ws);
    let names = [
        super::view::snapshot_dir_name(&a),
        super::view::snapshot_dir_name(&b),
    ];
    let view = View::new(store, Layout::Many(vec![a, b]));
    let kids = view.children(ROOT).unwrap().unwrap();
    assert_eq!(kids.len(), 3);
    let latest = view.lookup(ROOT, b"latest").unwrap().unwrap();
    assert_eq!(view.readlink(latest.ino).unwrap(), names[1].as_bytes());
    let newest = view.lookup(ROOT, names[1].as_bytes()).unwrap().unwrap();
    let f = view.lookup(newest.ino, b"a.txt").unwrap().unwrap();
    assert_eq!(view.read(f.ino, 0, 100).unwrap().unwrap(), b"changed\n");
}

#[test]
fn snapshot_directories_sort_by_time_within_one_second() {
    let (dir, store, mut a, _) = setup();
    std::fs::write(dir.path().join("ws/a.txt"), b"changed\n").unwrap();
    let ws = std::fs::canonicalize(dir.path().join("ws")).unwrap();
    let mut b = snapshot(&store, &ws);
    // b first, a 800 ms later in the same second.
    b.snap.time_ns = 1_700_000_000_100_000_000;
    a.snap.time_ns = 1_700_000_000_900_000_000;
    let (na, nb) = (
        super::view::snapshot_dir_name(&a),
        super::view::snapshot_dir_name(&b),
    );
    assert_eq!(na, format!("2023-11-14T22:13:20.900Z-{}", a.id.short()));
    assert!(nb < na, "{nb} sorts after {na}");
    let view = View::new(store, Layout::Many(vec![a, b]));
    let kids = view.children(ROOT).unwrap().unwrap();
    let names: Vec<&[u8]> = kids.iter().map(|(n, _)| n.as_slice()).collect();
    assert_eq!(names, [nb.as_bytes(), na.as_bytes(), b"latest"]);
    let latest = view.lookup(ROOT, b"latest").unwrap().unwrap();
    assert_eq!(view.readlink(latest.ino).unwrap(), na.as_bytes());
}
