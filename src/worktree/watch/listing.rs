//! Which directories the watcher watches: every directory a walk by the
//! watcher's rules may enter, found by running that walk itself
//! (`walk::rules`, the builder every capture's walk starts from), so no
//! ignore rule is matched anywhere but in the `ignore` crate. A directory
//! the walk leaves out only because its ignore files cannot be read safely
//! (`ignore_files`) is watched but not entered: the event that mends it
//! lists it again.
//!
//! Invariants: `watch` is called for a directory before the walk reads
//! it, so an entry made in it after the listing gets an event and one made
//! before is listed. A directory holding a `.git` is reported with the
//! `info/exclude` file the walk reads there, stamped before it is read, so
//! a later change to it shows as a different stamp.

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::Result;
use crate::worktree::ignore_files;
use crate::worktree::walk::{self, WalkOptions};

/// What an ignore file says: blake3 of its bytes, None when it cannot be
/// read as a small regular file (absent, a FIFO, too large). Content, not
/// stat: two edits of one size in one clock tick differ here.
pub type Stamp = Option<[u8; 32]>;

/// The stamp of `p` (links followed, as the walk reads it).
pub fn stamp(p: &Path) -> Stamp {
    let (file, _) = crate::util::fs::open_regular(p, true).ok()?;
    let data = crate::util::fs::read_at_most(file, ignore_files::MAX_IGNORE_FILE).ok()??;
    Some(*blake3::hash(&data).as_bytes())
}

/// Called for each directory to watch with its workspace-relative and
/// absolute path; false when it could not be watched (it is not entered).
pub type WatchFn = Arc<dyn Fn(&[u8], &Path) -> bool + Send + Sync>;

/// What a listing found besides the directories handed to `watch`.
#[derive(Default)]
pub struct Listed {
    /// Directories holding a `.git`, with the `info/exclude` file the walk
    /// reads there and its stamp from before it read it.
    pub gits: Vec<(Vec<u8>, PathBuf, Stamp)>,
    /// Some directory could not be read: the listing may be short.
    pub incomplete: bool,
}

/// `p` is `dir` or below it.
pub fn within(p: &[u8], dir: &[u8]) -> bool {
    dir.is_empty() || (p.starts_with(dir) && (p.len() == dir.len() || p[dir.len()] == b'/'))
}

/// `rel` is one of `roots` or below one.
fn under(roots: &BTreeSet<Vec<u8>>, rel: &[u8]) -> bool {
    let mut end = rel.len();
    loop {
        if roots.contains(&rel[..end]) {
            return true;
        }
        match rel[..end].iter().rposition(|&b| b == b'/') {
            Some(k) => end = k,
            None => return roots.contains(&b""[..]),
        }
    }
}

struct Ctx {
    root: PathBuf,
    roots: BTreeSet<Vec<u8>>,
    /// Strict ancestors of the roots: walked through, not watched.
    chain: BTreeSet<Vec<u8>>,
    skip: Vec<PathBuf>,
    ignore_files: bool,
    watch: WatchFn,
    gits: Mutex<Vec<(Vec<u8>, PathBuf, Stamp)>>,
}

impl Ctx {
    /// Whether the walk may enter `abs`, noting its `.git` exclude file if
    /// it is one of the directories listed (`inside`).
    fn enter(&self, rel: &[u8], abs: &Path, inside: bool) -> bool {
        if !self.ignore_files {
            return true;
        }
        let found = ignore_files::inspect(abs);
        if inside && let Some(x) = found.exclude {
            let st = stamp(&x);
            let mut g = self.gits.lock().unwrap_or_else(|p| p.into_inner());
            g.push((rel.to_vec(), x, st));
        }
        found.bad.is_none()
    }
}

