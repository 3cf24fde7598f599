//! Writing one pack file: objects are appended to a temp file in the
//! store's `tmp/`, the trailer is written, the file is fsynced and renamed
//! to its content-derived name (`format::pack` describes the bytes).
//!
//! Invariant: a pack becomes visible only complete and durable; a failed,
//! abandoned or dropped pack writer removes its temp file, so an error
//! (a full disk, EIO) leaves nothing behind.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::compress::Compression;
use crate::format::header;
use crate::format::id::ObjectId;
use crate::format::pack::{END_MAGIC, FinishedPack, MAGIC, ObjectKind, PackEntry, VERSION, encode_table};
use crate::store::file::{self, FileKind};
use crate::store::layout;

pub struct PackWriter {
    /// None once finished (the temp file is then the published pack).
    file: Option<BufWriter<File>>,
    tmp: PathBuf,
    hasher: blake3::Hasher,
    entries: Vec<PackEntry>,
    offset: u64,
}

impl PackWriter {
    pub fn create(tmp_dir: &Path) -> Result<Self> {
        let (f, tmp) = file::create_temp(tmp_dir, "pack")?;
        let mut w = PackWriter {
            file: Some(BufWriter::with_capacity(1 << 20, f)),
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
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| Error::store_write(&self.tmp, std::io::ErrorKind::BrokenPipe.into()))?;
        // The failpoint sees each object as one write, as the disk would
        // see it without the buffer.
        crate::util::fault::write_all(FileKind::Pack.write_point(), f, data)
            .map_err(|e| Error::store_write(&self.tmp, e))?;
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
        let offset = u32::try_from(self.offset)
            .map_err(|_| Error::store_write(&self.tmp, std::io::Error::other("pack exceeds 4 GiB")))?;
        let stored_len = u32::try_from(stored.len())
            .map_err(|_| Error::store_write(&self.tmp, std::io::Error::other("object exceeds 4 GiB")))?;
        self.write(stored)?;
        self.entries.push(PackEntry {
            id,
            kind,
            compression,
            offset,
            stored_len,
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
    /// On error the temp file is removed.
    pub fn finish(mut self, store_root: &Path) -> Result<FinishedPack> {
        let table = encode_table(&self.entries);
        self.write(&table)?;
        self.write(&(table.len() as u32).to_le_bytes())?;
        self.write(END_MAGIC)?;
        let buffered = self
            .file
            .take()
            .ok_or_else(|| Error::store_write(&self.tmp, std::io::ErrorKind::BrokenPipe.into()))?;
        let mut f = buffered
            .into_inner()
            .map_err(|e| Error::store_write(&self.tmp, e.into_error()))?;
        f.flush().map_err(|e| Error::store_write(&self.tmp, e))?;
        f.sync_all().map_err(|e| Error::store_write(&self.tmp, e))?;
        drop(f);
        let id = ObjectId::from_hasher(&self.hasher);
        file::publish(&self.tmp, &store_root.join(layout::pack(&id)))?;
        Ok(FinishedPack {
            id,
            entries: std::mem::take(&mut self.entries),
            bytes: self.offset,
        })
    }

    /// Drops an unfinished pack (error path): its temp file goes.
    pub fn abandon(self) {}
}

impl Drop for PackWriter {
    fn drop(&mut self) {
        // Unfinished, or finish failed before or at the rename: the temp
        // file is this writer's alone. (After a successful rename it no
        // longer exists under this name.)
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
        std::fs::create_dir_all(dir.path().join("packs")).unwrap();
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
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn a_dropped_writer_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let w = PackWriter::create(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
