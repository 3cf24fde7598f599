//! Writing one pack file: objects are appended to a temp file in the
//! store's `tmp/`, the trailer is written, the file is fsynced and renamed
//! to its content-derived name (`format::pack` describes the bytes).
//!
//! Invariant: a pack becomes visible only complete and durable; a failed
//! or abandoned pack leaves nothing but its temp file, which `abandon` (or
//! the next `gc`) removes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::format::compress::Compression;
use crate::format::header;
use crate::format::id::ObjectId;
use crate::format::pack::{END_MAGIC, FinishedPack, MAGIC, ObjectKind, PackEntry, VERSION, encode_table};
use crate::store::layout;
use crate::util::fs as fsutil;

pub struct PackWriter {
    file: BufWriter<File>,
    tmp: PathBuf,
    hasher: blake3::Hasher,
    entries: Vec<PackEntry>,
    offset: u64,
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
        fsutil::publish(&self.tmp, &store_root.join(layout::pack(&id)))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::parse;

    #[test]
    fn write_parse_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        let mut w = PackWriter::create(&dir.path().join("tmp")).unwrap();
        for i in 0..10u8 {
            let raw = vec![i; 100 + i as usize];
            let (c, s) = crate::format::compress::encode(&raw, 3);
            w.add(ObjectId::hash(&raw), ObjectKind::Chunk, c, raw.len() as u32, &s)
                .unwrap();
        }
        let done = w.finish(dir.path()).unwrap();
        let path = dir.path().join(layout::pack(&done.id));
        let data = std::fs::read(&path).unwrap();
        assert_eq!(ObjectId::hash(&data), done.id);
        let parsed = parse(&data, &path).unwrap();
        assert_eq!(parsed, done.entries);
        for e in &parsed {
            let s = &data[e.offset as usize..][..e.stored_len as usize];
            crate::format::compress::decode(&e.id, e.compression, e.raw_len, s).unwrap();
        }
        // every truncation is an error, never a panic
        for n in 0..data.len() {
            assert!(parse(&data[..n], &path).is_err());
        }
    }
}
