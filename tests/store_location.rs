//! The store and `$MOAT_HOME` are never captured, restored into or rolled
//! back, wherever they sit and however they are reached (a symlink, a bind
//! mount); a store equal to a workspace or restore target is refused.

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;

use common::*;

/// moat with `--store store` instead of the environment's.
fn moat_with(env: &Env, store: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_moat"));
    c.arg("--store")
        .arg(store)
        .env_remove("MOAT_STORE")
        .env_remove("MOAT_HOME")
        .current_dir(env.dir.path());
    c
}

fn fails_naming_store(env: &Env, args: &[&str]) -> String {
    let err = env.fails(args);
    assert!(err.contains("store"), "{args:?}: {err}");
    err
}

#[test]
fn a_store_equal_to_a_workspace_or_restore_target_is_refused() {
    let env = Env::new();
    let other = env.path("other");
    write(&other.join("a.txt"), b"a");
    let id = env.snapshot(&other);
    let store = env.store();
    let s = store.to_str().unwrap();
    // The store as the workspace, directly and through a symlink.
    std::os::unix::fs::symlink(&store, env.path("store-link")).unwrap();
    for ws in [s, env.path("store-link").to_str().unwrap()] {
        fails_naming_store(&env, &["snapshot", ws]);
        fails_naming_store(&env, &["rollback", &id, ws, "--force"]);
    }
    // A workspace inside the store.
    fails_naming_store(&env, &["snapshot", store.join("snapshots").to_str().unwrap()]);
    // The store, or a directory inside it, as a restore target.
    fails_naming_store(&env, &["restore", &id, "--to", s, "--force"]);
    let inside = store.join("restored");
    fails_naming_store(&env, &["restore", &id, "--to", inside.to_str().unwrap()]);
    assert!(!inside.exists());
    env.ok(&["check", "--read-data"]);
    let out = env.path("out");
    env.restore(&id, &out);
    assert_same_tree(&other, &out);
}

#[test]
fn moat_home_inside_the_workspace_is_never_captured() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("a.txt"), b"a");
    write(&ws.join(".mh/runs/r1/run.json"), b"{}");
    write(&ws.join(".mh/notes.txt"), b"moat's own");
    let out = env
        .cmd()
        .env("MOAT_HOME", ws.join(".mh"))
        .args(["snapshot", ws.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let id = last_line(&String::from_utf8_lossy(&out.stdout));
    let ls = env.ok(&["ls", &id]);
    assert!(ls.contains("a.txt") && !ls.contains(".mh"), "{ls}");
}

#[test]
fn rollback_never_writes_into_a_store_inside_the_workspace() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("a.txt"), b"a v1");
    write(&ws.join("st/config"), b"a user file where the store will be");
    write(&ws.join("st/snapshots/x"), b"another");
    let snap = env.snapshot(&ws);
    // The store moves into the workspace, at the path the snapshot has.
    fs::remove_dir_all(ws.join("st")).unwrap();
    fs::rename(env.store(), ws.join("st")).unwrap();
    write(&ws.join("a.txt"), b"a v2");
    let st = ws.join("st");
    let out = moat_with(&env, &st)
        .args(["rollback", &snap, ws.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(err.contains("st") && err.contains("store"), "{err}");
    assert_eq!(
        fs::read(ws.join("a.txt")).unwrap(),
        b"a v2",
        "changed before refusing"
    );
    let out = moat_with(&env, &st)
        .args(["check", "--read-data"])
        .output()
        .unwrap();
    assert!(out.status.success(), "the store was damaged: {}", show(&out));
}

/// A bind mount of `src` at `dst` (root only); None (after saying why) when
/// it cannot be made. Unmounted on drop.
struct Bind(std::path::PathBuf);

impl Bind {
    fn new(src: &Path, dst: &Path) -> Option<Bind> {
        fs::create_dir_all(dst).unwrap();
        let out = std::process::Command::new("mount")
            .args(["--bind", src.to_str().unwrap(), dst.to_str().unwrap()])
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Bind(dst.to_path_buf())),
            Ok(o) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED the bind-mount case: mount --bind failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "SKIPPED the bind-mount case: {e}");
                None
            }
        }
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).output();
    }
}

