//! Pack files: many compressed objects in one file, with a self-describing
//! trailer so the index can be rebuilt by scanning packs.
//!
//! Layout: header (`MOATPACK`, version) | stored objects back to back |
//! table (count, then per object: id, kind, compression, stored_len, raw_len)
//! | table length (u32) | `MOATPEND`. The pack id is the blake3 of the whole
//! file, which is also its file name.
//!
//! Invariant: a pack is written under a temp name, fsynced, then renamed into
//! `packs/`; a published pack never changes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::compress::Compression;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::header::{self, HEADER_LEN, Reader};
use crate::id::ObjectId;

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

/// Relative path of a pack inside the store.
pub fn rel_path(id: &ObjectId) -> PathBuf {
    let hex = id.to_hex();
    PathBuf::from("packs").join(&hex[..2]).join(format!("{hex}.pack"))
}

pub struct PackWriter {
    file: BufWriter<File>,
    tmp: PathBuf,
    hasher: blake3::Hasher,
    entries: Vec<PackEntry>,
    offset: u64,
}

pub struct FinishedPack {
    pub id: ObjectId,
    pub entries: Vec<PackEntry>,
    pub bytes: u64,
}

impl PackWriter {
    pub fn create(tmp_dir: &Path) -> Result<Self> {
        let (file, tmp) = fsutil::create_temp(tmp_dir, "pack")?;
        let mut w = PackWriter {
            file: BufWriter::with_capacity(1 << 20, file),
            tmp,
            hasher: blake3::Hasher::new(),
            entries: Vec::new(),
            offset: 0,
        };
        let mut head = Vec::new();
        header::write(&mut head, MAGIC, VERSION);
        w.write(&head)?;
        Ok(w)
    }

    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.file.write_all(data).at(&self.tmp)?;
        self.hasher.update(data);
        self.offset += data.len() as u64;
        Ok(())
    }

    pub fn add(
        &mut self,
        id: ObjectId,
        kind: ObjectKind,
        compression: Compression,
        raw_len: u32,
        stored: &[u8],
    ) -> Result<()> {
        let offset = self.offset as u32;
        self.write(stored)?;
        self.entries.push(PackEntry {
            id,
            kind,
            compression,
            offset,
            stored_len: stored.len() as u32,
            raw_len,
        });
        Ok(())
    }

    pub fn bytes(&self) -> u64 {
        self.offset
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the trailer, fsyncs, and publishes the pack under its id.
    pub fn finish(mut self, store_root: &Path) -> Result<FinishedPack> {
        let table = encode_table(&self.entries);
        self.write(&table)?;
        self.write(&(table.len() as u32).to_le_bytes())?;
        self.write(END_MAGIC)?;
        let file = self
            .file
            .into_inner()
            .map_err(|e| Error::io(&self.tmp, e.into_error()))?;
        file.sync_all().at(&self.tmp)?;
        drop(file);
        let id = ObjectId::from_hasher(&self.hasher);
        fsutil::publish(&self.tmp, &store_root.join(rel_path(&id)))?;
        Ok(FinishedPack {
            id,
            entries: self.entries,
            bytes: self.offset,
        })
    }

    /// Drops an unfinished pack (error path).
    pub fn abandon(self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

fn encode_table(entries: &[PackEntry]) -> Vec<u8> {
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
    fn write_parse_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        let mut w = PackWriter::create(&dir.path().join("tmp")).unwrap();
        for i in 0..10u8 {
            let raw = vec![i; 100 + i as usize];
            let (c, s) = crate::compress::encode(&raw, 3);
            w.add(ObjectId::hash(&raw), ObjectKind::Chunk, c, raw.len() as u32, &s)
                .unwrap();
        }
        let done = w.finish(dir.path()).unwrap();
        let path = dir.path().join(rel_path(&done.id));
        let data = std::fs::read(&path).unwrap();
        assert_eq!(ObjectId::hash(&data), done.id);
        let parsed = parse(&data, &path).unwrap();
        assert_eq!(parsed, done.entries);
        for e in &parsed {
            let s = &data[e.offset as usize..][..e.stored_len as usize];
            crate::compress::decode(&e.id, e.compression, e.raw_len, s).unwrap();
        }
        // every truncation is an error, never a panic
        for n in 0..data.len() {
            assert!(parse(&data[..n], &path).is_err());
        }
    }
}
