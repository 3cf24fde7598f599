//! The store: its files (through a `Backend`), its lock, its index, and
//! reading objects and snapshots back with verification.
//!
//! Owns: `backend` (the storage seam: `local` directory, `memory` twin,
//! `s3` bucket), `lock` (the store-wide reader/writer lock; `lock_remote`,
//! its lease objects in a bucket), `index` (where objects
//! live, read in place), `consolidate` (merging small index files),
//! `read` (verified object reads), `writer` and `pack_writer` (the
//! writing session), `cleanup` (temp files of crashed writers), `scratch`
//! (private local dirs for staging).
//!
//! Invariants: every object handed out by `read_object` has been checked
//! against its id, and no object is decompressed beyond the size the store
//! allows for its kind; nothing unverified leaves this module. Only
//! `backend::layout` names a store directory: the layers above ask the
//! `Store` for what they need by kind and id, never for a path (paths they
//! get are for messages).
//!
//! Uses `format` and `util` only.

pub mod backend;
pub mod cleanup;
pub mod consolidate;
pub mod index;
pub mod lock;
pub mod lock_remote;
pub mod pack_writer;
mod read;
pub mod scratch;
pub mod writer;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::format::config::StoreConfig;
use crate::format::id::ObjectId;
use crate::format::snapshot::Snapshot;
use crate::store::backend::local::LocalBackend;
use crate::store::backend::remote::S3Url;
use crate::store::backend::s3::S3Backend;
use crate::store::backend::{Backend, Blob, FileKind, Shape, layout};
use crate::store::cleanup::TempItem;
use crate::store::index::Index;
use crate::store::lock::Held;
use crate::store::scratch::ScratchDir;

/// Where the store lives: `--store`, else `$MOAT_STORE`, else
/// `$MOAT_HOME/store`, else `~/.moat/store`: a directory, or an
/// `s3://BUCKET/PREFIX` URL (kept as the path's text).
pub fn default_location(flag: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(p) = env("MOAT_STORE") {
        return Ok(PathBuf::from(p));
    }
    if let Some(h) = env("MOAT_HOME") {
        return Ok(PathBuf::from(h).join("store"));
    }
    match env("HOME") {
        Some(h) => Ok(PathBuf::from(h).join(".moat").join("store")),
        None => Err(Error::StoreLocation {
            path: PathBuf::from("~"),
            detail: "HOME is not set; pass --store DIR or set MOAT_STORE".into(),
        }),
    }
}

/// `$MOAT_HOME`, else `~/.moat`: where runs are recorded.
pub fn moat_home() -> Result<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    match (env("MOAT_HOME"), env("HOME")) {
        (Some(h), _) => Ok(PathBuf::from(h)),
        (None, Some(h)) => Ok(PathBuf::from(h).join(".moat")),
        (None, None) => Err(Error::StoreLocation {
            path: PathBuf::from("~"),
            detail: "neither MOAT_HOME nor HOME is set".into(),
        }),
    }
}

pub struct Store {
    backend: Box<dyn Backend>,
    pub config: StoreConfig,
    index: Mutex<Option<Arc<Index>>>,
}

/// A snapshot with its id.
#[derive(Clone, Debug)]
pub struct SnapshotRecord {
    pub id: ObjectId,
    pub snap: Snapshot,
}

impl Store {
    /// Opens the store at `loc` (a directory, or `s3://BUCKET/PREFIX`),
    /// creating it on first use.
    pub fn open_or_create(loc: &Path) -> Result<Self> {
        match s3_url(loc)? {
            Some(url) => Self::create_in(Box::new(S3Backend::open(url)?)),
            None => Self::create_in(Box::new(LocalBackend::create(loc)?)),
        }
    }

    /// Opens an existing store at `loc` (a directory, or
    /// `s3://BUCKET/PREFIX`).
    pub fn open(loc: &Path) -> Result<Self> {
        match s3_url(loc)? {
            Some(url) => Self::open_in(Box::new(S3Backend::open(url)?)),
            None => Self::open_in(Box::new(LocalBackend::open(loc)?)),
        }
    }

    /// Opens the store `backend` holds, giving it a config on first use.
    /// Of two processes creating one store at once, one config wins and
    /// both use it.
    pub fn create_in(backend: Box<dyn Backend>) -> Result<Self> {
        Self::create_with(backend, StoreConfig::new_default())
    }

    fn create_with(backend: Box<dyn Backend>, config: StoreConfig) -> Result<Self> {
        if backend.stat(FileKind::Config, "")?.is_none() {
            backend.create_new(FileKind::Config, "", &config.encode())?;
        }
        Self::open_in(backend)
    }

