//! Property: random file operations interleaved with watched snapshots;
//! every watched snapshot's tree equals a full walk of the same state, and
//! every snapshot after the first is watched (no fallback is needed for
//! ordinary changes).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use moat::capture::{self, CaptureOptions};
use moat::format::snapshot::Scan;
use moat::util::progress::NoProgress;
use moat::worktree::walk::WalkOptions;
use moat::worktree::watch::WatchLink;
use proptest::prelude::*;

const DIRS: [&str; 5] = ["", "a", "a/b", "c", "a/b/d"];
const NAMES: [&str; 4] = ["f0", "f1", "f2", "g"];

fn path(ws: &Path, d: u8, n: u8) -> PathBuf {
    let dir = DIRS[d as usize % DIRS.len()];
    let name = NAMES[n as usize % NAMES.len()];
    if dir.is_empty() {
        ws.join(name)
    } else {
        ws.join(dir).join(name)
    }
}

fn dir(ws: &Path, d: u8) -> PathBuf {
    ws.join(DIRS[1 + d as usize % (DIRS.len() - 1)])
}

/// Applies one operation; failures (a missing source, a non-empty target)
/// are simply no-ops, like a user's failed command.
fn apply(ws: &Path, op: (u8, u8, u8, u8, u8)) {
    let (kind, d1, n1, d2, n2) = op;
    let p = path(ws, d1, n1);
    let q = path(ws, d2, n2);
    let _ = match kind % 12 {
        0 => fs::create_dir_all(p.parent().unwrap()).and_then(|_| fs::write(&p, [n2; 5])),
        1 => fs::write(&p, vec![d2; 1 + n2 as usize]),
        2 => fs::remove_file(&p),
        3 => fs::rename(&p, &q),
        4 => fs::create_dir_all(dir(ws, d1)),
        5 => fs::remove_dir_all(dir(ws, d1)),
        6 => fs::rename(dir(ws, d1), dir(ws, d2)),
        7 => fs::set_permissions(
            &p,
            fs::Permissions::from_mode(if n2 % 2 == 0 { 0o755 } else { 0o644 }),
        ),
        8 => fs::remove_file(&p)
            .or(Ok(()))
            .and_then(|_| std::os::unix::fs::symlink(NAMES[n2 as usize % 4], &p)),
        // Same size, then the old mtime back: only ctime and the event tell.
        9 => fs::metadata(&p).and_then(|m| {
            let len = m.len() as usize;
            fs::write(&p, vec![b'z'; len])?;
            let t = nix::sys::time::TimeSpec::new(std::os::unix::fs::MetadataExt::mtime(&m), 0);
            nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                &p,
                &t,
                &t,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .map_err(std::io::Error::from)
        }),
        // A second name inside the workspace, then a write through it: no
        // event names the first. (A link made from outside the workspace
        // gives no event at all: README says so.)
        10 => fs::hard_link(&p, &q).and_then(|_| {
            fs::OpenOptions::new()
                .write(true)
                .open(&q)
                .and_then(|mut f| std::io::Write::write_all(&mut f, &[d2, n2, 7]))
        }),
        _ => fs::create_dir_all(p.parent().unwrap()).and_then(|_| fs::write(&p, b"")),
    };
}

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
            linked |= kind % 12 == 10;
            // A link removed again before any capture saw it, with a write
            // through it, is the documented blind spot; snapshot at once.
            if !snap && kind % 12 != 10 {
                continue;
            }
            let r = capture::capture(&store, &ws, &opts, &NoProgress).unwrap();
            // A file with several names makes captures walk whenever one
            // of its names moves into a place the cache does not know.
            if !linked {
                prop_assert_eq!(r.snapshot.scan, Scan::Watched, "{:?}", r.scan_note);
            }
            let (walked, _) = capture::scan_dry(&store, &ws, &WalkOptions::default(), &NoProgress).unwrap();
            prop_assert_eq!(r.snapshot.root, walked.root);
        }
        let r = capture::capture(&store, &ws, &opts, &NoProgress).unwrap();
        let (walked, _) = capture::scan_dry(&store, &ws, &WalkOptions::default(), &NoProgress).unwrap();
        prop_assert_eq!(r.snapshot.root, walked.root);
    }
}
