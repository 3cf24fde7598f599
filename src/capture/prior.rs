//! What the stat cache says about a capture: the cached record of every
//! walked entry (`lookup`), whether a watcher's dirty set may be used with
//! this cache (`plan_watched`), which directories a watched walk leaves
//! out (`Pruner`), and the records those directories carry into the new
//! cache (`carry`).
//!
//! Invariants: a file's cached chunks are used only when its stat matches
//! outside the racy window and the store holds every chunk; a directory's
//! cached tree only when its mode and mtime match and (in `assemble`) every
//! entry below it matched too. A watched capture prunes a directory only if
//! the watcher names nothing at or below it and nothing at any of its
//! ancestors (ancestors of dirty paths are walked, not pruned), and never
//! one holding an entry with several hard links.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use rustc_hash::FxHashSet;

use super::read::FileResult;
use crate::error::Result;
use crate::format::id::ObjectId;
use crate::format::statcache::{FileStat, Meta, Payload, Record, Totals, unchanged};
use crate::store::writer::ObjectWriter;
use crate::worktree::statcache::Mapped;
use crate::worktree::walk::{Node, NodeKind, WalkOptions};

/// What the cache says about one walked entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Prior {
    /// Not in the cache (or cached as another kind).
    #[default]
    Miss,
    /// A file that changed; its cached size (for the growth guard).
    Changed(u64),
    /// Unchanged file (with its chunks stored) or symlink.
    Same,
    /// A directory whose mode and mtime match: its cached tree, entry
    /// count and totals (boxed: most nodes are files).
    Dir(Box<CachedDir>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedDir {
    pub tree: ObjectId,
    pub entries: u32,
    pub totals: Totals,
}

/// Whether a walked file has more than one hard link that its record did
/// not know about: its other names may have changed without an event.
pub fn new_link(nodes: &[Node], table: &Mapped) -> Result<bool> {
    for n in nodes.iter().filter(|n| n.multi_link) {
        if !table.get(&n.rel)?.is_some_and(|r| r.multi_link) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The cached record of every node, and the stored chunks of every file
/// the cache vouches for. An error means the cache is damaged.
pub fn lookup(
    nodes: &[Node],
    table: Option<&Mapped>,
    writer: &ObjectWriter,
) -> Result<(Vec<Option<FileResult>>, Vec<Prior>)> {
    let Some(t) = table else {
        return Ok((
            nodes.iter().map(|_| None).collect(),
            vec![Prior::Miss; nodes.len()],
        ));
    };
    // In batches, releasing the cache's pages after each (what stays
    // resident of it is what one batch touched), filling both lists
    // directly (a list of pairs to unzip is 100 MB at 1M files).
    let mut results = Vec::with_capacity(nodes.len());
    let mut prior = Vec::with_capacity(nodes.len());
    for batch in nodes.chunks(LOOKUP_BATCH) {
        for (r, p) in lookup_batch(batch, t, writer)? {
            results.push(r);
            prior.push(p);
        }
        t.release();
    }
    Ok((results, prior))
}

/// Nodes looked up between two releases of the cache's pages.
const LOOKUP_BATCH: usize = 16 << 10;

fn lookup_batch(
    nodes: &[Node],
    t: &Mapped,
    writer: &ObjectWriter,
) -> Result<Vec<(Option<FileResult>, Prior)>> {
    nodes
        .par_iter()
        .map(|n| {
            let Some((rec, taken)) = t.get_taken(&n.rel)? else {
                return Ok((None, Prior::Miss));
            };
            Ok(match (&n.kind, rec.payload) {
                (NodeKind::File, Payload::File(chunks)) => {
                    if unchanged(&rec.stat, &n.stat, taken) && chunks.iter().all(|c| writer.in_store(c)) {
                        (Some(FileResult::Stored(chunks, n.stat)), Prior::Same)
                    } else {
                        (None, Prior::Changed(rec.stat.size))
                    }
                }
                (NodeKind::Symlink(_), Payload::Symlink) if unchanged(&rec.stat, &n.stat, taken) => {
                    (None, Prior::Same)
                }
                (
                    NodeKind::Dir,
                    Payload::Dir {
                        tree,
                        entries,
                        totals,
                    },
                ) if rec.stat.mode == n.stat.mode && rec.stat.mtime_ns == n.stat.mtime_ns => (
                    None,
                    Prior::Dir(Box::new(CachedDir {
                        tree,
                        entries,
                        totals,
                    })),
                ),
                _ => (None, Prior::Miss),
            })
        })
        .collect()
}

/// Fingerprint of the options that decide which entries a walk yields.
pub fn walk_key(opts: &WalkOptions) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"moat walk v1\0");
    h.update(&[opts.no_ignore as u8]);
    for e in &opts.excludes {
        h.update(&(e.len() as u64).to_le_bytes());
        h.update(e.as_bytes());
    }
    let mut skips: Vec<&[u8]> = opts.skip_dirs.iter().map(|p| p.as_os_str().as_bytes()).collect();
    skips.sort();
    for s in skips {
        h.update(&(s.len() as u64).to_le_bytes());
        h.update(s);
    }
    // Paths walked despite the ignore rules make other trees.
    for p in &opts.include {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    *h.finalize().as_bytes()
}

/// The stat of `ws/rel` (all zero when it cannot be read).
pub fn stat_at(ws: &Path, rel: &[u8]) -> FileStat {
    std::fs::symlink_metadata(ws.join(std::ffi::OsStr::from_bytes(rel)))
        .map(|m| FileStat::of(&m))
        .unwrap_or_default()
}

/// The `.git/info/exclude` files of the `.git` entries a walk passed over.
pub fn excludes_of(ws: &Path, git_dirs: &[Vec<u8>]) -> Vec<(Vec<u8>, FileStat)> {
    git_dirs
        .iter()
        .map(|g| {
            let mut p = g.clone();
            p.extend_from_slice(b"/info/exclude");
            let st = stat_at(ws, &p);
            (p, st)
        })
        .collect()
}

/// Where a watched walk must go: the ancestors of every dirty path, and
/// the dirty paths themselves with everything below them.
pub struct Plan {
    descend: FxHashSet<Vec<u8>>,
    dirty: FxHashSet<Vec<u8>>,
}

/// Whether a watcher's dirty set can be used with this cache; the reason
/// to walk everything when it cannot.
pub fn plan_watched(
    ws: &Path,
    t: &Mapped,
    walk_key: &[u8; 32],
    dirty: Vec<Vec<u8>>,
) -> std::result::Result<Plan, String> {
    if t.meta.walk_key != *walk_key {
        return Err("the walk options differ from the cached scan's".into());
    }
    if !matches!(
        t.get(b""),
        Ok(Some(Record {
            payload: Payload::Dir { .. },
            ..
        }))
    ) {
        return Err("the stat cache holds no directory trees".into());
    }
    for (p, st) in &t.meta.excludes {
        if stat_at(ws, p) != *st {
            return Err(format!("ignore rules changed ({})", String::from_utf8_lossy(p)));
        }
    }
    let mut dirty = dirty;
    for p in dirty.iter_mut() {
        if p.split(|&b| b == b'/').any(|c| c == b".git") {
            return Err(format!("ignore rules changed ({})", String::from_utf8_lossy(p)));
        }
        // An ignore file's rules apply to its directory and everything
        // below: that directory is walked again whole, with the new rules.
        let name = p.rsplit(|&b| b == b'/').next().unwrap_or_default();
        if name == b".gitignore" || name == b".ignore" {
            match p.iter().rposition(|&b| b == b'/') {
                Some(cut) => p.truncate(cut),
                None => return Err(format!("ignore rules changed ({})", String::from_utf8_lossy(p))),
            }
        }
    }
    let mut descend = FxHashSet::default();
    for p in &dirty {
        let mut i = 0;
        descend.insert(Vec::new());
        while let Some(k) = p[i..].iter().position(|&b| b == b'/') {
            descend.insert(p[..i + k].to_vec());
            i += k + 1;
        }
    }
    Ok(Plan {
        descend,
        dirty: dirty.into_iter().collect(),
    })
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.dirty.is_empty()
    }

    /// `rel` or one of its ancestors is dirty.
    fn under_dirty(&self, rel: &[u8]) -> bool {
        self.dirty.contains(rel)
            || rel
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'/')
                .any(|(i, _)| self.dirty.contains(&rel[..i]))
    }
}

