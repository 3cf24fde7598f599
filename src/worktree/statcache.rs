//! A workspace's stat cache in the store: mapping it for a capture,
//! loading its file records for rollback or a clone donor search, and
//! replacing it after a capture, restore or rollback (`format::statcache`
//! is the codec). Also the watch token kept beside it.
//!
//! Invariant: it is only a cache. A missing one is empty; a damaged one,
//! one of an older version or one naming another workspace is reported so
//! the caller can warn and go on without it; a failed save never fails the
//! command that made it. Restore and rollback write file records only: no
//! directory record (a tree id) outlives a change its capture did not see.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::statcache::{self, CachedFile, Meta, StatCache, Table, Token};
use crate::store::Store;

/// A stat cache mapped in place.
pub type Mapped = Table<crate::store::backend::Blob>;

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

/// Maps the stat cache of workspace `ws`; None when there is none.
pub fn open(store: &Store, ws: &Path) -> Result<Option<Mapped>> {
    let path = store.stat_cache_path(ws);
    let Some(map) = store.map_stat_cache(ws)? else {
        return Ok(None);
    };
    let t = Table::open(map, &path)?;
    if t.meta.workspace != ws.as_os_str().as_bytes() {
        return Err(wrong_workspace(&path, &t.meta.workspace, ws));
    }
    Ok(Some(t))
}

/// Loads the file records of workspace `ws`'s cache onto the heap; a
/// missing file is an empty cache.
pub fn load(store: &Store, ws: &Path) -> Result<StatCache> {
    match open(store, ws)? {
        None => Ok(StatCache::default()),
        Some(t) => Ok(StatCache {
            entries: t.files()?,
            workspace: t.meta.workspace,
            taken_ns: t.meta.taken_ns,
        }),
    }
}

/// Replaces the stat cache of workspace `ws` with file records only.
pub fn save(store: &Store, ws: &Path, taken_ns: i64, entries: Vec<(Vec<u8>, CachedFile)>) -> Result<()> {
    let bytes = StatCache::encode(ws.as_os_str().as_bytes(), taken_ns, entries);
    let r = store.write_stat_cache(ws, &bytes);
    // A token names the cache it belongs to; the new cache has none.
    let _ = store.remove_watch_token(ws);
    r
}

/// Replaces the stat cache of workspace `ws` with `records` (encoded with
/// `statcache::ws_key` of `meta.workspace`); returns the new header
/// checksum (the cache's identity for a watch token).
pub fn save_records(store: &Store, ws: &Path, meta: &Meta, records: Vec<Vec<u8>>) -> Result<[u8; 32]> {
    let bytes = statcache::encode(meta, records);
    let t = Table::open(&bytes[..], &store.stat_cache_path(ws))?;
    let check = t.header_check;
    let _ = store.remove_watch_token(ws);
    store.write_stat_cache(ws, &bytes)?;
    Ok(check)
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
