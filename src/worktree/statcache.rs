//! A workspace's stat cache in the store: mapping it (with its delta, if
//! any) for a capture, loading its file records for rollback or a clone
//! donor search, and replacing it after a capture, restore or rollback
//! (`format::statcache` and `format::statdelta` are the codecs). Also the
//! watch token kept beside it.
//!
//! Invariant: it is only a cache. A missing one is empty; a damaged one,
//! one of an older version or one naming another workspace is reported so
//! the caller can warn and go on without it; a failed save never fails the
//! command that made it. Restore and rollback write file records only: no
//! directory record (a tree id) outlives a change its capture did not see.
//! A delta that does not name the cache beside it, or is damaged, is left
//! unused: the cache alone is an older cache, still right for every entry
//! whose stat matches.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::error::{Error, Result};
use crate::format::statcache::{self, CachedFile, Meta, Record, StatCache, Table};
use crate::format::statdelta;
use crate::format::watch_token::Token;
use crate::store::Store;
use crate::store::backend::Blob;

/// A stat cache mapped in place, with the delta on top of it (the layered
/// view of `format::statdelta`).
pub struct Mapped {
    base: Table<Blob>,
    delta: Option<Delta>,
    /// The header fields of the newest layer (the delta's, if any).
    pub meta: Meta,
    /// The identity of the cache with its delta (what a watch token names).
    pub header_check: [u8; 32],
}

struct Delta {
    t: Table<Blob>,
    /// Every path the delta holds, and those flagged `LISTED`.
    present: FxHashSet<Vec<u8>>,
    listed: FxHashSet<Vec<u8>>,
}

impl Mapped {
    /// `base` alone.
    pub fn plain(base: Table<Blob>) -> Self {
        Mapped {
            meta: base.meta.clone(),
            header_check: base.header_check,
            base,
            delta: None,
        }
    }

    /// The header check of the base cache (what a new delta names).
    pub fn base_check(&self) -> [u8; 32] {
        self.base.header_check
    }

    /// Records in the base cache and in the delta.
    pub fn lens(&self) -> (usize, usize) {
        (self.base.len(), self.delta.as_ref().map_or(0, |d| d.t.len()))
    }

    fn gone(d: &Delta, path: &[u8]) -> bool {
        statdelta::ancestors(path).any(|(dir, child)| d.listed.contains(dir) && !d.present.contains(child))
    }

    /// Drops the cache's mapped pages from this process's resident set
    /// (they stay in the page cache and are read back on access): a full
    /// walk looks up every record, and without this the whole cache (about
    /// 250 B per entry) would stay resident until the capture ends.
    pub fn release(&self) {
        self.base.data().release(0..self.base.data().len());
        if let Some(d) = &self.delta {
            d.t.data().release(0..d.t.data().len());
        }
    }

    /// The record of `path` and the `taken_ns` of the layer holding it.
    pub fn get_taken(&self, path: &[u8]) -> Result<Option<(Record, i64)>> {
        if let Some(d) = &self.delta {
            if d.present.contains(path) {
                return Ok(d.t.get(path)?.map(|r| (r, d.t.meta.taken_ns)));
            }
            if Self::gone(d, path) {
                return Ok(None);
            }
        }
        Ok(self.base.get(path)?.map(|r| (r, self.base.meta.taken_ns)))
    }

    /// The record of `path`, if any.
    pub fn get(&self, path: &[u8]) -> Result<Option<Record>> {
        Ok(self.get_taken(path)?.map(|(r, _)| r))
    }

    /// The encoded record of `path` as the layered view holds it.
    fn raw_of(&self, path: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(d) = &self.delta {
            if d.present.contains(path) {
                return d
                    .t
                    .find(path)?
                    .map(|i| d.t.raw(i).map(<[u8]>::to_vec))
                    .transpose();
            }
            if Self::gone(d, path) {
                return Ok(None);
            }
        }
        self.base
            .find(path)?
            .map(|i| self.base.raw(i).map(<[u8]>::to_vec))
            .transpose()
    }

