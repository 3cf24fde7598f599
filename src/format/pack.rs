//! Pack files: many compressed objects in one file, with a self-describing
//! trailer so the index can be rebuilt by scanning packs.
//!
//! Layout: header (`MOATPACK`, version) | stored objects back to back |
//! table (count, then per object: id, kind, compression, stored_len, raw_len)
//! | table length (u32) | `MOATPEND`. The pack id is the blake3 of the whole
//! file, which is also its file name.
//!
//! Pure codec: `store::pack_writer` writes packs, `parse` reads a whole
//! pack's framing back. A published pack never changes.

use std::path::Path;

use crate::error::{Error, Result};
use crate::format::compress::Compression;
use crate::format::header::{self, HEADER_LEN, Reader};
use crate::format::id::ObjectId;

pub const MAGIC: &[u8; 8] = b"MOATPACK";
pub const END_MAGIC: &[u8; 8] = b"MOATPEND";
pub const VERSION: u32 = 1;
const ENTRY_LEN: usize = 32 + 1 + 1 + 4 + 4;
/// A pack is closed once it reaches this many bytes.
pub const MAX_PACK_BYTES: u64 = u32::MAX as u64 / 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ObjectKind {
    Chunk = 0,
    Tree = 1,
}

impl ObjectKind {
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(ObjectKind::Chunk),
            1 => Some(ObjectKind::Tree),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Chunk => "chunk",
            ObjectKind::Tree => "tree",
        }
    }
}

/// The most raw (decompressed) bytes an object of `kind` may claim in a
/// store whose largest chunk is `chunk_max`: a reader refuses a bigger
/// claim before allocating for it.
pub fn max_raw_len(kind: ObjectKind, chunk_max: u32) -> u32 {
    match kind {
        ObjectKind::Chunk => chunk_max,
        ObjectKind::Tree => crate::format::tree::MAX_TREE_BYTES,
    }
}

/// One object as described by a pack trailer (offset from the file start).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackEntry {
    pub id: ObjectId,
    pub kind: ObjectKind,
    pub compression: Compression,
    pub offset: u32,
    pub stored_len: u32,
    pub raw_len: u32,
}

/// Bytes of a pack file that are not object data, for `n` objects.
pub fn overhead(n: u64) -> u64 {
    (HEADER_LEN + 4 + 4 + 8) as u64 + n * ENTRY_LEN as u64
}

/// A pack that has been published: its id (= name) and what it holds.
pub struct FinishedPack {
    pub id: ObjectId,
    pub entries: Vec<PackEntry>,
    pub bytes: u64,
}

pub fn encode_table(entries: &[PackEntry]) -> Vec<u8> {
    let mut t = Vec::with_capacity(4 + entries.len() * ENTRY_LEN);
    t.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        t.extend_from_slice(&e.id.0);
        t.push(e.kind as u8);
        t.push(e.compression as u8);
        t.extend_from_slice(&e.stored_len.to_le_bytes());
        t.extend_from_slice(&e.raw_len.to_le_bytes());
    }
    t
}

/// Parses a whole pack file's framing and trailer (not the objects).
pub fn parse(data: &[u8], path: &Path) -> Result<Vec<PackEntry>> {
    header::check(data, MAGIC, VERSION, "pack", path)?;
    let bad = |d: &str| Error::corrupt(path, "pack", d);
    if data.len() < HEADER_LEN + 4 + 4 + 8 || &data[data.len() - 8..] != END_MAGIC {
        return Err(bad("missing end marker (truncated?)"));
    }
    let tl_pos = data.len() - 12;
    let table_len = u32::from_le_bytes(data[tl_pos..tl_pos + 4].try_into().unwrap_or([0; 4]));
    let table_start = tl_pos
        .checked_sub(table_len as usize)
        .filter(|s| *s >= HEADER_LEN)
        .ok_or_else(|| bad("table length points outside the file"))?;
    let mut r = Reader::new(&data[table_start..tl_pos]);
    let count = r.u32().ok_or_else(|| bad("table too short"))? as usize;
    if r.remaining() != count.saturating_mul(ENTRY_LEN) {
        return Err(bad("table size does not match its object count"));
    }
    let mut entries = Vec::with_capacity(count);
    let mut offset = HEADER_LEN as u64;
    for _ in 0..count {
        let id = r.id().ok_or_else(|| bad("table truncated"))?;
        let kind = r.u8().and_then(ObjectKind::from_u8);
        let comp = r.u8().and_then(Compression::from_u8);
        let (Some(kind), Some(compression)) = (kind, comp) else {
            return Err(bad(&format!("object {id} has an unknown kind or compression")));
        };
        let stored_len = r.u32().ok_or_else(|| bad("table truncated"))?;
        let raw_len = r.u32().ok_or_else(|| bad("table truncated"))?;
        entries.push(PackEntry {
            id,
            kind,
            compression,
            offset: offset as u32,
            stored_len,
            raw_len,
        });
        offset += stored_len as u64;
    }
    if offset != table_start as u64 {
        return Err(bad("object lengths do not add up to the data section"));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_round_trip_and_truncation() {
        let mut data = Vec::new();
        header::write(&mut data, MAGIC, VERSION);
        let mut entries = Vec::new();
        for i in 0..10u8 {
            let raw = vec![i; 100 + i as usize];
            let (c, s) = crate::format::compress::encode(&raw, 3);
            entries.push(PackEntry {
                id: ObjectId::hash(&raw),
                kind: ObjectKind::Chunk,
                compression: c,
                offset: data.len() as u32,
                stored_len: s.len() as u32,
                raw_len: raw.len() as u32,
            });
            data.extend_from_slice(&s);
        }
        let table = encode_table(&entries);
        data.extend_from_slice(&table);
        data.extend_from_slice(&(table.len() as u32).to_le_bytes());
        data.extend_from_slice(END_MAGIC);
        let path = Path::new("p");
        assert_eq!(parse(&data, path).unwrap(), entries);
        // every truncation is an error, never a panic
        for n in 0..data.len() {
            assert!(parse(&data[..n], path).is_err());
        }
    }
}
