//! `moat run` records every moment that matters, each snapshot exactly that
//! moment: the first snapshot of a large repository is its baseline, every
//! commit and build gets its own snapshot of the tree at its exit, every
//! run records the state before it, and moat stays silent on CMD's
//! terminal. Everything is asserted by content, never by timing.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::run::*;
use common::*;

/// path -> git blob id of every file committed in `commit`.
fn commit_blobs(repo: &Path, commit: &str) -> BTreeMap<String, String> {
    git(repo, &["ls-tree", "-r", commit])
        .lines()
        .map(|l| {
            let (meta, path) = l.split_once('\t').expect("ls-tree line");
            let blob = meta.split_whitespace().nth(2).expect("blob id");
            (path.to_string(), blob.to_string())
        })
        .collect()
}

/// path -> git blob id of every file in snapshot `id` (restored, then
/// hashed by git).
fn snapshot_blobs(env: &Env, id: &str) -> BTreeMap<String, String> {
    let dir = env.path(&format!("blobs-{}", &id[..12]));
    env.restore(id, &dir);
    let mut paths = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                paths.push(e.path().strip_prefix(&dir).unwrap().to_str().unwrap().to_string());
            }
        }
    }
    let mut child = Command::new("git")
        .args(["hash-object", "--no-filters", "--stdin-paths"])
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(paths.join("\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let blobs = String::from_utf8(out.stdout).unwrap();
    paths.into_iter().zip(blobs.lines().map(String::from)).collect()
}

fn triggered<'a>(snaps: &'a [serde_json::Value], trigger: &str) -> Vec<&'a serde_json::Value> {
    snaps.iter().filter(|s| s["trigger"] == trigger).collect()
}

fn id_of(s: &serde_json::Value) -> String {
    s["id"].as_str().unwrap().to_string()
}

/// A git repository with one commit of `a.txt`.
fn repo(env: &Env) -> std::path::PathBuf {
    let ws = env.path("repo");
    write(&ws.join("a.txt"), b"original\n");
    git(&ws, &["init", "-q"]);
    git(&ws, &["add", "-A"]);
    git(&ws, &["commit", "-qm", "base"]);
    ws
}

const TEN_COMMITS: &str = r#"
set -e
for i in 1 2 3 4 5 6 7 8 9 10; do
  echo "v$i" > f.txt
  git add -A
  git -c user.name=t -c user.email=t@t commit -qm "c$i"
  echo "after $i" > after.txt
done
"#;

#[test]
fn every_commit_gets_its_own_snapshot_of_the_tree_at_that_commit() {
    let env = Env::new();
    let ws = repo(&env);
    let (run, snaps) = run_script(&env, &ws, TEN_COMMITS);
    let commits = triggered(&snaps, "git-commit");
    assert_eq!(
        commits.len(),
        10,
        "one snapshot per commit:\n{}",
        run_log(&env, &run)
    );
    let history: Vec<String> = git(&ws, &["rev-list", "--reverse", "HEAD"])
        .lines()
        .skip(1)
        .map(String::from)
        .collect();
    for (snap, commit) in commits.iter().zip(&history) {
        assert_eq!(
            snap["git"]["commit"].as_str(),
            Some(commit.as_str()),
            "HEAD is that commit"
        );
        assert_eq!(snap["exact"], true, "{snap}");
        assert_eq!(
            snapshot_blobs(&env, &id_of(snap)),
            commit_blobs(&ws, commit),
            "snapshot {} holds exactly commit {commit}",
            id_of(snap)
        );
    }
}

#[test]
fn a_build_snapshot_holds_the_tree_at_the_build_exit() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("src.txt"), b"original\n");
    write(&ws.join("Makefile"), b"out.txt: src.txt\n\tcp src.txt out.txt\n");
    let script = "make -s; echo edited > src.txt; echo more > extra.txt";
    let (run, snaps) = run_script(&env, &ws, script);
    let builds = triggered(&snaps, "build");
    assert_eq!(builds.len(), 1, "{}", run_log(&env, &run));
    assert_eq!(builds[0]["exact"], true);
    let back = env.path("back");
    env.restore(&id_of(builds[0]), &back);
    assert_eq!(std::fs::read(back.join("out.txt")).unwrap(), b"original\n");
    assert_eq!(std::fs::read(back.join("src.txt")).unwrap(), b"original\n");
    assert!(!back.join("extra.txt").exists());
}

/// 25,000 files committed through fast-import, then checked out.
fn large_repo(ws: &Path, n: usize) {
    std::fs::create_dir_all(ws).unwrap();
    git(ws, &["init", "-q"]);
    let mut stream = Vec::new();
    for i in 0..n {
        let d = format!("file {i}\n");
        write!(stream, "blob\nmark :{}\ndata {}\n{d}\n", i + 1, d.len()).unwrap();
    }
    stream.extend_from_slice(b"commit refs/heads/main\ncommitter t <t@t> 1700000000 +0000\ndata 4\nbase\n");
    for i in 0..n {
        writeln!(stream, "M 100644 :{} packages/p{}/src/f{i}.js", i + 1, i % 50).unwrap();
    }
    let mut fi = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(ws)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    fi.stdin.take().unwrap().write_all(&stream).unwrap();
    assert!(fi.wait().unwrap().success());
    git(ws, &["checkout", "-q", "-f", "main"]);
}

