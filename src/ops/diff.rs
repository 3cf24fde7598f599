//! `moat diff`: compare two trees (snapshots, or a snapshot and the live
//! workspace) by walking both together and skipping every subtree whose id
//! is equal on both sides, so the cost tracks the number of changes.
//!
//! Like git, changes are reported per file: a directory that appears or
//! disappears is expanded into its files (an empty one is reported itself,
//! with a trailing `/`). Mtime-only changes are not changes, but `walk`
//! reports them apart for rollback, which must set them. Deleted and added
//! files with identical non-empty content pair up as exact renames.
//!
//! Invariant: the walk is iterative and budgeted (`ops::trees`), so no
//! tree, however deep or self-repeating, overflows the stack or makes it
//! allocate beyond the limits of two snapshots.

use std::collections::HashMap;

use crate::error::Result;
use crate::format::id::ObjectId;
use crate::format::tree::{Budget, Content, Entry};
pub use crate::ops::trees::Trees;
use crate::ops::trees::join;

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

/// What a walk over two trees found.
#[derive(Debug, Default)]
pub struct Walked {
    /// The changes, by path.
    pub changes: Vec<Change>,
    /// Files and symlinks equal on both sides but for their mtime, with
    /// the new side's entry.
    pub touched: Vec<(Vec<u8>, Entry)>,
    /// Directories of the new side whose subtree or own mode or mtime
    /// differ from the old side's, parents first, with their new entry.
    pub dirs: Vec<(Vec<u8>, Entry)>,
    /// Directories of the old side that are not directories on the new
    /// side, parents first.
    pub gone_dirs: Vec<Vec<u8>>,
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
    Ok(walk(trees, old, new, paths)?.changes)
}

/// `diff`, and what differs besides the changes (see `Walked`).
pub fn walk(
    trees: &Trees,
    old: Option<&ObjectId>,
    new: Option<&ObjectId>,
    paths: &[Vec<u8>],
) -> Result<Walked> {
    let _lock = trees.store.lock_shared()?;
    let filters: Vec<Vec<&[u8]>> = paths.iter().map(|p| crate::format::path::components(p)).collect();
    let mut w = Walked::default();
    // Each side is one snapshot's walk, with a budget of its own.
    let mut budget = [Budget::for_snapshots(1), Budget::for_snapshots(1)];
    if old != new {
        let root = Frame::open(trees, old, new, (Vec::new(), 0), filters, None, &mut budget)?;
        walk_frames(trees, root, &mut budget, &mut w)?;
    }
    w.changes = pair_renames(w.changes);
    w.changes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(w)
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

/// What to report once a directory pair's contents have been compared.
struct Close {
    path: Vec<u8>,
    /// How many changes there were before its contents were compared.
    before: usize,
    /// One side had no directory here.
    one_sided: bool,
    added: bool,
    filtered: bool,
    /// The new side's non-directory at this path, reported after.
    new_leaf: Option<Entry>,
}

/// One directory pair being compared: the entries of each side still to
/// visit.
struct Frame<'f> {
    prefix: Vec<u8>,
    /// Components in `prefix`.
    depth: usize,
    filters: Vec<Vec<&'f [u8]>>,
    old: std::iter::Peekable<std::vec::IntoIter<Entry>>,
    new: std::iter::Peekable<std::vec::IntoIter<Entry>>,
    close: Option<Close>,
}

impl<'f> Frame<'f> {
    fn open(
        trees: &Trees,
        old: Option<&ObjectId>,
        new: Option<&ObjectId>,
        (prefix, depth): (Vec<u8>, usize),
        filters: Vec<Vec<&'f [u8]>>,
        close: Option<Close>,
        budget: &mut [Budget; 2],
    ) -> Result<Self> {
        let load = |id: Option<&ObjectId>, b: &mut Budget| -> Result<Vec<Entry>> {
            match id {
                Some(i) => Ok(trees.load(i, &prefix, depth, b)?.entries),
                None => Ok(Vec::new()),
            }
        };
        let [bo, bn] = budget;
        let (a, b) = (load(old, bo)?, load(new, bn)?);
        Ok(Frame {
            old: a.into_iter().peekable(),
            new: b.into_iter().peekable(),
            prefix,
            depth,
            filters,
            close,
        })
    }

