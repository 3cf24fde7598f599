//! EIO and short writes at every write of every store writer. For each
//! writer, each command that writes through it and each mode, the failpoint
//! is armed from the 1st hit on, then (in a fresh scene) from the 2nd, and
//! so on until the command no longer reaches it: it then succeeds with no
//! fault, and the writes before were each faulted once. The failpoint says
//! when it fires, so a command that swallowed a write error (succeeding
//! with data missing) is told apart from one that never reached it.
//!
//! After every faulted run, what `Scene::assert_recovers` demands (a clear
//! error naming the store and the cause, no temp file, every earlier
//! snapshot restoring byte for byte, `check --read-data`, the next
//! snapshot and `gc` working); a failed rollback left the workspace as it
//! was; a failed pin pinned nothing. A fault saving a stat cache costs only
//! the cache: the command succeeds and warns, naming the store and the
//! cause. Each test prints, past the capture, how many writes it faulted.

use std::io::Write;

use super::scene::{Scene, each};
use crate::common::*;

/// Writes of one writer a command may make in these scenes: a bound, so a
/// command that never stops reaching its failpoint fails the test.
const MAX_HITS: usize = 100;

/// The modes, with the words their error carries.
const MODES: [(&str, &str); 2] = [("eio", "Input/output error"), ("short", "short write")];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    /// `snapshot WS`
    Snapshot,
    /// `snapshot --keep WS` (pins it)
    SnapshotPin,
    /// `snapshots pin ID`
    Pin,
    /// `gc --all` with garbage to rewrite.
    Gc,
    /// `rollback FIRST WS`, whose safety snapshot stores the workspace's
    /// changes.
    Rollback,
    /// The first `snapshot` of a store that does not exist yet.
    NewStore,
}

/// Faults every write `cmd` makes through `point`, in each mode; returns
/// how many writes were faulted per mode.
fn every_write(cmd: Cmd, point: &str) -> [usize; 2] {
    MODES.map(|(mode, cause)| {
        for n in 1..=MAX_HITS {
            if !faulted(cmd, point, mode, cause, n) {
                assert!(n > 1, "{cmd:?} never writes through {point}");
                return n - 1;
            }
        }
        panic!("{cmd:?} still writes through {point} after {MAX_HITS} faults");
    })
}

/// Runs the cases of `writers` at once and prints their counts.
fn run(test: &str, writers: &[(Cmd, &str)]) {
    let counts = std::sync::Mutex::new(Vec::new());
    each(writers, |&(cmd, point)| {
        let n = every_write(cmd, point);
        counts
            .lock()
            .expect("counts")
            .push(format!("{cmd:?} {point}: {} eio, {} short", n[0], n[1]));
    });
    let mut counts = counts.into_inner().expect("counts");
    counts.sort();
    let _ = writeln!(std::io::stderr(), "{test}: writes faulted: {}", counts.join("; "));
}

