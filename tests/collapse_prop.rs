//! Property: random file operations interleaved with walked snapshots (no
//! watcher), each collapsing the directories that match the stat cache
//! (`worktree/walk/collapse.rs`); every snapshot's tree equals a scan of
//! the same state with no stat cache at all, and a second snapshot with
//! nothing changed in between (the case that collapses most) does too.
//! Files are sometimes backdated an hour, so that most of the tree is
//! outside the racy window and really collapses; then the cache the first
//! of the two snapshots leaves must vouch for every file (none is read).

mod common;

use std::fs;
use std::path::PathBuf;

use common::ops::{apply, cacheless_root};
use moat::capture::{self, CaptureOptions};
use moat::format::snapshot::Scan;
use moat::util::progress::NoProgress;
use proptest::prelude::*;

/// A workspace of two old files, its store, and a first walked snapshot
/// of it (so the store has a stat cache); the options every capture uses.
fn started() -> (tempfile::TempDir, PathBuf, moat::Store, CaptureOptions) {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    common::write(&ws.join("a/b/f0"), b"start");
    common::write(&ws.join("c/f1"), b"other");
    let ws = fs::canonicalize(&ws).unwrap();
    common::backdate(&ws);
    let store = moat::Store::open_or_create(&tmp.path().join("store")).unwrap();
    let opts = CaptureOptions {
        allow_empty: true,
        ..CaptureOptions::default()
    };
    capture::capture(&store, &ws, &opts, &NoProgress).unwrap();
    (tmp, ws, store, opts)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if std::env::var_os("CI").is_some() { 24 } else { 64 },
        ..ProptestConfig::default()
    })]

    #[test]
    fn collapsing_walks_equal_cacheless_walks(ops in proptest::collection::vec(
        (any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>(), any::<bool>(), any::<bool>()), 1..30)) {
        let (tmp, ws, store, opts) = started();
        for (kind, d1, n1, d2, n2, snap, old) in ops {
            apply(&ws, (kind, d1, n1, d2, n2));
            if old {
                common::backdate(&ws);
            }
            if !snap {
                continue;
            }
            let want = cacheless_root(tmp.path(), &ws);
            let r = capture::capture(&store, &ws, &opts, &NoProgress).unwrap();
            prop_assert_eq!(r.snapshot.scan, Scan::Walked);
            prop_assert_eq!(r.snapshot.root, want);
            let again = capture::capture(&store, &ws, &opts, &NoProgress).unwrap();
            prop_assert_eq!(again.snapshot.root, want);
            // Every file was older than the last capture: the cache that
            // capture left vouches for all of them.
            if old {
                prop_assert_eq!(again.snapshot.stats.files_read, 0);
            }
        }
        let r = capture::capture(&store, &ws, &opts, &NoProgress).unwrap();
        prop_assert_eq!(r.snapshot.root, cacheless_root(tmp.path(), &ws));
    }
}

/// A git exclude file that appears without changing what is ignored: the
/// walk would collapse the whole root, but the cache must then name the
/// new exclude file (so a later change to it is seen) and still hold
/// every record (the snapshot after it reads nothing).
#[test]
fn a_new_exclude_file_keeps_the_cache_whole() {
    let (tmp, ws, store, opts) = started();
    common::write(&ws.join(".git/info/exclude"), b"# nothing\n");
    common::backdate(&ws);
    let r = capture::capture(&store, &ws, &opts, &NoProgress).unwrap();
    assert_eq!(r.snapshot.root, cacheless_root(tmp.path(), &ws));
    // The cache names the new exclude file, so a change to it is seen.
    let cache = moat::worktree::statcache::open(&store, &ws).unwrap().unwrap();
    assert!(cache.meta.excludes.iter().any(|(p, _)| p == b".git/info/exclude"));
    let again = capture::capture(&store, &ws, &opts, &NoProgress).unwrap();
    assert_eq!(again.snapshot.root, r.snapshot.root);
    assert_eq!(again.snapshot.stats.files_read, 0);
}
