//! Index files: where every object lives (pack, offset, lengths), so an
//! object is found without scanning packs.
//!
//! File layout: header (`MOATIDX\0`, version) | pack count (u32) | pack ids |
//! entry count (u32) | entries sorted by id (id, kind, compression, pack
//! number, offset, stored_len, raw_len) | blake3 of everything before. The
//! file name is that hash in hex. A writer publishes one index file per
//! session after its packs, so no index file is ever rewritten in place.
//!
//! In memory all index files merge into one sorted array (about 52 bytes per
//! object) searched by binary search.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::compress::Compression;
use crate::error::{Error, IoContext, Result};
use crate::header::{self, Reader};
use crate::id::ObjectId;
use crate::pack::{FinishedPack, ObjectKind};

pub const MAGIC: &[u8; 8] = b"MOATIDX\0";
pub const VERSION: u32 = 1;
const ENTRY_LEN: usize = 32 + 1 + 1 + 4 * 4;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub id: ObjectId,
    pub kind: ObjectKind,
    pub compression: Compression,
    /// Position in the pack table of the file (on disk) or of the merged
    /// index (in memory).
    pub pack: u32,
    pub offset: u32,
    pub stored_len: u32,
    pub raw_len: u32,
}

/// One decoded index file.
#[derive(Debug, PartialEq, Eq)]
pub struct IndexFile {
    pub packs: Vec<ObjectId>,
    pub entries: Vec<IndexEntry>,
}

impl IndexFile {
    pub fn from_packs(packs: &[FinishedPack]) -> Self {
        let mut entries = Vec::new();
        for (n, p) in packs.iter().enumerate() {
            entries.extend(p.entries.iter().map(|e| IndexEntry {
                id: e.id,
                kind: e.kind,
                compression: e.compression,
                pack: n as u32,
                offset: e.offset,
                stored_len: e.stored_len,
                raw_len: e.raw_len,
            }));
        }
        entries.sort_by_key(|e| e.id);
        IndexFile {
            packs: packs.iter().map(|p| p.id).collect(),
            entries,
        }
    }

    /// Encodes the file; returns its id (= file name) and bytes.
    pub fn encode(&self) -> (ObjectId, Vec<u8>) {
        let mut out = Vec::with_capacity(24 + self.packs.len() * 32 + self.entries.len() * ENTRY_LEN);
        header::write(&mut out, MAGIC, VERSION);
        out.extend_from_slice(&(self.packs.len() as u32).to_le_bytes());
        for p in &self.packs {
            out.extend_from_slice(&p.0);
        }
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.id.0);
            out.push(e.kind as u8);
            out.push(e.compression as u8);
            for v in [e.pack, e.offset, e.stored_len, e.raw_len] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        let id = ObjectId::hash(&out);
        out.extend_from_slice(&id.0);
        (id, out)
    }

    pub fn decode(data: &[u8], path: &Path) -> Result<Self> {
        let body = header::check(data, MAGIC, VERSION, "index", path)?;
        let bad = |d: &str| Error::corrupt(path, "index", d);
        if body.len() < 32 {
            return Err(bad("file is truncated"));
        }
        let (content, sum) = data.split_at(data.len() - 32);
        if ObjectId::hash(content).0 != sum {
            return Err(bad("checksum mismatch (truncated or altered)"));
        }
        let mut r = Reader::new(&body[..body.len() - 32]);
        let npacks = r.u32().ok_or_else(|| bad("truncated pack table"))? as usize;
        if npacks > r.remaining() / 32 {
            return Err(bad("pack count exceeds the file size"));
        }
        let packs: Vec<ObjectId> = (0..npacks).filter_map(|_| r.id()).collect();
        let n = r.u32().ok_or_else(|| bad("truncated entry count"))? as usize;
        if r.remaining() != n.saturating_mul(ENTRY_LEN) {
            return Err(bad("entry table size does not match its count"));
        }
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let e = decode_entry(&mut r).ok_or_else(|| bad("invalid entry"))?;
            if e.pack as usize >= packs.len() {
                return Err(bad(&format!(
                    "object {} names pack #{} of {}",
                    e.id,
                    e.pack,
                    packs.len()
                )));
            }
            entries.push(e);
        }
        Ok(IndexFile { packs, entries })
    }
}

