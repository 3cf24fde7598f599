//! `moat show` and `moat ls`: read-only views of a snapshot's trees.

use crate::error::{Error, Result};
use crate::format::id::ObjectId;
use crate::format::path::components;
use crate::format::tree::{Content, Entry};
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

/// Lists everything below `path` (recursively), in path order.
pub fn list(store: &Store, root: &ObjectId, path: &[u8]) -> Result<Vec<Listed>> {
    let _lock = store.lock_shared()?;
    let prefix: Vec<u8> = components(path).join(&b'/');
    let mut out = Vec::new();
    match lookup(store, root, path)? {
        None => walk(store, root, &[], &mut out)?,
        Some(e) => {
            if let Content::Dir(id) = e.content {
                walk(store, &id, &prefix, &mut out)?;
            } else {
                out.push(Listed {
                    path: prefix,
                    entry: e,
                });
            }
        }
    }
    Ok(out)
}

fn walk(store: &Store, id: &ObjectId, prefix: &[u8], out: &mut Vec<Listed>) -> Result<()> {
    for e in store.read_tree(id)?.entries {
        let path = if prefix.is_empty() {
            e.name.clone()
        } else {
            [prefix, b"/", &e.name].concat()
        };
        let sub = match &e.content {
            Content::Dir(id) => Some(*id),
            _ => None,
        };
        out.push(Listed {
            path: path.clone(),
            entry: e,
        });
        if let Some(sub) = sub {
            walk(store, &sub, &path, out)?;
        }
    }
    Ok(())
}