    /// The records a new delta carries for each directory a watched scan
    /// left out: its own record and the delta's records below it (the
    /// base's stay where they are). Returns them and how many were damaged.
    pub fn carry_delta(&self, pruned: &[Vec<u8>]) -> (Vec<Vec<u8>>, u64) {
        let mut out = Vec::new();
        let mut bad = 0u64;
        for rel in pruned {
            match self.raw_of(rel) {
                Ok(Some(r)) => out.push(r),
                _ => bad += 1,
            }
            let Some(d) = &self.delta else { continue };
            match d.t.below(rel) {
                Ok(range) => {
                    for i in range {
                        match d.t.raw(i) {
                            Ok(r) => out.push(r.to_vec()),
                            Err(_) => bad += 1,
                        }
                    }
                }
                Err(_) => bad += 1,
            }
        }
        (out, bad)
    }

    /// The records a whole new cache carries for each directory a watched
    /// scan left out: every record of its subtree in the layered view,
    /// `LISTED` cleared. Returns them and how many were damaged.
    pub fn carry_full(&self, pruned: &[Vec<u8>]) -> (Vec<Vec<u8>>, u64) {
        let key = statcache::ws_key(&self.base.meta.workspace);
        let mut out = Vec::new();
        let mut bad = 0u64;
        let clear = |r: &[u8]| match statcache::is_listed(r) {
            true => statcache::with_listed(&key, r, false),
            false => r.to_vec(),
        };
        for rel in pruned {
            match self.raw_of(rel) {
                Ok(Some(r)) => out.push(clear(&r)),
                _ => bad += 1,
            }
            let layers =
                std::iter::once((&self.base, true)).chain(self.delta.as_ref().map(|d| (&d.t, false)));
            for (t, is_base) in layers {
                let Ok(range) = t.below(rel) else {
                    bad += 1;
                    continue;
                };
                for i in range {
                    match t.raw(i) {
                        Ok(r) if !is_base => out.push(clear(r)),
                        Ok(r) => {
                            let p = statcache::record_path(r);
                            let shadowed = self
                                .delta
                                .as_ref()
                                .is_some_and(|d| d.present.contains(p) || Self::gone(d, p));
                            if !shadowed {
                                out.push(r.to_vec());
                            }
                        }
                        Err(_) => bad += 1,
                    }
                }
            }
        }
        (out, bad)
    }

    /// Every file record of the layered view, decoded.
    pub fn files(&self) -> Result<FxHashMap<Vec<u8>, CachedFile>> {
        let mut out = self.base.files()?;
        if let Some(d) = &self.delta {
            out.retain(|p, _| !d.present.contains(p) && !Self::gone(d, p));
            out.extend(d.t.files()?);
        }
        Ok(out)
    }
}

/// The delta of `ws`'s cache `base`, if there is one that names it and
/// reads intact.
fn open_delta(store: &Store, ws: &Path, base: &Table<Blob>) -> Option<Delta> {
    let data = store.read_stat_delta(ws).ok()??;
    let path = store.stat_cache_path(ws).with_extension("delta");
    let (named, at) = statdelta::split(data.as_ref(), &path).ok()?;
    if named != base.header_check {
        return None;
    }
    let len = (data.as_ref().len() - at) as u64;
    let t = Table::open(data.slice(at as u64, len), &path).ok()?;
    if t.meta.workspace != base.meta.workspace {
        return None;
    }
    let mut present = FxHashSet::default();
    let mut listed = FxHashSet::default();
    for i in 0..t.len() {
        let r = t.raw(i).ok()?;
        let p = statcache::record_path(r).to_vec();
        if statcache::is_listed(r) {
            listed.insert(p.clone());
        }
        present.insert(p);
    }
    Some(Delta { t, present, listed })
}

fn wrong_workspace(path: &Path, named: &[u8], ws: &Path) -> Error {
    Error::corrupt(
        path,
        "stat cache",
        format!(
            "it names workspace {}, not {}",
            String::from_utf8_lossy(named),
            ws.display()
        ),
    )
}

