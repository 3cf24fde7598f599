//! Keeping the number of index files small: every writing session
//! publishes one index file, and a lookup probes every file, so a writer
//! merges index files of the same size class once there are `FACTOR` of
//! them (a size-tiered merge: each entry is rewritten about log8(n)
//! times over its life, and a store holds fewer than `FACTOR` files per
//! class, a few dozen at most).
//!
//! Rules that make this safe while others read and write (store-format.md,
//! "Index files"):
//! 1. it runs under the shared lock only (never while gc runs: gc holds
//!    the lock exclusively and rewrites the whole index itself);
//! 2. the merged file lists every entry of its inputs (every copy; only an
//!    entry listed twice from the same pack and offset is written once),
//!    and it is published, durably, before any input is deleted;
//! 3. an input that does not validate is never merged or deleted (readers
//!    report it; `moat check` names it);
//! 4. readers that find a listed file gone list the index again: its
//!    successor was published before it went (`store::index`).
//!
//! Two writers may merge overlapping sets at once: both merged files are
//! published before either deletes an input, so nothing is lost; the
//! doubled entries are one copy to every reader and to gc, which drops
//! the extra entry. A crash between publish and delete leaves the same.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::error::Result;
use crate::format::id::ObjectId;
use crate::format::index::{IndexEntry, Layout, encode_to};
use crate::store::Store;
use crate::store::backend::{Blob, FileKind};

/// Files of one size class that trigger a merge.
pub const FACTOR: usize = 8;
/// Bytes of an index entry (id and record).
const ENTRY_BYTES: u64 = 50;

/// The size class of an index file of `bytes` bytes: `k` when it holds
/// about `FACTOR^k` to `FACTOR^(k+1)` entries.
fn class(bytes: u64) -> u32 {
    let mut entries = bytes / ENTRY_BYTES;
    let mut k = 0;
    while entries >= FACTOR as u64 {
        entries /= FACTOR as u64;
        k += 1;
    }
    k
}

/// Merges index files until no size class holds `FACTOR` of them.
/// Returns how many merges it made. The caller holds the shared lock.
pub fn consolidate(store: &Store) -> Result<usize> {
    let mut merges = 0;
    // Each merge leaves one file fewer, so this ends; the bound is a guard.
    for _ in 0..64 {
        let mut classes: HashMap<u32, Vec<String>> = HashMap::new();
        for name in store.backend().list(FileKind::Index)? {
            if let Some(m) = store.backend().stat(FileKind::Index, &name)? {
                classes.entry(class(m.len)).or_default().push(name);
            }
        }
        let Some(names) = classes
            .into_iter()
            .filter(|(_, v)| v.len() >= FACTOR)
            .min_by_key(|(k, _)| *k)
            .map(|(_, v)| v)
        else {
            return Ok(merges);
        };
        if !merge(store, &names)? {
            return Ok(merges);
        }
        merges += 1;
    }
    Ok(merges)
}

/// An input of a merge: a validated file and its packs' numbers in the
/// merged file's table.
struct Input {
    name: String,
    data: Blob,
    layout: Layout,
    packs: Vec<u32>,
}

/// Merges the index files `names` into one; false when fewer than two of
/// them could be read (nothing to do).
fn merge(store: &Store, names: &[String]) -> Result<bool> {
    let backend = store.backend();
    let mut inputs = Vec::new();
    let mut packs: Vec<ObjectId> = Vec::new();
    let mut numbers: HashMap<ObjectId, u32> = HashMap::new();
    for name in names {
        let path = backend.describe(FileKind::Index, name);
        let Some(data) = backend.read(FileKind::Index, name)? else {
            continue;
        };
        let Ok(layout) = Layout::parse(&data, &path, &mut |r| data.release(r)) else {
            continue;
        };
        // A file under another name than its checksum is one readers
        // refuse (rule 3: never merged or deleted).
        if !ObjectId::from_hex(name).is_some_and(|id| crate::format::index::named_by(&data, &id)) {
            continue;
        }
        let map = (0..layout.packs_len())
            .map(|j| {
                let p = layout.pack(&data, j);
                *numbers.entry(p).or_insert_with(|| {
                    packs.push(p);
                    packs.len() as u32 - 1
                })
            })
            .collect();
        inputs.push(Input {
            name: name.clone(),
            data,
            layout,
            packs: map,
        });
    }
    if inputs.len() < 2 {
        return Ok(false);
    }
    let mut upload = backend.upload(FileKind::Index)?;
    let id = encode_to(&packs, || Merged::new(&inputs), &mut |b| upload.write(b))?;
    upload.publish(&id.to_hex())?;
    for i in inputs.iter().filter(|i| i.name != id.to_hex()) {
        backend.remove(FileKind::Index, &i.name)?;
    }
    backend.sync(FileKind::Index)?;
    Ok(true)
}

/// The next entry of one input: (id, pack, offset, input, position).
type Head = (ObjectId, u32, u32, usize, usize);

/// The entries of several sorted files in (id, pack, offset) order, an
/// entry listed twice (same pack and offset) once.
struct Merged<'a> {
    inputs: &'a [Input],
    heads: BinaryHeap<Reverse<Head>>,
    last: Option<(ObjectId, u32, u32)>,
}

