//! `moat show` and `moat ls`: read-only views of a snapshot's trees.
//!
//! Invariant: listings stream (see `list`) and walk through `ops::trees`,
//! so their memory and depth are bounded whatever the store holds.

use crate::error::{Error, Result};
use crate::format::id::ObjectId;
use crate::format::path::components;
use crate::format::tree::{Budget, Content, Entry};
use crate::ops::trees::{Trees, walk};
use crate::store::Store;

/// The entry at `path` below tree `root`; `None` for the root itself.
pub fn lookup(store: &Store, root: &ObjectId, path: &[u8]) -> Result<Option<Entry>> {
    let mut tree_id = *root;
    let mut found = None;
    let comps = components(path);
    for (i, c) in comps.iter().enumerate() {
        let tree = store.read_tree(&tree_id)?;
        let missing = || Error::NoSuchPath {
            snapshot: root.short(),
            path: String::from_utf8_lossy(path).into_owned(),
        };
        let e = tree.find(c).ok_or_else(missing)?.clone();
        match &e.content {
            Content::Dir(id) => tree_id = *id,
            _ if i + 1 < comps.len() => return Err(missing()),
            _ => {}
        }
        found = Some(e);
    }
    Ok(found)
}

/// One line of `moat ls`.
#[derive(Debug, Clone)]
pub struct Listed {
    pub path: Vec<u8>,
    pub entry: Entry,
}

/// Lists everything below `path` (recursively), in path order, handing
/// each entry to `each` as the walk reaches it (nothing is collected, so a
/// listing costs the memory of one path through the trees).
pub fn list(
    store: &Store,
    root: &ObjectId,
    path: &[u8],
    mut each: impl FnMut(Listed) -> Result<()>,
) -> Result<()> {
    let _lock = store.lock_shared()?;
    let prefix: Vec<u8> = components(path).join(&b'/');
    let trees = Trees::new(store);
    let mut budget = Budget::for_snapshots(1);
    let mut visit = |p: &[u8], entry: Entry| {
        each(Listed {
            path: p.to_vec(),
            entry,
        })?;
        Ok(true)
    };
    match lookup(store, root, path)? {
        None => walk(&trees, root, &[], &mut budget, visit),
        Some(e) => match e.content {
            Content::Dir(id) => walk(&trees, &id, &prefix, &mut budget, visit),
            _ => visit(&prefix, e).map(|_| ()),
        },
    }
}
