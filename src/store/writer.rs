//! A writing session: stores new objects into packs, skipping objects the
//! store (or this session) already has, and publishes packs and one index
//! file at the end.
//!
//! Invariants: objects are deduplicated before compression, so a known
//! chunk costs one hash and one lookup. Chunks and trees go to separate
//! packs. Nothing is visible to readers until `finish` has published the
//! packs and then the index that lists them.
//!
//! A session holds the store's shared lock from `new` to its end. Its
//! `seen` set holds the ids it has taken on: each is in a pack that
//! `finish` publishes, or the session fails. The first write error poisons
//! the session: every later `put` and `finish` fails with that error, so no
//! snapshot can name an object whose pack was lost. A session that ends
//! without a successful `finish` (error, drop) removes its temp files, and
//! the packs it published that no index lists, when it can take the lock
//! exclusively (no other writer can then rely on them); otherwise `gc`
//! removes them. Counts of new objects and bytes are of published packs.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::format::id::ObjectId;
use crate::format::index::IndexFile;
use crate::format::pack::{FinishedPack, ObjectKind, max_raw_len};
use crate::store::Store;
use crate::store::index::Index;
use crate::store::lock::Held;
use crate::store::pack_writer::PackWriter;

/// What a finished session published.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Published {
    pub packs: usize,
    pub objects: u64,
    /// Stored (compressed) bytes.
    pub bytes: u64,
}

pub struct ObjectWriter<'a> {
    store: &'a Store,
    index: Arc<Index>,
    /// The store's shared lock (None for dry sessions).
    lock: Option<Held>,
    seen: Mutex<HashSet<ObjectId>>,
    chunks: Mutex<Option<PackWriter>>,
    trees: Mutex<Option<PackWriter>>,
    finished: Mutex<Vec<FinishedPack>>,
    /// Set by the first write error; `first_error` says what it was.
    failed: AtomicBool,
    first_error: Mutex<Option<(std::path::PathBuf, std::io::Error)>>,
    /// `finish` ran: nothing is left to clean up.
    done: bool,
    /// `finish` published an index file.
    published_index: bool,
    /// Dry sessions hash but write nothing; they keep new trees in memory.
    dry: bool,
    /// zstd level for new objects (the store's default unless overridden).
    level: i32,
    mem_trees: Mutex<HashMap<ObjectId, Vec<u8>>>,
}

impl<'a> ObjectWriter<'a> {
    /// A session writing to `store`; takes the store's shared lock.
    pub fn new(store: &'a Store) -> Result<Self> {
        let lock = store.lock_shared()?;
        Self::with_lock(store, Some(lock), false)
    }

    fn with_lock(store: &'a Store, lock: Option<Held>, dry: bool) -> Result<Self> {
        Ok(ObjectWriter {
            store,
            index: store.index()?,
            lock,
            seen: Mutex::new(HashSet::new()),
            chunks: Mutex::new(None),
            trees: Mutex::new(None),
            finished: Mutex::new(Vec::new()),
            failed: AtomicBool::new(false),
            first_error: Mutex::new(None),
            done: false,
            published_index: false,
            dry,
            level: store.config.zstd_level,
            mem_trees: Mutex::new(HashMap::new()),
        })
    }

    /// A session that computes ids without writing anything (for `diff`
    /// against a workspace). New trees are kept and returned by `finish_dry`.
    pub fn dry(store: &'a Store) -> Result<Self> {
        Self::with_lock(store, None, true)
    }

    /// Compresses this session's new objects at `level` instead of the
    /// store's default (any level decodes the same way).
    pub fn with_level(mut self, level: i32) -> Self {
        self.level = level;
        self
    }

    /// Whether the store (not this session) holds `id`.
    pub fn in_store(&self, id: &ObjectId) -> bool {
        self.index.contains(id)
    }

    /// The trees a dry session produced that the store does not hold.
    pub fn finish_dry(self) -> HashMap<ObjectId, Vec<u8>> {
        std::mem::take(&mut *lock(&self.mem_trees))
    }

    /// The error that poisoned the session, again (every caller sees the
    /// real cause, whichever thread hit it first).
    fn poisoned(&self) -> Error {
        match lock(&self.first_error).as_ref() {
            Some((path, e)) => Error::store_write(path, copy_io(e)),
            None => Error::store_write(
                self.store.location(),
                std::io::Error::other("the writing session failed"),
            ),
        }
    }