#[test]
fn a_store_inside_the_workspace_reached_through_a_bind_mount_is_never_captured() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("a.txt"), b"a v1");
    fs::create_dir_all(ws.join(".store")).unwrap();
    let Some(bind) = Bind::new(&ws.join(".store"), &env.path("bound")) else {
        return;
    };
    let moat = |args: &[&str]| {
        let out = moat_with(&env, &bind.0).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = last_line(&moat(&["snapshot", ws.to_str().unwrap()]));
    assert!(
        !moat(&["ls", &first]).contains(".store"),
        "the store was captured"
    );
    write(&ws.join("a.txt"), b"a v2");
    write(&ws.join("b.txt"), b"b");
    let second = last_line(&moat(&["snapshot", ws.to_str().unwrap()]));
    moat(&["rollback", &first, ws.to_str().unwrap()]);
    assert_eq!(fs::read(ws.join("a.txt")).unwrap(), b"a v1");
    assert!(!ws.join("b.txt").exists());
    // Every snapshot, and the store's own files, survived the rollback.
    moat(&["check", "--read-data"]);
    let out = env.path("second");
    moat(&["restore", &second, "--to", out.to_str().unwrap()]);
    assert_eq!(fs::read(out.join("b.txt")).unwrap(), b"b");
}

/// Item 4, restore: a restore target that holds the store two levels down,
/// at a path the snapshot writes, is refused before anything is written.
#[test]
fn restore_never_writes_into_a_store_inside_the_target() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("a.txt"), b"a");
    write(&ws.join("deep/st/config"), b"a user file where the store will be");
    write(&ws.join("deep/st/packs/x"), b"another");
    let snap = env.snapshot(&ws);
    let target = env.path("target");
    write(&target.join("mine.txt"), b"mine");
    fs::create_dir_all(target.join("deep")).unwrap();
    let st = target.join("deep/st");
    fs::rename(env.store(), &st).unwrap();
    let before = listing(&target);
    let out = moat_with(&env, &st)
        .args(["restore", &snap, "--to", target.to_str().unwrap(), "--force"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(err.contains("deep/st") && err.contains("store"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(listing(&target), before, "restore wrote before refusing");
    let out = moat_with(&env, &st)
        .args(["check", "--read-data"])
        .output()
        .unwrap();
    assert!(out.status.success(), "the store was damaged: {}", show(&out));
}

/// Item 4, `$MOAT_HOME`: inside a workspace or a restore target it is
/// never rolled back or restored into, even where the snapshot holds files
/// at its path (taken before it was moat's).
#[test]
fn moat_home_is_never_rolled_back_or_restored_into() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("a.txt"), b"a v1");
    write(
        &ws.join("sub/mh/notes.txt"),
        b"a user file where MOAT_HOME will be",
    );
    let snap = env.snapshot(&ws);
    let home = ws.join("sub/mh");
    fs::remove_dir_all(&home).unwrap();
    write(&home.join("runs/r1/run.json"), b"{}");
    write(&home.join("notes.txt"), b"moat's own");
    write(&ws.join("a.txt"), b"a v2");
    let with_home = |home: &Path, args: &[&str]| {
        let out = env.cmd().env("MOAT_HOME", home).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{args:?}: {}", show(&out));
        assert!(err.contains("MOAT_HOME") && !err.contains("panicked"), "{err}");
    };
    let before = listing(&ws);
    with_home(&home, &["rollback", &snap, ws.to_str().unwrap()]);
    with_home(&home, &["rollback", &snap, ws.to_str().unwrap(), "--force"]);
    assert_eq!(listing(&ws), before, "rollback changed the workspace");
    // The same directory as moat's home inside a restore target.
    let target = env.path("target");
    fs::create_dir_all(target.join("sub")).unwrap();
    fs::rename(&home, target.join("sub/mh")).unwrap();
    let before = listing(&target);
    let t = target.to_str().unwrap();
    with_home(&target.join("sub/mh"), &["restore", &snap, "--to", t, "--force"]);
    assert_eq!(listing(&target), before, "restore wrote before refusing");
}
