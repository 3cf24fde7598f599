//! The store's index in memory: every index file merged into one sorted
//! array (about 52 bytes per object) with a 64K-bucket fan-out table,
//! searched by binary search.
//!
//! Invariants: an object is found only through an index file that decoded
//! and verified; a corrupt index file is recorded in `problems`, never
//! half-used. Every copy of an object is kept (two writers may store the
//! same object; one copy may be damaged): copies of one id are adjacent,
//! so readers can fall back to another copy and `gc` can keep one that
//! verifies.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::format::id::ObjectId;
use crate::format::index::{IndexEntry, IndexFile};
use crate::store::backend::{Backend, FileKind};

fn prefix(id: &ObjectId) -> usize {
    u16::from_be_bytes([id.0[0], id.0[1]]) as usize
}

/// All index files of a store, merged.
#[derive(Default)]
pub struct Index {
    packs: Vec<ObjectId>,
    entries: Vec<IndexEntry>,
    /// `fanout[p]` = first entry whose id's first two bytes are >= `p`, so a
    /// lookup searches one small bucket (git's idx does the same).
    fanout: Vec<u32>,
    /// Index files that could not be read: objects they list are unknown.
    pub problems: Vec<Error>,
    pub files: Vec<ObjectId>,
    /// The packs (numbers in `packs()`) each of `files` lists.
    pub file_packs: Vec<Vec<u32>>,
}

impl Index {
    /// Loads every index file of the store. A corrupt file is recorded in
    /// `problems` and skipped rather than failing every command.
    pub fn load(backend: &dyn Backend) -> Result<Self> {
        let mut idx = Index::default();
        let mut pack_nums: HashMap<ObjectId, u32> = HashMap::new();
        for name in backend.list(FileKind::Index)? {
            let Some(id) = ObjectId::from_hex(&name) else {
                continue;
            };
            let path = backend.describe(FileKind::Index, &name);
            let file = backend.read(FileKind::Index, &name).and_then(|d| match d {
                Some(d) => IndexFile::decode(&d, &path),
                None => Err(Error::io(&path, std::io::ErrorKind::NotFound.into())),
            });
            match file {
                Ok(f) => {
                    idx.files.push(id);
                    let map: Vec<u32> = f
                        .packs
                        .iter()
                        .map(|p| {
                            let next = idx.packs.len() as u32;
                            *pack_nums.entry(*p).or_insert_with(|| {
                                idx.packs.push(*p);
                                next
                            })
                        })
                        .collect();
                    idx.file_packs.push(map.clone());
                    idx.entries.extend(f.entries.into_iter().map(|mut e| {
                        e.pack = map[e.pack as usize];
                        e
                    }));
                }
                Err(e) => idx.problems.push(e),
            }
        }
        // Copies of one object stay, adjacent, in a fixed order.
        idx.entries.sort_unstable_by_key(|e| (e.id, e.pack, e.offset));
        idx.entries
            .dedup_by(|a, b| (a.id, a.pack, a.offset) == (b.id, b.pack, b.offset));
        idx.build_fanout();
        Ok(idx)
    }

    fn build_fanout(&mut self) {
        let mut fanout = vec![0u32; 65537];
        for e in &self.entries {
            fanout[prefix(&e.id) + 1] += 1;
        }
        for i in 1..fanout.len() {
            fanout[i] += fanout[i - 1];
        }
        self.fanout = fanout;
    }

    /// Where the copies of `id` sit in `entries()` (empty when unknown):
    /// lets `gc` mark objects in a bitmap (one bit per copy) instead of a
    /// set of ids.
    pub fn positions(&self, id: &ObjectId) -> std::ops::Range<usize> {
        let p = prefix(id);
        let (lo, hi) = match self.fanout.get(p..p + 2) {
            Some(&[lo, hi]) => (lo as usize, hi as usize),
            _ => (0, self.entries.len()),
        };
        let bucket = self.entries.get(lo..hi).unwrap_or_default();
        let start = lo + bucket.partition_point(|e| e.id < *id);
        let end = lo + bucket.partition_point(|e| e.id <= *id);
        start..end
    }

