//! Index files: where every object lives (pack, offset, lengths), so an
//! object is found without scanning packs.
//!
//! File layout: header (`MOATIDX\0`, version) | pack count (u32) | pack ids |
//! entry count (u32) | entries sorted by id (id, kind, compression, pack
//! number, offset, stored_len, raw_len) | blake3 of everything before. The
//! file name is that hash in hex. A writer publishes one index file per
//! session after its packs, so no index file is ever rewritten in place.
//!
//! Pure codec; `store::index` loads and merges the files of a store.

use std::path::Path;

use crate::error::{Error, Result};
use crate::format::compress::Compression;
use crate::format::header::{self, Reader};
use crate::format::id::ObjectId;
use crate::format::pack::{FinishedPack, ObjectKind};

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

impl IndexEntry {
    /// The object as a pack's table describes it.
    pub fn to_pack_entry(&self) -> crate::format::pack::PackEntry {
        crate::format::pack::PackEntry {
            id: self.id,
            kind: self.kind,
            compression: self.compression,
            offset: self.offset,
            stored_len: self.stored_len,
            raw_len: self.raw_len,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::PackEntry;

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
}
