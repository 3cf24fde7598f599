//! Building a workspace's trees bottom-up from the walk and the file
//! results, and the stat cache records that describe them.
//!
//! The cache-tree: a directory whose cached record matches (mode, mtime)
//! and all of whose entries matched their cached records, with as many
//! entries as the cached tree has, keeps its cached tree id: it is neither
//! re-encoded nor re-hashed. Directories a watched walk pruned enter their
//! parent with their cached tree. Everything else is encoded and hashed;
//! an unchanged tree hashes to its old id and is not written twice.

use std::path::PathBuf;

use rustc_hash::FxHashMap;

use super::prior::Prior;
use super::read::FileResult;
use crate::error::{Error, Result};
use crate::format::id::ObjectId;
use crate::format::pack::ObjectKind;
use crate::format::snapshot::Stats;
use crate::format::statcache::{self, FileStat, Payload, Record, Totals};
use crate::format::tree::{self, Content, Entry, Tree};
use crate::store::writer::ObjectWriter;
use crate::worktree::walk::{Node, NodeKind};

/// The trees of a capture.
pub struct Built {
    pub root: ObjectId,
    /// Encoded stat cache records of every walked entry and the root.
    pub records: Vec<Vec<u8>>,
    pub stats: Stats,
    pub warnings: Vec<String>,
    /// Files that could not be read (the snapshot's `skipped`).
    pub skipped: Vec<Vec<u8>>,
    /// The root's cached tree was kept: nothing the cache describes changed.
    pub root_reused: bool,
}

/// What the stat cache contributes to `assemble`.
pub struct Cached<'a> {
    /// What the cache said of each node (`prior::lookup`).
    pub prior: &'a [Prior],
    /// The directories a watched walk left out, with their cached records.
    pub pruned: &'a [(Vec<u8>, Record)],
    /// The cached root.
    pub root_prior: &'a Prior,
    /// The workspace's record key.
    pub key: &'a [u8; 32],
    /// Build every record even when the root keeps its cached tree (the
    /// cache on disk was built another way).
    pub need_records: bool,
}

/// What pass 1 learns of one directory.
#[derive(Clone, Copy)]
struct Dir {
    count: u32,
    clean: bool,
    totals: Totals,
    /// The cached tree, when it is kept.
    kept: Option<ObjectId>,
}

impl Default for Dir {
    fn default() -> Self {
        Dir {
            count: 0,
            clean: true,
            totals: Totals::default(),
            kept: None,
        }
    }
}

fn bump(d: &mut Dir, clean: bool, add: &Totals) {
    d.count = d.count.saturating_add(1);
    d.clean &= clean;
    d.totals.add(add);
}

fn depth(rel: &[u8]) -> usize {
    rel.iter().filter(|&&b| b == b'/').count()
}

