//! Reading and walking a snapshot's trees for the commands that do
//! (restore, ls, diff, log, rollback).
//!
//! Invariants: every walk is iterative (no recursion, so no depth can
//! overflow the stack) and charges each tree it loads to a
//! `format::tree::Budget`, so a walk stops with an error naming the path
//! once it is deeper than `MAX_DEPTH` or has met more entries or tree bytes
//! than one snapshot may hold, however often a hostile store names one
//! subtree. Walks visit entries in path order, parents before children.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::format::id::ObjectId;
use crate::format::tree::{Budget, Content, Entry, Tree};
use crate::store::Store;

/// Reads trees from the store, or from memory for trees of a live
/// workspace that were never written.
pub struct Trees<'a> {
    pub store: &'a Store,
    pub mem: HashMap<ObjectId, Vec<u8>>,
    /// Recently decoded small trees: a subtree named again (empty
    /// directories share one id) is not read and verified again.
    recent: Mutex<HashMap<ObjectId, (Tree, usize)>>,
}

/// How many decoded trees `recent` keeps, and the largest it keeps.
const RECENT: usize = 256;
const RECENT_MAX_BYTES: usize = 4096;

impl<'a> Trees<'a> {
    pub fn new(store: &'a Store) -> Self {
        Trees {
            store,
            mem: HashMap::new(),
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// One tree, verified and decoded.
    pub fn tree(&self, id: &ObjectId) -> Result<Tree> {
        Ok(self.sized(id)?.0)
    }

    fn sized(&self, id: &ObjectId) -> Result<(Tree, usize)> {
        let recent = || self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(hit) = recent().get(id) {
            return Ok(hit.clone());
        }
        let owned;
        let bytes = match self.mem.get(id) {
            Some(b) => b,
            None => {
                owned = self.store.read_tree_bytes(id)?;
                &owned
            }
        };
        let tree = Tree::decode(bytes).map_err(|detail| Error::BadTree { id: *id, detail })?;
        if bytes.len() <= RECENT_MAX_BYTES {
            let mut r = recent();
            if r.len() >= RECENT {
                r.clear();
            }
            r.insert(*id, (tree.clone(), bytes.len()));
        }
        Ok((tree, bytes.len()))
    }

    /// Loads tree `id` found at `path`, `depth` components below the root
    /// (its entries are one deeper), and charges it to `budget`.
    pub fn load(&self, id: &ObjectId, path: &[u8], depth: usize, budget: &mut Budget) -> Result<Tree> {
        let (tree, bytes) = self.sized(id)?;
        budget
            .charge(bytes, tree.entries.len(), depth + 1)
            .map_err(|why| Error::BadTree {
                id: *id,
                detail: format!("at {}: {why}", show_path(path)),
            })?;
        Ok(tree)
    }
}

/// A path for an error message: lossy, and cut short when a hostile tree
/// made it thousands of components long.
pub fn show_path(p: &[u8]) -> String {
    const SHOWN: usize = 120;
    if p.is_empty() {
        return "/".into();
    }
    let s = String::from_utf8_lossy(p);
    match s.char_indices().nth(SHOWN) {
        Some((i, _)) => format!("/{}… ({} bytes)", &s[..i], p.len()),
        None => format!("/{s}"),
    }
}

/// `prefix/name`, or `name` at the root.
pub fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    if prefix.is_empty() {
        name.to_vec()
    } else {
        [prefix, b"/", name].concat()
    }
}

/// Walks tree `root` found at `prefix` in path order, parents first,
/// calling `visit(path, entry)` for every entry below it; a directory's
/// contents are walked when `visit` returns true for it.
pub fn walk(
    trees: &Trees,
    root: &ObjectId,
    prefix: &[u8],
    budget: &mut Budget,
    mut visit: impl FnMut(&[u8], Entry) -> Result<bool>,
) -> Result<()> {
    // Each frame: a directory's path and its entries still to visit.
    let depth = crate::format::path::components(prefix).len();
    let first = trees.load(root, prefix, depth, budget)?;
    let mut stack = vec![(prefix.to_vec(), first.entries.into_iter())];
    while let Some((dir, rest)) = stack.last_mut() {
        let Some(e) = rest.next() else {
            stack.pop();
            continue;
        };
        let path = join(dir, &e.name);
        let sub = match &e.content {
            Content::Dir(id) => Some(*id),
            _ => None,
        };
        // The visitor sees every entry; a directory it wants is entered.
        if visit(&path, e)?
            && let Some(id) = sub
        {
            // The stack holds one frame per level below `prefix`.
            let t = trees.load(&id, &path, depth + stack.len(), budget)?;
            stack.push((path, t.entries.into_iter()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_paths_are_cut_short_in_messages() {
        assert_eq!(show_path(b""), "/");
        assert_eq!(show_path(b"a/b"), "/a/b");
        let long = b"d/".repeat(1000);
        let shown = show_path(&long);
        assert!(shown.len() < 200 && shown.contains("2000 bytes"), "{shown}");
    }
}
