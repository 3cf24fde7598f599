//! `moat watch` leaves ignored directories unwatched: a flood of changes
//! inside one (a build's output) neither overflows the inotify queue nor
//! costs a watch per directory, and every change to the rules (a root or
//! nested `.gitignore`, `.git/info/exclude`, `moat.yaml` excludes, a
//! snapshot walking by other rules) still gives snapshots equal to a full
//! walk of the same state.

mod common;

use std::fs;
use std::io::Write;

use common::watched::{Watched, queue_limit};
use common::*;
use moat::worktree::walk::WalkOptions;

/// src, src/lib, docs, docs/guide and the root: the directories watched
/// when nothing else is.
const BASE_DIRS: u64 = 5;

fn base_tree(w: &Watched) {
    write(&w.p("src/main.rs"), b"fn main() {}\n");
    write(&w.p("src/lib/a.rs"), b"pub fn a() {}\n");
    write(&w.p("docs/guide/intro.md"), b"# intro\n");
}

/// `n` directories `target/debug/deps/d<i>`, each with a file.
fn build_output(w: &Watched, n: usize) {
    for i in 0..n {
        write(&w.p(&format!("target/debug/deps/d{i}/out.o")), b"obj");
    }
}

#[test]
fn a_flood_inside_an_ignored_directory_neither_overflows_nor_costs_watches() {
    let mut w = Watched::new();
    base_tree(&w);
    write(&w.p(".gitignore"), b"target/\n");
    build_output(&w, 20);
    backdate(&w.ws);
    let limit = queue_limit();
    if limit > 200_000 {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED a_flood_inside_an_ignored_directory_neither_overflows_nor_costs_watches: fs.inotify.max_queued_events is {limit}, too many files to flood"
        );
        return;
    }
    w.start();
    w.walked_because("no watch token");
    w.watched_ok("vouched");
    fs::create_dir_all(w.p("target/flood")).unwrap();
    // The watcher takes in the event of target/flood's creation (a watcher
    // of every directory would watch it from here on).
    w.status();
    // Frozen, a watcher of target/ would have its queue overflow.
    nix::sys::signal::kill(w.pid(), nix::sys::signal::Signal::SIGSTOP).unwrap();
    for i in 0..limit + 100 {
        fs::write(w.p(&format!("target/flood/{i}")), b"").unwrap();
    }
    write(&w.p("src/lib/b.rs"), b"pub fn b() {}\n");
    nix::sys::signal::kill(w.pid(), nix::sys::signal::Signal::SIGCONT).unwrap();
    w.watched_ok("a flood of changes inside an ignored directory");
    assert!(w.ls().contains("b.rs") && !w.ls().contains("flood"));
    let s = w.status().unwrap();
    assert_eq!(
        s["watched_dirs"], BASE_DIRS,
        "target/ and below are not watched: {s}"
    );
    assert!(s["last_reset"].is_null(), "the epoch never ended: {s}");
}

#[test]
fn un_ignoring_and_re_ignoring_a_directory() {
    let mut w = Watched::new();
    base_tree(&w);
    write(&w.p(".gitignore"), b"target/\n");
    build_output(&w, 3);
    // A nested rule too: un-ignoring below the root stays watched.
    write(&w.p("docs/.gitignore"), b"build/\n");
    write(&w.p("docs/build/html/index.html"), b"<p>");
    backdate(&w.ws);
    w.start();
    assert_eq!(w.watched_dirs(), BASE_DIRS);
    w.walked_because("no watch token");
    w.watched_ok("vouched");
    // The root's rules changed: that snapshot walks, and from then on the
    // un-ignored directories are watched like any other.
    write(&w.p(".gitignore"), b"# nothing ignored\n");
    w.walked_because("ignore rules changed");
    assert!(w.ls().contains("target/debug/deps/d2/out.o"), "{}", w.ls());
    assert_eq!(w.watched_dirs(), BASE_DIRS + 6, "target, debug, deps, d0..d2");
    write(&w.p("target/debug/deps/d1/out.o"), b"relinked");
    fs::create_dir_all(w.p("target/debug/deps/d3")).unwrap();
    write(&w.p("target/debug/deps/d3/new.o"), b"new");
    w.watched_ok("changes in an un-ignored directory");
    write(&w.p(".gitignore"), b"target/\n");
    w.walked_because("ignore rules changed");
    assert!(!w.ls().contains("target"), "{}", w.ls());
    assert_eq!(w.watched_dirs(), BASE_DIRS, "re-ignored: unwatched again");
    write(&w.p("target/debug/deps/d0/out.o"), b"ignored again");
    w.watched_ok("a change in a re-ignored directory");
    // Nested: only docs is walked again, and the snapshot stays watched.
    write(&w.p("docs/.gitignore"), b"# build kept\n");
    w.watched_ok("a nested rule dropped");
    assert!(w.ls().contains("docs/build/html/index.html"), "{}", w.ls());
    assert_eq!(w.watched_dirs(), BASE_DIRS + 2, "docs/build, docs/build/html");
    write(&w.p("docs/build/html/index.html"), b"<p>rebuilt");
    w.watched_ok("a change in a directory un-ignored by a nested rule");
    fs::remove_file(w.p("docs/.gitignore")).unwrap();
    w.watched_ok("a nested ignore file removed");
    write(&w.p("docs/.gitignore"), b"build/\n");
    w.watched_ok("a nested rule back");
    assert_eq!(w.watched_dirs(), BASE_DIRS);
    assert!(!w.ls().contains("docs/build"), "{}", w.ls());
}

