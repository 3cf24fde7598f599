//! `moat run` watches the workspace itself: every snapshot after the first
//! re-examines only what changed, and each is exactly the tree a full walk
//! of the same state gives. Without a watcher (a watch limit) the run walks
//! as before and its log says why.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use common::run::*;
use common::*;
use moat::capture;
use moat::util::progress::NoProgress;
use moat::worktree::walk::WalkOptions;

/// Edits of every kind, one per commit. After each commit the script
/// copies the workspace as it is (`cp -a` keeps mtimes and modes) and
/// waits until moat has committed that snapshot (its line in moat.log), so
/// the next capture starts from its stat cache and watch token.
const SCRIPT: &str = r#"
set -e
LOG="$MOAT_HOME/runs/$MOAT_RUN_ID/moat.log"
n=0
committed() {
  i=0
  until [ "$(grep -c 'snapshot [0-9a-f]\{8\}' "$LOG")" -ge "$1" ]; do
    i=$((i+1)); [ $i -lt 1500 ] || { echo "snapshot $1 never committed" >&2; exit 99; }
    sleep 0.02
  done
}
step() {
  n=$((n+1))
  git add -A
  git -c user.name=t -c user.email=t@t commit -qm "step $n" --allow-empty
  cp -a . "$SIDE/$n"
  committed $((n+1))
}
committed 1
mkdir -p src/new/deep && echo new > src/new/deep/x.rs; step
echo changed >> src/main.rs; step
rm src/lib/b.rs; step
mv src/lib src/core; step
echo inside-moved > src/core/a.rs; step
chmod +x src/main.rs; step
ln -sfn ../elsewhere src/link; step
printf 'BBBB\n' > same.txt; touch -d @1600000000 same.txt; step
rm -r src/new; step
mkdir -p empty/dir; step
mv src/core/a.rs top.rs; step
"#;

/// A workspace under git with a few directories.
fn workspace(env: &Env) -> std::path::PathBuf {
    let ws = env.path("ws");
    write(&ws.join("src/main.rs"), b"fn main() {}\n");
    write(&ws.join("src/lib/a.rs"), b"pub fn a() {}\n");
    write(&ws.join("src/lib/b.rs"), b"pub fn b() {}\n");
    write(&ws.join("docs/readme.md"), b"# docs\n");
    write(&ws.join("same.txt"), b"AAAA\n");
    std::os::unix::fs::symlink("target", ws.join("src/link")).unwrap();
    let ok = Command::new("touch")
        .args(["-d", "@1600000000"])
        .arg(ws.join("same.txt"))
        .status()
        .unwrap();
    assert!(ok.success());
    git(&ws, &["init", "-q"]);
    ws
}

/// The root tree of a full walk of `dir`, as `moat snapshot --no-watch`
/// would take it (a dry scan: no watcher, no stat cache).
fn walked_root(env: &Env, dir: &Path) -> String {
    let store = moat::Store::open(&env.store()).unwrap();
    let (scan, _) = capture::scan_dry(&store, dir, &WalkOptions::default(), &NoProgress).unwrap();
    scan.root.to_hex()
}

fn run_steps(env: &Env, ws: &Path, wrap: &[&str]) -> (String, std::process::Output) {
    let side = env.path("side");
    std::fs::create_dir_all(&side).unwrap();
    let moat = env!("CARGO_BIN_EXE_moat");
    let mut args: Vec<&str> = wrap.to_vec();
    args.extend([
        moat,
        "run",
        "--workspace",
        ws.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        SCRIPT,
    ]);
    let out = output_within(
        Command::new(args[0])
            .args(&args[1..])
            .env("MOAT_STORE", env.store())
            .env("MOAT_HOME", env.path("home"))
            .env("SIDE", &side)
            .stdin(std::process::Stdio::null()),
        240,
    );
    let run = if out.status.success() {
        last_run_id(env)
    } else {
        String::new()
    };
    (run, out)
}

/// Every commit snapshot of the run equals a full walk of the copy taken
/// right after that commit; returns how each was scanned.
fn check_steps(env: &Env, run: &str) -> Vec<String> {
    let snaps = run_snapshots(env, run);
    let commits: Vec<_> = snaps.iter().filter(|s| s["trigger"] == "git-commit").collect();
    assert_eq!(commits.len(), 11, "one snapshot per step:\n{}", run_log(env, run));
    let mut scans = Vec::new();
    for (k, s) in commits.iter().enumerate() {
        let copy = env.path(&format!("side/{}", k + 1));
        assert_eq!(
            s["root"].as_str().unwrap(),
            walked_root(env, &copy),
            "step {}: the snapshot differs from a full walk of the same state:\n{}",
            k + 1,
            run_log(env, run)
        );
        scans.push(s["scan"].as_str().unwrap_or_default().to_string());
    }
    scans
}

#[test]
fn every_snapshot_of_a_run_is_watched_and_equals_a_full_walk() {
    let env = Env::new();
    let ws = workspace(&env);
    let (run, out) = run_steps(&env, &ws, &[]);
    assert!(out.status.success(), "{}", show(&out));
    let log = run_log(&env, &run);
    assert!(log.contains("watching "), "{log}");
    let scans = check_steps(&env, &run);
    assert!(
        scans.iter().all(|s| s == "watched"),
        "every snapshot after the first is watched: {scans:?}\n{log}"
    );
}

#[test]
fn a_run_that_cannot_watch_walks_and_says_why() {
    let env = Env::new();
    let ws = workspace(&env);
    // A watch limit of 2 inotify watches, in a user namespace of its own
    // (the limit is per namespace, so nothing else on the machine sees it).
    let limit = "echo 2 > /proc/sys/user/max_inotify_watches && exec \"$0\" \"$@\"";
    let (run, out) = run_steps(&env, &ws, &["unshare", "-U", "-r", "sh", "-c", limit]);
    if run.is_empty() && String::from_utf8_lossy(&out.stderr).contains("unshare") {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED a_run_that_cannot_watch_walks_and_says_why: no user namespace: {}",
            show(&out)
        );
        return;
    }
    assert!(out.status.success(), "{}", show(&out));
    let log = run_log(&env, &run);
    assert!(log.contains("not watching the workspace ("), "{log}");
    let scans = check_steps(&env, &run);
    assert!(scans.iter().all(|s| s == "walked"), "{scans:?}\n{log}");
}