/// Builds every tree bottom-up.
///
/// Pass 1 decides, from counts and the cache alone, which directories keep
/// their cached tree; when the root does and the cache on disk was built
/// the same way (`!need_records`), nothing is encoded and no record is
/// built. Otherwise pass 2 encodes the other directories and builds every
/// record.
pub fn assemble(
    nodes: &[Node],
    results: Vec<Option<FileResult>>,
    c: Cached,
    writer: &ObjectWriter,
) -> Result<Built> {
    let Cached {
        prior,
        pruned,
        root_prior,
        key,
        need_records,
    } = c;
    let mut stats = Stats::default();
    let mut warnings = Vec::new();
    let mut skipped = Vec::new();
    let mut info: FxHashMap<&[u8], Dir> = Default::default();
    info.insert(b"", Dir::default());
    let mut dirs: Vec<usize> = Vec::new();
    for (i, (n, res)) in nodes.iter().zip(&results).enumerate() {
        let (parent, _) = split_parent(&n.rel);
        let mut add = Totals::default();
        match (&n.kind, res) {
            (NodeKind::Dir, _) => {
                dirs.push(i);
                info.entry(&n.rel).or_default();
                continue;
            }
            (NodeKind::Symlink(_), _) => {
                add.symlinks = 1;
                add.multi_links = n.multi_link as u64;
            }
            (NodeKind::File, Some(FileResult::Stored(_, st))) => {
                add.files = 1;
                add.bytes = st.size;
                add.multi_links = n.multi_link as u64;
            }
            (NodeKind::File, Some(FileResult::Skipped(w))) => {
                stats.skipped += 1;
                warnings.push(w.clone());
                skipped.push(n.rel.clone());
                info.entry(parent).or_default().clean = false;
                continue;
            }
            (NodeKind::File, None) => {
                info.entry(parent).or_default().clean = false;
                continue;
            }
        }
        bump(
            info.entry(parent).or_default(),
            prior.get(i) == Some(&Prior::Same),
            &add,
        );
    }
    for (rel, rec) in pruned {
        if let Payload::Dir { totals, .. } = &rec.payload {
            let mut add = *totals;
            add.dirs = add.dirs.saturating_add(1);
            bump(info.entry(split_parent(rel).0).or_default(), true, &add);
        }
    }
    // Deepest first, so every subtree is decided before its parent.
    dirs.sort_by_key(|&i| std::cmp::Reverse(depth(&nodes[i].rel)));
    for &i in &dirs {
        let rel = &nodes[i].rel[..];
        let mut d = info.get(rel).copied().unwrap_or_default();
        d.kept = kept(&d, &prior[i], writer);
        info.insert(rel, d);
        let mut add = d.totals;
        add.dirs = add.dirs.saturating_add(1);
        let clean = d.kept.is_some() && matches!(prior[i], Prior::Dir(_));
        bump(info.entry(split_parent(rel).0).or_default(), clean, &add);
    }
    let root = info.get(&b""[..]).copied().unwrap_or_default();
    stats.files = root.totals.files;
    stats.dirs = root.totals.dirs;
    stats.symlinks = root.totals.symlinks;
    stats.bytes = root.totals.bytes;
    // Every reader refuses a walk over more entries than this.
    let entries = [stats.files, stats.dirs, stats.symlinks]
        .iter()
        .fold(0u64, |a, b| a.saturating_add(*b));
    if entries > tree::MAX_SNAPSHOT_ENTRIES {
        return Err(Error::Limit {
            path: PathBuf::from("/"),
            detail: format!(
                "{entries} entries are more than the {} a snapshot may hold; exclude some (moat.yaml, --exclude)",
                tree::MAX_SNAPSHOT_ENTRIES
            ),
        });
    }
    let root_kept = kept(&root, root_prior, writer);
    if let Some(tree) = root_kept
        && !need_records
    {
        return Ok(Built {
            root: tree,
            records: Vec::new(),
            stats,
            warnings,
            skipped,
            root_reused: true,
        });
    }
    // Pass 2: entries for the directories not kept, records for all.
    let mut records = Vec::with_capacity(nodes.len() + 1);
    let mut children: FxHashMap<&[u8], Vec<Entry>> = Default::default();
    let open = |info: &FxHashMap<&[u8], Dir>, p: &[u8]| info.get(p).is_none_or(|d| d.kept.is_none());
    for (n, res) in nodes.iter().zip(results) {
        let (parent, name) = split_parent(&n.rel);
        let (rec, content, size, stat) = match (&n.kind, res) {
            (NodeKind::Symlink(t), _) => (
                Record {
                    stat: n.stat,
                    multi_link: n.multi_link,
                    payload: Payload::Symlink,
                },
                Content::Symlink(t.clone()),
                t.len() as u64,
                n.stat,
            ),
            (NodeKind::File, Some(FileResult::Stored(chunks, st))) => {
                let rec = Record {
                    stat: st,
                    multi_link: n.multi_link,
                    payload: Payload::File(chunks),
                };
                records.push(statcache::encode_record(key, &n.rel, &rec));
                if open(&info, parent)
                    && let Payload::File(chunks) = rec.payload
                {
                    children.entry(parent).or_default().push(Entry {
                        name: name.to_vec(),
                        mode: st.mode & 0o7777,
                        mtime_ns: st.mtime_ns,
                        size: st.size,
                        content: Content::File(chunks),
                    });
                }
                continue;
            }
            _ => continue,
        };
        records.push(statcache::encode_record(key, &n.rel, &rec));
        if open(&info, parent) {
            children.entry(parent).or_default().push(Entry {
                name: name.to_vec(),
                mode: stat.mode & 0o7777,
                mtime_ns: stat.mtime_ns,
                size,
                content,
            });
        }
    }
    for (rel, rec) in pruned {
        let (parent, name) = split_parent(rel);
        if let Payload::Dir { tree, .. } = &rec.payload
            && open(&info, parent)
        {
            children
                .entry(parent)
                .or_default()
                .push(dir_entry(name, &rec.stat, *tree));
        }
    }
    for &i in &dirs {
        let node = &nodes[i];
        let rel = &node.rel[..];
        let d = info.get(rel).copied().unwrap_or_default();
        let id = match d.kept {
            Some(tree) => tree,
            None => write_tree(children.remove(rel).unwrap_or_default(), writer, rel)?,
        };
        records.push(statcache::encode_record(
            key,
            rel,
            &Record {
                stat: node.stat,
                multi_link: false,
                payload: Payload::Dir {
                    tree: id,
                    entries: d.count,
                    totals: d.totals,
                },
            },
        ));
        let (parent, name) = split_parent(rel);
        if open(&info, parent) {
            children
                .entry(parent)
                .or_default()
                .push(dir_entry(name, &node.stat, id));
        }
    }
    let id = match root_kept {
        Some(tree) => tree,
        None => write_tree(children.remove(&b""[..]).unwrap_or_default(), writer, b"")?,
    };
    records.push(root_record(key, id, root.count, root.totals));
    Ok(Built {
        root: id,
        records,
        stats,
        warnings,
        skipped,
        root_reused: root_kept.is_some(),
    })
}