fn prefix(id: &ObjectId) -> usize {
    u16::from_be_bytes([id.0[0], id.0[1]]) as usize
}

fn decode_entry(r: &mut Reader) -> Option<IndexEntry> {
    Some(IndexEntry {
        id: r.id()?,
        kind: ObjectKind::from_u8(r.u8()?)?,
        compression: Compression::from_u8(r.u8()?)?,
        pack: r.u32()?,
        offset: r.u32()?,
        stored_len: r.u32()?,
        raw_len: r.u32()?,
    })
}

pub fn rel_path(id: &ObjectId) -> PathBuf {
    PathBuf::from("index").join(format!("{}.idx", id.to_hex()))
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
}

impl Index {
    /// Loads every index file under `dir`. A corrupt file is recorded in
    /// `problems` and skipped rather than failing every command.
    pub fn load(dir: &Path) -> Result<Self> {
        let mut idx = Index::default();
        let mut pack_nums: HashMap<ObjectId, u32> = HashMap::new();
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(idx),
            Err(e) => return Err(Error::io(dir, e)),
        };
        for ent in rd {
            let ent = ent.at(dir)?;
            let name = ent.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".idx"))
                .and_then(ObjectId::from_hex)
            else {
                continue;
            };
            let path = ent.path();
            let file = std::fs::read(&path)
                .at(&path)
                .and_then(|d| IndexFile::decode(&d, &path));
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
                    idx.entries.extend(f.entries.into_iter().map(|mut e| {
                        e.pack = map[e.pack as usize];
                        e
                    }));
                }
                Err(e) => idx.problems.push(e),
            }
        }
        idx.entries.sort_unstable_by_key(|e| e.id);
        idx.entries.dedup_by(|a, b| a.id == b.id);
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

    /// Where `id` sits in `entries()`: lets `gc` mark objects in a bitmap
    /// (one bit per object) instead of a set of ids.
    pub fn position(&self, id: &ObjectId) -> Option<usize> {
        let p = prefix(id);
        let (lo, hi) = match self.fanout.get(p..p + 2) {
            Some(&[lo, hi]) => (lo as usize, hi as usize),
            _ => (0, self.entries.len()),
        };
        self.entries[lo..hi]
            .binary_search_by(|e| e.id.cmp(id))
            .ok()
            .map(|i| lo + i)
    }

    pub fn get(&self, id: &ObjectId) -> Option<&IndexEntry> {
        self.position(id).map(|i| &self.entries[i])
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

    /// Pack files under `store_root` that this index does not list, with
    /// their sizes: left by writers that died before publishing an index.
    pub fn unindexed_packs(&self, store_root: &Path) -> Vec<(PathBuf, u64)> {
        let known: std::collections::HashSet<&ObjectId> = self.packs.iter().collect();
        let mut out = Vec::new();
        for sub in std::fs::read_dir(store_root.join("packs"))
            .into_iter()
            .flatten()
            .flatten()
        {
            for f in std::fs::read_dir(sub.path()).into_iter().flatten().flatten() {
                let name = f.file_name();
                let id = name
                    .to_str()
                    .and_then(|n| n.strip_suffix(".pack"))
                    .and_then(ObjectId::from_hex);
                if id.is_some_and(|id| !known.contains(&id)) {
                    out.push((f.path(), f.metadata().map(|m| m.len()).unwrap_or(0)));
                }
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::PackEntry;

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
    fn round_trip_and_truncation() {
        let f = sample();
        let (_, bytes) = f.encode();
        let p = Path::new("i");
        assert_eq!(IndexFile::decode(&bytes, p).unwrap(), f);
        for n in 0..bytes.len() {
            assert!(IndexFile::decode(&bytes[..n], p).is_err());
        }
        let mut flipped = bytes.clone();
        flipped[40] ^= 1;
        assert!(IndexFile::decode(&flipped, p).is_err());
    }

    #[test]
    fn load_merges_and_skips_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let (id, bytes) = sample().encode();
        std::fs::write(dir.path().join(format!("{}.idx", id.to_hex())), &bytes).unwrap();
        std::fs::write(
            dir.path()
                .join(format!("{}.idx", ObjectId::hash(b"bad").to_hex())),
            &bytes[..50],
        )
        .unwrap();
        let idx = Index::load(dir.path()).unwrap();
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
}
