//! A writing session: stores new objects into packs, skipping objects the
//! store (or this session) already has, and publishes packs and one index
//! file at the end.
//!
//! Invariants: objects are deduplicated before compression, so a known
//! chunk costs one hash and one lookup. Chunks and trees go to separate
//! packs. Nothing is visible to readers until `finish` has published the
//! packs and then the index that lists them.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::Result;
use crate::format::id::ObjectId;
use crate::format::index::IndexFile;
use crate::format::pack::{FinishedPack, ObjectKind};
use crate::store::Store;
use crate::store::index::Index;
use crate::store::pack_writer::PackWriter;

struct Sink {
    current: Option<PackWriter>,
}

pub struct ObjectWriter<'a> {
    store: &'a Store,
    index: Arc<Index>,
    seen: Mutex<HashSet<ObjectId>>,
    chunks: Mutex<Sink>,
    trees: Mutex<Sink>,
    finished: Mutex<Vec<FinishedPack>>,
    pub new_objects: AtomicU64,
    pub new_bytes: AtomicU64,
    /// Dry sessions hash but write nothing; they keep new trees in memory.
    dry: bool,
    /// zstd level for new objects (the store's default unless overridden).
    level: i32,
    mem_trees: Mutex<HashMap<ObjectId, Vec<u8>>>,
}

impl<'a> ObjectWriter<'a> {
    pub fn new(store: &'a Store) -> Result<Self> {
        Ok(ObjectWriter {
            store,
            seen: Mutex::new(HashSet::new()),
            chunks: Mutex::new(Sink { current: None }),
            trees: Mutex::new(Sink { current: None }),
            finished: Mutex::new(Vec::new()),
            new_objects: AtomicU64::new(0),
            new_bytes: AtomicU64::new(0),
            dry: false,
            level: store.config.zstd_level,
            mem_trees: Mutex::new(HashMap::new()),
            index: store.index()?,
        })
    }

    /// A session that computes ids without writing anything (for `diff`
    /// against a workspace). New trees are kept and returned by `finish_dry`.
    pub fn dry(store: &'a Store) -> Result<Self> {
        Ok(ObjectWriter {
            dry: true,
            ..Self::new(store)?
        })
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
        self.mem_trees.into_inner().unwrap_or_else(|p| p.into_inner())
    }

    /// True when the store or this session already holds `id`.
    pub fn has(&self, id: &ObjectId) -> bool {
        self.index.contains(id) || lock(&self.seen).contains(id)
    }

    /// Stores `raw` under `id` unless it is already stored. Returns the id.
    pub fn put(&self, kind: ObjectKind, id: ObjectId, raw: &[u8]) -> Result<ObjectId> {
        if self.index.contains(&id) || !lock(&self.seen).insert(id) {
            return Ok(id);
        }
        if self.dry {
            if kind == ObjectKind::Tree {
                lock(&self.mem_trees).insert(id, raw.to_vec());
            }
            return Ok(id);
        }
        let (comp, stored) = crate::format::compress::encode(raw, self.level);
        self.new_objects.fetch_add(1, Ordering::Relaxed);
        self.new_bytes.fetch_add(stored.len() as u64, Ordering::Relaxed);
        let sink = match kind {
            ObjectKind::Chunk => &self.chunks,
            ObjectKind::Tree => &self.trees,
        };
        let full = {
            let mut s = lock(sink);
            if s.current.is_none() {
                s.current = Some(PackWriter::create(&self.store.tmp_dir())?);
            }
            let w = s.current.as_mut().expect("just created");
            w.add(id, kind, comp, raw.len() as u32, &stored)?;
            if w.bytes() >= self.store.config.pack_target as u64 {
                s.current.take()
            } else {
                None
            }
        };
        // Finish a full pack outside the lock: its fsync must not stall
        // the other workers.
        if let Some(w) = full {
            let done = w.finish(self.store.root())?;
            lock(&self.finished).push(done);
        }
        Ok(id)
    }

    /// Hashes and stores a chunk.
    pub fn put_chunk(&self, raw: &[u8]) -> Result<ObjectId> {
        self.put(ObjectKind::Chunk, ObjectId::hash(raw), raw)
    }

    /// Publishes open packs, then one index file listing every pack of the
    /// session. Returns the number of packs published.
    pub fn finish(self) -> Result<usize> {
        let mut finished = self.finished.into_inner().unwrap_or_else(|p| p.into_inner());
        for sink in [self.chunks, self.trees] {
            if let Some(w) = sink.into_inner().unwrap_or_else(|p| p.into_inner()).current {
                finished.push(w.finish(self.store.root())?);
            }
        }
        if finished.is_empty() {
            return Ok(0);
        }
        crate::util::failpoint("after-packs");
        self.store.write_index(&IndexFile::from_packs(&finished))?;
        self.store.invalidate_index();
        Ok(finished.len())
    }

    /// Drops unfinished packs after an error.
    pub fn abandon(self) {
        for sink in [self.chunks, self.trees] {
            if let Some(w) = sink.into_inner().unwrap_or_else(|p| p.into_inner()).current {
                w.abandon();
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
