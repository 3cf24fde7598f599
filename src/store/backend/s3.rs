//! The S3 backend: a store in a bucket below a prefix
//! (store-format.md, "Remote stores").
//!
//! Store files are objects named as a local store's files are, below the
//! prefix (`config`, `packs/<xx>/<id>.pack`, `index/<id>.idx`,
//! `snapshots/<id>`, `pins/<id>`); the lock is `locks/` objects with
//! leases (`store::lock_remote`). An object store never shows a partial
//! object, so a write is one PUT of the whole file and an upload (a pack)
//! is buffered in memory (packs are bounded by the store's pack target)
//! and PUT when it is published; a dropped upload sends nothing.
//!
//! What belongs to this machine stays on it, in the store's local cache
//! `$MOAT_HOME/cache/<store id>/` (a local store directory; safe to
//! delete): workspaces' stat caches and watch tokens, temp files and
//! staging dirs, and copies of index files, snapshot files and tree
//! objects, which never change once written, so listings, diff, log and
//! ls do not fetch them again. A cached copy is checked (index: its
//! checksum; snapshot and tree: its id) before it is used, and fetched
//! again when it fails.
//!
//! Objects are read with ranged GETs; a pack read from `HOT_AFTER` times
//! is fetched whole (one GET) and serves the reads after it from memory.
//!
//! Every publish and delete first checks that this process's holds on the
//! lock still have their lease (`RemoteLock::check`).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use super::local::LocalBackend;
use super::remote::{Remote, S3Url};
use super::{Backend, Blob, FileKind, Meta, Shape, Traffic, Upload, layout};
use crate::error::{Error, Result};
use crate::format::config::StoreConfig;
use crate::format::id::ObjectId;
use crate::store::lock::Lock;
use crate::store::lock_remote::RemoteLock;

pub struct S3Backend {
    remote: Arc<Remote>,
    lock: RemoteLock,
    /// Where local caches go (`$MOAT_HOME` unless set).
    home: Option<PathBuf>,
    /// The local cache, opened once the store's config (and so its id)
    /// is known.
    local: OnceLock<LocalBackend>,
    /// The config's bytes, once read (a config is never rewritten).
    config: OnceLock<Vec<u8>>,
    hot: Mutex<HotPacks>,
}

/// Ranged reads per pack, and the packs read whole after `HOT_AFTER` of
/// them (a restore reads most objects of the packs it touches: one GET
/// of the pack then serves the rest), at most `HOT_PACKS` of at most
/// `HOT_MAX_BYTES` each kept in memory.
#[derive(Default)]
struct HotPacks {
    reads: HashMap<String, u32>,
    whole: VecDeque<(String, Blob)>,
}

const HOT_AFTER: u32 = 4;
const HOT_PACKS: usize = 4;
const HOT_MAX_BYTES: u64 = 64 << 20;

/// Kinds kept only in the local cache.
fn local_only(kind: FileKind) -> bool {
    matches!(
        kind,
        FileKind::Cache | FileKind::CacheDelta | FileKind::WatchToken | FileKind::Tmp
    )
}

/// Kinds whose files never change once written: cached locally.
fn cached(kind: FileKind) -> bool {
    matches!(kind, FileKind::Index | FileKind::Snapshot)
}

impl S3Backend {
    pub fn open(url: S3Url) -> Result<Self> {
        Ok(Self::over(Arc::new(Remote::connect(url)?), None))
    }

    /// The store `remote` holds, its local cache below `home` (default
    /// `$MOAT_HOME`).
    pub fn over(remote: Arc<Remote>, home: Option<PathBuf>) -> Self {
        S3Backend {
            lock: RemoteLock::new(remote.clone()),
            remote,
            home,
            local: OnceLock::new(),
            config: OnceLock::new(),
            hot: Mutex::new(HotPacks::default()),
        }
    }

    /// The object of file `name` of `kind`, relative to the prefix.
    fn rel(&self, kind: FileKind, name: &str) -> Result<String> {
        let p = layout::path(kind, name).ok_or_else(|| Error::UnsafeStore {
            path: self.remote.describe(layout::dir(kind)).join(name),
            detail: "is not a store file name".into(),
        })?;
        Ok(p.to_string_lossy().into_owned())
    }

    /// The local cache (`$MOAT_HOME/cache/<store id>/`), created on
    /// first use; the store's config must exist by then.
    fn local(&self) -> Result<&LocalBackend> {
        if let Some(l) = self.local.get() {
            return Ok(l);
        }
        let rel = self.rel(FileKind::Config, "")?;
        let data = self
            .config()?
            .ok_or_else(|| Error::NoStore(self.remote.location.clone()))?;
        let cfg = StoreConfig::decode(data, &self.remote.describe(&rel))?;
        let home = match &self.home {
            Some(h) => h.clone(),
            None => crate::store::moat_home()?,
        };
        let dir = home.join("cache").join(hex::encode(cfg.id));
        let l = LocalBackend::create(&dir)?;
        Ok(self.local.get_or_init(|| l))
    }

