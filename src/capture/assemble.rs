//! Building a workspace's trees bottom-up from the walk and the file
//! results. An unchanged directory hashes to its old id, and the writer
//! does not store an object twice, so unchanged subtrees cost nothing.

use std::path::PathBuf;

use super::Built;
use super::read::FileResult;
use crate::error::{Error, Result};
use crate::format::id::ObjectId;
use crate::format::pack::ObjectKind;
use crate::format::snapshot::Stats;
use crate::format::statcache::CachedFile;
use crate::format::tree::{Content, Entry, Tree};
use crate::store::writer::ObjectWriter;
use crate::worktree::walk::{Node, NodeKind};

/// Builds every tree bottom-up and returns the root id, the new stat cache
/// entries, the stats and the skip warnings.
pub fn assemble(nodes: &[Node], results: Vec<Option<FileResult>>, writer: &ObjectWriter) -> Result<Built> {
    let mut stats = Stats::default();
    let mut warnings = Vec::new();
    let mut cache_entries = Vec::new();
    let mut children: rustc_hash::FxHashMap<&[u8], Vec<Entry>> = Default::default();
    let mut dirs: Vec<(&[u8], &Node)> = Vec::new();
    for (n, res) in nodes.iter().zip(results) {
        let (parent, name) = split_parent(&n.rel);
        let mtime_ns = n.stat.mtime_ns;
        let mut entry = Entry {
            name: name.to_vec(),
            mode: n.stat.mode & 0o7777,
            mtime_ns,
            size: 0,
            content: Content::Dir(ObjectId([0; 32])),
        };
        match (&n.kind, res) {
            (NodeKind::Dir, _) => {
                stats.dirs += 1;
                dirs.push((&n.rel, n));
                children.entry(&n.rel).or_default();
                continue;
            }
            (NodeKind::Symlink(t), _) => {
                stats.symlinks += 1;
                entry.size = t.len() as u64;
                entry.content = Content::Symlink(t.clone());
            }
            (NodeKind::File, Some(FileResult::Stored(chunks, st))) => {
                stats.files += 1;
                stats.bytes += st.size;
                entry.size = st.size;
                entry.mode = st.mode & 0o7777;
                entry.mtime_ns = st.mtime_ns;
                entry.content = Content::File(chunks.clone());
                cache_entries.push((n.rel.clone(), CachedFile { stat: st, chunks }));
            }
            (NodeKind::File, Some(FileResult::Skipped(w))) => {
                stats.skipped += 1;
                warnings.push(w);
                continue;
            }
            (NodeKind::File, None) => continue,
        }
        children.entry(parent).or_default().push(entry);
    }
    // Deepest first, so every subtree id exists before its parent is built.
    dirs.sort_by_key(|(rel, _)| std::cmp::Reverse(rel.iter().filter(|&&b| b == b'/').count()));
    for (rel, node) in dirs {
        let id = write_tree(children.remove(rel).unwrap_or_default(), writer, rel)?;
        let (parent, name) = split_parent(rel);
        children.entry(parent).or_default().push(Entry {
            name: name.to_vec(),
            mode: node.stat.mode & 0o7777,
            mtime_ns: node.stat.mtime_ns,
            size: 0,
            content: Content::Dir(id),
        });
    }
    let root = write_tree(children.remove(&b""[..]).unwrap_or_default(), writer, b"")?;
    Ok((root, cache_entries, stats, warnings))
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
