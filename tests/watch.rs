//! `moat watch`: a watched snapshot equals a full walk of the same state,
//! after every kind of change, and every way the watcher can lose track
//! falls back to the walk and says why.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::watched::{Watched, queue_limit};
use common::*;
use moat::capture::{self, CaptureOptions};
use moat::util::progress::NoProgress;
use moat::worktree::watch::{Answer, Since, Vouch, WatchLink};

fn set_mtime(p: &Path, secs: i64) {
    use nix::sys::stat::{UtimensatFlags, utimensat};
    use nix::sys::time::TimeSpec;
    let t = TimeSpec::new(secs, 0);
    utimensat(nix::fcntl::AT_FDCWD, p, &t, &t, UtimensatFlags::NoFollowSymlink).unwrap();
}

fn base_tree(w: &Watched) {
    write(&w.p("src/main.rs"), b"fn main() {}\n");
    write(&w.p("src/lib/a.rs"), b"pub fn a() {}\n");
    write(&w.p("src/lib/b.rs"), b"pub fn b() {}\n");
    write(&w.p("docs/guide/intro.md"), b"# intro\n");
    write(&w.p("same.txt"), b"0123456789");
    std::os::unix::fs::symlink("src/main.rs", w.p("link")).unwrap();
    backdate(&w.ws);
}

#[test]
fn every_kind_of_change_is_seen() {
    let mut w = Watched::new();
    base_tree(&w);
    w.start();
    w.walked_because("no watch token");
    w.watched_ok("no change");
    write(&w.p("src/new.rs"), b"new");
    w.watched_ok("create");
    fs::remove_file(w.p("src/lib/b.rs")).unwrap();
    w.watched_ok("delete");
    fs::rename(w.p("src/new.rs"), w.p("docs/moved.rs")).unwrap();
    w.watched_ok("rename file");
    fs::rename(w.p("src/lib"), w.p("docs/lib2")).unwrap();
    w.watched_ok("rename directory");
    // The moved directory's watches follow it: a change inside it after
    // the move is seen under its new name.
    write(&w.p("docs/lib2/a.rs"), b"changed after the move");
    w.watched_ok("change inside a moved directory");
    fs::set_permissions(w.p("docs/moved.rs"), fs::Permissions::from_mode(0o755)).unwrap();
    w.watched_ok("chmod");
    fs::remove_file(w.p("link")).unwrap();
    std::os::unix::fs::symlink("docs/moved.rs", w.p("link")).unwrap();
    w.watched_ok("symlink retarget");
    // Same size, same mtime: only the event (and ctime) tells.
    let m = fs::metadata(w.p("same.txt")).unwrap();
    let mtime = std::os::unix::fs::MetadataExt::mtime(&m);
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(w.p("same.txt"))
        .unwrap();
    fs::write(w.p("same.txt"), b"abcdefghij").unwrap();
    set_mtime(&w.p("same.txt"), mtime);
    w.watched_ok("truncate and rewrite, same size and mtime");
    fs::create_dir_all(w.p("fresh/deeper")).unwrap();
    write(&w.p("fresh/deeper/x.txt"), b"x");
    w.watched_ok("new directory");
    write(&w.p("fresh/deeper/x.txt"), b"xy");
    w.watched_ok("change inside a new directory");
    fs::remove_dir_all(w.p("fresh")).unwrap();
    w.watched_ok("remove a tree");
    w.stop();
}

/// A `Vouch` that changes a file right after answering: the change happens
/// while the capture scans.
struct ChangeDuringScan {
    inner: std::sync::Arc<moat::worktree::watch::Hub>,
    file: PathBuf,
}

impl Vouch for ChangeDuringScan {
    fn begin(&self, since: Option<Since>) -> Answer {
        let a = self.inner.begin(since);
        let mut f = fs::OpenOptions::new().append(true).open(&self.file).unwrap();
        f.write_all(b" and more").unwrap();
        a
    }
}