impl<'a> Merged<'a> {
    fn new(inputs: &'a [Input]) -> Self {
        let mut m = Merged {
            inputs,
            heads: BinaryHeap::new(),
            last: None,
        };
        for f in 0..inputs.len() {
            m.push(f, 0);
        }
        m
    }

    fn entry(&self, f: usize, i: usize) -> IndexEntry {
        let input = &self.inputs[f];
        let mut e = input.layout.entry(&input.data, i);
        e.pack = input.packs[e.pack as usize];
        e
    }

    fn push(&mut self, f: usize, i: usize) {
        if i < self.inputs[f].layout.len() {
            let e = self.entry(f, i);
            self.heads.push(Reverse((e.id, e.pack, e.offset, f, i)));
        }
    }
}

impl Iterator for Merged<'_> {
    type Item = IndexEntry;

    fn next(&mut self) -> Option<IndexEntry> {
        while let Some(Reverse((id, pack, offset, f, i))) = self.heads.pop() {
            self.push(f, i + 1);
            if self.last == Some((id, pack, offset)) {
                continue;
            }
            self.last = Some((id, pack, offset));
            return Some(self.entry(f, i));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::compress::Compression;
    use crate::format::index::IndexFile;
    use crate::format::pack::{FinishedPack, ObjectKind, PackEntry};
    use crate::store::backend::Backend;
    use crate::store::backend::memory::MemoryBackend;

    fn index_of(pack: &[u8], ids: std::ops::Range<u32>) -> IndexFile {
        IndexFile::from_packs(&[FinishedPack {
            id: ObjectId::hash(pack),
            bytes: 0,
            entries: ids
                .map(|i| PackEntry {
                    id: ObjectId::hash(&i.to_le_bytes()),
                    kind: ObjectKind::Chunk,
                    compression: Compression::None,
                    offset: 12 + i,
                    stored_len: 1,
                    raw_len: 1,
                })
                .collect(),
        }])
    }

    #[test]
    fn classes_grow_by_the_factor() {
        assert_eq!(class(0), 0);
        assert_eq!(class(7 * ENTRY_BYTES), 0);
        assert_eq!(class(8 * ENTRY_BYTES), 1);
        assert_eq!(class(64 * ENTRY_BYTES), 2);
        assert_eq!(class(1_000_000 * ENTRY_BYTES), 6);
    }

    #[test]
    fn small_files_are_merged_keeping_every_copy() {
        let mem = MemoryBackend::new();
        let store = Store::create_in(Box::new(mem.clone())).unwrap();
        // FACTOR small files, two of them listing the same objects (one
        // from another pack: a second copy), one listed twice as is.
        let mut files = vec![index_of(b"a", 0..3), index_of(b"b", 0..3), index_of(b"a", 0..3)];
        files.extend((3..FACTOR as u32).map(|k| index_of(&k.to_le_bytes(), 10 * k..10 * k + 2)));
        for (k, f) in files.iter().enumerate() {
            match k {
                // One written by moat before index version 2.
                1 => {
                    let v1 = crate::format::index::encode_v1(f);
                    let name = ObjectId::hash(&v1[..v1.len() - 32]).to_hex();
                    mem.write(FileKind::Index, &name, &v1).unwrap();
                }
                _ => {
                    store.write_index(f).unwrap();
                }
            }
        }
        let before = mem.count(FileKind::Index);
        assert_eq!(before, FACTOR - 1, "two files are byte-identical");
        assert_eq!(consolidate(&store).unwrap(), 0, "not yet a full class");
        store.write_index(&index_of(b"z", 500..501)).unwrap();
        assert_eq!(consolidate(&store).unwrap(), 1);
        assert_eq!(mem.count(FileKind::Index), 1);
        store.invalidate_index();
        let idx = store.index().unwrap();
        for f in files.iter().chain([&index_of(b"z", 500..501)]) {
            for e in &f.entries {
                assert!(idx.contains(&e.id));
            }
        }
        let copies: Vec<ObjectId> = idx
            .copies(&ObjectId::hash(&1u32.to_le_bytes()))
            .map(|e| idx.pack_id(e.pack))
            .collect();
        assert_eq!(copies.len(), 2, "both copies of a doubly stored object");
        assert_eq!(idx.len(), 3 + 3 + 2 * (FACTOR - 3) + 1, "no entry twice");
    }

    #[test]
    fn a_corrupt_file_is_neither_merged_nor_deleted() {
        let mem = MemoryBackend::new();
        let store = Store::create_in(Box::new(mem.clone())).unwrap();
        for k in 0..FACTOR as u32 - 1 {
            store.write_index(&index_of(&k.to_le_bytes(), k..k + 1)).unwrap();
        }
        let bad = ObjectId::hash(b"bad").to_hex();
        mem.write(FileKind::Index, &bad, b"MOATIDX\0garbage").unwrap();
        assert_eq!(consolidate(&store).unwrap(), 1);
        let mut left = mem.list(FileKind::Index).unwrap();
        left.sort();
        assert_eq!(left.len(), 2);
        assert!(left.contains(&bad));
    }
}