/// The record of the workspace root (path "", no stat of its own).
pub fn root_record(key: &[u8; 32], tree: ObjectId, entries: u32, totals: Totals) -> Vec<u8> {
    let rec = Record {
        stat: FileStat::default(),
        multi_link: false,
        payload: Payload::Dir {
            tree,
            entries,
            totals,
        },
    };
    statcache::encode_record(key, b"", &rec)
}

fn dir_entry(name: &[u8], stat: &FileStat, tree: ObjectId) -> Entry {
    Entry {
        name: name.to_vec(),
        mode: stat.mode & 0o7777,
        mtime_ns: stat.mtime_ns,
        size: 0,
        content: Content::Dir(tree),
    }
}

/// The cached tree of a directory whose every entry matched the cache,
/// with as many entries as that tree, if the store still holds it.
fn kept(d: &Dir, prior: &Prior, writer: &ObjectWriter) -> Option<ObjectId> {
    match prior {
        Prior::Dir(c) if d.clean && c.entries == d.count && writer.in_store(&c.tree) => Some(c.tree),
        _ => None,
    }
}

/// Encodes and stores one directory's tree, refusing one that every reader
/// would refuse (`format::tree` limits).
fn write_tree(entries: Vec<Entry>, writer: &ObjectWriter, rel: &[u8]) -> Result<ObjectId> {
    if entries.len() > tree::MAX_ENTRIES {
        return Err(Error::Limit {
            path: PathBuf::from(String::from_utf8_lossy(rel).into_owned()),
            detail: format!(
                "{} entries in one directory are more than the {} a tree may hold; exclude some",
                entries.len(),
                tree::MAX_ENTRIES
            ),
        });
    }
    let mut t = Tree { entries };
    t.sort();
    let (id, bytes) = t.id_and_bytes();
    if bytes.len() > tree::MAX_TREE_BYTES as usize {
        return Err(Error::Limit {
            path: PathBuf::from(String::from_utf8_lossy(rel).into_owned()),
            detail: format!(
                "directory listing is {} bytes, over the {} bytes a tree may hold; split the directory",
                bytes.len(),
                tree::MAX_TREE_BYTES
            ),
        });
    }
    writer.put(ObjectKind::Tree, id, &bytes)
}

pub fn split_parent(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (b"", rel),
    }
}
