//! The clone fast path: staging before ingestion, and restore/rollback
//! cloning content already on disk. Every scenario runs twice: on the
//! default temp filesystem (which here cannot clone, so the fallback path
//! is taken) and on a loop-mounted XFS with reflinks (skipped with a printed
//! reason where that cannot be set up).

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{Env, reflink};
use moat::capture::{self, CaptureOptions, Outcome};
use moat::ops::restore::{self, RestoreOptions};
use moat::ops::rollback::{self, RollbackOptions};
use moat::store::Store;
use moat::util::progress::NoProgress;
use moat::worktree::clone::{self, Method};

/// A directory to run a scenario in, and whether it can clone.
struct Base {
    _tmp: Option<tempfile::TempDir>,
    path: PathBuf,
    clones: bool,
}

fn can_clone(dir: &Path) -> bool {
    let (a, b) = (dir.join(".probe-a"), dir.join(".probe-b"));
    fs::write(&a, b"x").unwrap();
    let ok = clone::clone_file(&a, &b).unwrap() == clone::Outcome::Cloned;
    let _ = (fs::remove_file(&a), fs::remove_file(&b));
    ok
}

fn bases(test: &str) -> Vec<Base> {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().to_path_buf();
    let mut out = vec![Base {
        clones: can_clone(&path),
        _tmp: Some(tmp),
        path,
    }];
    if let Some(path) = reflink::dir(test) {
        out.push(Base {
            _tmp: None,
            path,
            clones: true,
        });
    }
    out
}

fn write(p: &Path, data: &[u8]) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

/// A workspace of `n` files of a few KiB plus one of 3 MiB.
fn workspace(root: &Path, n: usize) -> PathBuf {
    let ws = root.join("ws");
    for i in 0..n {
        write(
            &ws.join(format!("d{}/f{i}", i % 4)),
            &common::noise(4096 + i * 97, i as u64),
        );
    }
    write(&ws.join("big"), &common::noise(3 << 20, 99));
    common::backdate(&ws);
    ws
}

fn snapshot(store: &Store, ws: &Path) -> (moat::ObjectId, capture::CaptureReport) {
    let r = capture::capture(store, ws, &CaptureOptions::default(), &NoProgress).unwrap();
    let Outcome::Written(id) = r.outcome else {
        panic!("no snapshot written")
    };
    (id, r)
}

fn contents(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in walk(root) {
        if !e.1 {
            out.push((
                e.0.strip_prefix(root).unwrap().display().to_string(),
                fs::read(&e.0).unwrap(),
            ));
        }
    }
    out.sort();
    out
}

fn walk(root: &Path) -> Vec<(PathBuf, bool)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let is_dir = e.file_type().unwrap().is_dir();
            if is_dir {
                stack.push(e.path());
            }
            out.push((e.path(), is_dir));
        }
    }
    out
}

#[test]
fn clone_module_clones_or_reports_unsupported_without_side_effects() {
    for b in bases("clone_module") {
        let src = b.path.join("src");
        write(&src, &common::noise(8 << 20, 1));
        let dst = b.path.join("dst");
        match clone::clone_file(&src, &dst).unwrap() {
            clone::Outcome::Cloned => {
                assert!(b.clones);
                assert_eq!(fs::read(&dst).unwrap(), fs::read(&src).unwrap());
                assert!(reflink::all_extents_shared(&dst), "a clone shares its extents");
                assert!(reflink::all_extents_shared(&src));
            }
            clone::Outcome::Unsupported(why) => {
                assert!(!b.clones, "{why}");
                assert!(fs::symlink_metadata(&dst).is_err(), "nothing left behind");
            }
        }
        let copy = b.path.join("copy");
        let m = clone::copy_file(&src, &copy).unwrap();
        assert_eq!(m == Method::Clone, b.clones, "{m:?}");
        assert_eq!(fs::read(&copy).unwrap(), fs::read(&src).unwrap());
    }
}