    /// Records `e` as the session's failure and returns it.
    fn fail(&self, e: Error) -> Error {
        self.failed.store(true, Ordering::SeqCst);
        let mut first = lock(&self.first_error);
        if first.is_none()
            && let Error::StoreWrite { path, source } = &e
        {
            *first = Some((path.clone(), copy_io(source)));
        }
        e
    }

    /// Stores `raw` under `id` unless it is already stored. Returns the id.
    pub fn put(&self, kind: ObjectKind, id: ObjectId, raw: &[u8]) -> Result<ObjectId> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(self.poisoned());
        }
        if self.index.contains(&id) || !lock(&self.seen).insert(id) {
            return Ok(id);
        }
        if self.dry {
            if kind == ObjectKind::Tree {
                lock(&self.mem_trees).insert(id, raw.to_vec());
            }
            return Ok(id);
        }
        let limit = max_raw_len(kind, self.store.config.chunk_max);
        let raw_len = u32::try_from(raw.len())
            .ok()
            .filter(|n| *n <= limit)
            .ok_or_else(|| {
                self.fail(Error::Limit {
                    path: self.store.location().to_path_buf(),
                    detail: format!(
                        "a {} of {} bytes is over the store's limit of {limit}",
                        kind.name(),
                        raw.len()
                    ),
                })
            })?;
        let (comp, stored) = crate::format::compress::encode(raw, self.level);
        let sink = match kind {
            ObjectKind::Chunk => &self.chunks,
            ObjectKind::Tree => &self.trees,
        };
        let full = (|| {
            let mut s = lock(sink);
            let w = match s.as_mut() {
                Some(w) => w,
                None => s.insert(PackWriter::create(self.store)?),
            };
            w.add(id, kind, comp, raw_len, &stored)?;
            Ok(if w.bytes() >= self.store.config.pack_target as u64 {
                s.take()
            } else {
                None
            })
        })()
        .map_err(|e| self.fail(e))?;
        // Finish a full pack outside the lock: its fsync must not stall
        // the other workers.
        if let Some(w) = full {
            let done = w.finish().map_err(|e| self.fail(e))?;
            lock(&self.finished).push(done);
        }
        Ok(id)
    }

    /// Hashes and stores a chunk.
    pub fn put_chunk(&self, raw: &[u8]) -> Result<ObjectId> {
        self.put(ObjectKind::Chunk, ObjectId::hash(raw), raw)
    }

    /// Publishes open packs, then one index file listing every pack of the
    /// session. On error, the session's temp files and unindexed packs are
    /// removed (see the module doc).
    pub fn finish(mut self) -> Result<Published> {
        self.publish()
    }

    /// `finish`, keeping the session (and so the store's shared lock) until
    /// it is dropped: a capture commits its snapshot under that lock, so
    /// no gc can run between the index and the snapshot that needs it.
    pub fn publish(&mut self) -> Result<Published> {
        if self.done {
            return Ok(Published::default());
        }
        if self.failed.load(Ordering::SeqCst) {
            return Err(self.poisoned());
        }
        for sink in [&self.chunks, &self.trees] {
            if let Some(w) = lock(sink).take() {
                let done = w.finish().map_err(|e| self.fail(e))?;
                lock(&self.finished).push(done);
            }
        }
        let finished = lock(&self.finished);
        let published = Published {
            packs: finished.len(),
            objects: finished.iter().map(|p| p.entries.len() as u64).sum(),
            bytes: finished
                .iter()
                .flat_map(|p| &p.entries)
                .map(|e| e.stored_len as u64)
                .sum(),
        };
        if !finished.is_empty() {
            crate::util::failpoint("after-packs");
            self.store.write_index(&IndexFile::from_packs(&finished))?;
            self.store.invalidate_index();
            self.published_index = true;
        }
        drop(finished);
        self.done = true;
        Ok(published)
    }

    /// Ends a session that published: while it still holds the shared
    /// lock, merges small index files (`store::consolidate`) so lookups
    /// stay fast however many sessions wrote. A failure there costs only
    /// speed (what was published stands), so it is not an error.
    pub fn close(self) {
        if self.done
            && !self.dry
            && self.published_index
            && crate::store::consolidate::consolidate(self.store).is_ok_and(|n| n > 0)
        {
            self.store.invalidate_index();
        }
    }

    /// Drops the session after an error (what dropping it does anyway).
    pub fn abandon(self) {}

    /// Deletes the packs this session published that no index lists, if
    /// no other process holds the store lock: only then can no writer rely
    /// on them (a writer publishing a pack of the same bytes lists it in
    /// its index, and is then seen here).
    fn remove_own_packs(&self) {
        let packs = std::mem::take(&mut *lock(&self.finished));
        let Some(hold) = self.lock.as_ref().filter(|_| !packs.is_empty()) else {
            return;
        };
        // Converts our shared lock; never waits (a process may hold
        // another shared lock on this store while it captures).
        if !hold.try_exclusive() {
            return;
        }
        let Ok(idx) = Index::load(self.store.backend()) else {
            return;
        };
        if !idx.problems.is_empty() {
            return;
        }
        let listed: HashSet<&ObjectId> = idx.packs().iter().collect();
        for p in packs.iter().filter(|p| !listed.contains(&p.id)) {
            let _ = self.store.delete_pack(&p.id);
        }
    }
}

