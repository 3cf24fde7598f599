//! Writing one pack file: objects are appended to an upload of the
//! store's backend (locally a temp file), the trailer is written, and the
//! pack is published durably under its content-derived name
//! (`format::pack` describes the bytes).
//!
//! Invariant: a pack becomes visible only complete and durable; a failed,
//! abandoned or dropped pack writer leaves nothing (its upload goes), so an error
//! (a full disk, EIO) leaves nothing behind.

use crate::error::{Error, Result};
use crate::format::compress::Compression;
use crate::format::header;
use crate::format::id::ObjectId;
use crate::format::pack::{END_MAGIC, FinishedPack, MAGIC, ObjectKind, PackEntry, VERSION, encode_table};
use crate::store::Store;
use crate::store::backend::{FileKind, Upload};

pub struct PackWriter {
    upload: Box<dyn Upload>,
    hasher: blake3::Hasher,
    entries: Vec<PackEntry>,
    offset: u64,
}

impl PackWriter {
    pub fn create(store: &Store) -> Result<Self> {
        let mut w = PackWriter {
            upload: store.backend().upload(FileKind::Pack)?,
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
        // Each object is one write (the failpoints see it as the disk would
        // without the upload's buffer).
        self.upload.write(data)?;
        self.hasher.update(data);
        self.offset += data.len() as u64;
        Ok(())
    }

    fn too_big(&self, what: &str) -> Error {
        Error::store_write(
            self.upload.describe(),
            std::io::Error::other(format!("{what} exceeds 4 GiB")),
        )
    }

    pub fn add(
        &mut self,
        id: ObjectId,
        kind: ObjectKind,
        compression: Compression,
        raw_len: u32,
        stored: &[u8],
    ) -> Result<()> {
        let offset = u32::try_from(self.offset).map_err(|_| self.too_big("pack"))?;
        let stored_len = u32::try_from(stored.len()).map_err(|_| self.too_big("object"))?;
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

    /// Writes the trailer and publishes the pack, durably, under its id.
    /// On error nothing is left behind.
    pub fn finish(mut self) -> Result<FinishedPack> {
        let table = encode_table(&self.entries);
        self.write(&table)?;
        self.write(&(table.len() as u32).to_le_bytes())?;
        self.write(END_MAGIC)?;
        let id = ObjectId::from_hasher(&self.hasher);
        self.upload.publish(&id.to_hex())?;
        Ok(FinishedPack {
            id,
            entries: self.entries,
            bytes: self.offset,
        })
    }

    /// Drops an unfinished pack (error path): nothing of it stays.
    pub fn abandon(self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::parse;

    #[test]
    fn write_parse_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(dir.path()).unwrap();
        let mut w = PackWriter::create(&store).unwrap();
        for i in 0..10u8 {
            let raw = vec![i; 100 + i as usize];
            let (c, s) = crate::format::compress::encode(&raw, 3);
            w.add(ObjectId::hash(&raw), ObjectKind::Chunk, c, raw.len() as u32, &s)
                .unwrap();
        }
        let done = w.finish().unwrap();
        let data = store.read_pack(&done.id).unwrap();
        assert_eq!(ObjectId::hash(&data), done.id);
        let path = store.describe(FileKind::Pack, &done.id.to_hex());
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
        let store = Store::open_or_create(dir.path()).unwrap();
        let tmp = dir.path().join("tmp");
        let w = PackWriter::create(&store).unwrap();
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 1);
        drop(w);
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    }
}