/// The cache as a full walk consults it to collapse unchanged directories
/// (`walk::Collapse`): a directory's record stands for it when its mode and
/// mtime match, it holds no hard-linked file and its tree is in the store;
/// a file or symlink is vouched for exactly as `lookup` would call it
/// `Same`. Every `RELEASE_EVERY` lookups the cache's mapped pages are
/// released, so what stays resident of it is bounded.
pub struct CacheCollapse<'a> {
    table: &'a Mapped,
    writer: &'a ObjectWriter<'a>,
    looked: std::sync::atomic::AtomicUsize,
    pub damaged: Mutex<Option<crate::Error>>,
}

const RELEASE_EVERY: usize = 1 << 10;

impl<'a> CacheCollapse<'a> {
    /// Whether a full walk of `ws` by options whose key is `walk_key` may
    /// collapse against `table` (the same walk options, and no ignore file
    /// outside the walk changed); the collapser when it may.
    pub fn new(
        ws: &Path,
        table: &'a Mapped,
        walk_key: &[u8; 32],
        writer: &'a ObjectWriter<'a>,
    ) -> Option<Self> {
        let fits = table.meta.walk_key == *walk_key
            && table.meta.excludes.iter().all(|(p, st)| stat_at(ws, p) == *st);
        fits.then(|| CacheCollapse {
            table,
            writer,
            looked: Default::default(),
            damaged: Mutex::default(),
        })
    }