#[test]
fn a_new_nested_rule_an_exclude_file_and_moat_yaml_are_each_followed() {
    let mut w = Watched::new();
    base_tree(&w);
    write(&w.p("gen/sub/g.txt"), b"generated");
    write(&w.p("cache/sub/c.bin"), b"cached");
    write(&w.p(".git/info/exclude"), b"gen/\n");
    write(
        &w.p("moat.yaml"),
        b"snapshots:\n  exclude:\n    additional: ['cache/']\n",
    );
    backdate(&w.ws);
    w.start();
    assert_eq!(w.watched_dirs(), BASE_DIRS, "gen and cache are ignored");
    w.walked_because("no watch token");
    w.watched_ok("vouched");

    // A new nested .gitignore ignoring a subdirectory.
    write(&w.p("docs/.gitignore"), b"guide/\n");
    w.watched_ok("a new nested rule");
    assert!(!w.ls().contains("intro.md"), "{}", w.ls());
    assert_eq!(w.watched_dirs(), BASE_DIRS - 1, "docs/guide unwatched");
    write(&w.p("docs/guide/intro.md"), b"# ignored now\n");
    w.watched_ok("a change in the newly ignored directory");
    fs::remove_file(w.p("docs/.gitignore")).unwrap();
    w.watched_ok("the nested rule removed");
    write(&w.p("docs/guide/more.md"), b"# seen\n");
    w.watched_ok("a change in the directory it un-ignored");
    assert!(w.ls().contains("more.md"), "{}", w.ls());

    // .git is not watched: its info/exclude is looked at at every answer.
    write(&w.p(".git/info/exclude"), b"# gen kept\n");
    w.walked_because("ignore rules changed");
    assert!(w.ls().contains("gen/sub/g.txt"), "{}", w.ls());
    assert_eq!(w.watched_dirs(), BASE_DIRS + 2, "gen, gen/sub");
    write(&w.p("gen/sub/g.txt"), b"regenerated");
    w.watched_ok("a change in a directory the exclude file un-ignored");
    write(&w.p(".git/info/exclude"), b"gen/\n");
    w.walked_because("ignore rules changed");
    assert_eq!(w.watched_dirs(), BASE_DIRS);
    write(&w.p("gen/sub/g.txt"), b"ignored again");
    w.watched_ok("a change in a directory the exclude file ignores again");

    // moat.yaml's excludes, read again by the watcher when it changes.
    write(&w.p("moat.yaml"), b"snapshots: {}\n");
    let v = w.snap_with(&[]);
    assert_eq!(v.0["scan"], "walked", "{}", v.1);
    assert_eq!(v.0["root"].as_str().unwrap(), w.walked_root());
    assert!(w.ls().contains("cache/sub/c.bin"), "{}", w.ls());
    assert_eq!(w.watched_dirs(), BASE_DIRS + 2, "cache, cache/sub");
    write(&w.p("cache/sub/c.bin"), b"recached");
    w.watched_ok("a change in a directory moat.yaml no longer excludes");
    write(
        &w.p("moat.yaml"),
        b"snapshots:\n  exclude:\n    additional: ['cache/']\n",
    );
    let v = w.snap_with(&[]);
    assert_eq!(v.0["scan"], "walked", "{}", v.1);
    assert_eq!(w.watched_dirs(), BASE_DIRS);
    write(&w.p("cache/sub/c.bin"), b"excluded again");
    w.watched_ok("a change in a directory moat.yaml excludes again");
}

#[test]
fn a_snapshot_by_other_rules_than_the_watchers_walks() {
    let mut w = Watched::new();
    base_tree(&w);
    write(&w.p(".gitignore"), b"target/\n");
    build_output(&w, 2);
    backdate(&w.ws);
    w.start();
    let every = WalkOptions {
        no_ignore: true,
        ..WalkOptions::default()
    };
    w.snap_with(&["--no-ignore"]);
    write(&w.p("target/debug/deps/d0/out.o"), b"unwatched change");
    let (v, err) = w.snap_with(&["--no-ignore"]);
    assert_eq!(v["scan"], "walked", "{err}");
    assert!(err.contains("leaves unwatched"), "{err}");
    assert_eq!(v["root"].as_str().unwrap(), w.walked_root_by(every));
    // More excludes than the watcher's: its answer still serves.
    w.snap_with(&["--exclude", "docs/"]);
    write(&w.p("src/main.rs"), b"fn main() { }\n");
    let (v, err) = w.snap_with(&["--exclude", "docs/"]);
    assert_eq!(v["scan"], "watched", "{err}");
    let fewer = WalkOptions {
        excludes: vec!["docs/".into()],
        ..WalkOptions::default()
    };
    assert_eq!(v["root"].as_str().unwrap(), w.walked_root_by(fewer));
}
