//! `moat diff`: compare two trees (snapshots, or a snapshot and the live
//! workspace) by walking both together and skipping every subtree whose id
//! is equal on both sides, so the cost tracks the number of changes.
//!
//! Like git, changes are reported per file: a directory that appears or
//! disappears is expanded into its files (an empty one is reported itself,
//! with a trailing `/`). Mtime-only changes are not changes. Deleted and
//! added files with identical non-empty content pair up as exact renames.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::format::id::ObjectId;
use crate::format::tree::{Content, Entry, Tree};
use crate::store::Store;

/// Reads trees from the store, or from memory for trees of a live
/// workspace that were never written.
pub struct Trees<'a> {
    pub store: &'a Store,
    pub mem: HashMap<ObjectId, Vec<u8>>,
}

impl<'a> Trees<'a> {
    pub fn new(store: &'a Store) -> Self {
        Trees {
            store,
            mem: HashMap::new(),
        }
    }

    pub fn tree(&self, id: &ObjectId) -> Result<Tree> {
        match self.mem.get(id) {
            Some(bytes) => Tree::decode(bytes).map_err(|detail| Error::BadTree { id: *id, detail }),
            None => self.store.read_tree(id),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Added,
    Deleted,
    Modified,
    TypeChanged,
    Renamed,
}

impl Status {
    pub fn letter(self) -> &'static str {
        match self {
            Status::Added => "A",
            Status::Deleted => "D",
            Status::Modified => "M",
            Status::TypeChanged => "T",
            Status::Renamed => "R",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub status: Status,
    /// The path on the new side (the old side for deletions).
    pub path: Vec<u8>,
    /// For renames, the old path.
    pub from: Option<Vec<u8>>,
    pub old: Option<Entry>,
    pub new: Option<Entry>,
}

impl Change {
    pub fn mode_changed(&self) -> bool {
        match (&self.old, &self.new) {
            (Some(o), Some(n)) => same_kind(o, n) && o.mode != n.mode,
            _ => false,
        }
    }
}

fn same_kind(a: &Entry, b: &Entry) -> bool {
    std::mem::discriminant(&a.content) == std::mem::discriminant(&b.content)
}

/// The content of two same-kind entries differs (mode included).
fn differs(a: &Entry, b: &Entry) -> bool {
    a.mode != b.mode
        || match (&a.content, &b.content) {
            (Content::File(x), Content::File(y)) => x != y,
            (Content::Symlink(x), Content::Symlink(y)) => x != y,
            _ => false,
        }
}

/// Compares trees `old` and `new`. `paths` (components already split)
/// restricts the walk to those paths and what is below them.
/// `None` stands for an empty tree.
pub fn diff(
    trees: &Trees,
    old: Option<&ObjectId>,
    new: Option<&ObjectId>,
    paths: &[Vec<u8>],
) -> Result<Vec<Change>> {
    let _lock = trees.store.lock_shared()?;
    let filters: Vec<Vec<&[u8]>> = paths.iter().map(|p| crate::format::path::components(p)).collect();
    let mut out = Vec::new();
    walk(trees, old, new, b"", &filters, &mut out)?;
    let mut out = pair_renames(out);
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Whether `name` under the current filters is visited, and the filters
/// for below it (empty = everything below).
fn narrow<'f>(filters: &[Vec<&'f [u8]>], name: &[u8]) -> Option<Vec<Vec<&'f [u8]>>> {
    if filters.is_empty() {
        return Some(Vec::new());
    }
    let mut below = Vec::new();
    for f in filters {
        match f.split_first() {
            Some((first, rest)) if *first == name => {
                if rest.is_empty() {
                    return Some(Vec::new());
                }
                below.push(rest.to_vec());
            }
            _ => {}
        }
    }
    (!below.is_empty()).then_some(below)
}

fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    if prefix.is_empty() {
        name.to_vec()
    } else {
        [prefix, b"/", name].concat()
    }
}