impl Drop for ObjectWriter<'_> {
    fn drop(&mut self) {
        if self.done || self.dry {
            return;
        }
        // Open pack writers remove their temp files as they drop.
        for sink in [&self.chunks, &self.trees] {
            drop(lock(sink).take());
        }
        self.remove_own_packs();
    }
}

/// An equivalent `io::Error` (they are not `Clone`).
fn copy_io(e: &std::io::Error) -> std::io::Error {
    match e.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::new(e.kind(), e.to_string()),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_below(dir: &std::path::Path) -> usize {
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            n += if e.file_type().unwrap().is_dir() {
                files_below(&e.path())
            } else {
                1
            };
        }
        n
    }

    #[test]
    fn a_failed_session_is_poisoned_and_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let store = small_packs(d.path());
        let w = ObjectWriter::new(&store).unwrap();
        // Enough chunks to publish packs mid-session.
        for i in 0..20u32 {
            w.put_chunk(&i.to_le_bytes().repeat(100)).unwrap();
        }
        assert!(!lock(&w.finished).is_empty(), "packs were published mid-session");
        let too_big = vec![7u8; store.config.chunk_max as usize + 1];
        assert!(matches!(w.put_chunk(&too_big), Err(Error::Limit { .. })));
        // Poisoned: nothing more is taken on, and finish fails.
        assert!(w.put_chunk(b"later").is_err());
        assert!(w.finish().is_err());
        assert_eq!(files_below(&d.path().join("tmp")), 0, "temp files left");
        assert_eq!(files_below(&d.path().join("packs")), 0, "unindexed packs left");
        assert_eq!(files_below(&d.path().join("index")), 0);
    }

    #[test]
    fn a_session_whose_pack_writes_fail_publishes_nothing() {
        use crate::store::backend::FileKind;
        use crate::store::backend::memory::MemoryBackend;
        let mem = MemoryBackend::new();
        let store = Store::create_in(Box::new(mem.clone())).unwrap();
        let w = ObjectWriter::new(&store).unwrap();
        w.put_chunk(b"before").unwrap();
        w.finish().unwrap();
        let counts = || (mem.count(FileKind::Pack), mem.count(FileKind::Index));
        assert_eq!(counts(), (1, 1));
        mem.fail_writes(Some(FileKind::Pack));
        let w = ObjectWriter::new(&store).unwrap();
        let err = w.put_chunk(b"after").unwrap_err();
        assert!(matches!(err, Error::StoreWrite { .. }), "{err}");
        assert!(w.put_chunk(b"more").is_err(), "poisoned");
        assert!(w.finish().is_err());
        mem.fail_writes(None);
        assert_eq!(counts(), (1, 1), "nothing new");
        // The store holds what the first session wrote, and only that.
        assert!(store.index().unwrap().contains(&ObjectId::hash(b"before")));
        assert!(!store.index().unwrap().contains(&ObjectId::hash(b"after")));
    }

    /// A store whose packs close after every object.
    fn small_packs(root: &std::path::Path) -> Store {
        let store = Store::open_or_create(root).unwrap();
        let cfg = crate::format::config::StoreConfig {
            pack_target: 1,
            ..store.config.clone()
        };
        std::fs::write(root.join("config"), cfg.encode()).unwrap();
        Store::open(root).unwrap()
    }
}
