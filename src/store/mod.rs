//! The store on disk: where it lives, its directory layout, and reading
//! objects and snapshots back with verification.
//!
//! Layout under the store root:
//! `config`, `packs/<xx>/<id>.pack`, `index/<id>.idx`, `snapshots/<id>`,
//! `cache/<ws>.stat`, `tmp/` (temp files of live or crashed writers) and
//! `lock` (writers hold a shared `flock` on it).
//!
//! Invariants: every object handed out by `read_object` has been checked
//! against its id, and no object is decompressed beyond the size the store
//! allows for its kind; nothing unverified leaves this module. A store
//! whose layout directories, lock or config are symlinks is refused, and
//! every store file is read through `file` (never following a symlink,
//! never blocking on a FIFO).
//!
//! Uses `format` and `util`; no module outside `store/` names a store
//! directory (`layout` does).

pub mod cleanup;
pub mod file;
pub mod index;
pub mod layout;
pub mod pack_writer;
pub mod writer;

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Error, IoContext, Result};
use crate::format::config::StoreConfig;
use crate::format::id::ObjectId;
use crate::format::pack::ObjectKind;
use crate::format::snapshot::Snapshot;
use crate::format::tree::Tree;
use crate::store::file::FileKind;
use crate::store::index::Index;

/// Where the store lives: `--store`, else `$MOAT_STORE`, else
/// `$MOAT_HOME/store`, else `~/.moat/store`.
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
    root: PathBuf,
    pub config: StoreConfig,
    index: Mutex<Option<Arc<Index>>>,
    maps: Mutex<HashMap<ObjectId, Arc<memmap2::Mmap>>>,
}

/// A snapshot with its id.
#[derive(Clone, Debug)]
pub struct SnapshotRecord {
    pub id: ObjectId,
    pub snap: Snapshot,
}

impl Store {
    /// Opens the store at `root`, creating it on first use.
    pub fn open_or_create(root: &Path) -> Result<Self> {
        fs::create_dir_all(root).at(root)?;
        file::check_layout(root, &layout::DIRS, &layout::FILES)?;
        for d in layout::DIRS {
            let p = root.join(d);
            match fs::create_dir(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(Error::io(&p, e)),
                _ => {}
            }
        }
        // Again: a racing process may have put anything in place meanwhile.
        file::check_layout(root, &layout::DIRS, &layout::FILES)?;
        let cfg_path = root.join(layout::CONFIG);
        if fs::symlink_metadata(&cfg_path).is_err() {
            Self::create_config(root, &cfg_path)?;
        }
        Self::open(root)
    }

    fn create_config(root: &Path, cfg_path: &Path) -> Result<()> {
        let (mut f, tmp) = file::create_temp(&root.join("tmp"), "config")?;
        let res = file::write(
            FileKind::Config,
            &mut f,
            &tmp,
            &StoreConfig::new_default().encode(),
        )
        .and_then(|()| f.sync_all().map_err(|e| Error::store_write(&tmp, e)))
        // link() never replaces: of two racing creators, one config wins.
        .map(|()| fs::hard_link(&tmp, cfg_path));
        let _ = fs::remove_file(&tmp);
        match res? {
            Ok(()) => file::fsync_dir(root),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(Error::store_write(cfg_path, e)),
        }
    }

