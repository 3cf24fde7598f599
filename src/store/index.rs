//! The store's index, read in place: every index file is mapped (through
//! the backend) and searched where it lies, with its fan-out table and a
//! binary search; nothing is decoded onto the heap but each file's pack
//! table. A lookup probes the files largest first, so the common hit
//! costs one search; `consolidate` keeps the number of files small.
//!
//! Invariants: an object is found only through an index file that
//! validated whole (`format::index::Layout::parse`: checksum, counts,
//! sorted ids, fan-out, records); a corrupt file is recorded in
//! `problems`, never half-used. Every copy of an object is kept (two
//! writers may store the same object; one copy may be damaged), so
//! readers can fall back to another copy and `gc` can keep one that
//! verifies. A file that vanishes while the index loads was replaced by a
//! consolidation that published its successor first: the load lists the
//! files again.
//!
//! Positions: entry `i` of file `f` is at `base(f) + i`, so `gc` can mark
//! copies in a bitmap (one bit per entry) instead of a set of ids.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::format::id::ObjectId;
use crate::format::index::{IndexEntry, Layout};
use crate::store::backend::{Backend, Blob, FileKind};

/// How often a load lists the index files again when one vanished.
const RELISTS: usize = 16;

/// One mapped, validated index file.
struct File {
    id: ObjectId,
    data: Blob,
    layout: Layout,
    /// Its pack numbers in `Index::packs`.
    packs: Vec<u32>,
    /// The position of its first entry.
    base: usize,
}

impl File {
    /// Entry `i`, its pack numbered in the whole index.
    fn entry(&self, i: usize) -> IndexEntry {
        let mut e = self.layout.entry(&self.data, i);
        e.pack = self.packs[e.pack as usize];
        e
    }
}

/// All index files of a store.
#[derive(Default)]
pub struct Index {
    files: Vec<File>,
    packs: Vec<ObjectId>,
    len: usize,
    /// Index files that could not be read: objects they list are unknown.
    pub problems: Vec<Error>,
}

impl Index {
    /// Maps and validates every index file of the store. A corrupt file is
    /// recorded in `problems` and skipped rather than failing every command.
    pub fn load(backend: &dyn Backend) -> Result<Self> {
        let mut tries = 0;
        loop {
            tries += 1;
            match Self::try_load(backend, tries >= RELISTS)? {
                Some(idx) => return Ok(idx),
                None => continue,
            }
        }
    }

    /// `None` when a listed file vanished (and `last` is false).
    fn try_load(backend: &dyn Backend, last: bool) -> Result<Option<Self>> {
        let mut opened = Vec::new();
        let mut problems = Vec::new();
        for name in backend.list(FileKind::Index)? {
            let Some(id) = ObjectId::from_hex(&name) else {
                continue;
            };
            let path = backend.describe(FileKind::Index, &name);
            let data = match backend.read(FileKind::Index, &name) {
                Ok(Some(d)) => d,
                Ok(None) if !last => return Ok(None),
                Ok(None) => {
                    problems.push(Error::io(&path, std::io::ErrorKind::NotFound.into()));
                    continue;
                }
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            };
            match Layout::parse(&data, &path, &mut |r| data.release(r)) {
                // The name is the checksum (store-format.md, "Ids"): a file
                // under another name is not what it claims to be.
                Ok(_) if !crate::format::index::named_by(&data, &id) => {
                    problems.push(Error::corrupt(&path, "index", "content does not match its name"));
                }
                Ok(layout) => opened.push((id, data, layout)),
                Err(e) => problems.push(e),
            }
        }
        // Largest first: most lookups end in the first file.
        opened.sort_by(|a, b| b.2.len().cmp(&a.2.len()).then(a.0.cmp(&b.0)));
        let mut idx = Index {
            problems,
            ..Index::default()
        };
        let mut numbers: HashMap<ObjectId, u32> = HashMap::new();
        for (id, data, layout) in opened {
            let packs = (0..layout.packs_len())
                .map(|j| {
                    let p = layout.pack(&data, j);
                    *numbers.entry(p).or_insert_with(|| {
                        idx.packs.push(p);
                        idx.packs.len() as u32 - 1
                    })
                })
                .collect();
            let base = idx.len;
            idx.len += layout.len();
            idx.files.push(File {
                id,
                data,
                layout,
                packs,
                base,
            });
        }
        Ok(Some(idx))
    }

    /// Every copy of `id` with its position (usually one; none when the
    /// store does not hold it). A copy two files list (the same pack and
    /// offset, after an interrupted gc or consolidation) is given once, at
    /// its first position.
    pub fn copies_at(&self, id: &ObjectId) -> Vec<(usize, IndexEntry)> {
        let mut out: Vec<(usize, IndexEntry)> = Vec::new();
        for f in &self.files {
            for i in f.layout.find(&f.data, id) {
                let e = f.entry(i);
                if !out.iter().any(|(_, o)| (o.pack, o.offset) == (e.pack, e.offset)) {
                    out.push((f.base + i, e));
                }
            }
        }
        out
    }