    /// The config's bytes (fetched once), `None` when there is none yet.
    fn config(&self) -> Result<Option<&[u8]>> {
        if let Some(c) = self.config.get() {
            return Ok(Some(c));
        }
        match self.remote.get(&self.rel(FileKind::Config, "")?)? {
            Some(c) => Ok(Some(self.config.get_or_init(|| c))),
            None => Ok(None),
        }
    }

    /// Pack `name` whole when it is (or has just become) hot.
    fn hot_pack(&self, name: &str, rel: &str) -> Result<Option<Blob>> {
        {
            let mut hot = self.hot.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((_, b)) = hot.whole.iter().find(|(n, _)| n == name) {
                return Ok(Some(b.clone()));
            }
            let n = hot.reads.entry(name.to_string()).or_default();
            *n = n.saturating_add(1);
            if *n < HOT_AFTER {
                return Ok(None);
            }
            hot.reads.remove(name);
        }
        match self.remote.head(rel)? {
            Some((size, _)) if size <= HOT_MAX_BYTES => {}
            _ => return Ok(None),
        }
        let Some(data) = self.remote.get(rel)? else {
            return Ok(None);
        };
        let b = Blob::from(data);
        let mut hot = self.hot.lock().unwrap_or_else(|p| p.into_inner());
        if hot.whole.len() >= HOT_PACKS {
            hot.whole.pop_front();
        }
        hot.whole.push_back((name.to_string(), b.clone()));
        Ok(Some(b))
    }

    /// Where tree objects are kept: `trees/<id>` in the local cache.
    fn trees_dir(&self) -> Result<PathBuf> {
        let l = self.local()?;
        Ok(l.location().join("trees"))
    }

    /// Fails when the lease on this process's lock holds may be gone.
    fn check_lease(&self, kind: FileKind, name: &str) -> Result<()> {
        if kind == FileKind::Config {
            return Ok(());
        }
        self.lock.check(&self.describe(kind, name))
    }

    /// A cached copy of an index or snapshot file, if it checks out.
    fn cached_copy(&self, kind: FileKind, name: &str) -> Option<Blob> {
        let b = self.local().ok()?.read(kind, name).ok()??;
        let good = match kind {
            FileKind::Snapshot => ObjectId::from_hex(name).is_some_and(|id| ObjectId::hash(&b) == id),
            _ => {
                ObjectId::from_hex(name).is_some_and(|id| crate::format::index::named_by(&b, &id))
                    && crate::format::index::Layout::parse(&b, Path::new(name), &mut |_| {}).is_ok()
            }
        };
        good.then_some(b)
    }

    /// Keeps a copy (a failure costs only a later fetch).
    fn keep_copy(&self, kind: FileKind, name: &str, data: &[u8]) {
        if let Ok(l) = self.local() {
            let _ = l.write(kind, name, data);
        }
    }
}

impl Backend for S3Backend {
    fn location(&self) -> &Path {
        &self.remote.location
    }

    fn local_root(&self) -> Option<&Path> {
        None
    }

    fn scratch(&self) -> Option<&Path> {
        self.local().ok().and_then(|l| l.scratch())
    }