/// Maps the stat cache of workspace `ws` and its delta; None when there
/// is no cache.
pub fn open(store: &Store, ws: &Path) -> Result<Option<Mapped>> {
    let path = store.stat_cache_path(ws);
    let Some(map) = store.map_stat_cache(ws)? else {
        return Ok(None);
    };
    // Looked up by binary search: only the pages read should be resident.
    map.advise_random();
    let t = Table::open(map, &path)?;
    if t.meta.workspace != ws.as_os_str().as_bytes() {
        return Err(wrong_workspace(&path, &t.meta.workspace, ws));
    }
    let delta = open_delta(store, ws, &t);
    let mut m = Mapped::plain(t);
    if let Some(d) = delta {
        m.header_check = statdelta::identity(&m.base.header_check, &d.t.header_check);
        m.meta = d.t.meta.clone();
        m.delta = Some(d);
    }
    Ok(Some(m))
}

/// Loads the file records of workspace `ws`'s cache onto the heap; a
/// missing file is an empty cache.
pub fn load(store: &Store, ws: &Path) -> Result<StatCache> {
    match open(store, ws)? {
        None => Ok(StatCache::default()),
        Some(t) => Ok(StatCache {
            entries: t.files()?,
            // The older layer's: the racy rule then holds for both.
            taken_ns: t.base.meta.taken_ns.min(t.meta.taken_ns),
            workspace: t.meta.workspace,
        }),
    }
}

/// Replaces the stat cache of workspace `ws` with file records only.
pub fn save(store: &Store, ws: &Path, taken_ns: i64, entries: Vec<(Vec<u8>, CachedFile)>) -> Result<()> {
    let bytes = StatCache::encode(ws.as_os_str().as_bytes(), taken_ns, entries);
    // A token names the cache it belongs to; the new cache has none.
    let _ = store.remove_watch_token(ws);
    let _ = store.remove_stat_delta(ws);
    store.write_stat_cache(ws, &bytes)
}

/// Replaces the stat cache of workspace `ws` with `records` (encoded with
/// `statcache::ws_key` of `meta.workspace`); returns the new header
/// checksum (the cache's identity for a watch token).
pub fn save_records(store: &Store, ws: &Path, meta: &Meta, records: Vec<Vec<u8>>) -> Result<[u8; 32]> {
    let bytes = statcache::encode(meta, records);
    let t = Table::open(&bytes[..], &store.stat_cache_path(ws))?;
    let check = t.header_check;
    let _ = store.remove_watch_token(ws);
    let _ = store.remove_stat_delta(ws);
    store.write_stat_cache(ws, &bytes)?;
    Ok(check)
}

/// Writes `records` (encoded as for `save_records`) as the delta on top of
/// `ws`'s cache whose header check is `base`; returns the identity of the
/// two together (what a watch token names).
pub fn save_delta(
    store: &Store,
    ws: &Path,
    base: &[u8; 32],
    meta: &Meta,
    records: Vec<Vec<u8>>,
) -> Result<[u8; 32]> {
    let bytes = statdelta::encode(base, meta, records);
    let path = store.stat_cache_path(ws).with_extension("delta");
    let (_, at) = statdelta::split(&bytes, &path)?;
    let t = Table::open(&bytes[at..], &path)?;
    let id = statdelta::identity(base, &t.header_check);
    let _ = store.remove_watch_token(ws);
    store.write_stat_delta(ws, &bytes)?;
    Ok(id)
}

/// The watch token beside `ws`'s cache, if any and intact.
pub fn load_token(store: &Store, ws: &Path) -> Option<Token> {
    let data = store.read_watch_token(ws).ok()??;
    Token::decode(&data, Path::new("watch token")).ok()
}

/// Records the watch token of the cache now on disk.
pub fn save_token(store: &Store, ws: &Path, token: &Token) -> Result<()> {
    store.write_watch_token(ws, &token.encode())
}
