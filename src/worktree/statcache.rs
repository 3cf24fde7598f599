//! A workspace's stat cache in the store: loading it for a capture or a
//! clone donor search, and replacing it after a capture, restore or
//! rollback (`format::statcache` is the codec).
//!
//! Invariant: it is only a cache. A missing one is empty, an unreadable
//! one is reported so the caller can warn and go on without it, and a
//! failed save never fails the command that made it.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::Result;
use crate::format::statcache::{CachedFile, StatCache};
use crate::store::Store;

/// Loads the stat cache of workspace `ws`; a missing file is an empty cache.
pub fn load(store: &Store, ws: &Path) -> Result<StatCache> {
    let path = store.stat_cache_path(ws);
    match store.read_stat_cache(ws)? {
        Some(data) => StatCache::decode(&data, &path),
        None => Ok(StatCache::default()),
    }
}

/// Replaces the stat cache of workspace `ws`.
pub fn save(store: &Store, ws: &Path, taken_ns: i64, entries: Vec<(Vec<u8>, CachedFile)>) -> Result<()> {
    let bytes = StatCache::encode(ws.as_os_str().as_bytes(), taken_ns, entries);
    store.write_stat_cache(ws, &bytes)
}