#[test]
fn a_change_during_a_snapshot_stays_dirty_for_the_next() {
    let w = Watched::new();
    base_tree(&w);
    let store = moat::Store::open_or_create(&w.env.store()).unwrap();
    let hub = moat::worktree::watch::spawn(&w.ws, store.own_dirs()).unwrap();
    let opts = |link: WatchLink| CaptureOptions {
        watch: link,
        allow_empty: true,
        ..CaptureOptions::default()
    };
    capture::capture(&store, &w.ws, &opts(WatchLink::With(hub.clone())), &NoProgress).unwrap();
    let sneaky = ChangeDuringScan {
        inner: hub.clone(),
        file: w.p("src/main.rs"),
    };
    let r = capture::capture(
        &store,
        &w.ws,
        &opts(WatchLink::With(std::sync::Arc::new(sneaky))),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(r.snapshot.scan, moat::format::snapshot::Scan::Watched);
    let r = capture::capture(&store, &w.ws, &opts(WatchLink::With(hub)), &NoProgress).unwrap();
    assert_eq!(
        r.snapshot.scan,
        moat::format::snapshot::Scan::Watched,
        "{:?}",
        r.scan_note
    );
    assert_eq!(r.snapshot.root.to_hex(), w.walked_root());
}

#[test]
fn fallbacks_say_why() {
    let mut w = Watched::new();
    base_tree(&w);
    w.walked_because("no watcher runs");
    // Started after the cached scan: it cannot vouch for what came before.
    w.start();
    w.walked_because("no watch token");
    w.watched_ok("vouched");
    // Restarted: a new epoch.
    w.stop();
    w.start();
    write(&w.p("src/main.rs"), b"changed while no watcher ran");
    w.walked_because("started after the cached scan");
    w.watched_ok("vouched again");
    // Other walk options than the cached scan's.
    let out = w
        .cmd()
        .args([
            "snapshot",
            w.ws.to_str().unwrap(),
            "--json",
            "-v",
            "--exclude",
            "*.md",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("walk options differ"),
        "{}",
        show(&out)
    );
    w.walked_because("walk options differ");
    w.watched_ok("vouched again");
    // Ignore rules changed.
    write(&w.p(".gitignore"), b"*.md\n");
    w.walked_because("ignore rules changed");
    w.watched_ok("vouched again");
    // A damaged stat cache.
    let cache = fs::read_dir(w.env.store().join("cache"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "stat"))
        .unwrap();
    let mut data = fs::read(&cache).unwrap();
    data[20] ^= 1;
    fs::write(&cache, &data).unwrap();
    let (v, err) = w.snap();
    assert_eq!(v["scan"], "walked", "{err}");
    assert!(v["warnings"].to_string().contains("stat cache"), "{v}");
    w.watched_ok("vouched again");
    // The watcher crashed: its socket is left behind, nobody answers.
    nix::sys::signal::kill(w.pid(), nix::sys::signal::Signal::SIGKILL).unwrap();
    w.child.take().unwrap().wait().unwrap();
    w.walked_because("no watcher runs");
}

#[test]
fn queue_overflow_falls_back() {
    let mut w = Watched::new();
    base_tree(&w);
    let limit = queue_limit();
    if limit > 200_000 {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED queue_overflow_falls_back: fs.inotify.max_queued_events is {limit}, too many files to flood"
        );
        return;
    }
    w.start();
    w.snap();
    w.watched_ok("vouched");
    fs::create_dir_all(w.p("flood")).unwrap();
    // A status request makes the watcher take its events in: `flood` is
    // watched from here on.
    w.status();
    // Freeze the watcher so its queue overflows, then let it go.
    let pid = w.pid();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    for i in 0..limit + 100 {
        fs::write(w.p(&format!("flood/{i}")), b"").unwrap();
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    w.walked_because("overflowed");
    w.watched_ok("vouched again");
}

#[test]
fn root_moved_away_and_back_falls_back() {
    let mut w = Watched::new();
    base_tree(&w);
    w.start();
    w.snap();
    w.watched_ok("vouched");
    let aside = w.env.path("aside");
    fs::rename(&w.ws, &aside).unwrap();
    fs::rename(&aside, &w.ws).unwrap();
    w.walked_because("moved or removed");
}

#[test]
fn a_new_mount_falls_back() {
    let mut w = Watched::new();
    base_tree(&w);
    w.start();
    w.snap();
    w.watched_ok("vouched");
    let target = w.p("docs");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&target)
        .status();
    if !mounted.is_ok_and(|s| s.success()) {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED a_new_mount_falls_back: cannot mount tmpfs"
        );
        return;
    }
    let res = std::panic::catch_unwind(|| {
        w.walked_because("mounts under the workspace changed");
        write(&w.p("docs/inside-the-mount.txt"), b"m");
        w.watched_ok("a change inside the new mount");
    });
    let _ = Command::new("umount").arg(&target).status();
    if let Err(e) = res {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn survives_a_git_checkout() {
    // A checkout of 1000 files queues a few thousand events.
    let limit = queue_limit();
    if limit < 8192 {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED survives_a_git_checkout: fs.inotify.max_queued_events is only {limit}"
        );
        return;
    }
    let mut w = Watched::new();
    git(&w.ws, &["init", "-q", "-b", "one"]);
    for i in 0..1000 {
        write(
            &w.p(&format!("d{}/f{i}.txt", i % 40)),
            format!("one {i}\n").as_bytes(),
        );
    }
    git(&w.ws, &["add", "-A"]);
    git(&w.ws, &["commit", "-qm", "one"]);
    git(&w.ws, &["checkout", "-qb", "two"]);
    for i in 0..1000 {
        let p = w.p(&format!("d{}/f{i}.txt", i % 40));
        if i % 3 == 0 {
            fs::remove_file(p).unwrap();
        } else {
            fs::write(p, format!("two {i}\n")).unwrap();
        }
    }
    write(&w.p("new/dir/only-on-two.txt"), b"two");
    git(&w.ws, &["add", "-A"]);
    git(&w.ws, &["commit", "-qm", "two"]);
    w.start();
    w.snap();
    w.watched_ok("vouched");
    git(&w.ws, &["checkout", "-q", "one"]);
    w.watched_ok("after checking out another branch");
    git(&w.ws, &["checkout", "-q", "two"]);
    w.watched_ok("and back");
}

/// The files of the store's stat cache directory: (name, bytes).
fn cache_files(w: &Watched) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = fs::read_dir(w.env.store().join("cache"))
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// blake3 of the stat cache file (not its delta).
fn stat_file(w: &Watched) -> String {
    let files = cache_files(w);
    let stat = files
        .iter()
        .find(|(n, _)| n.ends_with(".stat"))
        .expect("a stat cache");
    blake3::hash(&stat.1).to_hex().to_string()
}

#[test]
fn a_watched_snapshot_writes_a_delta_and_later_walks_read_through_it() {
    let mut w = Watched::new();
    base_tree(&w);
    write(&w.p("old/gone.txt"), b"to be deleted\n");
    write(&w.p("old/kept.txt"), b"kept\n");
    w.start();
    w.walked_because("no watch token");
    let whole = stat_file(&w);
    write(&w.p("src/main.rs"), b"fn main() { edited(); }\n");
    write(&w.p("src/lib/new.rs"), b"pub fn new() {}\n");
    fs::remove_file(w.p("old/gone.txt")).unwrap();
    fs::remove_file(w.p("src/lib/b.rs")).unwrap();
    // Old mtimes: no file is racy for the walk at the end.
    backdate(&w.ws);
    w.watched_ok("edits, a new file, deletions");
    // The cache itself is not rewritten: what changed is in a delta.
    assert_eq!(stat_file(&w), whole, "the whole stat cache was rewritten");
    assert!(
        cache_files(&w).iter().any(|(n, _)| n.ends_with(".delta")),
        "no delta written"
    );
    write(&w.p("src/lib/a.rs"), b"pub fn a() { 2 }\n");
    backdate(&w.ws);
    w.watched_ok("a second delta on the same cache");
    assert_eq!(stat_file(&w), whole);
    // A delta that would outgrow its bound (4,096 records here) is folded
    // into a whole cache, the earlier deltas' records with it.
    // (Made outside and moved in: one event, not thousands.)
    let many = w.env.path("many");
    for i in 0..4100 {
        write(&many.join(format!("f{i}")), format!("{i}\n").as_bytes());
    }
    backdate(&many);
    fs::rename(&many, w.p("many")).unwrap();
    w.watched_ok("more than a delta holds");
    let has_delta = |w: &Watched| cache_files(w).iter().any(|(n, _)| n.ends_with(".delta"));
    assert_ne!(stat_file(&w), whole, "the cache was not written whole");
    assert!(!has_delta(&w), "a delta is left beside a whole cache");
    let whole = stat_file(&w);
    write(&w.p("docs/guide/intro.md"), b"# edited\n");
    backdate(&w.ws);
    w.watched_ok("a delta on the new cache");
    assert_eq!(stat_file(&w), whole);
    assert!(has_delta(&w));
    // Without the watcher, a walk reads the cache through its delta: no
    // file is read again, and deleted paths stay deleted.
    w.stop();
    let (v, err) = w.snap();
    assert_eq!(v["scan"], "walked", "{err}");
    assert_eq!(v["root"].as_str().unwrap(), w.walked_root());
    assert_eq!(v["stats"]["files_read"], 0, "files read again: {v}");
    write(&w.p("old/kept.txt"), b"edited with no watcher\n");
    backdate(&w.ws);
    let (v, _) = w.snap();
    assert_eq!(v["stats"]["files_read"], 1, "{v}");
    assert_eq!(v["root"].as_str().unwrap(), w.walked_root());
    let (v, _) = w.snap();
    assert_eq!(v["stats"]["files_read"], 0);
    assert_eq!(v["root"].as_str().unwrap(), w.walked_root());
}

#[test]
fn a_nested_ignore_file_rewalks_only_its_directory() {
    let mut w = Watched::new();
    base_tree(&w);
    write(&w.p("docs/guide/notes.log"), b"log\n");
    write(&w.p("docs/x.gitignore"), b"not an ignore file\n");
    w.start();
    w.walked_because("no watch token");
    write(&w.p("docs/.gitignore"), b"*.log\n");
    w.watched_ok("a new nested .gitignore");
    let (v, _) = w.snap();
    assert_eq!(v["scan"], "watched");
    let ls = w
        .cmd()
        .args(["ls", "latest"])
        .current_dir(&w.ws)
        .output()
        .unwrap();
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(
        ls.contains("intro.md") && !ls.contains("notes.log"),
        "the new rule applies: {ls}"
    );
    write(&w.p("docs/.gitignore"), b"# nothing\n");
    w.watched_ok("a nested .gitignore edited");
    write(&w.p("docs/x.gitignore"), b"still not an ignore file\n");
    w.watched_ok("a file whose name only ends in .gitignore");
    write(&w.p(".gitignore"), b"*.md\n");
    w.walked_because("ignore rules changed");
}
