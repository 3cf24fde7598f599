//! The storage seam: every read, write, list, publish and delete of a
//! store file goes through the `Backend` trait, keyed by what kind of file
//! it is (`FileKind`) and its name. Names are ids in hex (packs, index
//! files, snapshots, pins), the first 32 hex digits of a workspace hash
//! (stat caches), moat temp names (`tmp`), or empty (`config`). No caller
//! sees a path to a store file: `describe` gives one for messages only.
//!
//! Implementations: `local` (a directory: temp → fsync → rename → fsync of
//! the directory, packs and index files memory-mapped), `memory` (the
//! in-memory twin the unit tests of the layers above run against) and
//! `s3` (a bucket, through `remote`: `list` by kind, `read_range` as
//! ranged GETs, `create_new` as conditional creates, `upload` buffered
//! and PUT whole when published).
//!
//! Contract every backend keeps (the store's crash safety rests on it):
//! - a file is visible under its name only complete and durable (`write`,
//!   `create_new`, `Upload::publish`); a failed or dropped write leaves no
//!   trace a reader can see;
//! - files are never modified in place: content-addressed names get the
//!   same bytes again, the rest (stat caches) are replaced whole;
//! - `create_new` never replaces: of two racing creators exactly one wins;
//! - `list` after a completed publish shows the file; after a completed
//!   `remove` (and `sync` of its kind) it does not;
//! - write failures are `Error::StoreWrite` (they fail a capture or gc),
//!   and every error names the file (`describe`).

pub mod file;
pub mod layout;
pub mod local;
pub mod memory;
pub mod remote;
pub mod s3;
mod s3_error;

use std::ops::{Deref, Range};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::Result;
use crate::format::id::ObjectId;
use crate::store::lock::Lock;

/// What a store file is: where a backend keeps it, its failpoint and the
/// words of its error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    Config,
    Pack,
    Index,
    Snapshot,
    Pin,
    /// A workspace's stat cache (disposable: written without fsync).
    Cache,
    /// The delta on top of a workspace's stat cache (as disposable), under
    /// the same name.
    CacheDelta,
    /// The watch token kept beside a workspace's stat cache (as
    /// disposable), under the same name.
    WatchToken,
    /// Temp files and staging dirs of live or crashed writers (only
    /// listed, examined and removed through the trait).
    Tmp,
}

impl FileKind {
    /// The failpoint every write of this kind passes (`util::fault`).
    pub fn write_point(self) -> &'static str {
        match self {
            FileKind::Config => "config-write",
            FileKind::Pack => "pack-write",
            FileKind::Index => "index-write",
            FileKind::Snapshot => "snapshot-write",
            FileKind::Pin => "pin-write",
            FileKind::Cache | FileKind::CacheDelta | FileKind::WatchToken => "cache-write",
            FileKind::Tmp => "tmp-write",
        }
    }

    /// Whether a write of this kind must be durable before it returns
    /// (everything but the disposable stat cache).
    pub fn durable(self) -> bool {
        !matches!(
            self,
            FileKind::Cache | FileKind::CacheDelta | FileKind::WatchToken
        )
    }

    /// The temp-name extension of a write of this kind (store-format.md,
    /// "Temp files").
    pub fn temp_ext(self) -> &'static str {
        match self {
            FileKind::Pack => "pack",
            FileKind::Config => "config",
            _ => "write",
        }
    }
}

/// The bytes of a store file or of a range of one: a window on a shared
/// memory map (local packs and index files) or on a heap buffer. Cloning
/// and slicing are cheap.
#[derive(Clone)]
pub struct Blob {
    bytes: Bytes,
    range: Range<usize>,
}

#[derive(Clone)]
enum Bytes {
    Map(Arc<memmap2::Mmap>),
    Heap(Arc<Vec<u8>>),
}

impl Blob {
    pub fn mapped(map: Arc<memmap2::Mmap>) -> Self {
        let range = 0..map.len();
        Blob {
            bytes: Bytes::Map(map),
            range,
        }
    }

    pub fn shared(data: Arc<Vec<u8>>) -> Self {
        let range = 0..data.len();
        Blob {
            bytes: Bytes::Heap(data),
            range,
        }
    }

    /// Bytes `[offset, offset + len)` of this blob, cut short where the
    /// blob ends (a ranged read past the end of a file).
    pub fn slice(&self, offset: u64, len: u64) -> Blob {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.range.len());
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let end = start.saturating_add(len).min(self.range.len());
        Blob {
            bytes: self.bytes.clone(),
            range: self.range.start + start..self.range.start + end,
        }
    }

    /// Tells the kernel a mapped blob is read at random (no read-ahead, no
    /// mapping of neighbouring pages on a fault): a binary search over a
    /// large table then keeps resident only the pages it reads. A no-op on
    /// heap blobs.
    pub fn advise_random(&self) {
        if let Bytes::Map(m) = &self.bytes {
            let _ = m.advise(memmap2::Advice::Random);
        }
    }

    /// Tells the kernel this process is done with `range` of a mapped
    /// blob for now: its pages leave this process's resident set (they
    /// stay in the page cache and come back on the next access). A no-op
    /// on heap blobs.
    pub fn release(&self, range: Range<usize>) {
        if let Bytes::Map(m) = &self.bytes {
            let start = self.range.start.saturating_add(range.start);
            let end = self.range.start.saturating_add(range.end).min(self.range.end);
            // Only whole pages inside the range: a page shared with bytes
            // still in use stays.
            let page = 4096;
            let (start, end) = (start.div_ceil(page) * page, end / page * page);
            if end > start {
                // SAFETY: the map is read-only and its file is never
                // modified in place (the backend contract), so dropping
                // its pages loses nothing: they are read back on access.
                let _ = unsafe {
                    m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
                };
            }
        }
    }
}

