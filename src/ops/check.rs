//! `moat check`: verify that every snapshot is complete and would restore,
//! and with `read_data` that every stored byte decodes to its id.
//!
//! Invariants: whatever restore or rollback would refuse, check reports
//! (a tree that does not decode, a tree id naming a chunk or a chunk id
//! naming a tree, a missing object, an object claiming more than the store
//! allows, a file whose chunks do not add up to its size), each with its
//! snapshot and path, and it goes on after every problem. Every pack is
//! read once and every index entry looked at once (linear in the store).

use std::collections::HashSet;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::id::ObjectId;
use crate::format::index::IndexEntry;
use crate::format::pack::{self, ObjectKind};
use crate::format::tree::Content;
use crate::store::backend::FileKind;
use crate::store::index::Index;
use crate::store::{SnapshotRecord, Store};
use crate::util::progress::Progress;

#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    pub read_data: bool,
}

#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    pub snapshots: u64,
    pub trees: u64,
    pub chunks: u64,
    pub packs: u64,
    /// Each one makes the check fail.
    pub problems: Vec<String>,
    /// Harmless findings (leftovers of interrupted writers).
    pub notes: Vec<String>,
}

pub fn check(store: &Store, opts: &CheckOptions, progress: &dyn Progress) -> Result<CheckReport> {
    let mut r = CheckReport::default();
    let _lock = store.lock_shared()?;
    // Snapshots first, then the index: a snapshot committed meanwhile
    // published its index before itself, so every listed snapshot's
    // objects are in the index loaded after (store-format.md, "Writing").
    let (snaps, bad) = store.list_snapshots()?;
    store.invalidate_index();
    let index = store.index()?;
    r.problems.extend(index.problems.iter().map(|e| e.to_string()));
    r.problems.extend(bad.iter().map(|e| e.to_string()));
    r.snapshots = snaps.len() as u64;

    let mut seen = Seen::default();
    progress.start_count("checking snapshots", snaps.len() as u64);
    for s in &snaps {
        walk(store, &index, s, &mut seen, &mut r.problems);
        progress.inc(1);
    }
    r.trees = seen.trees.len() as u64;
    r.chunks = seen.chunks.len() as u64;
    r.packs = index.packs().len() as u64;

    let mut present = vec![false; index.packs().len()];
    for (n, p) in index.packs().iter().enumerate() {
        match store.pack_size(p) {
            Ok(Some(_)) => present[n] = true,
            Ok(None) => r
                .problems
                .push(format!("pack {p} is listed in the index but missing")),
            Err(e) => r.problems.push(e.to_string()),
        }
    }
    if opts.read_data {
        // Index entries by pack, once: verifying a pack then looks only at
        // its own entries.
        let mut by_pack: Vec<Vec<IndexEntry>> = vec![Vec::new(); index.packs().len()];
        for (_, e) in index.iter() {
            by_pack[e.pack as usize].push(e);
        }
        // Bytes, not packs: packs range from a few KiB to 16 MiB.
        let weight = |listed: &[IndexEntry]| listed.iter().map(|e| u64::from(e.stored_len)).sum::<u64>();
        progress.start("reading packs", by_pack.iter().map(|l| weight(l)).sum());
        let found: Vec<Vec<String>> = index
            .packs()
            .par_iter()
            .zip(by_pack.par_iter())
            .zip(present.par_iter())
            .map(|((p, listed), &here)| {
                let out = if here {
                    verify_pack(store, p, listed)
                } else {
                    Vec::new()
                };
                progress.inc(weight(listed));
                out
            })
            .collect();
        r.problems.extend(found.into_iter().flatten());
    }
    r.notes
        .extend(store.unindexed_packs(&index)?.into_iter().map(|(p, _)| {
            format!(
                "pack {} is not indexed (left by an interrupted snapshot; `moat gc` removes it)",
                store.describe(FileKind::Pack, &p.to_hex()).display()
            )
        }));
    progress.finish();
    Ok(r)
}

/// Objects already checked (shared subtrees and chunks are checked once).
#[derive(Default)]
struct Seen {
    trees: HashSet<ObjectId>,
    chunks: HashSet<ObjectId>,
}

/// Checks every tree and file a snapshot reaches.
fn walk(store: &Store, index: &Index, s: &SnapshotRecord, seen: &mut Seen, problems: &mut Vec<String>) {
    let chunk_max = store.config.chunk_max;
    // Each tree with the depth of its entries (restore refuses a walk
    // deeper than MAX_DEPTH).
    let mut stack = vec![(s.snap.root, String::new(), 1)];
    while let Some((id, path, depth)) = stack.pop() {
        if !seen.trees.insert(id) {
            continue;
        }
        let tree = match store.read_tree(&id) {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("snapshot {} at /{path}: {e}", s.id.short()));
                continue;
            }
        };
        if depth > crate::format::tree::MAX_DEPTH && !tree.entries.is_empty() {
            problems.push(format!(
                "snapshot {}: {}: trees nested deeper than {} directories",
                s.id.short(),
                crate::ops::trees::show_path(path.trim_end_matches('/').as_bytes()),
                crate::format::tree::MAX_DEPTH
            ));
            continue;
        }
        for e in tree.entries {
            let child = format!("{path}{}", String::from_utf8_lossy(&e.name));
            match e.content {
                Content::Dir(sub) => stack.push((sub, format!("{child}/"), depth + 1)),
                Content::File(ids) => {
                    for p in check_file(index, chunk_max, &ids, e.size, &mut seen.chunks) {
                        problems.push(format!("snapshot {}: /{child}: {p}", s.id.short()));
                    }
                }
                Content::Symlink(_) => {}
            }
        }
    }
}