    fn tick(&self) {
        if self.looked.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % RELEASE_EVERY == RELEASE_EVERY - 1
        {
            self.table.release();
        }
    }

    fn damaged(&self, e: crate::Error) {
        self.damaged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(e);
    }
}

impl crate::worktree::walk::Collapse for CacheCollapse<'_> {
    fn dir(&self, rel: &[u8], stat: &FileStat) -> Option<u32> {
        self.tick();
        // The root's record has no stat of its own (no tree holds the
        // root's mode or mtime).
        match self.table.get(rel) {
            Ok(Some(Record {
                stat: rs,
                payload:
                    Payload::Dir {
                        tree,
                        entries,
                        totals,
                    },
                ..
            })) if (rel.is_empty() || (rs.mode == stat.mode && rs.mtime_ns == stat.mtime_ns))
                && totals.multi_links == 0
                && self.writer.in_store(&tree) =>
            {
                Some(entries)
            }
            Ok(_) => None,
            Err(e) => {
                self.damaged(e);
                None
            }
        }
    }

    fn same(&self, n: &Node) -> bool {
        self.tick();
        match self.table.get_taken(&n.rel) {
            Ok(Some((rec, taken))) => match (&n.kind, rec.payload) {
                (NodeKind::File, Payload::File(chunks)) => {
                    !n.multi_link
                        && unchanged(&rec.stat, &n.stat, taken)
                        && chunks.iter().all(|c| self.writer.in_store(c))
                }
                (NodeKind::Symlink(_), Payload::Symlink) => {
                    !n.multi_link && unchanged(&rec.stat, &n.stat, taken)
                }
                _ => false,
            },
            Ok(None) => false,
            Err(e) => {
                self.damaged(e);
                false
            }
        }
    }
}

/// The directories a watched walk leaves out, with their cached records.
pub struct Pruner {
    plan: Plan,
    table: Arc<Mapped>,
    pub pruned: Mutex<Vec<(Vec<u8>, Record)>>,
    pub damaged: Mutex<Option<crate::Error>>,
}

impl Pruner {
    pub fn new(plan: Plan, table: Arc<Mapped>) -> Self {
        Pruner {
            plan,
            table,
            pruned: Mutex::default(),
            damaged: Mutex::default(),
        }
    }

    /// Leave `rel` (a directory) out of the walk?
    pub fn prune(&self, rel: &[u8]) -> bool {
        if self.plan.descend.contains(rel) || self.plan.under_dirty(rel) {
            return false;
        }
        match self.table.get(rel) {
            Ok(Some(
                rec @ Record {
                    payload: Payload::Dir { totals, .. },
                    ..
                },
            )) if totals.multi_links == 0 => {
                self.pruned
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((rel.to_vec(), rec));
                true
            }
            Ok(_) => false,
            Err(e) => {
                self.damaged
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(e);
                false
            }
        }
    }
}

/// The cached records the new cache carries for the pruned directories:
/// as a delta (`as_delta`: each directory's own record and what the old
/// delta holds below it) or whole (every record below them). A damaged
/// record is left out with a warning (a missing record only costs a
/// re-read).
pub fn carry(
    t: &Mapped,
    pruned: &[(Vec<u8>, Record)],
    as_delta: bool,
    warnings: &mut Vec<String>,
) -> Vec<Vec<u8>> {
    let dirs: Vec<Vec<u8>> = pruned.iter().map(|(rel, _)| rel.clone()).collect();
    let (out, bad) = match as_delta {
        true => t.carry_delta(&dirs),
        false => t.carry_full(&dirs),
    };
    if bad > 0 {
        warnings.push(format!(
            "{bad} damaged stat cache records left out; those files will be read again"
        ));
    }
    out
}

/// Whether a watched capture writes its records as a delta on top of the
/// cache (`delta_records` of them) rather than the whole cache again: a
/// delta grows until it holds 1/64 of the cache (at least 4,096 records),
/// then the cache is written whole.
pub fn fits_delta(t: &Mapped, delta_records: usize) -> bool {
    let (base, _) = t.lens();
    delta_records <= (base / 64).max(4096)
}

/// Exclude files as a cache header holds them: sorted, one per path.
pub fn normalized(mut excludes: Vec<(Vec<u8>, FileStat)>) -> Vec<(Vec<u8>, FileStat)> {
    excludes.sort_by(|a, b| a.0.cmp(&b.0));
    excludes.dedup_by(|a, b| a.0 == b.0);
    excludes
}

/// The new cache's header fields.
pub fn meta(ws: &Path, taken_ns: i64, walk_key: [u8; 32], excludes: Vec<(Vec<u8>, FileStat)>) -> Meta {
    Meta {
        workspace: ws.as_os_str().as_bytes().to_vec(),
        taken_ns,
        walk_key,
        nonce: crate::util::unique_id16(),
        excludes: normalized(excludes),
    }
}
