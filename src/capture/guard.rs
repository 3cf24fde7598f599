//! The growth guard: the classic accident is a new `node_modules/` or
//! `target/` that is not ignored, or a 2 GB core dump. Checked after the
//! walk, before any file is read or staged.
//!
//! Growth is judged against the parent snapshot only: new files and the
//! growth of changed ones. A first count uses the stat cache (cheap, and it
//! can only over-count: a file it does not know may still be in the
//! parent); only when that count is over a limit is it redone exactly
//! against the parent's tree (or the walk of a parent staged but not yet
//! committed), leaving out files git tracks: a checkout or a merge of
//! tracked files is never an accident. The first snapshot of a workspace is
//! its baseline and is always taken, with one warning naming the biggest
//! paths when it is over the limits.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::id::ObjectId;
use crate::format::tree::{Content, Tree};
use crate::store::Store;
use crate::worktree::walk::{Node, NodeKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Guard {
    pub max_new_bytes: u64,
    pub max_new_files: u64,
    /// Refuse the snapshot (automatic ones); otherwise only warn (manual).
    pub enforce: bool,
}

/// What the parent snapshot held, for the exact count.
pub enum Base {
    /// No parent: this is the workspace's first snapshot, its baseline.
    First,
    /// A committed parent's root tree.
    Tree(ObjectId),
    /// The walk of a parent that is staged but not committed yet, and the
    /// newest committed snapshot's root (a watched walk leaves out what it
    /// knows did not change: that is as the committed snapshot has it).
    Staged(Arc<Vec<Node>>, Option<ObjectId>),
}

/// Growth per top-level entry (`node_modules/`, `target/`): files, bytes.
type ByTop<'a> = HashMap<&'a [u8], (u64, u64)>;

/// Applies the growth guard to the files about to be read: an error when
/// enforced, else a warning to show. `cached_size` is the stat cache's
/// size of node `i`; `base` is asked for only when the cheap count is over
/// a limit.
pub fn check_growth(
    g: &Guard,
    ws: &Path,
    nodes: &[Node],
    to_read: &[usize],
    cached_size: &dyn Fn(usize) -> Option<u64>,
    base: impl FnOnce() -> Result<Base>,
    store: &Store,
) -> Result<Option<String>> {
    let (files, bytes, _) = count(nodes, to_read, cached_size, |_| false);
    if within(g, files, bytes) {
        return Ok(None);
    }
    let tracked = crate::worktree::git::tracked_files(ws).unwrap_or_default();
    let is_tracked = |rel: &[u8]| tracked.contains(rel);
    let (files, bytes, by_top) = match base()? {
        Base::First => {
            let (files, bytes, by_top) = count(nodes, to_read, &|_| None, |_| false);
            return Ok(Some(format!(
                "first snapshot of this workspace: {files} files, {bytes} bytes, over the growth guard's \
                 limits ({} files, {} bytes); it is taken as the workspace's baseline. Biggest: {}",
                g.max_new_files,
                g.max_new_bytes,
                biggest(by_top)
            )));
        }
        Base::Tree(root) => {
            let mut trees = TreeSizes::new(store, root);
            let mut sizes: HashMap<usize, u64> = HashMap::new();
            for &i in to_read {
                if let Some(size) = trees.size_of(&nodes[i].rel)? {
                    sizes.insert(i, size);
                }
            }
            count(nodes, to_read, &|i| sizes.get(&i).copied(), is_tracked)
        }
        Base::Staged(walk, committed) => {
            let in_walk: HashMap<&[u8], u64> = walk
                .iter()
                .filter(|n| n.kind == NodeKind::File)
                .map(|n| (n.rel.as_slice(), n.stat.size))
                .collect();
            let mut trees = committed.map(|root| TreeSizes::new(store, root));
            let mut sizes: HashMap<usize, u64> = HashMap::new();
            for &i in to_read {
                let rel = nodes[i].rel.as_slice();
                let size = match (in_walk.get(rel), trees.as_mut()) {
                    (Some(s), _) => Some(*s),
                    (None, Some(t)) => t.size_of(rel)?,
                    (None, None) => None,
                };
                if let Some(s) = size {
                    sizes.insert(i, s);
                }
            }
            count(nodes, to_read, &|i| sizes.get(&i).copied(), is_tracked)
        }
    };
    if within(g, files, bytes) {
        return Ok(None);
    }
    let msg = format!(
        "snapshot would add {files} new files and {bytes} bytes that git does not track (limits {} files, {} \
         bytes); biggest: {}. Add them to .gitignore or snapshots.exclude.additional in moat.yaml if they are \
         build output",
        g.max_new_files,
        g.max_new_bytes,
        biggest(by_top)
    );
    if g.enforce {
        Err(Error::GrowthGuard(msg))
    } else {
        Ok(Some(msg))
    }
}

fn within(g: &Guard, files: u64, bytes: u64) -> bool {
    files <= g.max_new_files && bytes <= g.max_new_bytes
}

/// New files and grown bytes among `to_read`, given each node's size in
/// the parent (`None`: not there); files `skip` names do not count.
fn count<'a>(
    nodes: &'a [Node],
    to_read: &[usize],
    old_size: &dyn Fn(usize) -> Option<u64>,
    skip: impl Fn(&[u8]) -> bool,
) -> (u64, u64, ByTop<'a>) {
    let mut files = 0u64;
    let mut bytes = 0u64;
    let mut by_top: ByTop = HashMap::new();
    for &i in to_read {
        let n = &nodes[i];
        if skip(&n.rel) {
            continue;
        }
        let grown = match old_size(i) {
            Some(old) => n.stat.size.saturating_sub(old),
            None => {
                files = files.saturating_add(1);
                n.stat.size
            }
        };
        bytes = bytes.saturating_add(grown);
        let cut = n
            .rel
            .iter()
            .position(|b| *b == b'/')
            .map_or(n.rel.len(), |k| k + 1);
        let e = by_top.entry(&n.rel[..cut]).or_default();
        e.0 = e.0.saturating_add(1);
        e.1 = e.1.saturating_add(grown);
    }
    (files, bytes, by_top)
}

