//! Collapsing unchanged directories during a full walk: a directory whose
//! listing and every entry below it match the stat cache is reported as
//! collapsed (the capture takes its tree from the cache, as for a
//! directory a watcher vouches for), and none of its nodes are kept. So a
//! walk holds in memory what changed plus the entries of the directories
//! still being walked, not the whole workspace.
//!
//! Invariants: a directory collapses only when its own record can stand
//! for it (`Collapse::dir`, given its lstat), it listed exactly as many
//! tree entries as that record's tree holds, every file and symlink among
//! them is vouched for (`Collapse::same`), every subdirectory collapsed,
//! and nothing in it was skipped, refused or clamped. Only maximal
//! collapsed directories are reported: a collapsing parent absorbs its
//! children's. The last task to finish below a directory decides it (a
//! count of unfinished listings), so the decision sees the whole subtree.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::Node;
use super::fast::{Shared, merge_nodes};
use crate::format::statcache::FileStat;

/// What the stat cache says, for a walk that collapses (`walk_collapsing`).
pub trait Collapse: Sync {
    /// The number of entries of directory `rel`'s cached tree, when its
    /// cached record matches `stat` (its lstat) and may stand for its
    /// whole subtree; None otherwise.
    fn dir(&self, rel: &[u8], stat: &FileStat) -> Option<u32>;
    /// Whether the cache vouches for the file or symlink `node` unchanged.
    fn same(&self, node: &Node) -> bool;
}

/// A directory whose subtree is not decided yet.
pub(super) struct Pend {
    parent: Option<Arc<Pend>>,
    rel: Vec<u8>,
    /// Its own listing plus its subdirectories not decided yet.
    left: AtomicUsize,
    /// Everything decided so far matches the cache.
    same: AtomicBool,
    held: Mutex<Held>,
}

/// What a directory keeps back until it is decided: its own nodes and its
/// collapsed subdirectories.
#[derive(Default)]
struct Held {
    nodes: Vec<Node>,
    collapsed: Vec<Vec<u8>>,
}

impl Pend {
    /// The start of a walk.
    pub(super) fn root(rel: &[u8]) -> Arc<Pend> {
        Arc::new(Pend {
            parent: None,
            rel: rel.to_vec(),
            left: AtomicUsize::new(1),
            same: AtomicBool::new(true),
            held: Mutex::default(),
        })
    }

    /// A subdirectory about to be listed (counted as unfinished here).
    pub(super) fn child(self: &Arc<Self>, rel: &[u8]) -> Arc<Pend> {
        self.left.fetch_add(1, Ordering::SeqCst);
        Arc::new(Pend {
            parent: Some(self.clone()),
            rel: rel.to_vec(),
            left: AtomicUsize::new(1),
            same: AtomicBool::new(true),
            held: Mutex::default(),
        })
    }
}

