//! Verified reads of objects: the stored bytes of one copy come from its
//! pack through a ranged read, are checked against the size the store
//! allows for the object's kind before anything is allocated, then
//! decompressed and hashed against the object's id.

use crate::error::{Error, Result};
use crate::format::id::ObjectId;
use crate::format::index::IndexEntry;
use crate::format::pack::{ObjectKind, PackEntry};
use crate::format::tree::Tree;
use crate::store::Store;
use crate::store::backend::{Blob, FileKind};
use crate::store::index::Index;

impl Store {
    /// The whole of pack `id` (for `check --read-data`).
    pub fn read_pack(&self, id: &ObjectId) -> Result<Blob> {
        let name = id.to_hex();
        self.backend.read(FileKind::Pack, &name)?.ok_or_else(|| {
            Error::io(
                self.describe(FileKind::Pack, &name),
                std::io::ErrorKind::NotFound.into(),
            )
        })
    }

    /// The stored (compressed) bytes of the object `e` of pack `pack`; an
    /// error string when the pack ends before them.
    pub fn read_stored(&self, pack: &ObjectId, e: &IndexEntry) -> Result<Result<Blob, String>> {
        let len = u64::from(e.stored_len);
        let b = self
            .backend
            .read_range(FileKind::Pack, &pack.to_hex(), u64::from(e.offset), len)?;
        Ok(match b.len() as u64 == len {
            true => Ok(b),
            false => Err("lies beyond the end of the pack (truncated pack?)".to_string()),
        })
    }

    /// Decodes one stored object of a pack and verifies it: its claimed
    /// size against what the store allows for its kind (before anything is
    /// allocated), then its content against its id.
    pub fn decode_object(&self, o: &PackEntry, stored: &[u8]) -> Result<Vec<u8>, String> {
        let limit = crate::format::pack::max_raw_len(o.kind, self.config.chunk_max);
        if o.raw_len > limit {
            return Err(format!(
                "claims {} bytes, over the limit of {limit} bytes for a {} in this store",
                o.raw_len,
                o.kind.name()
            ));
        }
        crate::format::compress::decode(&o.id, o.compression, o.raw_len, stored)
    }

    /// Reads one copy of an object (index entry `e`), decompressed and
    /// verified.
    pub fn read_copy(&self, e: &IndexEntry, idx: &Index) -> Result<Vec<u8>> {
        let pack_id = idx.pack_id(e.pack);
        let bad = |detail: String| Error::BadObject {
            id: e.id,
            pack: pack_id.to_hex(),
            detail,
        };
        let stored = self.read_stored(&pack_id, e)?.map_err(bad)?;
        self.decode_object(&e.to_pack_entry(), &stored).map_err(bad)
    }

    /// Reads one object, decompressed and verified against its id. When
    /// the store holds several copies, the first that verifies is used.
    pub fn read_object(&self, id: &ObjectId, kind: ObjectKind) -> Result<Vec<u8>> {
        let idx = self.index()?;
        let mut first_err = None;
        for e in idx.copies(id) {
            let res = if e.kind != kind {
                Err(Error::BadObject {
                    id: *id,
                    pack: idx.pack_id(e.pack).to_hex(),
                    detail: format!("is a {}, expected a {}", e.kind.name(), kind.name()),
                })
            } else {
                self.read_copy(&e, &idx)
            };
            match res {
                Ok(data) => return Ok(data),
                Err(err) => {
                    first_err.get_or_insert(err);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| Error::MissingObject {
            id: *id,
            by: format!("a {} reference", kind.name()),
        }))
    }

    /// A tree object's bytes, verified: from the backend's local copy
    /// where it keeps one (a remote store's cache), else from its pack
    /// (and then kept).
    pub fn read_tree_bytes(&self, id: &ObjectId) -> Result<Vec<u8>> {
        let limit = crate::format::pack::max_raw_len(ObjectKind::Tree, self.config.chunk_max);
        if let Some(data) = self.backend.cached_tree(id, u64::from(limit)) {
            return Ok(data);
        }
        let data = self.read_object(id, ObjectKind::Tree)?;
        self.backend.keep_tree(id, &data);
        Ok(data)
    }

    pub fn read_tree(&self, id: &ObjectId) -> Result<Tree> {
        let data = self.read_tree_bytes(id)?;
        Tree::decode(&data).map_err(|detail| Error::BadTree { id: *id, detail })
    }
}