    /// The next entry name with its entry on each side.
    fn next_pair(&mut self) -> Option<(Option<Entry>, Option<Entry>)> {
        let (x, y) = (&mut self.old, &mut self.new);
        match (x.peek(), y.peek()) {
            (None, None) => None,
            (Some(o), Some(n)) if o.name == n.name => Some((x.next(), y.next())),
            (Some(o), Some(n)) if o.name < n.name => Some((x.next(), None)),
            (Some(_), None) => Some((x.next(), None)),
            _ => Some((None, y.next())),
        }
    }
}

fn dir_id(e: &Option<Entry>) -> Option<ObjectId> {
    match e.as_ref().map(|e| &e.content) {
        Some(Content::Dir(id)) => Some(*id),
        _ => None,
    }
}

fn change(status: Status, path: Vec<u8>, old: Option<Entry>, new: Option<Entry>) -> Change {
    Change {
        status,
        path,
        from: None,
        old,
        new,
    }
}

fn walk_frames<'f>(trees: &Trees, root: Frame<'f>, budget: &mut [Budget; 2], w: &mut Walked) -> Result<()> {
    let mut stack = vec![root];
    while let Some(f) = stack.last_mut() {
        let Some((eo, en)) = f.next_pair() else {
            if let Some(c) = stack.pop().and_then(|f| f.close) {
                close(c, &mut w.changes);
            }
            continue;
        };
        let name = eo
            .as_ref()
            .or(en.as_ref())
            .map(|e| e.name.clone())
            .unwrap_or_default();
        let Some(sub) = narrow(&f.filters, &name) else {
            continue;
        };
        let path = join(&f.prefix, &name);
        let (od, nd) = (dir_id(&eo), dir_id(&en));
        if od.is_none() && nd.is_none() {
            leaf_pair(eo, en, path, w);
            continue;
        }
        // A side that is not a directory is a single entry of its own.
        let new_leaf = en.clone().filter(|_| nd.is_none());
        if let Some(o) = eo.clone().filter(|_| od.is_none()) {
            w.changes
                .push(change(Status::Deleted, path.clone(), Some(o), None));
        }
        if od.is_some() && nd.is_none() {
            w.gone_dirs.push(path.clone());
        }
        if let (Some(n), true) = (&en, nd.is_some()) {
            let own_meta = eo
                .as_ref()
                .is_some_and(|o| o.mode != n.mode || o.mtime_ns != n.mtime_ns);
            if od != nd || own_meta {
                w.dirs.push((path.clone(), n.clone()));
            }
        }
        if od == nd {
            continue;
        }
        let c = Close {
            path: path.clone(),
            before: w.changes.len(),
            one_sided: od.is_none() || nd.is_none(),
            added: nd.is_some(),
            filtered: !sub.is_empty(),
            new_leaf,
        };
        let depth = f.depth + 1;
        let frame = Frame::open(
            trees,
            od.as_ref(),
            nd.as_ref(),
            (path, depth),
            sub,
            Some(c),
            budget,
        )?;
        stack.push(frame);
    }
    Ok(())
}

fn close(c: Close, out: &mut Vec<Change>) {
    if out.len() == c.before && c.one_sided && !c.filtered {
        let status = if c.added { Status::Added } else { Status::Deleted };
        out.push(change(status, [&c.path[..], b"/"].concat(), None, None));
    }
    if let Some(n) = c.new_leaf {
        out.push(change(Status::Added, c.path, None, Some(n)));
    }
}

/// Two non-directory entries (either may be missing) at `path`.
fn leaf_pair(old: Option<Entry>, new: Option<Entry>, path: Vec<u8>, w: &mut Walked) {
    let status = match (&old, &new) {
        (Some(o), Some(n)) if !same_kind(o, n) => Status::TypeChanged,
        (Some(o), Some(n)) if differs(o, n) => Status::Modified,
        (Some(o), Some(n)) => {
            if o.mtime_ns != n.mtime_ns {
                w.touched.push((path, n.clone()));
            }
            return;
        }
        (Some(_), None) => Status::Deleted,
        (None, Some(_)) => Status::Added,
        (None, None) => return,
    };
    w.changes.push(change(status, path, old, new));
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