#[test]
fn snapshot_stages_changed_files_and_falls_back_where_it_cannot() {
    for b in bases("snapshot_stages") {
        let env = Env::new_in(&b.path);
        let ws = workspace(env.dir.path(), 20);
        let staging = |v: &serde_json::Value| {
            let st = &v["staging"];
            let n = |k: &str| st[k].as_u64().unwrap();
            (
                n("memory_files"),
                n("cloned_files"),
                n("direct_files"),
                st["fallback"].is_null(),
            )
        };
        // Small files are staged in memory; the 3 MiB one is cloned, or
        // read directly where the filesystem cannot clone.
        let v = env.snapshot_json(&ws, &[]);
        let big = u64::from(b.clones);
        assert_eq!(staging(&v), (20, big, 1 - big, b.clones), "{v}");
        // Only what the stat cache cannot vouch for is staged.
        write(&ws.join("d1/f1"), b"changed");
        write(&ws.join("new"), b"new file");
        common::backdate(&ws);
        let v = env.snapshot_json(&ws, &[]);
        assert_eq!(staging(&v), (2, 0, 0, true), "{v}");
        write(&ws.join("big"), &common::noise(3 << 20, 1234));
        common::backdate(&ws);
        let v = env.snapshot_json(&ws, &[]);
        assert_eq!(staging(&v), (0, big, 1 - big, b.clones), "{v}");
        // --verbose says which path was taken; --no-clone turns staging off.
        write(&ws.join("new"), b"newer");
        let out = env
            .cmd()
            .args(["-v", "snapshot", "--no-clone"])
            .arg(&ws)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("0 (0 B) cloned") && err.contains("1 read directly (staging turned off"),
            "{err}"
        );
        let id = common::last_line(&String::from_utf8_lossy(&out.stdout));
        let back = env.path("back");
        env.restore(&id, &back);
        common::assert_same_tree(&ws, &back);
        assert!(
            fs::read_dir(env.store().join("tmp")).unwrap().next().is_none(),
            "staging removed"
        );
    }
}

#[test]
fn store_on_another_filesystem_reads_directly() {
    let Some(xfs) = reflink::dir("store_elsewhere") else {
        return;
    };
    let ws = workspace(&xfs, 5);
    let env = Env::new();
    let v = env.snapshot_json(&ws, &[]);
    assert_eq!(v["staging"]["cloned_files"], 0, "{v}");
    assert_eq!(v["staging"]["direct_files"], 1, "the big file: {v}");
    assert!(
        v["staging"]["fallback"]
            .as_str()
            .unwrap()
            .contains("reading directly"),
        "{v}"
    );
    let back = env.path("back");
    env.restore(common::last_line(&v["id"].to_string()).trim_matches('"'), &back);
    common::assert_same_tree(&ws, &back);
}

#[test]
fn a_staged_snapshot_is_the_workspace_at_staging_time() {
    for b in bases("staging_time") {
        let store = Store::open_or_create(&b.path.join("store")).unwrap();
        let ws = workspace(&b.path, 30);
        snapshot(&store, &ws);
        write(&ws.join("d0/f0"), b"edited before the snapshot");
        write(&ws.join("added"), &common::noise(100_000, 5));
        write(&ws.join("big"), &common::noise(3 << 20, 100));
        let expected = contents(&ws);
        let staged = capture::stage(&store, &ws, &CaptureOptions::default(), &NoProgress).unwrap();
        let st = staged.staging().clone();
        let cloned = if b.clones { 2 } else { 0 };
        assert_eq!(
            (st.memory_files, st.cloned_files, st.direct_files),
            (1, cloned, 2 - cloned),
            "{st:?}"
        );
        // The workspace changes while the snapshot is being ingested.
        write(&ws.join("d0/f0"), b"edited during ingestion");
        write(&ws.join("big"), b"truncated during ingestion");
        fs::remove_file(ws.join("added")).unwrap();
        write(&ws.join("later"), b"created during ingestion");
        let r = staged.ingest(&NoProgress).unwrap();
        assert_eq!(r.staging, st);
        let out = b.path.join("out");
        restore::restore(&store, &r.snapshot, &out, &RestoreOptions::default(), &NoProgress).unwrap();
        assert_eq!(
            contents(&out),
            expected,
            "the snapshot is the state at staging time"
        );
        // The next snapshot sees every change made during ingestion.
        let (_, next) = snapshot(&store, &ws);
        assert_eq!(next.snapshot.stats.files_read, 3);
        let opts = moat::ops::check::CheckOptions { read_data: true };
        let rep = moat::ops::check::check(&store, &opts, &NoProgress).unwrap();
        assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    }
}