/// The listing of `p`'s directory is done: `nodes` are its own nodes (its
/// node and its files and symlinks), `same` whether all it saw matched.
/// Decides `p`, and then each ancestor this completes.
pub(super) fn listed(sh: &Shared, p: Arc<Pend>, nodes: Vec<Node>, same: bool) {
    p.held
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .nodes
        .extend(nodes);
    if !same {
        p.same.store(false, Ordering::SeqCst);
    }
    let mut p = p;
    loop {
        if p.left.fetch_sub(1, Ordering::SeqCst) != 1 {
            return;
        }
        let held = std::mem::take(&mut *p.held.lock().unwrap_or_else(|e| e.into_inner()));
        let same = p.same.load(Ordering::SeqCst);
        if same {
            // Its collapsed children are inside it: only it is reported.
            match &p.parent {
                Some(parent) => parent
                    .held
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .collapsed
                    .push(p.rel.clone()),
                None => merge_nodes(sh, Vec::new(), vec![p.rel.clone()]),
            }
        } else {
            merge_nodes(sh, held.nodes, held.collapsed);
            if let Some(parent) = &p.parent {
                parent.same.store(false, Ordering::SeqCst);
            }
        }
        match &p.parent {
            Some(parent) => p = parent.clone(),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::worktree::walk::{WalkOptions, walk, walk_collapsing};

    /// A cache that knows the tree as it was walked, except what it is told.
    struct Fake {
        entries: BTreeMap<Vec<u8>, u32>,
        stale: Vec<Vec<u8>>,
        miscount: Vec<Vec<u8>>,
    }

    impl Collapse for Fake {
        fn dir(&self, rel: &[u8], _: &FileStat) -> Option<u32> {
            let n = *self.entries.get(rel)?;
            Some(if self.miscount.iter().any(|m| m == rel) {
                n + 1
            } else {
                n
            })
        }
        fn same(&self, node: &Node) -> bool {
            !self.stale.contains(&node.rel)
        }
    }

    fn tree() -> (tempfile::TempDir, std::path::PathBuf, Fake) {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        for f in ["a/x", "a/y", "b/z", "c/d/w", "top"] {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, f).unwrap();
        }
        let (nodes, _) = walk(&root, &WalkOptions::default()).unwrap();
        let mut entries: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
        entries.insert(Vec::new(), 0);
        for n in &nodes {
            if n.kind == crate::worktree::walk::NodeKind::Dir {
                entries.entry(n.rel.clone()).or_default();
            }
            let parent = n
                .rel
                .iter()
                .rposition(|&b| b == b'/')
                .map_or(&b""[..], |i| &n.rel[..i]);
            *entries.entry(parent.to_vec()).or_default() += 1;
        }
        let fake = Fake {
            entries,
            stale: Vec::new(),
            miscount: Vec::new(),
        };
        (d, root, fake)
    }

    fn rels(v: &[Vec<u8>]) -> BTreeSet<String> {
        v.iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect()
    }

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_unchanged_tree_collapses_whole() {
        let (_d, root, fake) = tree();
        let w = walk_collapsing(&root, &WalkOptions::default(), &fake).unwrap();
        assert!(w.nodes.is_empty());
        assert_eq!(rels(&w.collapsed), set(&[""]));
    }

    #[test]
    fn a_change_keeps_only_its_ancestors_and_their_entries() {
        let (_d, root, mut fake) = tree();
        fake.stale.push(b"b/z".to_vec());
        let w = walk_collapsing(&root, &WalkOptions::default(), &fake).unwrap();
        let nodes: Vec<Vec<u8>> = w.nodes.iter().map(|n| n.rel.clone()).collect();
        // The root and `b` are kept, with their own entries; `a` and `c`
        // (with `c/d` inside it, not reported apart) collapse.
        assert_eq!(rels(&nodes), set(&["b", "b/z", "top"]));
        assert_eq!(rels(&w.collapsed), set(&["a", "c"]));
    }

    #[test]
    fn a_listing_that_does_not_count_up_keeps_the_directory() {
        let (_d, root, mut fake) = tree();
        fake.miscount.push(b"c/d".to_vec());
        let w = walk_collapsing(&root, &WalkOptions::default(), &fake).unwrap();
        let nodes: Vec<Vec<u8>> = w.nodes.iter().map(|n| n.rel.clone()).collect();
        assert_eq!(rels(&nodes), set(&["c", "c/d", "c/d/w", "top"]));
        assert_eq!(rels(&w.collapsed), set(&["a", "b"]));
        // An entry that cannot be stored (a skip) keeps its directory too,
        // though everything it can store counts up.
        std::os::unix::fs::symlink("x", root.join("a/l")).unwrap();
        fake.entries.insert(b"a".to_vec(), 3);
        let fifo = root.join("a/p");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let w = walk_collapsing(&root, &WalkOptions::default(), &fake).unwrap();
        assert!(w.nodes.iter().any(|n| n.rel == b"a/x"));
        assert!(!w.collapsed.iter().any(|c| c.as_slice() == b"a"));
    }
}