    /// Opens the store at `loc`, creating it on first use with the
    /// chunking and pack parameters of `like` (and an id of its own): a
    /// push to a new store keeps the source's chunks within its limits.
    pub fn open_or_create_like(loc: &Path, like: &StoreConfig) -> Result<Self> {
        let config = StoreConfig {
            id: StoreConfig::new_default().id,
            ..like.clone()
        };
        match s3_url(loc)? {
            Some(url) => Self::create_with(Box::new(S3Backend::open(url)?), config),
            None => Self::create_with(Box::new(LocalBackend::create(loc)?), config),
        }
    }

    /// Opens the store `backend` holds.
    pub fn open_in(backend: Box<dyn Backend>) -> Result<Self> {
        let data = backend
            .read(FileKind::Config, "")?
            .ok_or_else(|| Error::NoStore(backend.location().to_path_buf()))?;
        let config = StoreConfig::decode(&data, &backend.describe(FileKind::Config, ""))?;
        Ok(Store {
            backend,
            config,
            index: Mutex::new(None),
        })
    }

    /// The storage under this store: for the store's own modules and for
    /// tests that plant raw files.
    pub fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    /// The store as a whole, for messages.
    pub fn location(&self) -> &Path {
        self.backend.location()
    }

    /// Where file `name` of `kind` is, for messages.
    pub fn describe(&self, kind: FileKind, name: &str) -> PathBuf {
        self.backend.describe(kind, name)
    }

    /// moat's own directories (the local store, `$MOAT_HOME`), canonical,
    /// that are never captured, restored into or rolled back
    /// (`worktree::protect` compares them by device and inode).
    pub fn own_dirs(&self) -> Vec<PathBuf> {
        let store = self.backend.local_root().map(|p| Ok(p.to_path_buf()));
        store
            .into_iter()
            .chain([moat_home()])
            .flatten()
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .collect()
    }

    /// A new private directory on this machine for staging copies (on
    /// the store's filesystem, so clones into it work where the store
    /// and the workspace share one), removed when dropped; `None` when the
    /// backend has no local scratch space. `what` names it (`stage`).
    pub fn scratch_dir(&self, what: &str) -> Result<Option<ScratchDir>> {
        self.backend
            .scratch()
            .map(|dir| ScratchDir::create(dir, what))
            .transpose()
    }

    /// Free bytes where the store writes (`None` when it cannot be told).
    pub fn free_space(&self) -> Option<u64> {
        self.backend.free_space()
    }

    /// A shared hold on the store's lock, kept by every writer and reader
    /// for as long as it works; `gc` takes it exclusively before deleting
    /// anything (`store::lock`).
    pub fn lock_shared(&self) -> Result<Held> {
        self.backend.lock().shared()
    }

    /// The exclusive hold `gc` keeps while it deletes: it waits for running
    /// writers and readers, and new ones wait for it. `on_wait` is called
    /// once if the lock is busy.
    pub fn lock_exclusive(&self, on_wait: impl FnOnce()) -> Result<Held> {
        let mut once = Some(on_wait);
        self.backend.lock().exclusive(&mut || {
            if let Some(f) = once.take() {
                f()
            }
        })
    }

    /// Where the stat cache of workspace `ws` is, for messages.
    pub fn stat_cache_path(&self, ws: &Path) -> PathBuf {
        self.describe(FileKind::Cache, &layout::stat_cache_name(ws))
    }

    /// The stat cache of workspace `ws`, if it has one.
    pub fn read_stat_cache(&self, ws: &Path) -> Result<Option<Blob>> {
        self.backend.read(FileKind::Cache, &layout::stat_cache_name(ws))
    }

    /// The stat cache of workspace `ws` mapped in place where the backend
    /// can (a local store), if it has one. (Caches are replaced whole,
    /// never rewritten in place.)
    pub fn map_stat_cache(&self, ws: &Path) -> Result<Option<Blob>> {
        self.read_stat_cache(ws)
    }

    /// The watch token beside workspace `ws`'s stat cache, if any.
    pub fn read_watch_token(&self, ws: &Path) -> Result<Option<Blob>> {
        self.backend
            .read(FileKind::WatchToken, &layout::stat_cache_name(ws))
    }

    /// Replaces the watch token of workspace `ws` (not fsynced: a cache).
    pub fn write_watch_token(&self, ws: &Path, bytes: &[u8]) -> Result<()> {
        self.backend
            .write(FileKind::WatchToken, &layout::stat_cache_name(ws), bytes)
    }