/// The three biggest top-level entries, largest first.
fn biggest(by_top: ByTop) -> String {
    let mut top: Vec<(&[u8], (u64, u64))> = by_top.into_iter().collect();
    top.sort_by_key(|(p, (files, bytes))| (std::cmp::Reverse((*bytes, *files)), p.to_vec()));
    let names: Vec<String> = top
        .iter()
        .take(3)
        .map(|(p, (f, b))| format!("{} ({f} files, {b} bytes)", String::from_utf8_lossy(p)))
        .collect();
    names.join(", ")
}

/// File sizes in a committed tree, loading each directory once.
struct TreeSizes<'a> {
    store: &'a Store,
    root: ObjectId,
    dirs: HashMap<Vec<u8>, Option<Tree>>,
}

impl<'a> TreeSizes<'a> {
    fn new(store: &'a Store, root: ObjectId) -> Self {
        TreeSizes {
            store,
            root,
            dirs: HashMap::new(),
        }
    }

    /// The size of the file at `rel`, if the tree has a file there.
    fn size_of(&mut self, rel: &[u8]) -> Result<Option<u64>> {
        let (dir, name) = match rel.iter().rposition(|b| *b == b'/') {
            Some(k) => (&rel[..k], &rel[k + 1..]),
            None => (&rel[..0], rel),
        };
        Ok(self
            .dir(dir)?
            .and_then(|t| t.find(name))
            .and_then(|e| match e.content {
                Content::File(_) => Some(e.size),
                _ => None,
            }))
    }

    fn dir(&mut self, dir: &[u8]) -> Result<Option<&Tree>> {
        if !self.dirs.contains_key(dir) {
            let tree = match dir.iter().rposition(|b| *b == b'/') {
                None if dir.is_empty() => Some(self.store.read_tree(&self.root)?),
                split => {
                    let (parent, name) = match split {
                        Some(k) => (&dir[..k], &dir[k + 1..]),
                        None => (&dir[..0], dir),
                    };
                    let id = self
                        .dir(parent)?
                        .and_then(|t| t.find(name))
                        .and_then(|e| match e.content {
                            Content::Dir(id) => Some(id),
                            _ => None,
                        });
                    id.map(|id| self.store.read_tree(&id)).transpose()?
                }
            };
            self.dirs.insert(dir.to_vec(), tree);
        }
        Ok(self.dirs.get(dir).and_then(Option::as_ref))
    }
}