    fn describe(&self, kind: FileKind, name: &str) -> PathBuf {
        if local_only(kind)
            && let Ok(l) = self.local()
        {
            return l.describe(kind, name);
        }
        match layout::path(kind, name) {
            Some(p) => self.remote.location.join(p),
            None => self.remote.describe(layout::dir(kind)).join(name),
        }
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Option<Blob>> {
        if local_only(kind) {
            return self.local()?.read(kind, name);
        }
        if kind == FileKind::Config {
            return Ok(self.config()?.map(|c| Blob::from(c.to_vec())));
        }
        if cached(kind)
            && let Some(b) = self.cached_copy(kind, name)
        {
            return Ok(Some(b));
        }
        let data = self.remote.get(&self.rel(kind, name)?)?;
        if let (true, Some(d)) = (cached(kind), data.as_ref()) {
            self.keep_copy(kind, name, d);
        }
        Ok(data.map(Blob::from))
    }

    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Blob> {
        if local_only(kind) {
            return self.local()?.read_range(kind, name, offset, len);
        }
        if cached(kind) {
            return match self.read(kind, name)? {
                Some(b) => Ok(b.slice(offset, len)),
                None => Err(Error::io(
                    self.describe(kind, name),
                    std::io::ErrorKind::NotFound.into(),
                )),
            };
        }
        let rel = self.rel(kind, name)?;
        if kind == FileKind::Pack
            && let Some(whole) = self.hot_pack(name, &rel)?
        {
            return Ok(whole.slice(offset, len));
        }
        let end = offset.saturating_add(len);
        Ok(Blob::from(self.remote.get_range(&rel, offset..end)?))
    }

    fn stat(&self, kind: FileKind, name: &str) -> Result<Option<Meta>> {
        if local_only(kind) {
            return self.local()?.stat(kind, name);
        }
        Ok(self.remote.head(&self.rel(kind, name)?)?.map(|(len, t)| Meta {
            shape: Shape::File,
            len,
            touched_ns: t,
        }))
    }

    fn list(&self, kind: FileKind) -> Result<Vec<String>> {
        if local_only(kind) {
            return self.local()?.list(kind);
        }
        if kind == FileKind::Config {
            return Ok(self.stat(kind, "")?.map(|_| String::new()).into_iter().collect());
        }
        let found = self.remote.list(layout::dir(kind))?;
        Ok(found
            .into_iter()
            .filter_map(|(rel, _, _)| {
                let file = rel.rsplit('/').next()?;
                let name = layout::name_of(kind, file)?;
                // Only where the layout puts it (a pack in its fan-out dir).
                (layout::path(kind, name)?.to_string_lossy() == rel).then(|| name.to_string())
            })
            .collect())
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        if local_only(kind) {
            return self.local()?.write(kind, name, data);
        }
        crate::util::failpoint(kind.write_point());
        self.check_lease(kind, name)?;
        self.remote.put(&self.rel(kind, name)?, data.to_vec(), false)?;
        if cached(kind) {
            self.keep_copy(kind, name, data);
        }
        Ok(())
    }

    fn create_new(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<bool> {
        if local_only(kind) {
            return self.local()?.create_new(kind, name, data);
        }
        crate::util::failpoint(kind.write_point());
        self.check_lease(kind, name)?;
        self.remote.put(&self.rel(kind, name)?, data.to_vec(), true)
    }

    fn upload(&self, kind: FileKind) -> Result<Box<dyn Upload>> {
        if local_only(kind) {
            return self.local()?.upload(kind);
        }
        Ok(Box::new(S3Upload {
            remote: self.remote.clone(),
            lock: self.lock.clone(),
            kind,
            data: Vec::new(),
        }))
    }

    fn remove(&self, kind: FileKind, name: &str) -> Result<bool> {
        if local_only(kind) {
            return self.local()?.remove(kind, name);
        }
        self.check_lease(kind, name)?;
        let rel = self.rel(kind, name)?;
        let existed = self.remote.head(&rel)?.is_some();
        if existed {
            self.remote.delete(&rel)?;
        }
        if cached(kind)
            && let Ok(l) = self.local()
        {
            let _ = l.remove(kind, name);
        }
        Ok(existed)
    }

    fn sync(&self, kind: FileKind) -> Result<()> {
        match local_only(kind) {
            true => self.local()?.sync(kind),
            // A completed DELETE is durable.
            false => Ok(()),
        }
    }

    fn free_space(&self) -> Option<u64> {
        None
    }

    fn lock(&self) -> &dyn Lock {
        &self.lock
    }

    fn traffic(&self) -> Traffic {
        self.remote.traffic()
    }

    fn cached_tree(&self, id: &ObjectId, max_len: u64) -> Option<Vec<u8>> {
        let path = self.trees_dir().ok()?.join(id.to_hex());
        let f = super::file::open(&path).ok()?;
        if f.metadata().ok()?.len() > max_len {
            return None;
        }
        let data = super::file::read(&path).ok()?;
        (ObjectId::hash(&data) == *id).then_some(data)
    }

    fn keep_tree(&self, id: &ObjectId, raw: &[u8]) {
        let (Ok(dir), Ok(l)) = (self.trees_dir(), self.local()) else {
            return;
        };
        if let Some(tmp) = l.scratch() {
            let _ = std::fs::create_dir(&dir);
            let _ = super::file::write_atomic(tmp, FileKind::Cache, &dir.join(id.to_hex()), raw);
        }
    }
}

/// A pack being written: buffered, PUT whole when published.
struct S3Upload {
    remote: Arc<Remote>,
    /// The backend's lock, whose leases are checked before the PUT.
    lock: RemoteLock,
    kind: FileKind,
    data: Vec<u8>,
}

impl Upload for S3Upload {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        crate::util::failpoint(self.kind.write_point());
        self.data.extend_from_slice(data);
        Ok(())
    }

    fn publish(self: Box<Self>, name: &str) -> Result<()> {
        let rel = layout::path(self.kind, name)
            .ok_or_else(|| Error::UnsafeStore {
                path: self.remote.describe(layout::dir(self.kind)).join(name),
                detail: "is not a store file name".into(),
            })?
            .to_string_lossy()
            .into_owned();
        self.lock.check(&self.remote.describe(&rel))?;
        self.remote.put(&rel, self.data, false).map(|_| ())
    }

    fn describe(&self) -> PathBuf {
        self.remote
            .describe(&format!("{} (being uploaded)", layout::dir(self.kind)))
    }
}

#[cfg(test)]
#[path = "s3_tests.rs"]
mod tests;