    /// Removes the watch token of workspace `ws` (its cache is replaced).
    pub fn remove_watch_token(&self, ws: &Path) -> Result<bool> {
        self.backend
            .remove(FileKind::WatchToken, &layout::stat_cache_name(ws))
    }

    /// The delta on top of workspace `ws`'s stat cache, if any.
    pub fn read_stat_delta(&self, ws: &Path) -> Result<Option<Blob>> {
        self.backend
            .read(FileKind::CacheDelta, &layout::stat_cache_name(ws))
    }

    /// Replaces the delta of workspace `ws`'s stat cache (not fsynced).
    pub fn write_stat_delta(&self, ws: &Path, bytes: &[u8]) -> Result<()> {
        self.backend
            .write(FileKind::CacheDelta, &layout::stat_cache_name(ws), bytes)
    }

    /// Removes the delta of workspace `ws`'s stat cache.
    pub fn remove_stat_delta(&self, ws: &Path) -> Result<bool> {
        self.backend
            .remove(FileKind::CacheDelta, &layout::stat_cache_name(ws))
    }

    /// Replaces the stat cache of workspace `ws` (not fsynced: it is a cache).
    pub fn write_stat_cache(&self, ws: &Path, bytes: &[u8]) -> Result<()> {
        self.backend
            .write(FileKind::Cache, &layout::stat_cache_name(ws), bytes)
    }

    /// The names of every workspace's stat cache.
    pub fn stat_cache_names(&self) -> Result<Vec<String>> {
        self.backend.list(FileKind::Cache)
    }

    /// The stat cache named `name` (one of `stat_cache_names`).
    pub fn read_named_stat_cache(&self, name: &str) -> Result<Option<Blob>> {
        self.backend.read(FileKind::Cache, name)
    }

    /// Removes a stat cache and its watch token (gc: its workspace is gone).
    pub fn delete_stat_cache(&self, name: &str) -> Result<bool> {
        let _ = self.backend.remove(FileKind::WatchToken, name);
        let _ = self.backend.remove(FileKind::CacheDelta, name);
        self.backend.remove(FileKind::Cache, name)
    }

    /// Publishes an index file (durably); returns its id.
    pub fn write_index(&self, idx: &crate::format::index::IndexFile) -> Result<ObjectId> {
        let (id, bytes) = idx.encode();
        self.backend.write(FileKind::Index, &id.to_hex(), &bytes)?;
        Ok(id)
    }

    /// Removes index files (gc, after publishing the one that replaces them).
    pub fn delete_index_files(&self, ids: &[ObjectId]) -> Result<()> {
        for f in ids {
            self.backend.remove(FileKind::Index, &f.to_hex())?;
        }
        self.backend.sync(FileKind::Index)
    }

    /// Removes a pack file (gc, or a failed writer's own unindexed pack).
    /// Returns whether it existed.
    pub fn delete_pack(&self, id: &ObjectId) -> Result<bool> {
        self.backend.remove(FileKind::Pack, &id.to_hex())
    }

    /// The size of pack `id`, `None` when it is absent; an error when
    /// something other than a regular file sits there.
    pub fn pack_size(&self, id: &ObjectId) -> Result<Option<u64>> {
        let name = id.to_hex();
        match self.backend.stat(FileKind::Pack, &name)? {
            None => Ok(None),
            Some(m) if m.shape == Shape::File => Ok(Some(m.len)),
            Some(m) => Err(Error::NotRegular {
                path: self.describe(FileKind::Pack, &name),
                found: match m.shape {
                    Shape::Other(t) => t,
                    _ => "directory",
                },
            }),
        }
    }

    /// Every pack in the store, indexed or not.
    pub fn pack_ids(&self) -> Result<Vec<ObjectId>> {
        Ok(ids(self.backend.list(FileKind::Pack)?))
    }

    /// Packs in the store that `idx` does not list, with their sizes: left
    /// by writers that died before publishing an index.
    pub fn unindexed_packs(&self, idx: &Index) -> Result<Vec<(ObjectId, u64)>> {
        let known: HashSet<&ObjectId> = idx.packs().iter().collect();
        let mut out = Vec::new();
        for id in self.pack_ids()?.into_iter().filter(|id| !known.contains(id)) {
            // A pack gone meanwhile, or not a regular file, frees nothing.
            out.push((id, self.pack_size(&id).ok().flatten().unwrap_or(0)));
        }
        Ok(out)
    }

    /// Pins a snapshot: no retention policy removes it.
    pub fn pin(&self, id: &ObjectId) -> Result<()> {
        self.backend.write(FileKind::Pin, &id.to_hex(), b"")
    }

