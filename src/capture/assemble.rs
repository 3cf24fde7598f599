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
use crate::format::tree::{Content, Entry, Tree};
use crate::store::writer::ObjectWriter;
use crate::worktree::walk::{Node, NodeKind};

/// The trees of a capture.
pub struct Built {
    pub root: ObjectId,
    /// Encoded stat cache records of every walked entry and the root.
    pub records: Vec<Vec<u8>>,
    pub stats: Stats,
    pub warnings: Vec<String>,
    /// The root's cached tree was kept: nothing the cache describes changed.
    pub root_reused: bool,
}

#[derive(Default)]
struct Dir {
    entries: Vec<Entry>,
    count: u32,
    clean: bool,
    totals: Totals,
}

fn dir() -> Dir {
    Dir {
        clean: true,
        ..Dir::default()
    }
}

/// Builds every tree bottom-up. `prior` is what the cache said of each
/// node (`prior::lookup`), `pruned` the directories a watched walk left
/// out with their cached records, `root_prior` the cached root.
pub fn assemble(
    nodes: &[Node],
    results: Vec<Option<FileResult>>,
    prior: &[Prior],
    pruned: &[(Vec<u8>, Record)],
    root_prior: &Prior,
    key: &[u8; 32],
    writer: &ObjectWriter,
) -> Result<Built> {
    let mut stats = Stats::default();
    let mut warnings = Vec::new();
    let mut records = Vec::new();
    let mut children: FxHashMap<&[u8], Dir> = Default::default();
    children.insert(b"", dir());
    let mut dirs: Vec<(&[u8], usize)> = Vec::new();
    for (i, (n, res)) in nodes.iter().zip(results).enumerate() {
        let (parent, name) = split_parent(&n.rel);
        let same = prior.get(i) == Some(&Prior::Same);
        let mut entry = Entry {
            name: name.to_vec(),
            mode: n.stat.mode & 0o7777,
            mtime_ns: n.stat.mtime_ns,
            size: 0,
            content: Content::Dir(ObjectId([0; 32])),
        };
        let mut add = Totals::default();
        match (&n.kind, res) {
            (NodeKind::Dir, _) => {
                dirs.push((&n.rel, i));
                children.entry(&n.rel).or_insert_with(dir);
                continue;
            }
            (NodeKind::Symlink(t), _) => {
                add.symlinks = 1;
                add.multi_links = n.multi_link as u64;
                entry.size = t.len() as u64;
                entry.content = Content::Symlink(t.clone());
                let rec = Record {
                    stat: n.stat,
                    multi_link: n.multi_link,
                    payload: Payload::Symlink,
                };
                records.push(statcache::encode_record(key, &n.rel, &rec));
            }
            (NodeKind::File, Some(FileResult::Stored(chunks, st))) => {
                add.files = 1;
                add.bytes = st.size;
                add.multi_links = n.multi_link as u64;
                entry.size = st.size;
                entry.mode = st.mode & 0o7777;
                entry.mtime_ns = st.mtime_ns;
                let rec = Record {
                    stat: st,
                    multi_link: n.multi_link,
                    payload: Payload::File(chunks),
                };
                records.push(statcache::encode_record(key, &n.rel, &rec));
                if let Payload::File(chunks) = rec.payload {
                    entry.content = Content::File(chunks);
                }
            }
            (NodeKind::File, Some(FileResult::Skipped(w))) => {
                stats.skipped += 1;
                warnings.push(w);
                children.entry(parent).or_insert_with(dir).clean = false;
                continue;
            }
            (NodeKind::File, None) => {
                children.entry(parent).or_insert_with(dir).clean = false;
                continue;
            }
        }
        let d = children.entry(parent).or_insert_with(dir);
        d.entries.push(entry);
        d.count = d.count.saturating_add(1);
        d.clean &= same;
        d.totals.add(&add);
    }
    for (rel, rec) in pruned {
        let Payload::Dir { tree, totals, .. } = &rec.payload else {
            continue;
        };
        let (parent, name) = split_parent(rel);
        let d = children.entry(parent).or_insert_with(dir);
        d.entries.push(dir_entry(name, &rec.stat, *tree));
        d.count = d.count.saturating_add(1);
        d.totals.add(totals);
        d.totals.dirs = d.totals.dirs.saturating_add(1);
    }
    // Deepest first, so every subtree id exists before its parent is built.
    dirs.sort_by_key(|(rel, _)| std::cmp::Reverse(rel.iter().filter(|&&b| b == b'/').count()));
    for (rel, i) in dirs {
        let node = &nodes[i];
        let d = children.remove(rel).unwrap_or_else(dir);
        let (id, reused) = tree_of(d.entries, d.clean, d.count, &prior[i], writer, rel)?;
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
        let p = children.entry(parent).or_insert_with(dir);
        p.entries.push(dir_entry(name, &node.stat, id));
        p.count = p.count.saturating_add(1);
        p.clean &= reused && matches!(prior[i], Prior::Dir { .. });
        p.totals.add(&d.totals);
        p.totals.dirs = p.totals.dirs.saturating_add(1);
    }
    let d = children.remove(&b""[..]).unwrap_or_else(dir);
    let (root, root_reused) = tree_of(d.entries, d.clean, d.count, root_prior, writer, b"")?;
    records.push(root_record(key, root, d.count, d.totals));
    stats.files = d.totals.files;
    stats.dirs = d.totals.dirs;
    stats.symlinks = d.totals.symlinks;
    stats.bytes = d.totals.bytes;
    Ok(Built {
        root,
        records,
        stats,
        warnings,
        root_reused,
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

/// The directory's tree: the cached one when every entry matched the
/// cache and the store still holds it, else encoded and written.
fn tree_of(
    entries: Vec<Entry>,
    clean: bool,
    count: u32,
    prior: &Prior,
    writer: &ObjectWriter,
    rel: &[u8],
) -> Result<(ObjectId, bool)> {
    if let Prior::Dir { tree, entries: n, .. } = prior
        && clean
        && *n == count
        && writer.in_store(tree)
    {
        return Ok((*tree, true));
    }
    Ok((write_tree(entries, writer, rel)?, false))
}

fn write_tree(entries: Vec<Entry>, writer: &ObjectWriter, rel: &[u8]) -> Result<ObjectId> {
    let mut tree = Tree { entries };
    tree.sort();
    let (id, bytes) = tree.id_and_bytes();
    if bytes.len() > crate::format::tree::MAX_TREE_BYTES as usize {
        return Err(Error::Limit {
            path: PathBuf::from(String::from_utf8_lossy(rel).into_owned()),
            detail: format!(
                "directory listing is {} bytes, over the {} bytes a tree may hold; split the directory",
                bytes.len(),
                crate::format::tree::MAX_TREE_BYTES
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
