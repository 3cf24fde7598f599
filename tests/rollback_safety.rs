//! Rollback never destroys bytes that no snapshot holds, checks its whole
//! plan before the first change, and a completed rollback (interrupted or
//! not) leaves the workspace exactly as the snapshot has it: no temp entry,
//! every mode and mtime right, so the next snapshot has the target's root.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;

/// The safety snapshot id a rollback printed on stderr.
fn safety_of(stderr: &[u8]) -> String {
    let err = String::from_utf8_lossy(stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("safety snapshot "))
        .unwrap_or_else(|| panic!("no safety snapshot line in: {err}"));
    line.split_whitespace().nth(2).unwrap().to_string()
}

fn root_of(env: &Env, id: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["show", id, "--json"])).unwrap();
    v["root"].as_str().unwrap().to_string()
}

fn rollback(env: &Env, id: &str, ws: &Path, extra: &[&str]) -> std::process::Output {
    let mut c = env.cmd();
    c.args(["rollback", id, ws.to_str().unwrap()]).args(extra);
    c.output().unwrap()
}

#[test]
fn ignored_and_excluded_files_the_target_overwrites_are_captured_first() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("notes.txt"), b"notes v1");
    write(&ws.join("cfg.txt"), b"cfg v1");
    write(&ws.join("a.txt"), b"a");
    let snap = env.snapshot(&ws);
    // Since then notes.txt became ignored and cfg.txt excluded, and both
    // hold work no snapshot has.
    write(&ws.join(".ignore"), b"notes.txt\n");
    write(
        &ws.join("moat.yaml"),
        b"snapshots:\n  exclude:\n    additional: [\"cfg.txt\"]\n",
    );
    write(&ws.join("notes.txt"), b"precious notes v2");
    write(&ws.join("cfg.txt"), b"precious cfg v2");
    let out = rollback(&env, &snap, &ws, &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(fs::read(ws.join("notes.txt")).unwrap(), b"notes v1");
    assert_eq!(fs::read(ws.join("cfg.txt")).unwrap(), b"cfg v1");
    let undo = env.path("undo");
    env.restore(&safety_of(&out.stderr), &undo);
    assert_eq!(fs::read(undo.join("notes.txt")).unwrap(), b"precious notes v2");
    assert_eq!(fs::read(undo.join("cfg.txt")).unwrap(), b"precious cfg v2");
}

#[test]
fn a_directory_that_becomes_a_file_with_ignored_files_inside_completes() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join(".gitignore"), b"*.log\n");
    write(&ws.join("d"), b"d is a file");
    let snap = env.snapshot(&ws);
    fs::remove_file(ws.join("d")).unwrap();
    write(&ws.join("d/x.txt"), b"x");
    write(&ws.join("d/sub/y.txt"), b"y");
    write(&ws.join("d/keep.log"), b"ignored but precious");
    write(&ws.join("d/sub/deeper.log"), b"deeper and precious");
    let out = rollback(&env, &snap, &ws, &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(fs::read(ws.join("d")).unwrap(), b"d is a file");
    let undo = env.path("undo");
    env.restore(&safety_of(&out.stderr), &undo);
    assert_eq!(
        fs::read(undo.join("d/keep.log")).unwrap(),
        b"ignored but precious"
    );
    assert_eq!(
        fs::read(undo.join("d/sub/deeper.log")).unwrap(),
        b"deeper and precious"
    );
    // Run again: nothing left to do, and it says so without failing.
    let again = rollback(&env, &snap, &ws, &[]);
    assert!(again.status.success(), "{}", show(&again));
}