    /// Opens an existing store.
    pub fn open(root: &Path) -> Result<Self> {
        file::check_layout(root, &layout::DIRS, &layout::FILES)?;
        let cfg_path = root.join(layout::CONFIG);
        let data = file::read_if_exists(&cfg_path)?.ok_or_else(|| Error::NoStore(root.to_path_buf()))?;
        Ok(Store {
            root: root.to_path_buf(),
            config: StoreConfig::decode(&data, &cfg_path)?,
            index: Mutex::new(None),
            maps: Mutex::new(HashMap::new()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// moat's own directories (the store, `$MOAT_HOME`), canonical, for
    /// walks to leave out when they sit inside a workspace.
    pub fn own_dirs(&self) -> Vec<PathBuf> {
        [Ok(self.root.clone()), moat_home().map(|h| h.join("runs"))]
            .into_iter()
            .flatten()
            .filter_map(|p| fs::canonicalize(p).ok())
            .collect()
    }

    /// Where pack `id` lives.
    pub fn pack_path(&self, id: &ObjectId) -> PathBuf {
        self.root.join(layout::pack(id))
    }

    /// Where index file `id` lives.
    pub fn index_path(&self, id: &ObjectId) -> PathBuf {
        self.root.join(layout::index(id))
    }

    /// The directory of index files.
    pub fn index_dir(&self) -> PathBuf {
        self.root.join("index")
    }

    /// Where the stat cache of workspace `ws` lives.
    pub fn stat_cache_path(&self, ws: &Path) -> PathBuf {
        self.root.join(layout::stat_cache(ws))
    }

    /// The stat cache of workspace `ws`, if it has one.
    pub fn read_stat_cache(&self, ws: &Path) -> Result<Option<Vec<u8>>> {
        file::read_if_exists(&self.stat_cache_path(ws))
    }

    /// The stat cache of workspace `ws` mapped in place, if it has one.
    /// (Caches are replaced by rename, never rewritten in place.)
    pub fn map_stat_cache(&self, ws: &Path) -> Result<Option<memmap2::Mmap>> {
        match file::map(&self.stat_cache_path(ws)) {
            Ok(m) => Ok(Some(m)),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn watch_token_path(&self, ws: &Path) -> PathBuf {
        self.stat_cache_path(ws).with_extension("watch")
    }

    /// The watch token beside workspace `ws`'s stat cache, if any.
    pub fn read_watch_token(&self, ws: &Path) -> Result<Option<Vec<u8>>> {
        file::read_if_exists(&self.watch_token_path(ws))
    }

    /// Replaces the watch token of workspace `ws` (not fsynced: a cache).
    pub fn write_watch_token(&self, ws: &Path, bytes: &[u8]) -> Result<()> {
        let dest = self.watch_token_path(ws);
        file::write_atomic(&self.tmp_dir(), FileKind::StatCache, &dest, bytes, false)
    }

    /// Removes the watch token of workspace `ws` (its cache is replaced).
    pub fn remove_watch_token(&self, ws: &Path) -> Result<bool> {
        file::remove(&self.watch_token_path(ws))
    }

    /// The stat caches of every workspace (not their watch tokens).
    pub fn stat_cache_paths(&self) -> Vec<PathBuf> {
        fs::read_dir(self.root.join("cache"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_none_or(|x| x != "watch"))
            .collect()
    }

    /// Replaces the stat cache of workspace `ws` (not fsynced: it is a cache).
    pub fn write_stat_cache(&self, ws: &Path, bytes: &[u8]) -> Result<()> {
        let dest = self.stat_cache_path(ws);
        file::write_atomic(&self.tmp_dir(), FileKind::StatCache, &dest, bytes, false)
    }

    /// Removes a stat cache and its watch token (gc: its workspace is gone).
    pub fn delete_stat_cache(&self, path: &Path) -> Result<bool> {
        let _ = file::remove(&path.with_extension("watch"));
        file::remove(path)
    }

    /// Publishes an index file (temp, fsync, rename); returns its id.
    pub fn write_index(&self, idx: &crate::format::index::IndexFile) -> Result<ObjectId> {
        let (id, bytes) = idx.encode();
        file::write_atomic(
            &self.tmp_dir(),
            FileKind::Index,
            &self.index_path(&id),
            &bytes,
            true,
        )?;
        Ok(id)
    }

    /// Removes index files (gc, after publishing the one that replaces them).
    pub fn delete_index_files(&self, ids: &[ObjectId]) -> Result<()> {
        for f in ids {
            file::remove(&self.index_path(f))?;
        }
        file::fsync_dir(&self.index_dir())
    }

    /// Removes a pack file (gc, or a failed writer's own unindexed pack);
    /// an emptied fan-out directory goes too. Returns whether it existed.
    pub fn delete_pack(&self, id: &ObjectId) -> Result<bool> {
        let path = self.pack_path(id);
        let existed = file::remove(&path)?;
        if let Some(dir) = path.parent() {
            let _ = fs::remove_dir(dir);
        }
        Ok(existed)
    }

    /// The lock file (created if absent; read-only where the store is:
    /// flock needs no write access).
    fn lock_file(&self) -> Result<(File, PathBuf)> {
        let path = self.root.join(layout::LOCK);
        Ok((file::open_lock(&path)?, path))
    }

    /// A shared lock held by every writer for as long as it writes; `gc`
    /// takes it exclusively before deleting anything.
    pub fn lock_shared(&self) -> Result<File> {
        let (f, path) = self.lock_file()?;
        f.lock_shared().at(&path)?;
        Ok(f)
    }

    /// The exclusive lock `gc` holds while it deletes: it waits for running
    /// writers and readers, and new ones wait for it. `on_wait` is called
    /// once if the lock is busy. flock(2) locks die with their process, so a
    /// crashed moat never leaves a stale lock behind.
    pub fn lock_exclusive(&self, on_wait: impl FnOnce()) -> Result<File> {
        let (f, path) = self.lock_file()?;
        match f.try_lock() {
            Ok(()) => return Ok(f),
            Err(std::fs::TryLockError::WouldBlock) => on_wait(),
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        f.lock().at(&path)?;
        Ok(f)
    }

    /// Pins a snapshot: no retention policy removes it.
    pub fn pin(&self, id: &ObjectId) -> Result<()> {
        let p = self.root.join(layout::pin(id));
        file::write_atomic(&self.tmp_dir(), FileKind::Pin, &p, b"", true)
    }

    pub fn unpin(&self, id: &ObjectId) -> Result<()> {
        file::remove(&self.root.join(layout::pin(id))).map(|_| ())
    }

    pub fn pinned(&self) -> Result<std::collections::HashSet<ObjectId>> {
        let dir = self.root.join("pins");
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
            Err(e) => return Err(Error::io(&dir, e)),
        };
        Ok(rd
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(ObjectId::from_hex))
            .collect())
    }

    /// Removes a snapshot (its data stays until `gc` finds it unreferenced).
    pub fn delete_snapshot(&self, id: &ObjectId) -> Result<()> {
        let path = self.root.join(layout::snapshot(id));
        fs::remove_file(&path).at(&path)?;
        let _ = self.unpin(id);
        file::fsync_dir(&self.root.join("snapshots"))
    }

    /// The merged index, loaded on first use and after `invalidate_index`.
    pub fn index(&self) -> Result<Arc<Index>> {
        let mut slot = self.index.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = slot.as_ref() {
            return Ok(i.clone());
        }
        let loaded = Arc::new(Index::load(&self.index_dir())?);
        *slot = Some(loaded.clone());
        Ok(loaded)
    }

    /// Forgets the loaded index, so the next read sees newly published
    /// index files (called after this process publishes one).
    pub fn invalidate_index(&self) {
        *self.index.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn pack_map(&self, id: &ObjectId) -> Result<Arc<memmap2::Mmap>> {
        let mut maps = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = maps.get(id) {
            return Ok(m.clone());
        }
        let map = Arc::new(file::map(&self.pack_path(id))?);
        maps.insert(*id, map.clone());
        Ok(map)
    }

    /// A published pack, mapped (shared with every reader in this process).
    pub fn map_pack(&self, id: &ObjectId) -> Result<Arc<memmap2::Mmap>> {
        self.pack_map(id)
    }

    /// Decodes one stored object of a pack and verifies it: its claimed
    /// size against what the store allows for its kind (before anything is
    /// allocated), then its content against its id.
    pub fn decode_object(
        &self,
        o: &crate::format::pack::PackEntry,
        stored: &[u8],
    ) -> Result<Vec<u8>, String> {
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

    /// The stored bytes of index entry `e` in the mapped pack `map`.
    pub fn stored<'m>(e: &crate::format::index::IndexEntry, map: &'m [u8]) -> Result<&'m [u8], String> {
        let start = e.offset as usize;
        map.get(start..start.saturating_add(e.stored_len as usize))
            .ok_or_else(|| "lies beyond the end of the pack (truncated pack?)".to_string())
    }

    /// Reads one copy of an object (index entry `e`), decompressed and
    /// verified.
    pub fn read_copy(&self, e: &crate::format::index::IndexEntry, idx: &Index) -> Result<Vec<u8>> {
        let pack_id = idx.pack_id(e.pack);
        let bad = |detail: String| Error::BadObject {
            id: e.id,
            pack: pack_id.to_hex(),
            detail,
        };
        let map = self.pack_map(&pack_id)?;
        let stored = Self::stored(e, &map).map_err(bad)?;
        self.decode_object(&e.to_pack_entry(), stored).map_err(bad)
    }

    /// Reads one object, decompressed and verified against its id. When
    /// the store holds several copies, the first that verifies is used.
    pub fn read_object(&self, id: &ObjectId, kind: ObjectKind) -> Result<Vec<u8>> {
        let idx = self.index()?;
        let copies = idx.copies(id);
        let mut first_err = None;
        for e in copies {
            let res = if e.kind != kind {
                Err(Error::BadObject {
                    id: *id,
                    pack: idx.pack_id(e.pack).to_hex(),
                    detail: format!("is a {}, expected a {}", e.kind.name(), kind.name()),
                })
            } else {
                self.read_copy(e, &idx)
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

    pub fn read_tree(&self, id: &ObjectId) -> Result<Tree> {
        let data = self.read_object(id, ObjectKind::Tree)?;
        Tree::decode(&data).map_err(|detail| Error::BadTree { id: *id, detail })
    }

    /// Loads one snapshot file and checks it against its name.
    pub fn load_snapshot(&self, id: &ObjectId) -> Result<Snapshot> {
        let path = self.root.join(layout::snapshot(id));
        let data = file::read(&path)?;
        if ObjectId::hash(&data) != *id {
            return Err(Error::corrupt(&path, "snapshot", "content does not match its id"));
        }
        Snapshot::decode(&data, &path)
    }

    /// All snapshot ids in the store (unsorted, unread).
    pub fn snapshot_ids(&self) -> Result<Vec<ObjectId>> {
        let dir = self.root.join("snapshots");
        let mut ids = Vec::new();
        for ent in fs::read_dir(&dir).at(&dir)? {
            let ent = ent.at(&dir)?;
            if let Some(id) = ent.file_name().to_str().and_then(ObjectId::from_hex) {
                ids.push(id);
            }
        }
        Ok(ids)
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
        let dest = self.root.join(layout::snapshot(&id));
        file::write_atomic(&self.tmp_dir(), FileKind::Snapshot, &dest, &bytes, true)?;
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
}