/// Hands `watch` every directory at or below one of `roots` (workspace-
/// relative) that a walk of `root` by `opts` may enter, except `.git` and
/// `skip`, each before the walk reads it. The directories above a root are
/// walked through (their ignore files apply below) but not handed over.
pub fn list(
    root: &Path,
    opts: &WalkOptions,
    roots: &BTreeSet<Vec<u8>>,
    skip: &[PathBuf],
    watch: WatchFn,
) -> Result<Listed> {
    let mut chain = BTreeSet::new();
    for r in roots {
        for (i, b) in r.iter().enumerate() {
            if *b == b'/' {
                chain.insert(r[..i].to_vec());
            }
        }
        if !r.is_empty() {
            chain.insert(Vec::new());
        }
    }
    let ctx = Arc::new(Ctx {
        root: root.to_path_buf(),
        roots: roots.clone(),
        chain,
        skip: skip.to_vec(),
        ignore_files: !opts.no_ignore,
        watch,
        gits: Mutex::default(),
    });
    let mut b = walk::rules(root, opts)?;
    let inside_root = roots.contains(&b""[..]);
    let taken = |ctx: Arc<Ctx>, incomplete: bool| Listed {
        gits: std::mem::take(&mut *ctx.gits.lock().unwrap_or_else(|p| p.into_inner())),
        incomplete,
    };
    if inside_root && !(ctx.watch)(b"", root) {
        return Ok(taken(ctx, true));
    }
    // A root whose ignore files the crate must not read is not walked
    // (the walk refuses it too).
    if !ctx.enter(b"", root, inside_root) {
        return Ok(taken(ctx, false));
    }
    let f = ctx.clone();
    b.threads(rayon::current_num_threads().max(2))
        .filter_entry(move |e| {
            if !e.file_type().is_some_and(|t| t.is_dir()) || e.file_name() == ".git" {
                return false;
            }
            let abs = e.path();
            let Ok(rel) = abs.strip_prefix(&f.root) else {
                return false;
            };
            let rel = rel.as_os_str().as_bytes();
            if f.skip.iter().any(|s| s == abs) {
                return false;
            }
            let inside = under(&f.roots, rel);
            if !inside && !f.chain.contains(rel) {
                return false;
            }
            if inside && !(f.watch)(rel, abs) {
                return false;
            }
            f.enter(rel, abs, inside)
        });
    let incomplete = Arc::new(AtomicBool::new(false));
    b.build_parallel().run(|| {
        let inc = incomplete.clone();
        Box::new(move |r| {
            if r.is_err() {
                inc.store(true, Ordering::Relaxed);
            }
            ignore::WalkState::Continue
        })
    });
    Ok(taken(ctx, incomplete.load(Ordering::Relaxed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(root: &Path, opts: &WalkOptions, roots: &[&str]) -> (Vec<String>, Listed) {
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let s = seen.clone();
        let watch: WatchFn = Arc::new(move |rel, _| {
            s.lock().unwrap().push(String::from_utf8_lossy(rel).into_owned());
            true
        });
        let roots = roots.iter().map(|r| r.as_bytes().to_vec()).collect();
        let l = list(root, opts, &roots, &[], watch).unwrap();
        let mut v = seen.lock().unwrap().clone();
        v.sort();
        (v, l)
    }

    #[test]
    fn ignored_directories_are_left_out_by_the_walks_rules() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for p in [
            "src/a",
            "target/debug/x",
            "docs/build/y",
            "docs/keep",
            ".git/info",
            "gen",
        ] {
            std::fs::create_dir_all(r.join(p)).unwrap();
        }
        std::fs::write(r.join(".gitignore"), "target/\n").unwrap();
        std::fs::write(r.join("docs/.gitignore"), "build/\n").unwrap();
        std::fs::write(r.join(".git/info/exclude"), "gen/\n").unwrap();
        let opts = WalkOptions::default();
        let (all, l) = listed(r, &opts, &[""]);
        assert_eq!(all, ["", "docs", "docs/keep", "src", "src/a"]);
        assert_eq!(l.gits.len(), 1);
        assert_eq!(l.gits[0].1, r.join(".git/info/exclude"));
        assert!(l.gits[0].2.is_some() && !l.incomplete);
        // Below one directory only; the root's rules still apply there.
        let (docs, l) = listed(r, &opts, &["docs"]);
        assert_eq!(docs, ["docs", "docs/keep"]);
        assert!(l.gits.is_empty());
        assert!(listed(r, &opts, &["target"]).0.is_empty());
        let excl = WalkOptions {
            excludes: vec!["src/a".into()],
            ..WalkOptions::default()
        };
        assert_eq!(listed(r, &excl, &["src"]).0, ["src"]);
        let every = WalkOptions {
            no_ignore: true,
            ..WalkOptions::default()
        };
        assert_eq!(listed(r, &every, &[""]).0.len(), 11, "all but .git");
    }

    #[test]
    fn a_directory_with_an_unreadable_ignore_file_is_watched_not_entered() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("odd/inner")).unwrap();
        crate::util::testing::mkfifo(&r.join("odd/.gitignore"));
        let (v, _) = listed(r, &WalkOptions::default(), &[""]);
        assert_eq!(v, ["", "odd"]);
    }

    #[test]
    fn under_and_within_are_per_component() {
        let roots: BTreeSet<Vec<u8>> = [b"a/b".to_vec()].into();
        assert!(under(&roots, b"a/b") && under(&roots, b"a/b/c"));
        assert!(!under(&roots, b"a/bc") && !under(&roots, b"a"));
        assert!(within(b"a/b", b"a") && within(b"x", b"") && !within(b"ab", b"a"));
    }
}