    pub fn unpin(&self, id: &ObjectId) -> Result<()> {
        self.backend.remove(FileKind::Pin, &id.to_hex()).map(|_| ())
    }

    pub fn pinned(&self) -> Result<HashSet<ObjectId>> {
        Ok(ids(self.backend.list(FileKind::Pin)?).into_iter().collect())
    }

    /// Removes a snapshot (its data stays until `gc` finds it unreferenced).
    pub fn delete_snapshot(&self, id: &ObjectId) -> Result<()> {
        let name = id.to_hex();
        if !self.backend.remove(FileKind::Snapshot, &name)? {
            return Err(Error::io(
                self.describe(FileKind::Snapshot, &name),
                std::io::ErrorKind::NotFound.into(),
            ));
        }
        let _ = self.unpin(id);
        self.backend.sync(FileKind::Snapshot)
    }

    /// The index, loaded on first use and after `invalidate_index`.
    pub fn index(&self) -> Result<Arc<Index>> {
        let mut slot = self.index.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = slot.as_ref() {
            return Ok(i.clone());
        }
        let loaded = Arc::new(Index::load(self.backend())?);
        *slot = Some(loaded.clone());
        Ok(loaded)
    }

    /// Forgets the loaded index, so the next read sees newly published
    /// index files (called after this process publishes one).
    pub fn invalidate_index(&self) {
        *self.index.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Loads one snapshot file and checks it against its name.
    pub fn load_snapshot(&self, id: &ObjectId) -> Result<Snapshot> {
        let name = id.to_hex();
        let path = self.describe(FileKind::Snapshot, &name);
        let data = self
            .backend
            .read(FileKind::Snapshot, &name)?
            .ok_or_else(|| Error::io(&path, std::io::ErrorKind::NotFound.into()))?;
        if ObjectId::hash(&data) != *id {
            return Err(Error::corrupt(&path, "snapshot", "content does not match its id"));
        }
        Snapshot::decode(&data, &path)
    }

    /// All snapshot ids in the store (unsorted, unread).
    pub fn snapshot_ids(&self) -> Result<Vec<ObjectId>> {
        Ok(ids(self.backend.list(FileKind::Snapshot)?))
    }

    /// All readable snapshots, oldest first, and the errors of unreadable ones.
    pub fn list_snapshots(&self) -> Result<(Vec<SnapshotRecord>, Vec<Error>)> {
        let mut out = Vec::new();
        let mut problems = Vec::new();
        for id in self.snapshot_ids()? {
            match self.load_snapshot(&id) {
                Ok(snap) => out.push(SnapshotRecord { id, snap }),
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => problems.push(e),
            }
        }
        out.sort_by_key(|r| (r.snap.time_ns, r.id));
        Ok((out, problems))
    }

    /// Publishes a snapshot file: the commit point of a capture.
    pub fn write_snapshot(&self, snap: &Snapshot) -> Result<ObjectId> {
        let (id, bytes) = snap.encode();
        self.backend.write(FileKind::Snapshot, &id.to_hex(), &bytes)?;
        Ok(id)
    }

    /// The newest snapshot of workspace `ws`.
    pub fn latest_of(&self, ws: &Path) -> Result<Option<(ObjectId, Snapshot)>> {
        let (all, _) = self.list_snapshots()?;
        Ok(all
            .into_iter()
            .rev()
            .find(|r| r.snap.workspace_path() == ws)
            .map(|r| (r.id, r.snap)))
    }

    /// Temp files and staging dirs crashed writers left, older than
    /// `min_age_ns` (`cleanup`).
    pub fn find_temps(&self, min_age_ns: i64) -> Result<Vec<TempItem>> {
        cleanup::find(self.backend(), min_age_ns, crate::util::now_ns())
    }

    /// Removes `items` found by `find_temps`, each re-checked right before;
    /// returns the removed items and, for each one kept, why.
    pub fn remove_temps(
        &self,
        items: Vec<TempItem>,
        min_age_ns: i64,
    ) -> (Vec<TempItem>, Vec<(TempItem, String)>) {
        cleanup::remove(self.backend(), items, min_age_ns, crate::util::now_ns())
    }
}

/// The bucket and prefix of a location that is an `s3://` URL.
fn s3_url(loc: &Path) -> Result<Option<S3Url>> {
    match loc.to_str().and_then(S3Url::parse) {
        Some(url) => url.map(Some),
        None => Ok(None),
    }
}

/// The ids among listed names.
fn ids(names: Vec<String>) -> Vec<ObjectId> {
    names.iter().filter_map(|n| ObjectId::from_hex(n)).collect()
}