#[test]
fn the_first_snapshot_of_a_large_repository_is_its_baseline() {
    let env = Env::new();
    let ws = env.path("big");
    large_repo(&ws, 25_000);
    let (run, snaps) = run_script(&env, &ws, "echo x > new.txt");
    let log = run_log(&env, &run);
    let pre = triggered(&snaps, "pre-run");
    assert_eq!(pre.len(), 1, "{log}");
    assert_eq!(pre[0]["stats"]["files"], 25_000);
    assert_eq!(triggered(&snaps, "post-run").len(), 1, "{log}");
    // One warning names the biggest paths, without advice to ignore them.
    assert_eq!(log.matches("first snapshot").count(), 1, "{log}");
    assert!(log.contains("packages/"), "{log}");
    assert!(!log.contains("gitignore"), "{log}");
}

#[test]
fn files_tracked_by_git_never_count_as_growth_and_growth_is_against_the_parent() {
    let env = Env::new();
    let ws = repo(&env);
    write(
        &ws.join("moat.yaml"),
        b"snapshots:\n  max_new_files: 5\n  triggers:\n    disable_idle: true\n",
    );
    for i in 0..8 {
        write(&ws.join(format!("old/f{i}.txt")), b"old");
    }
    // The baseline is taken although it is over the limit.
    env.snapshot(&ws);
    // A lost stat cache does not make every file look new: the parent says
    // what the workspace held.
    for e in std::fs::read_dir(env.store().join("cache")).unwrap().flatten() {
        std::fs::remove_file(e.path()).unwrap();
    }
    let script = "set -e; mkdir lib; for i in 1 2 3 4 5 6 7 8; do echo $i > lib/f$i.txt; done; \
                  git add lib; git -c user.name=t -c user.email=t@t commit -qm lib; \
                  mkdir -p node_modules/pkg; for i in 1 2 3 4 5 6 7 8; do echo $i > node_modules/pkg/f$i.js; done";
    let (run, snaps) = run_script(&env, &ws, script);
    let log = run_log(&env, &run);
    let kinds: Vec<&str> = snaps.iter().map(|s| s["trigger"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["pre-run", "git-commit"], "{log}");
    assert!(
        log.contains("post-run snapshot not taken") && log.contains("node_modules/ (8 files"),
        "{log}"
    );
    assert!(!log.contains("lib/"), "tracked files are not named: {log}");
}

#[test]
fn every_run_records_its_pre_run_state_and_the_default_policy_keeps_it() {
    let env = Env::new();
    let ws = repo(&env);
    let run = |script: &str| run_script(&env, &ws, script).0;
    let first = run("echo changed > a.txt");
    let second = run("true");
    let post = triggered(&run_snapshots(&env, &first), "post-run")[0].clone();
    let snaps = run_snapshots(&env, &second);
    let pre = triggered(&snaps, "pre-run");
    assert_eq!(pre.len(), 1, "{}", run_log(&env, &second));
    assert_eq!(
        pre[0]["root"], post["root"],
        "the same state as the previous run's end"
    );
    let listed = runs(&env);
    assert_eq!(listed[1]["pre_run"], pre[0]["id"], "moat runs names it");
    // An agent that commits a lot burns through any "last N" policy.
    run(TEN_COMMITS);
    run(TEN_COMMITS.replace("v$i", "w$i").as_str());
    let dry = env.ok(&["gc", ws.to_str().unwrap(), "--dry-run"]);
    assert!(dry.contains("every snapshot of the last 24 hours"), "{dry}");
    env.ok(&["gc", ws.to_str().unwrap()]);
    let after = run_snapshots(&env, &second);
    assert_eq!(
        triggered(&after, "pre-run").len(),
        1,
        "the pre-run state survives gc"
    );
}

#[test]
fn moat_run_is_silent_on_the_terminal_and_logs_to_moat_log() {
    let env = Env::new();
    let ws = repo(&env);
    let script =
        "printf out; printf err >&2; git -c user.name=t -c user.email=t@t commit -q --allow-empty -m e";
    let out = moat_run(&env, &ws, &["sh", "-c", script]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    // Exactly CMD's bytes, nothing of moat's.
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err");
    let log = run_log(&env, &last_run_id(&env));
    for line in [
        "tracer: ptrace",
        "pre-run snapshot",
        "git-commit snapshot",
        "post-run snapshot",
    ] {
        assert!(log.contains(line), "{line}: {log}");
    }
    let trace = moat_home(&env, &["trace", &last_run_id(&env)]);
    assert!(
        trace.contains("git-commit snapshot"),
        "moat trace shows the log: {trace}"
    );
    // --verbose prints the same lines live on stderr.
    let out = moat_in(&env)
        .args([
            "--verbose",
            "run",
            "--workspace",
            ws.to_str().unwrap(),
            "--",
            "true",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("moat: tracer: ptrace"),
        "{err}"
    );
}

#[test]
fn a_subdirectory_of_a_repository_snapshots_the_repository() {
    let env = Env::new();
    let ws = repo(&env);
    write(&ws.join("src/lib.rs"), b"fn f() {}\n");
    let src = ws.join("src");
    let out = env
        .cmd()
        .args(["snapshot", "--json"])
        .current_dir(&src)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let root = std::fs::canonicalize(&ws).unwrap();
    assert_eq!(v["workspace"].as_str(), Some(root.to_str().unwrap()));
    assert_eq!(v["stats"]["files"], 2);
    // `moat run` finds the same root, and runs CMD where it was started.
    let out = moat_in(&env)
        .args(["--verbose", "run", "--", "sh", "-c", "pwd > where.txt"])
        .current_dir(&src)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("workspace {}", root.display())), "{err}");
    assert_eq!(
        std::fs::read_to_string(src.join("where.txt")).unwrap().trim(),
        src.canonicalize().unwrap().to_str().unwrap()
    );
    let run = last_run_id(&env);
    let snaps = run_snapshots(&env, &run);
    assert!(
        snaps
            .iter()
            .all(|s| s["workspace"].as_str() == Some(root.to_str().unwrap()))
    );
    // An explicit workspace wins.
    let out = env
        .cmd()
        .args(["snapshot", "--json", "."])
        .current_dir(&src)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["workspace"].as_str(), src.canonicalize().unwrap().to_str());
}

