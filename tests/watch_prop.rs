//! Property: random file operations interleaved with watched snapshots;
//! every watched snapshot's tree equals a full walk of the same state, and
//! every snapshot after the first is watched (no fallback is needed for
//! ordinary changes; a changed root `.gitignore` or `.git/info/exclude`
//! makes the capture walk). The operations include ignore-file edits at
//! every level and `.git/info/exclude` edits, so directories become
//! ignored (unwatched) and un-ignored (watched again) while files are
//! written inside them. The full walk it is compared with is a scan
//! without a stat cache (a fresh store), so a walk that collapses against
//! the cache is never its own reference.

mod common;

use std::fs;

use common::ops::{apply, cacheless_root};
use moat::capture::{self, CaptureOptions};
use moat::format::snapshot::Scan;
use moat::util::progress::NoProgress;
use moat::worktree::watch::WatchLink;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn watched_equals_walked(ops in proptest::collection::vec((any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>(), any::<bool>()), 1..30)) {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("ws");
        fs::create_dir_all(&ws).unwrap();
        let ws = fs::canonicalize(&ws).unwrap();
        common::write(&ws.join("a/b/f0"), b"start");
        let store = moat::Store::open_or_create(&tmp.path().join("store")).unwrap();
        let hub = moat::worktree::watch::spawn(&ws, store.own_dirs()).unwrap();
        let opts = CaptureOptions {
            watch: WatchLink::With(hub),
            allow_empty: true,
            ..CaptureOptions::default()
        };
        capture::capture(&store, &ws, &opts, &NoProgress).unwrap();
        let mut linked = false;
        for (kind, d1, n1, d2, n2, snap) in ops {
            apply(&ws, (kind, d1, n1, d2, n2));
            linked |= kind % 14 == 10;
            // A link removed again before any capture saw it, with a write
            // through it, is the documented blind spot; snapshot at once.
            if !snap && kind % 14 != 10 {
                continue;
            }
            let r = capture::capture(&store, &ws, &opts, &NoProgress).unwrap();
            // A file with several names makes captures walk whenever one
            // of its names moves into a place the cache does not know.
            let rules_changed = r.scan_note.as_deref().is_some_and(|n| n.contains("ignore rules changed"));
            if !linked && !rules_changed {
                prop_assert_eq!(r.snapshot.scan, Scan::Watched, "{:?}", r.scan_note);
            }
            prop_assert_eq!(r.snapshot.root, cacheless_root(tmp.path(), &ws));
        }
        let r = capture::capture(&store, &ws, &opts, &NoProgress).unwrap();
        prop_assert_eq!(r.snapshot.root, cacheless_root(tmp.path(), &ws));
    }
}