impl Deref for Blob {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Map(m) => &m[self.range.clone()],
            Bytes::Heap(v) => &v[self.range.clone()],
        }
    }
}

impl AsRef<[u8]> for Blob {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl From<Vec<u8>> for Blob {
    fn from(v: Vec<u8>) -> Self {
        Blob::shared(Arc::new(v))
    }
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Blob({} bytes)", self.len())
    }
}

/// What a store file is, as `stat` finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    File,
    /// A directory (only staging dirs among the temp files are).
    Dir,
    /// Anything else (a symlink, a FIFO, ...): named for messages.
    Other(&'static str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub shape: Shape,
    /// Bytes (of a staging dir: of the copies in it).
    pub len: u64,
    /// The newest of its modification and change times, ns since the
    /// epoch (a change time cannot be set back, so a file cannot be made
    /// to look old).
    pub touched_ns: i64,
}

/// A store file being written whose name is known only at its end (a
/// pack is named by the hash of its bytes). Dropped unpublished, it
/// leaves nothing behind.
pub trait Upload: Send {
    /// Appends `data` (each call is one write for the failpoints).
    fn write(&mut self, data: &[u8]) -> Result<()>;

    /// Makes the file durable and visible as `name`.
    fn publish(self: Box<Self>, name: &str) -> Result<()>;

    /// Where the unfinished file is, for messages.
    fn describe(&self) -> PathBuf;
}

/// Requests and bytes that went over the wire (all zero for a store on
/// this machine).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub requests: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

/// Where and how a store's files are kept (see the module doc for the
/// contract).
pub trait Backend: Send + Sync {
    /// The store as a whole, for messages (a directory, a URL).
    fn location(&self) -> &Path;

    /// The directory on this machine the store's files live in, if any:
    /// walks and watchers of a workspace skip it.
    fn local_root(&self) -> Option<&Path>;

    /// A directory on this machine (on the store's filesystem, for a local
    /// store) where the store creates temp files and dirs named by
    /// `util::temp_name`, listed as `FileKind::Tmp`: staging copies are
    /// cloned there. `None`: the backend has no local scratch space.
    fn scratch(&self) -> Option<&Path>;

    /// Where file `name` of `kind` is, for messages only (never opened).
    fn describe(&self, kind: FileKind, name: &str) -> PathBuf;

    /// The whole file, or `None` when there is none.
    fn read(&self, kind: FileKind, name: &str) -> Result<Option<Blob>>;

    /// Bytes `[offset, offset + len)` of a file that must exist, cut short
    /// where the file ends.
    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Blob>;

    /// What the file is, or `None` when there is none (never follows a
    /// symlink).
    fn stat(&self, kind: FileKind, name: &str) -> Result<Option<Meta>>;

    /// The names of every file of `kind` (unsorted). Names that are not
    /// the kind's (foreign files) are left out.
    fn list(&self, kind: FileKind) -> Result<Vec<String>>;

    /// Writes a whole file, replacing any file of that name atomically
    /// (durable before it returns when `kind.durable()`).
    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()>;

    /// Writes a whole file unless one exists; returns whether it did.
    /// Never replaces: of two racing creators one wins.
    fn create_new(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<bool>;

    /// Starts a file whose name is given when it is published.
    fn upload(&self, kind: FileKind) -> Result<Box<dyn Upload>>;

    /// Removes a file (a staging dir with what is in it); returns whether
    /// it existed. Not durable until `sync(kind)`.
    fn remove(&self, kind: FileKind, name: &str) -> Result<bool>;

    /// Makes the removes of `kind` so far durable.
    fn sync(&self, kind: FileKind) -> Result<()>;

    /// Free bytes where the store writes (`None` when it cannot be told).
    fn free_space(&self) -> Option<u64>;

    /// The store's lock (see `store::lock`).
    fn lock(&self) -> &dyn Lock;

    /// The bytes of tree object `id` from a local copy, if the backend
    /// keeps one, it is at most `max_len` bytes and it hashes to `id`.
    fn cached_tree(&self, _id: &ObjectId, _max_len: u64) -> Option<Vec<u8>> {
        None
    }

    /// Keeps a local copy of tree object `id` (verified `raw`), where the
    /// backend keeps them; a failure costs only a later fetch.
    fn keep_tree(&self, _id: &ObjectId, _raw: &[u8]) {}

    /// What this backend has sent and received so far.
    fn traffic(&self) -> Traffic {
        Traffic::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_slices_are_cut_at_the_end() {
        let b = Blob::from(b"0123456789".to_vec());
        assert_eq!(&*b.slice(2, 3), b"234");
        assert_eq!(&*b.slice(8, 5), b"89");
        assert_eq!(&*b.slice(20, 5), b"");
        assert_eq!(&*b.slice(2, 6).slice(1, 100), b"34567");
        assert_eq!(&*b.slice(u64::MAX, u64::MAX), b"");
    }

    /// Released pages of a mapped blob read back the same bytes (a walk
    /// releases the stat cache's pages between lookup batches).
    #[test]
    fn released_pages_read_back_unchanged() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        let data: Vec<u8> = (0..5 * 4096 + 17).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let b = Blob::mapped(Arc::new(file::map(&p).unwrap()));
        assert_eq!(&*b, &data[..]);
        b.release(0..b.len());
        assert_eq!(&*b, &data[..]);
        let s = b.slice(100, 3 * 4096);
        s.release(0..s.len());
        assert_eq!(&*b, &data[..]);
    }
}