fn walk(
    trees: &Trees,
    old: Option<&ObjectId>,
    new: Option<&ObjectId>,
    prefix: &[u8],
    filters: &[Vec<&[u8]>],
    out: &mut Vec<Change>,
) -> Result<()> {
    if old == new {
        return Ok(());
    }
    let load = |id: Option<&ObjectId>| id.map(|i| trees.tree(i)).transpose();
    let (a, b) = (load(old)?.unwrap_or_default(), load(new)?.unwrap_or_default());
    let mut x = a.entries.into_iter().peekable();
    let mut y = b.entries.into_iter().peekable();
    loop {
        let (eo, en) = match (x.peek(), y.peek()) {
            (None, None) => break,
            (Some(o), Some(n)) if o.name == n.name => (x.next(), y.next()),
            (Some(o), Some(n)) if o.name < n.name => (x.next(), None),
            (Some(_), None) => (x.next(), None),
            _ => (None, y.next()),
        };
        let name = eo
            .as_ref()
            .or(en.as_ref())
            .map(|e| e.name.clone())
            .unwrap_or_default();
        let Some(sub) = narrow(filters, &name) else {
            continue;
        };
        entry_pair(trees, eo, en, &join(prefix, &name), &sub, out)?;
    }
    Ok(())
}

fn entry_pair(
    trees: &Trees,
    old: Option<Entry>,
    new: Option<Entry>,
    path: &[u8],
    filters: &[Vec<&[u8]>],
    out: &mut Vec<Change>,
) -> Result<()> {
    let dir_id = |e: &Option<Entry>| match e.as_ref().map(|e| &e.content) {
        Some(Content::Dir(id)) => Some(*id),
        _ => None,
    };
    let (od, nd) = (dir_id(&old), dir_id(&new));
    if od.is_some() || nd.is_some() {
        // A side that is not a directory is a single entry of its own.
        let old_leaf = old.filter(|_| od.is_none());
        let new_leaf = new.filter(|_| nd.is_none());
        if let Some(o) = old_leaf {
            out.push(Change {
                status: Status::Deleted,
                path: path.to_vec(),
                from: None,
                old: Some(o),
                new: None,
            });
        }
        let before = out.len();
        walk(trees, od.as_ref(), nd.as_ref(), path, filters, out)?;
        let empty_dir_change = out.len() == before && od != nd && filters.is_empty();
        if empty_dir_change && (od.is_none() || nd.is_none()) {
            let status = if nd.is_some() {
                Status::Added
            } else {
                Status::Deleted
            };
            out.push(Change {
                status,
                path: [path, b"/"].concat(),
                from: None,
                old: None,
                new: None,
            });
        }
        if let Some(n) = new_leaf {
            out.push(Change {
                status: Status::Added,
                path: path.to_vec(),
                from: None,
                old: None,
                new: Some(n),
            });
        }
        return Ok(());
    }
    let status = match (&old, &new) {
        (Some(o), Some(n)) if !same_kind(o, n) => Status::TypeChanged,
        (Some(o), Some(n)) if differs(o, n) => Status::Modified,
        (Some(_), Some(_)) => return Ok(()),
        (Some(_), None) => Status::Deleted,
        (None, Some(_)) => Status::Added,
        (None, None) => return Ok(()),
    };
    out.push(Change {
        status,
        path: path.to_vec(),
        from: None,
        old,
        new,
    });
    Ok(())
}

fn file_key(e: &Option<Entry>) -> Option<(u32, Vec<ObjectId>)> {
    match e.as_ref().map(|e| (&e.content, e.mode)) {
        Some((Content::File(c), mode)) if !c.is_empty() => Some((mode & 0o111, c.clone())),
        _ => None,
    }
}

/// Pairs each added file with a deleted file of identical content.
fn pair_renames(changes: Vec<Change>) -> Vec<Change> {
    let mut deleted: HashMap<(u32, Vec<ObjectId>), Vec<usize>> = HashMap::new();
    for (i, c) in changes.iter().enumerate() {
        if let Some(k) = file_key(&c.old).filter(|_| c.status == Status::Deleted) {
            deleted.entry(k).or_default().push(i);
        }
    }
    let mut taken = vec![false; changes.len()];
    let mut renames = Vec::new();
    for (i, c) in changes.iter().enumerate() {
        if c.status != Status::Added {
            continue;
        }
        let Some(k) = file_key(&c.new) else { continue };
        if let Some(j) = deleted
            .get_mut(&k)
            .and_then(|v| (!v.is_empty()).then(|| v.remove(0)))
        {
            taken[i] = true;
            taken[j] = true;
            let d = &changes[j];
            renames.push(Change {
                status: Status::Renamed,
                path: c.path.clone(),
                from: Some(d.path.clone()),
                old: d.old.clone(),
                new: c.new.clone(),
            });
        }
    }
    changes
        .into_iter()
        .zip(taken)
        .filter_map(|(c, t)| (!t).then_some(c))
        .chain(renames)
        .collect()
}