/// Runs `cmd` in a fresh scene with `point:mode@n` armed. Returns whether
/// the failpoint fired, having checked what a fired fault must leave.
fn faulted(cmd: Cmd, point: &str, mode: &str, cause: &str, n: usize) -> bool {
    let spec = format!("{point}:{mode}@{n}");
    let what = format!("{cmd:?} with {spec}");
    if cmd == Cmd::NewStore {
        return new_store(&spec, &what, cause);
    }
    let mut s = Scene::small();
    let ws = s.ws.to_str().expect("utf8").to_string();
    let (first, first_state) = s.earlier[0].clone();
    let last = s.earlier.last().expect("a snapshot").0.clone();
    let args: Vec<&str> = match cmd {
        Cmd::Snapshot => vec!["snapshot", &ws],
        Cmd::SnapshotPin => vec!["snapshot", "--keep", &ws],
        Cmd::Pin => vec!["snapshots", "pin", &last],
        Cmd::Gc => {
            s.make_garbage();
            vec!["gc", "--all", "--min-age", "0s"]
        }
        Cmd::Rollback => vec!["rollback", &first, &ws],
        Cmd::NewStore => unreachable!(),
    };
    let before = listing(&s.ws);
    let out = s
        .env
        .cmd()
        .args(&args)
        .env("MOAT_FAILPOINT", &spec)
        .output()
        .expect("run moat");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if !err.contains(&format!("failpoint {point} fired")) {
        assert!(
            out.status.success(),
            "{what}: failed, no fault fired\n{}",
            show(&out)
        );
        return false;
    }
    match (cmd, point) {
        (Cmd::Snapshot, "cache-write") => s.assert_committed_anyway(&what, &out, cause),
        (Cmd::Rollback, "cache-write") => {
            // Done, all but the cache (the safety snapshot's, or the one
            // of the rolled-back workspace).
            assert!(out.status.success(), "{what}: {}", show(&out));
            let store = s.env.store();
            assert!(
                err.contains("stat cache")
                    && err.contains(store.to_str().expect("utf8"))
                    && err.contains(cause),
                "{what}: the warning must name the stat cache, the store and '{cause}':\n{err}"
            );
            assert_eq!(listing(&s.ws), first_state, "{what}: not rolled back");
            let safety = err
                .lines()
                .find_map(|l| l.strip_prefix("safety snapshot ")?.get(..64))
                .expect("the safety snapshot is named")
                .to_string();
            s.earlier.push((safety, before));
            s.assert_store_intact(&what);
        }
        _ => {
            if cmd == Cmd::Rollback {
                assert_eq!(
                    listing(&s.ws),
                    before,
                    "{what}: a failed rollback changed the workspace"
                );
            }
            let pins = std::fs::read_dir(s.env.store().join("pins")).map_or(0, |d| d.count());
            assert_eq!(pins, 0, "{what}: a failed command left a pin");
            s.assert_recovers(&what, &out, cause);
        }
    }
    true
}

/// The store's config written through `spec`: a failed first command
/// leaves no config (so no half-made store) and no temp file, and the next
/// one makes the store.
fn new_store(spec: &str, what: &str, cause: &str) -> bool {
    let env = Env::new();
    let ws = env.path("ws");
    rich_tree(&ws);
    let out = env
        .cmd()
        .args(["snapshot", ws.to_str().expect("utf8")])
        .env("MOAT_FAILPOINT", spec)
        .output()
        .expect("run moat");
    let err = String::from_utf8_lossy(&out.stderr);
    if !err.contains("failpoint config-write fired") {
        assert!(
            out.status.success(),
            "{what}: failed, no fault fired\n{}",
            show(&out)
        );
        return false;
    }
    let store = env.store();
    assert!(!out.status.success(), "{what}: should fail\n{}", show(&out));
    assert!(!err.contains("panicked"), "{what}: {err}");
    assert!(
        err.contains(store.to_str().expect("utf8")) && err.contains(cause),
        "{what}: the error must name the store and '{cause}':\n{err}"
    );
    assert!(!store.join("config").exists(), "{what}: a config was left");
    let tmp: Vec<_> = std::fs::read_dir(store.join("tmp"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(tmp.is_empty(), "{what}: temp files left: {tmp:?}");
    let id = env.snapshot(&ws);
    env.ok(&["gc", "--all", "--min-age", "0s"]);
    env.ok(&["check", "--read-data"]);
    env.assert_restores(&id, &listing(&ws));
    true
}

#[test]
fn io_errors_and_short_writes_at_every_write_of_a_snapshot() {
    run(
        "snapshot",
        &[
            (Cmd::Snapshot, "pack-write"),
            (Cmd::Snapshot, "index-write"),
            (Cmd::Snapshot, "snapshot-write"),
            (Cmd::Snapshot, "cache-write"),
            (Cmd::SnapshotPin, "pin-write"),
            (Cmd::Pin, "pin-write"),
            (Cmd::NewStore, "config-write"),
        ],
    );
}

#[test]
fn io_errors_and_short_writes_at_every_write_of_gc() {
    run("gc", &[(Cmd::Gc, "pack-write"), (Cmd::Gc, "index-write")]);
}

#[test]
fn io_errors_and_short_writes_at_every_write_of_a_rollback() {
    run(
        "rollback",
        &[
            (Cmd::Rollback, "pack-write"),
            (Cmd::Rollback, "index-write"),
            (Cmd::Rollback, "snapshot-write"),
            (Cmd::Rollback, "cache-write"),
        ],
    );
}
