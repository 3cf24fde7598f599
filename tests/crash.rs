//! Crashes at every step of a snapshot leave a readable store in which
//! every committed snapshot is intact.

mod common;

use std::process::Stdio;

use common::*;

fn setup() -> (Env, std::path::PathBuf, String) {
    let env = Env::new();
    let ws = env.path("ws");
    rich_tree(&ws);
    let first = env.snapshot(&ws);
    for i in 0..40 {
        write(&ws.join(format!("data/f{i}.bin")), &noise(1 << 20, 100 + i));
    }
    (env, ws, first)
}

fn assert_store_fine(env: &Env, first: &str, ws: &std::path::Path) {
    env.ok(&["check", "--read-data"]);
    let out = env.path(&format!("restore-{}", &first[..8]));
    env.restore(first, &out);
    // The restored first snapshot has exactly the files of that time.
    assert!(out.join("README.md").exists() && !out.join("data").exists());
    // And the store accepts and restores new snapshots after the crash.
    let again = env.snapshot(ws);
    let out2 = env.path("after-crash");
    env.restore(&again, &out2);
    assert_same_tree(ws, &out2);
}

#[test]
fn abort_at_each_failpoint() {
    for point in ["after-packs", "before-snapshot"] {
        let (env, ws, first) = setup();
        let out = env
            .cmd()
            .args(["snapshot", ws.to_str().unwrap()])
            .env("MOAT_FAILPOINT", point)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{point}: should have aborted");
        let list = env.ok(&["snapshots", ws.to_str().unwrap()]);
        assert_eq!(
            list.lines().count(),
            2,
            "{point}: no new snapshot may appear:\n{list}"
        );
        assert_store_fine(&env, &first, &ws);
    }
}

#[test]
fn kill_9_while_packs_are_being_written() {
    let (env, ws, first) = setup();
    let mut child = env
        .cmd()
        .args(["snapshot", ws.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait (on a condition, not a clock) for a pack under construction.
    let tmp = env.store().join("tmp");
    let mut killed = false;
    loop {
        let writing = std::fs::read_dir(&tmp)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".pack.tmp"));
        if writing {
            child.kill().unwrap(); // SIGKILL
            killed = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::yield_now();
    }
    child.wait().unwrap();
    if !killed {
        eprintln!("note: the snapshot finished before a pack was seen; checking the finished store instead");
    }
    assert_store_fine(&env, &first, &ws);
}