    /// Where the first copy of `id` sits in `entries()`.
    pub fn position(&self, id: &ObjectId) -> Option<usize> {
        let r = self.positions(id);
        (!r.is_empty()).then_some(r.start)
    }

    /// Every copy of `id` (usually one).
    pub fn copies(&self, id: &ObjectId) -> &[IndexEntry] {
        &self.entries[self.positions(id)]
    }

    pub fn get(&self, id: &ObjectId) -> Option<&IndexEntry> {
        self.copies(id).first()
    }

    pub fn contains(&self, id: &ObjectId) -> bool {
        self.get(id).is_some()
    }

    pub fn pack_id(&self, n: u32) -> ObjectId {
        self.packs[n as usize]
    }

    pub fn packs(&self) -> &[ObjectId] {
        &self.packs
    }

    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::compress::Compression;
    use crate::format::pack::PackEntry;
    use crate::format::pack::{FinishedPack, ObjectKind};
    use crate::store::backend::memory::MemoryBackend;

    fn sample() -> IndexFile {
        let packs: Vec<FinishedPack> = (0..3u8)
            .map(|p| FinishedPack {
                id: ObjectId::hash(&[p]),
                bytes: 0,
                entries: (0..5u32)
                    .map(|i| PackEntry {
                        id: ObjectId::hash(&[p, i as u8]),
                        kind: ObjectKind::Chunk,
                        compression: Compression::Zstd,
                        offset: 12 + i * 10,
                        stored_len: 10,
                        raw_len: 20,
                    })
                    .collect(),
            })
            .collect();
        IndexFile::from_packs(&packs)
    }

    #[test]
    fn load_merges_and_skips_corrupt() {
        let b = MemoryBackend::new();
        let (id, bytes) = sample().encode();
        b.write(FileKind::Index, &id.to_hex(), &bytes).unwrap();
        b.write(FileKind::Index, &ObjectId::hash(b"bad").to_hex(), &bytes[..50])
            .unwrap();
        let idx = Index::load(&b).unwrap();
        assert_eq!(idx.len(), 15);
        assert_eq!(idx.problems.len(), 1);
        let want = ObjectId::hash(&[1, 3]);
        let e = idx.get(&want).unwrap();
        assert_eq!(idx.pack_id(e.pack), ObjectId::hash(&[1]));
        // Every entry is found through the fan-out table; absent ids are not.
        for e in idx.entries() {
            assert_eq!(idx.get(&e.id).map(|f| f.id), Some(e.id));
        }
        assert!(idx.get(&ObjectId::hash(b"absent")).is_none());
        assert!(Index::default().get(&want).is_none());
    }

    #[test]
    fn copies_of_one_object_in_two_index_files_are_all_kept() {
        let b = MemoryBackend::new();
        let mut other = sample();
        // The second file lists pack 1's objects again, from another pack.
        other.packs[1] = ObjectId::hash(b"another pack");
        for f in [sample(), other] {
            let (id, bytes) = f.encode();
            b.write(FileKind::Index, &id.to_hex(), &bytes).unwrap();
        }
        let idx = Index::load(&b).unwrap();
        assert_eq!(
            idx.len(),
            20,
            "15 objects, 5 of them twice, 10 listed twice from the same pack"
        );
        let dup = ObjectId::hash(&[1, 2]);
        let packs: Vec<ObjectId> = idx.copies(&dup).iter().map(|e| idx.pack_id(e.pack)).collect();
        assert_eq!(packs.len(), 2);
        assert!(packs.contains(&ObjectId::hash(&[1])) && packs.contains(&ObjectId::hash(b"another pack")));
        assert_eq!(idx.copies(&ObjectId::hash(&[0, 2])).len(), 1);
        assert_eq!(idx.file_packs.len(), 2);
    }
}