#[test]
fn rollback_clones_renamed_and_swapped_content() {
    for b in bases("rollback_clones") {
        let store = Store::open_or_create(&b.path.join("store")).unwrap();
        let ws = workspace(&b.path, 8);
        write(&ws.join("c"), &common::noise(200_000, 7));
        write(&ws.join("d"), &common::noise(300_000, 8));
        common::backdate(&ws);
        let (s1, _) = snapshot(&store, &ws);
        let expected = contents(&ws);
        // A rename (its donor path is deleted by the rollback) and a swap
        // (each donor path is overwritten by the other's content).
        fs::create_dir_all(ws.join("moved")).unwrap();
        fs::rename(ws.join("big"), ws.join("moved/big")).unwrap();
        fs::rename(ws.join("c"), ws.join("tmp")).unwrap();
        fs::rename(ws.join("d"), ws.join("c")).unwrap();
        fs::rename(ws.join("tmp"), ws.join("d")).unwrap();
        let target = store
            .list_snapshots()
            .unwrap()
            .0
            .into_iter()
            .find(|r| r.id == s1)
            .unwrap();
        let plan = rollback::plan(&store, &target, &ws, &RollbackOptions::default(), &NoProgress).unwrap();
        let rep = rollback::apply(&store, plan).unwrap();
        assert_eq!(contents(&ws), expected);
        let c = &rep.clones;
        if b.clones {
            assert_eq!(
                (c.cloned_files, c.cloned_bytes),
                (3, (3 << 20) + 500_000),
                "{c:?}"
            );
        } else {
            assert_eq!(c.cloned_files, 0, "{c:?}");
            assert!(c.fallback.is_some(), "{c:?}");
        }
        assert!(
            !ws.join(moat::worktree::reuse::HOLD_DIR).exists(),
            "holding dir removed"
        );
        // The stat cache knows the rolled-back files: nothing is re-read.
        let r = capture::capture(&store, &ws, &CaptureOptions::default(), &NoProgress).unwrap();
        assert_eq!(r.snapshot.stats.files_read, 0);
    }
}

#[test]
fn restore_clones_from_the_workspace_but_never_stale_content() {
    for b in bases("restore_clones") {
        let store = Store::open_or_create(&b.path.join("store")).unwrap();
        let ws = workspace(&b.path, 6);
        let (_, r) = snapshot(&store, &ws);
        let expected = contents(&ws);
        // Same size, new bytes: its cache entry no longer vouches for it.
        let f = ws.join("d0/f0");
        let mut data = fs::read(&f).unwrap();
        data[0] ^= 0xff;
        write(&f, &data);
        let out = b.path.join("out");
        let rep =
            restore::restore(&store, &r.snapshot, &out, &RestoreOptions::default(), &NoProgress).unwrap();
        assert_eq!(contents(&out), expected);
        if b.clones {
            assert_eq!(
                rep.clones.cloned_files, 6,
                "all but the edited file: {:?}",
                rep.clones
            );
            assert!(reflink::all_extents_shared(&out.join("big")));
        } else {
            assert_eq!(rep.clones.cloned_files, 0);
        }
        let plain = b.path.join("plain");
        let opts = RestoreOptions {
            clone: false,
            ..RestoreOptions::default()
        };
        let rep = restore::restore(&store, &r.snapshot, &plain, &opts, &NoProgress).unwrap();
        assert_eq!((rep.clones.cloned_files, contents(&plain)), (0, expected));
    }
}

