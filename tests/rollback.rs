//! `moat rollback`: exact, minimal, undoable, and never writes where it
//! must not.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;

const UNTRACKED: [&str; 3] = [".git", "build.log", "node_modules"];

fn setup_ws(env: &Env) -> std::path::PathBuf {
    let ws = env.path("ws");
    rich_tree(&ws);
    write(&ws.join(".gitignore"), b"*.log\nnode_modules/\n");
    write(&ws.join("build.log"), b"ignored log");
    write(&ws.join("node_modules/dep/index.js"), b"ignored dep");
    write(&ws.join(".git/HEAD"), b"ref: refs/heads/main\n");
    write(&ws.join("docs/guide.md"), b"# guide\n");
    common::backdate(&ws);
    ws
}

fn mess_up(ws: &Path) {
    write(&ws.join("src/main.rs"), b"fn main() { broken() }\n");
    fs::remove_file(ws.join("README.md")).unwrap();
    write(&ws.join("src/created.rs"), b"// created since\n");
    write(&ws.join("newdir/deep/x.txt"), b"new dir");
    fs::set_permissions(ws.join("bin/run.sh"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::remove_dir_all(ws.join("docs")).unwrap();
    write(&ws.join("docs"), b"docs is a file now");
    fs::remove_file(ws.join("rel-link")).unwrap();
    write(&ws.join("rel-link"), b"link became a file");
    fs::remove_dir_all(ws.join("empty")).unwrap();
    write(&ws.join("build.log"), b"ignored log, changed after the snapshot");
}

fn untracked_state(ws: &Path) -> Vec<String> {
    listing(ws)
        .into_iter()
        .filter(|l| {
            UNTRACKED
                .iter()
                .any(|u| l.starts_with(&format!("{u}:")) || l.starts_with(&format!("{u}/")))
        })
        .collect()
}

#[test]
fn rollback_makes_the_workspace_equal_a_fresh_restore() {
    let env = Env::new();
    let ws = setup_ws(&env);
    let snap = env.snapshot(&ws);
    mess_up(&ws);
    let untracked_before = untracked_state(&ws);
    let before = listing(&ws);
    let out = env
        .cmd()
        .args(["rollback", &snap, ws.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let safety = err.split_whitespace().nth(2).unwrap().to_string();
    assert_eq!(safety.len(), 64, "{err}");

    let fresh = env.path("fresh");
    env.restore(&snap, &fresh);
    assert_eq!(
        listing_without(&ws, &UNTRACKED),
        listing(&fresh),
        "rollback differs from a restore"
    );
    assert_eq!(
        untracked_state(&ws),
        untracked_before,
        ".git or ignored files were touched"
    );

    // The stat cache describes the rolled-back files: nothing is re-read.
    let v = env.snapshot_json(&ws, &["--allow-empty"]);
    assert_eq!(v["stats"]["files_read"], 0, "{v}");

    // Rolling back to the safety snapshot restores the pre-rollback state.
    env.ok(&["rollback", &safety, ws.to_str().unwrap()]);
    assert_eq!(listing(&ws), before);
}

#[test]
fn unchanged_files_are_not_rewritten() {
    let env = Env::new();
    let ws = setup_ws(&env);
    let snap = env.snapshot(&ws);
    let ino = |p: &str| std::os::unix::fs::MetadataExt::ino(&fs::metadata(ws.join(p)).unwrap());
    let keep = ino("src/empty.txt");
    let changed = ino("src/main.rs");
    write(&ws.join("src/main.rs"), b"edited");
    let out = env.ok(&["rollback", &snap, ws.to_str().unwrap()]);
    assert!(out.contains("1 paths written, 0 removed"), "{out}");
    assert_eq!(ino("src/empty.txt"), keep);
    assert_ne!(ino("src/main.rs"), changed, "changed file is replaced by rename");
}

#[test]
fn a_symlink_in_the_workspace_is_replaced_never_followed() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("src/lib.rs"), b"pub fn f() {}\n");
    write(&ws.join("src/util/mod.rs"), b"// util\n");
    let snap = env.snapshot(&ws);
    let victim = env.path("etc");
    write(&victim.join("passwd"), b"root:x:0:0");
    fs::remove_dir_all(ws.join("src")).unwrap();
    std::os::unix::fs::symlink(&victim, ws.join("src")).unwrap();
    env.ok(&["rollback", &snap, ws.to_str().unwrap()]);
    assert_eq!(
        listing(&victim).len(),
        1,
        "something was written through the link"
    );
    assert_eq!(fs::read(victim.join("passwd")).unwrap(), b"root:x:0:0");
    assert!(fs::symlink_metadata(ws.join("src")).unwrap().is_dir());
    assert_eq!(fs::read(ws.join("src/util/mod.rs")).unwrap(), b"// util\n");
}

#[test]
fn dry_run_changes_nothing_and_prints_the_plan() {
    let env = Env::new();
    let ws = setup_ws(&env);
    let snap = env.snapshot(&ws);
    mess_up(&ws);
    let before = listing(&ws);
    let snaps_before = env.ok(&["snapshots", "--all"]);
    let plan = env.ok(&["rollback", &snap, ws.to_str().unwrap(), "--dry-run"]);
    assert!(
        plan.contains("A\tREADME.md\n") && plan.contains("D\tsrc/created.rs\n"),
        "{plan}"
    );
    assert!(
        plan.contains("M\tbin/run.sh\n") && plan.contains("T\trel-link\n"),
        "{plan}"
    );
    assert_eq!(listing(&ws), before);
    assert_eq!(
        env.ok(&["snapshots", "--all"]),
        snaps_before,
        "dry run wrote a snapshot"
    );
}

#[test]
fn killed_rollback_can_be_rerun_and_the_safety_snapshot_is_intact() {
    let env = Env::new();
    let ws = setup_ws(&env);
    let snap = env.snapshot(&ws);
    mess_up(&ws);
    let messed = listing(&ws);
    let out = env.aborted_at("rollback-step", &["rollback", &snap, ws.to_str().unwrap()]);
    let safety = String::from_utf8_lossy(&out.stderr)
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string();
    env.ok(&["rollback", &snap, ws.to_str().unwrap()]);
    let fresh = env.path("fresh");
    env.restore(&snap, &fresh);
    assert_eq!(listing_without(&ws, &UNTRACKED), listing(&fresh));
    // No temp siblings are left behind.
    assert!(
        !listing(&ws).iter().any(|l| l.contains(".moat-tmp-")),
        "{:#?}",
        listing(&ws)
    );
    // The safety snapshot of the first attempt holds the messed-up state.
    let undo = env.path("undo");
    env.restore(&safety, &undo);
    let tracked: Vec<String> = messed
        .into_iter()
        .filter(|l| {
            !UNTRACKED
                .iter()
                .any(|u| l.starts_with(&format!("{u}:")) || l.starts_with(&format!("{u}/")))
        })
        .collect();
    assert_eq!(listing(&undo), tracked);
    env.ok(&["check", "--read-data"]);
}

#[test]
fn other_workspace_needs_force_and_paths_limit_the_rollback() {
    let env = Env::new();
    let ws = setup_ws(&env);
    let snap = env.snapshot(&ws);
    let other = env.path("other");
    write(&other.join("x"), b"x");
    let err = env.fails(&["rollback", &snap, other.to_str().unwrap()]);
    assert!(err.contains("not of") && err.contains("--force"), "{err}");

    write(&ws.join("src/main.rs"), b"edited");
    write(&ws.join("README.md"), b"edited too");
    env.ok(&["rollback", &snap, ws.to_str().unwrap(), "--", "src"]);
    assert_eq!(fs::read(ws.join("src/main.rs")).unwrap(), b"fn main() {}\n");
    assert_eq!(fs::read(ws.join("README.md")).unwrap(), b"edited too");
}
