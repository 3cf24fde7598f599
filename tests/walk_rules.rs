//! The walk matches ignore rules itself (`worktree/walk/levels.rs`); the
//! watcher lists its directories with the `ignore` crate's walker built by
//! `walk::rules`. Both must leave out exactly the same paths, or a watched
//! snapshot would differ from a walked one: this property test builds
//! random trees with random `.gitignore`, `.ignore`, `info/exclude` files
//! and `--exclude` globs and compares the two walks path by path.

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use moat::worktree::walk::{self, WalkOptions};
use proptest::prelude::*;

const NAMES: &[&str] = &["a", "b", "build", "c.log", "keep.log", "d.txt", ".hidden", "x y"];

const PATTERNS: &[&str] = &[
    "*.log",
    "!keep.log",
    "build/",
    "/a",
    "a/b",
    "**/c.log",
    "d*",
    "!*.txt",
    "# a comment",
    "",
    "b/",
    "/build/",
    "*",
    "!*/",
    "!b",
    "x y",
    "[ab]",
    ".hidden",
    "a/**",
    "!/a/b",
    "build/*",
    "!build/keep.log",
    "a[",
    "\\!keep.log",
];

#[derive(Debug, Clone)]
struct Tree {
    /// Paths of files (and the directories above them).
    files: Vec<Vec<usize>>,
    /// Empty directories.
    dirs: Vec<Vec<usize>>,
    /// Ignore files: (directory, which, pattern indexes, CRLF endings).
    rules: Vec<(Vec<usize>, u8, Vec<usize>, bool)>,
    excludes: Vec<usize>,
    no_ignore: bool,
}

fn path_of(p: &[usize]) -> String {
    p.iter().map(|&i| NAMES[i]).collect::<Vec<_>>().join("/")
}

fn arb_path(max: usize) -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(0..NAMES.len(), 1..=max)
}

fn arb_tree() -> impl Strategy<Value = Tree> {
    (
        proptest::collection::vec(arb_path(4), 0..25),
        proptest::collection::vec(arb_path(3), 0..5),
        proptest::collection::vec(
            (
                proptest::collection::vec(0..NAMES.len(), 0..3),
                0..4u8,
                proptest::collection::vec(0..PATTERNS.len(), 0..5),
                any::<bool>(),
            ),
            0..6,
        ),
        proptest::collection::vec(0..4usize, 0..3),
        proptest::bool::weighted(0.1),
    )
        .prop_map(|(files, dirs, rules, excludes, no_ignore)| Tree {
            files,
            dirs,
            rules,
            excludes,
            no_ignore,
        })
}

fn build(root: &Path, t: &Tree) -> WalkOptions {
    let mk_dir = |rel: &str| {
        let p = root.join(rel);
        // A path through a file cannot be made: skip it.
        let _ = std::fs::create_dir_all(p);
    };
    for d in &t.dirs {
        mk_dir(&path_of(d));
    }
    for f in &t.files {
        let rel = path_of(f);
        if let Some(parent) = Path::new(&rel).parent() {
            mk_dir(&parent.to_string_lossy());
        }
        let p = root.join(&rel);
        if !p.exists() {
            let _ = std::fs::write(p, b"x");
        }
    }
    for (dir, which, pats, crlf) in &t.rules {
        let d = root.join(path_of(dir));
        if !d.is_dir() {
            continue;
        }
        let eol = if *crlf { "\r\n" } else { "\n" };
        let text: String = pats.iter().map(|&i| format!("{}{eol}", PATTERNS[i])).collect();
        let file = match which {
            0 => d.join(".gitignore"),
            1 => d.join(".ignore"),
            2 => {
                if d.join(".git").is_file() {
                    continue;
                }
                std::fs::create_dir_all(d.join(".git/info")).unwrap();
                d.join(".git/info/exclude")
            }
            _ => {
                // A worktree-style `.git` file pointing at a git dir
                // outside the tree, with its `commondir`.
                let real = root.with_extension(format!("git{}", dir.len()));
                std::fs::create_dir_all(real.join("common/info")).unwrap();
                std::fs::write(real.join("commondir"), "common\n").unwrap();
                if !d.join(".git").exists() {
                    std::fs::write(d.join(".git"), format!("gitdir: {}\n", real.display())).unwrap();
                }
                real.join("common/info/exclude")
            }
        };
        std::fs::write(file, text).unwrap();
    }
    WalkOptions {
        no_ignore: t.no_ignore,
        excludes: t
            .excludes
            .iter()
            .map(|&i| ["*.txt", "a/b", "build", "/b"][i].to_string())
            .collect(),
        ..WalkOptions::default()
    }
}

/// What the `ignore` crate's walker, built by `walk::rules`, yields.
fn crate_walk(root: &Path, opts: &WalkOptions) -> BTreeSet<Vec<u8>> {
    let mut b = walk::rules(root, opts).unwrap();
    b.filter_entry(|e| e.file_name() != ".git");
    b.build()
        .filter_map(Result::ok)
        .filter(|e| e.depth() > 0)
        .map(|e| {
            e.path()
                .strip_prefix(root)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if std::env::var_os("CI").is_some() { 64 } else { 256 },
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_walk_leaves_out_what_the_crates_walker_leaves_out(t in arb_tree()) {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("ws");
        std::fs::create_dir(&root).unwrap();
        let root = root.canonicalize().unwrap();
        let opts = build(&root, &t);
        let w = walk::walk_pruned(&root, &opts, None).unwrap();
        prop_assert!(w.warnings.is_empty(), "{:?}", w.warnings);
        let ours: BTreeSet<Vec<u8>> = w.nodes.iter().map(|n| n.rel.clone()).collect();
        prop_assert_eq!(ours.len(), w.nodes.len(), "a path was yielded twice");
        let theirs = crate_walk(&root, &opts);
        let show = |s: &BTreeSet<Vec<u8>>| s.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect::<Vec<_>>();
        prop_assert_eq!(show(&ours), show(&theirs));
    }
}