#[test]
fn run_pre_run_snapshot_is_the_workspace_before_the_command() {
    for b in bases("run_pre_run") {
        let env = Env::new_in(&b.path);
        let ws = workspace(env.dir.path(), 10);
        let home = env.path("home");
        let out = env
            .cmd()
            .env("MOAT_HOME", &home)
            .args(["--verbose", "run", "--workspace"])
            .arg(&ws)
            .args(["--", "sh", "-c", "echo during > big; rm d0/f0; echo new > made"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        let cloned = if b.clones { 1 } else { 0 };
        let line = format!(
            "10 files in memory, {cloned} cloned, {} read directly",
            1 - cloned
        );
        assert!(err.contains(&line), "{line}\n{err}");
        let list = env.ok(&["snapshots", "--json", ws.to_str().unwrap()]);
        let v: serde_json::Value = serde_json::from_str(&list).unwrap();
        let pre = v
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["trigger"] == "pre-run")
            .unwrap();
        let back = env.path("back");
        env.restore(pre["id"].as_str().unwrap(), &back);
        assert_eq!(fs::read(back.join("big")).unwrap(), common::noise(3 << 20, 99));
        assert!(back.join("d0/f0").exists() && !back.join("made").exists());
    }
}

#[test]
fn a_crash_after_staging_leaves_an_orphan_that_clean_temp_removes() {
    for b in bases("crash_after_stage") {
        let env = Env::new_in(&b.path);
        let ws = workspace(env.dir.path(), 5);
        let out = env
            .cmd()
            .arg("snapshot")
            .arg(&ws)
            .env("MOAT_FAILPOINT", "after-stage")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let tmp: Vec<String> = fs::read_dir(env.store().join("tmp"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let stages = tmp.iter().filter(|n| n.ends_with(".stage.tmp")).count();
        assert_eq!(stages, usize::from(b.clones), "{tmp:?}");
        env.ok(&["check"]);
        let removed = env.ok(&["system", "clean-temp", "--min-age", "0s", "--force"]);
        assert!(!removed.contains("kept"), "{removed}");
        assert!(fs::read_dir(env.store().join("tmp")).unwrap().next().is_none());
        env.snapshot(&ws);
    }
}

/// Snapshots taken while files are being rewritten store only states the
/// files really had. Run on the reflink filesystem only: there the copies
/// are clones, which XFS makes atomically with respect to write(2); a plain
/// read can race a rewrite within one timestamp tick, which no stat check
/// can see (the limit git and restic share).
#[test]
fn snapshots_under_concurrent_rewrites_hold_only_real_states() {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some(dir) = reflink::dir("concurrent_rewrites") else {
        return;
    };
    let store = Store::open_or_create(&dir.join("store")).unwrap();
    let ws = dir.join("ws");
    const LEN: usize = 1 << 20;
    let names = ["a", "b", "c", "d"];
    for n in names {
        write(&ws.join(n), &vec![1u8; LEN]);
    }
    let stop = AtomicBool::new(false);
    // Stops the writer even when a capture panics (scope joins it first).
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let snaps = std::thread::scope(|s| {
        let _stop = Stop(&stop);
        s.spawn(|| {
            let mut v = 1u8;
            while !stop.load(Ordering::Relaxed) {
                v = v % 250 + 1;
                for n in names {
                    // Truncate, then one write: the file is empty or whole.
                    let mut f = fs::File::create(ws.join(n)).unwrap();
                    f.write_all(&vec![v; LEN]).unwrap();
                }
            }
        });
        let opts = CaptureOptions {
            allow_empty: true,
            ..CaptureOptions::default()
        };
        (0..8)
            .map(|_| capture::capture(&store, &ws, &opts, &NoProgress).unwrap())
            .collect::<Vec<_>>()
    });
    let cloned: u64 = snaps.iter().map(|r| r.staging.cloned_files).sum();
    assert!(cloned > 0, "the rewritten files were cloned");
    for (k, r) in snaps.iter().enumerate() {
        let out = dir.join(format!("out{k}"));
        restore::restore(&store, &r.snapshot, &out, &RestoreOptions::default(), &NoProgress).unwrap();
        for n in names {
            let Ok(data) = fs::read(out.join(n)) else {
                assert!(
                    r.warnings.iter().any(|w| w.contains(n)),
                    "{n} missing without a warning"
                );
                continue;
            };
            let whole = data.len() == LEN && data.iter().all(|&b| b == data[0]);
            assert!(data.is_empty() || whole, "snapshot {k}: {n} is torn");
        }
    }
}

#[test]
fn restore_and_rollback_say_how_they_wrote_files() {
    for b in bases("cli_clones") {
        let env = Env::new_in(&b.path);
        let ws = workspace(env.dir.path(), 3);
        let s1 = env.snapshot(&ws);
        fs::rename(ws.join("big"), ws.join("big2")).unwrap();
        env.snapshot(&ws);
        let verbose = |args: &[&str]| {
            let out = env.cmd().arg("-v").args(args).output().unwrap();
            assert!(out.status.success(), "{}", common::show(&out));
            String::from_utf8_lossy(&out.stderr).into_owned()
        };
        // Every file of s1 is in the workspace, one under a new name.
        let n = if b.clones { 4 } else { 0 };
        let out = env.path("out");
        let err = verbose(&["restore", &s1, "--to", out.to_str().unwrap()]);
        assert!(err.contains(&format!("clones: {n} of 4 files")), "{err}");
        let err = verbose(&[
            "restore",
            &s1,
            "--no-clone",
            "--to",
            env.path("plain").to_str().unwrap(),
        ]);
        assert!(
            err.contains("clones: 0 of 4 files (0 B) cloned with none"),
            "{err}"
        );
        common::assert_same_tree(&out, &env.path("plain"));
        let n = if b.clones { 1 } else { 0 };
        let err = verbose(&["rollback", &s1, ws.to_str().unwrap()]);
        assert!(err.contains(&format!("clones: {n} of 1 files")), "{err}");
        common::assert_same_tree(&ws, &env.path("plain"));
    }
}