    /// Every copy of `id` (usually one).
    pub fn copies(&self, id: &ObjectId) -> impl Iterator<Item = IndexEntry> + use<> {
        self.copies_at(id).into_iter().map(|(_, e)| e)
    }

    /// The first copy of `id`.
    pub fn get(&self, id: &ObjectId) -> Option<IndexEntry> {
        self.files.iter().find_map(|f| {
            let r = f.layout.find(&f.data, id);
            (!r.is_empty()).then(|| f.entry(r.start))
        })
    }

    pub fn contains(&self, id: &ObjectId) -> bool {
        self.files.iter().any(|f| !f.layout.find(&f.data, id).is_empty())
    }

    /// The entry at position `pos` (< `len()`).
    pub fn entry(&self, pos: usize) -> IndexEntry {
        let f = self.files.partition_point(|f| f.base <= pos).saturating_sub(1);
        let file = &self.files[f];
        file.entry(pos - file.base)
    }

    /// Every entry with its position, in position order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, IndexEntry)> + '_ {
        self.files
            .iter()
            .flat_map(|f| (0..f.layout.len()).map(move |i| (f.base + i, f.entry(i))))
    }

    pub fn pack_id(&self, n: u32) -> ObjectId {
        self.packs[n as usize]
    }

    pub fn packs(&self) -> &[ObjectId] {
        &self.packs
    }

    /// Entries in all files (a copy listed by two files counts twice).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many index files were loaded.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// The id of loaded file `f`.
    pub fn file_id(&self, f: usize) -> ObjectId {
        self.files[f].id
    }

    /// The packs (numbers in `packs()`) loaded file `f` lists.
    pub fn file_packs(&self, f: usize) -> &[u32] {
        &self.files[f].packs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::compress::Compression;
    use crate::format::index::IndexFile;
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
    fn load_finds_in_place_and_skips_corrupt() {
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
        // Every entry is found, at its position; absent ids are not.
        for (pos, e) in idx.iter() {
            assert_eq!(idx.copies_at(&e.id), [(pos, e.clone())]);
            assert_eq!(idx.entry(pos), e);
        }
        assert!(!idx.contains(&ObjectId::hash(b"absent")));
        assert!(Index::default().get(&want).is_none());
    }

    #[test]
    fn a_file_merged_away_while_loading_is_found_in_its_successor() {
        let b = MemoryBackend::new();
        let mut halves = [sample(), sample()];
        halves[0].entries.retain(|e| e.id.0[0] < 0x80);
        halves[1].entries.retain(|e| e.id.0[0] >= 0x80);
        for f in &halves {
            let (id, bytes) = f.encode();
            b.write(FileKind::Index, &id.to_hex(), &bytes).unwrap();
        }
        // Between the listing and the first read, another process merges
        // both files: it publishes the merged file, then deletes them.
        let race = || {
            b.before_next_read(FileKind::Index, |m| {
                let (id, bytes) = sample().encode();
                m.write(FileKind::Index, &id.to_hex(), &bytes).unwrap();
                for f in m.list(FileKind::Index).unwrap() {
                    if f != id.to_hex() {
                        m.remove(FileKind::Index, &f).unwrap();
                    }
                }
            })
        };
        race();
        assert!(
            Index::try_load(&b, false).unwrap().is_none(),
            "a listed file vanished"
        );
        // Put the halves back and race again: the load lists again.
        for f in &halves {
            let (id, bytes) = f.encode();
            b.write(FileKind::Index, &id.to_hex(), &bytes).unwrap();
        }
        race();
        let idx = Index::load(&b).unwrap();
        assert!(idx.problems.is_empty(), "{:?}", idx.problems);
        assert_eq!(idx.len(), 15);
        for e in &sample().entries {
            assert!(idx.contains(&e.id));
        }
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
        assert_eq!(idx.len(), 30, "every entry of both files");
        let dup = ObjectId::hash(&[1, 2]);
        let packs: Vec<ObjectId> = idx.copies(&dup).map(|e| idx.pack_id(e.pack)).collect();
        assert_eq!(packs.len(), 2);
        assert!(packs.contains(&ObjectId::hash(&[1])) && packs.contains(&ObjectId::hash(b"another pack")));
        let twice = ObjectId::hash(&[0, 2]);
        assert_eq!(idx.copies(&twice).count(), 1, "one copy, listed by both files");
        assert_eq!(idx.file_count(), 2);
        assert_eq!(idx.packs().len(), 4);
    }
}