#[test]
fn a_rollback_that_cannot_finish_refuses_before_the_first_change() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("d"), b"d is a file");
    write(&ws.join("other.txt"), b"other v1");
    let snap = env.snapshot(&ws);
    fs::remove_file(ws.join("d")).unwrap();
    write(&ws.join("d/x.txt"), b"x");
    // A nested repository: capture never stores .git, so nothing could
    // hold these bytes.
    write(&ws.join("d/.git/HEAD"), b"ref: refs/heads/main\n");
    write(&ws.join("other.txt"), b"other v2");
    let before = listing(&ws);
    let out = rollback(&env, &snap, &ws, &[]);
    assert!(!out.status.success(), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("d/.git") && err.contains("--force"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(listing(&ws), before, "a refused rollback changed the workspace");
    // --force proceeds, and the result is the target.
    let out = rollback(&env, &snap, &ws, &["--force"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(fs::read(ws.join("d")).unwrap(), b"d is a file");
    assert_eq!(fs::read(ws.join("other.txt")).unwrap(), b"other v1");
}

#[test]
fn paths_a_snapshot_skipped_are_left_alone() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("a.txt"), b"a");
    fs::create_dir_all(ws.join("run")).unwrap();
    nix::unistd::mkfifo(
        &ws.join("run/pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let snap = env.snapshot(&ws);
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["show", &snap, "--json"])).unwrap();
    assert_eq!(v["skipped"], serde_json::json!([{"path": "run/pipe"}]), "{v}");
    // The FIFO became a regular file holding work.
    fs::remove_file(ws.join("run/pipe")).unwrap();
    write(&ws.join("run/pipe"), b"work in a path the snapshot skipped");
    write(&ws.join("a.txt"), b"a v2");
    let out = rollback(&env, &snap, &ws, &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(fs::read(ws.join("a.txt")).unwrap(), b"a");
    assert_eq!(
        fs::read(ws.join("run/pipe")).unwrap(),
        b"work in a path the snapshot skipped"
    );
}

const NOBODY: u32 = 65534;

/// Runs moat as an unprivileged user when we are root (root reads every
/// file, so nothing would be unreadable).
fn as_user(mut c: Command) -> Command {
    use std::os::unix::process::CommandExt;
    if nix::unistd::geteuid().is_root() {
        c.uid(NOBODY).gid(NOBODY);
    }
    c
}

fn chown_tree(root: &Path, uid: u32) {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        std::os::unix::fs::lchown(&p, Some(uid), Some(uid)).unwrap();
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            stack.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
}

#[test]
fn unreadable_files_are_never_overwritten_without_force() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("data.txt"), b"data v1");
    write(&ws.join("b.txt"), b"b v1");
    chown_tree(env.dir.path(), NOBODY);
    let snap = {
        let out = as_user(env.cmd())
            .args(["snapshot", ws.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", show(&out));
        last_line(&String::from_utf8_lossy(&out.stdout))
    };
    // data.txt now holds work moat cannot read.
    write(&ws.join("data.txt"), b"secret v2");
    write(&ws.join("b.txt"), b"b v2");
    chown_tree(&ws.join("b.txt"), NOBODY);
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(ws.join("data.txt"), Some(0), Some(0)).unwrap();
    }
    fs::set_permissions(ws.join("data.txt"), fs::Permissions::from_mode(0o000)).unwrap();
    let run = |extra: &[&str]| {
        as_user(env.cmd())
            .args(["rollback", &snap, ws.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert!(!out.status.success(), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("data.txt") && err.contains("--force"), "{err}");
    assert_eq!(
        fs::read(ws.join("b.txt")).unwrap(),
        b"b v2",
        "changed before refusing"
    );
    assert_eq!(fs::read(ws.join("data.txt")).unwrap(), b"secret v2");
    let out = run(&["--force"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(fs::read(ws.join("b.txt")).unwrap(), b"b v1");
    assert_eq!(fs::read(ws.join("data.txt")).unwrap(), b"data v1");
}

/// A workspace where rollback has every kind of step: a rename (so the
/// holding dir for clones is made), edits in nested dirs, a deleted dir,
/// a created file, a mode change.
fn layered(ws: &Path) {
    write(&ws.join("a.bin"), &noise(300 * 1024, 1));
    for d in ["src", "src/deep", "docs", "lib/x/y"] {
        for i in 0..3 {
            write(&ws.join(format!("{d}/f{i}.txt")), format!("{d} {i}\n").as_bytes());
        }
    }
    write(&ws.join("bin/tool"), b"#!/bin/sh\n");
    fs::set_permissions(ws.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    backdate(ws);
}

fn mess_up(ws: &Path) {
    fs::create_dir_all(ws.join("moved")).unwrap();
    fs::rename(ws.join("a.bin"), ws.join("moved/b.bin")).unwrap();
    write(&ws.join("src/f0.txt"), b"edited\n");
    write(&ws.join("src/deep/f1.txt"), b"edited deep\n");
    fs::remove_dir_all(ws.join("lib")).unwrap();
    write(&ws.join("docs/new.txt"), b"new\n");
    fs::set_permissions(ws.join("bin/tool"), fs::Permissions::from_mode(0o644)).unwrap();
}

#[test]
fn an_interrupted_rollback_rerun_leaves_no_temp_and_every_mtime_right() {
    let env = Env::new();
    let ws = env.path("ws");
    layered(&ws);
    let snap = env.snapshot(&ws);
    mess_up(&ws);
    env.aborted_at("rollback-step", &["rollback", &snap, ws.to_str().unwrap()]);
    let out = rollback(&env, &snap, &ws, &[]);
    assert!(out.status.success(), "{}", show(&out));
    let all = listing(&ws);
    assert!(
        !all.iter().any(|l| l.contains(".moat-tmp-")),
        "temp entries left: {all:#?}"
    );
    let fresh = env.path("fresh");
    env.restore(&snap, &fresh);
    assert_same_tree(&ws, &fresh);
    let again = env.snapshot_json(&ws, &["--allow-empty"]);
    assert_eq!(again["root"].as_str().unwrap(), root_of(&env, &snap), "{again}");
}

#[test]
fn mtime_only_changes_are_rolled_back() {
    use nix::sys::stat::{UtimensatFlags, utimensat};
    use nix::sys::time::TimeSpec;
    let env = Env::new();
    let ws = env.path("ws");
    layered(&ws);
    std::os::unix::fs::symlink("f0.txt", ws.join("src/link")).unwrap();
    let snap = env.snapshot(&ws);
    let t = TimeSpec::new(1_000_000_000, 5);
    for p in ["src/f1.txt", "src/deep", "src/link", "docs"] {
        utimensat(
            nix::fcntl::AT_FDCWD,
            &ws.join(p),
            &TimeSpec::UTIME_OMIT,
            &t,
            UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }
    let out = rollback(&env, &snap, &ws, &[]);
    assert!(out.status.success(), "{}", show(&out));
    let fresh = env.path("fresh");
    env.restore(&snap, &fresh);
    assert_same_tree(&ws, &fresh);
    let again = env.snapshot_json(&ws, &["--allow-empty"]);
    assert_eq!(again["root"].as_str().unwrap(), root_of(&env, &snap), "{again}");
}

/// Whether some snapshot of the store holds `rel` with `content`.
fn held_somewhere(env: &Env, rel: &str, content: &[u8]) -> bool {
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["snapshots", "--all", "--json"])).unwrap();
    v.as_array().unwrap().iter().enumerate().any(|(k, s)| {
        let id = s["id"].as_str().unwrap();
        let out = env.path(&format!("held-{k}"));
        let _ = fs::remove_dir_all(&out);
        env.restore(id, &out);
        fs::read(out.join(rel)).is_ok_and(|d| d == content)
    })
}

/// Item 6: the plan that used to be half-applied for good (a directory
/// that becomes a file while ignored files sit inside it), interrupted at
/// each of its removals and writes in turn: the re-run completes, the
/// workspace is the target, and the ignored files are in a snapshot.
#[test]
fn a_directory_that_becomes_a_file_completes_after_an_interruption_at_any_step() {
    for point in ["rollback-remove", "rollback-step"] {
        for n in 1.. {
            let env = Env::new();
            let ws = env.path("ws");
            write(&ws.join(".gitignore"), b"*.log\n");
            write(&ws.join("d"), b"d is a file");
            write(&ws.join("other.txt"), b"other v1");
            let snap = env.snapshot(&ws);
            fs::remove_file(ws.join("d")).unwrap();
            write(&ws.join("d/x.txt"), b"x");
            write(&ws.join("d/sub/y.txt"), b"y");
            write(&ws.join("d/keep.log"), b"ignored but precious");
            write(&ws.join("d/sub/deeper.log"), b"deeper and precious");
            write(&ws.join("other.txt"), b"other v2");
            write(&ws.join("new.txt"), b"new");
            let first = env
                .cmd()
                .args(["rollback", &snap, ws.to_str().unwrap()])
                .env("MOAT_FAILPOINT", format!("{point}@{n}"))
                .output()
                .unwrap();
            let what = format!("{point}@{n}");
            let again = rollback(&env, &snap, &ws, &[]);
            assert!(again.status.success(), "{what}: {}", show(&again));
            let fresh = env.path("fresh");
            env.restore(&snap, &fresh);
            assert_same_tree(&ws, &fresh);
            for (rel, content) in [
                ("d/keep.log", &b"ignored but precious"[..]),
                ("d/sub/deeper.log", b"deeper and precious"),
            ] {
                assert!(held_somewhere(&env, rel, content), "{what}: {rel} lost");
            }
            if first.status.success() {
                // The failpoint was never reached: every step was tried.
                assert!(n > 1, "{point} never fired");
                break;
            }
        }
    }
}