#[test]
fn commits_in_other_repositories_are_not_moments_of_this_workspace() {
    let env = Env::new();
    let ws = repo(&env);
    let other = env.path("other");
    std::fs::create_dir_all(&other).unwrap();
    git(&other, &["init", "-q"]);
    let script = format!(
        "set -e; c='-c user.name=t -c user.email=t@t'; \
         (cd {o} && git $c commit -q --allow-empty -m elsewhere); \
         git $c -C {o} commit -q --allow-empty -m elsewhere-too; \
         mkdir -p sub && cd sub && git $c commit -q --allow-empty -m here",
        o = other.display()
    );
    let (run, snaps) = run_script(&env, &ws, &script);
    let commits = triggered(&snaps, "git-commit").len();
    assert_eq!(
        commits,
        1,
        "only the commit in the workspace: {}",
        run_log(&env, &run)
    );
}

/// A capture staged while its parent is still pending does not read again
/// what the parent will store: it takes the parent's chunks at its own
/// ingest. If the parent never commits, those files are read then, and a
/// file changed meanwhile makes the snapshot not exact.
#[test]
fn a_capture_staged_behind_a_pending_parent_reads_only_what_changed() {
    use moat::capture::{self, CaptureOptions, Outcome};
    use moat::util::progress::NoProgress;
    use std::sync::Arc;
    let env = Env::new();
    let ws = env.path("ws");
    for i in 0..50 {
        write(&ws.join(format!("d/f{i}.txt")), format!("file {i}\n").as_bytes());
    }
    backdate(&ws);
    let store = moat::Store::open_or_create(&env.store()).unwrap();
    let opts = CaptureOptions {
        allow_empty: true,
        ..CaptureOptions::default()
    };
    let snap = |o: &CaptureOptions| capture::stage(&store, &ws, o, &NoProgress).unwrap();
    // The parent reads all 50; the child, staged before the parent commits,
    // reads only the one file changed since.
    let parent = snap(&opts);
    write(&ws.join("d/f0.txt"), b"changed\n");
    backdate(&ws);
    let child_opts = CaptureOptions {
        parent: Some(Arc::new(parent.provisional())),
        ..opts.clone()
    };
    let child = snap(&child_opts);
    let want = listing_without(&ws, &[]);
    let p = parent.ingest(&NoProgress).unwrap();
    let c = child.ingest(&NoProgress).unwrap();
    assert_eq!(p.snapshot.stats.files_read, 50);
    assert_eq!(c.snapshot.stats.files_read, 1);
    assert!(c.snapshot.exact);
    let Outcome::Written(cid) = c.outcome else {
        panic!("written")
    };
    let Outcome::Written(pid) = p.outcome else {
        panic!("written")
    };
    assert_eq!(c.snapshot.parent, Some(pid));
    let back = env.path("back");
    env.restore(&cid.to_hex(), &back);
    assert_eq!(listing(&back), want);

    // A parent that never commits: the child reads those files itself;
    // one that changed after the child's staging makes it not exact.
    write(&ws.join("d/f1.txt"), b"new parent\n");
    backdate(&ws);
    let lost = snap(&opts);
    let child_opts = CaptureOptions {
        parent: Some(Arc::new(lost.provisional())),
        ..opts.clone()
    };
    let child = snap(&child_opts);
    drop(lost);
    write(&ws.join("d/f1.txt"), b"changed after staging\n");
    let c = child.ingest(&NoProgress).unwrap();
    assert!(!c.snapshot.exact, "f1 was read after it changed");
    env.ok(&["check", "--read-data"]);
}