/// What restore would refuse in one file entry: a chunk that is missing,
/// is not a chunk, or claims more than a chunk may hold (each reported at
/// the first file naming it), or chunks that do not add up to `size`.
fn check_file(
    index: &Index,
    chunk_max: u32,
    ids: &[ObjectId],
    size: u64,
    seen: &mut HashSet<ObjectId>,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut total = Some(0u64);
    for c in ids {
        let first = seen.insert(*c);
        let copies: Vec<IndexEntry> = index.copies(c).collect();
        let Some(e) = copies.iter().find(|e| e.kind == ObjectKind::Chunk) else {
            total = None;
            if first {
                out.push(match copies.first() {
                    None => format!("chunk {c} is missing from the store"),
                    Some(e) => format!("chunk {c} names a {}, not a chunk", e.kind.name()),
                });
            }
            continue;
        };
        if e.raw_len > chunk_max && first {
            out.push(format!(
                "chunk {c} claims {} bytes, over the store's limit of {chunk_max} for a chunk",
                e.raw_len
            ));
        }
        total = total.and_then(|t| t.checked_add(u64::from(e.raw_len)));
    }
    if let Some(t) = total.filter(|t| *t != size) {
        out.push(format!("its size is {size} bytes but its chunks hold {t}"));
    }
    out
}

/// Reads a whole pack: its id, framing, every object it holds, and that
/// each index entry naming it (`listed`) matches its table.
fn verify_pack(store: &Store, id: &ObjectId, listed: &[IndexEntry]) -> Vec<String> {
    let path = store.describe(FileKind::Pack, &id.to_hex());
    let data = match store.read_pack(id) {
        Ok(d) => d,
        Err(e) => return vec![e.to_string()],
    };
    if ObjectId::hash(&data) != *id {
        return vec![format!("pack {id}: content does not match its name (damaged)")];
    }
    let entries = match pack::parse(&data, &path) {
        Ok(e) => e,
        Err(e) => return vec![e.to_string()],
    };
    let mut problems = Vec::new();
    for e in &entries {
        let stored = &data[e.offset as usize..][..e.stored_len as usize];
        if let Err(d) = store.decode_object(e, stored) {
            problems.push(
                Error::BadObject {
                    id: e.id,
                    pack: id.to_hex(),
                    detail: d,
                }
                .to_string(),
            );
        }
    }
    let in_pack: HashSet<(ObjectId, ObjectKind, u32, u32, u32)> = entries
        .iter()
        .map(|e| (e.id, e.kind, e.offset, e.stored_len, e.raw_len))
        .collect();
    for e in listed {
        if !in_pack.contains(&(e.id, e.kind, e.offset, e.stored_len, e.raw_len)) {
            problems.push(format!("index entry for {} does not match pack {id}", e.id));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::snapshot::{Scan, Snapshot, Stats, Trigger};
    use crate::format::tree::{Entry, Tree};
    use crate::store::backend::FileKind;
    use crate::store::backend::memory::MemoryBackend;
    use crate::store::writer::ObjectWriter;
    use crate::util::progress::NoProgress;

    /// Commits a snapshot of one file holding `data`, as a capture does.
    fn commit(store: &Store, data: &[u8]) {
        let w = ObjectWriter::new(store).unwrap();
        let chunk = w.put_chunk(data).unwrap();
        let tree = Tree {
            entries: vec![Entry {
                name: b"f".to_vec(),
                mode: 0o644,
                mtime_ns: 0,
                size: data.len() as u64,
                content: Content::File(vec![chunk]),
            }],
        };
        let (id, bytes) = tree.id_and_bytes();
        w.put(ObjectKind::Tree, id, &bytes).unwrap();
        w.finish().unwrap();
        store
            .write_snapshot(&Snapshot {
                root: id,
                parent: None,
                workspace: b"/w".to_vec(),
                host: "h".into(),
                time_ns: 1,
                trigger: Trigger::Manual,
                message: String::new(),
                git: None,
                run_id: None,
                stats: Stats::default(),
                skipped: Vec::new(),
                exact: true,
                scan: Scan::Walked,
            })
            .unwrap();
    }

    #[test]
    fn a_snapshot_committed_while_check_runs_is_not_reported_missing() {
        let mem = MemoryBackend::new();
        let store = Store::create_in(Box::new(mem.clone())).unwrap();
        commit(&store, b"first");
        // Another process commits a snapshot (packs, index, snapshot file)
        // just as check starts reading the index.
        mem.before_next_read(FileKind::Index, |m| {
            let other = Store::open_in(Box::new(m.clone())).unwrap();
            commit(&other, b"second");
        });
        let r = check(&store, &CheckOptions::default(), &NoProgress).unwrap();
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        // The next check sees both snapshots, complete.
        store.invalidate_index();
        let r = check(&store, &CheckOptions::default(), &NoProgress).unwrap();
        assert_eq!((r.snapshots, r.problems.len()), (2, 0), "{:?}", r.problems);
    }
}
