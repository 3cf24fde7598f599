//! The stat cache's racy-file line on a workspace whose filesystem clock is
//! not the store's: a file rewritten within the same timestamp tick as a
//! snapshot (or restore) read it must still be read again by the next
//! snapshot. The workspace sits on a filesystem with whole-second
//! timestamps (`common::coarse`), the store on the default temp dir.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;

/// Each attempt needs a few moat commands to fit inside one second; on a
/// machine too loaded for that in every attempt the case never arises, and
/// the test says so instead of failing.
const ATTEMPTS: usize = 10;

/// Waits until the wall clock is early in a second, so the steps that
/// follow fit inside that second (checked afterwards, and retried if not).
fn start_of_a_second() {
    loop {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        if now.subsec_millis() < 50 {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The stat fields a whole-second filesystem can leave unchanged by a
/// rewrite of the same length.
fn times(p: &Path) -> (i64, i64) {
    let m = std::fs::metadata(p).unwrap();
    (m.mtime(), m.ctime())
}

fn never_arose(test: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: in {ATTEMPTS} attempts the machine never fitted the steps into one second"
    );
}

fn nothing_left_behind(ws: &Path) {
    let stray: Vec<_> = std::fs::read_dir(ws)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".moat"))
        .collect();
    assert!(stray.is_empty(), "moat left {stray:?} in the workspace");
}

#[test]
fn a_change_in_the_same_second_as_a_snapshot_is_seen() {
    let Some(ws) = coarse::dir("a_change_in_the_same_second_as_a_snapshot_is_seen") else {
        return;
    };
    let env = Env::new();
    let f = ws.join("f.txt");
    for attempt in 0..ATTEMPTS {
        start_of_a_second();
        write(&f, format!("old {attempt}").as_bytes());
        let t = times(&f);
        let first = env.snapshot(&ws);
        write(&f, format!("new {attempt}").as_bytes());
        if times(&f) != t {
            continue; // the second ended meanwhile: the case did not arise
        }
        let second = env.snapshot(&ws);
        assert_ne!(first, second, "the rewrite of f.txt was missed");
        let shown = env.ok(&["diff", &first, &second]);
        assert_eq!(shown, "M\tf.txt\n");
        nothing_left_behind(&ws);
        return;
    }
    never_arose("a_change_in_the_same_second_as_a_snapshot_is_seen");
}

#[test]
fn a_change_in_the_same_second_as_a_restore_is_seen() {
    let Some(dir) = coarse::dir("a_change_in_the_same_second_as_a_restore_is_seen") else {
        return;
    };
    let env = Env::new();
    let ws = env.path("ws");
    for attempt in 0..ATTEMPTS {
        // The snapshot holds an mtime a little ahead (whole seconds), so
        // only the restore and the rewrite must fit inside that second.
        let ahead = now_secs() + 2;
        let f = ws.join("f.txt");
        write(&f, format!("old {attempt}").as_bytes());
        set_mtime(&f, ahead);
        let id = env.snapshot(&ws);
        while now_secs() < ahead {
            std::thread::sleep(Duration::from_millis(2));
        }
        let target = dir.join(format!("target-{attempt}"));
        env.restore(&id, &target);
        let f = target.join("f.txt");
        let t = times(&f);
        write(&f, format!("new {attempt}").as_bytes());
        if times(&f) != t || t.0 != ahead {
            continue; // the second ended meanwhile: the case did not arise
        }
        let after = env.snapshot(&target);
        let restored = env.path(&format!("check-{attempt}"));
        env.restore(&after, &restored);
        assert_eq!(
            std::fs::read(restored.join("f.txt")).unwrap(),
            format!("new {attempt}").as_bytes(),
            "the rewrite after the restore was missed"
        );
        nothing_left_behind(&target);
        return;
    }
    never_arose("a_change_in_the_same_second_as_a_restore_is_seen");
}

fn set_mtime(p: &Path, secs: i64) {
    use nix::sys::stat::{UtimensatFlags, utimensat};
    use nix::sys::time::TimeSpec;
    utimensat(
        nix::fcntl::AT_FDCWD,
        p,
        &TimeSpec::UTIME_OMIT,
        &TimeSpec::new(secs, 0),
        UtimensatFlags::NoFollowSymlink,
    )
    .expect("set mtime");
}
