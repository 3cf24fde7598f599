//! A parent that is staged but not committed yet, as the capture staged
//! right after it sees it (`moat run`: a commit right after the pre-run
//! snapshot of a fresh workspace, whose ingestion takes seconds).
//!
//! Without it, the child would read again every file its parent read (the
//! stat cache the parent will write does not exist yet), and a held commit
//! would wait for all of that. With it, a file whose stat equals the one
//! the parent will store (and is not racy at the parent's start) is
//! *deferred*: its chunks are the parent's, taken at the child's ingest,
//! which runs after the parent's, from the stat cache the parent wrote.
//!
//! Invariant: a deferred file is only ever given chunks the store holds
//! for exactly that stat; if the parent failed to store them, the file is
//! read again, and when it has changed since staging the snapshot is marked
//! not exact.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::Pending;
use super::chunker::ChunkParams;
use super::read::{self, FileResult};
use crate::error::Result;
use crate::format::statcache::{FileStat, StatCache};
use crate::store::Store;
use crate::store::writer::ObjectWriter;
use crate::worktree::statcache;
use crate::worktree::walk::Node;

pub struct Provisional {
    /// The parent's walk (the growth guard's base).
    pub walk: Arc<Vec<Node>>,
    /// The stat of every file the parent will store, racy ones left out.
    files: FxHashMap<Vec<u8>, FileStat>,
    cache_ns: i64,
}

impl std::fmt::Debug for Provisional {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Provisional({} files vouched for)", self.files.len())
    }
}

impl Provisional {
    pub(super) fn of(p: &Pending) -> Self {
        let mut files = FxHashMap::default();
        let mut add = |i: usize, st: &FileStat| {
            if st.mtime_ns < p.cache_ns {
                files.insert(p.nodes[i].rel.clone(), *st);
            }
        };
        for (i, r) in p.results.iter().enumerate() {
            if let Some(FileResult::Stored(_, st)) = r {
                add(i, st);
            }
        }
        for (i, _, st) in &p.staged {
            add(*i, st);
        }
        Provisional {
            walk: p.nodes.clone(),
            files,
            cache_ns: p.cache_ns,
        }
    }

    /// The parent will store this file exactly as it is now.
    pub(super) fn vouches(&self, rel: &[u8], now: &FileStat) -> bool {
        self.files.get(rel) == Some(now) && now.mtime_ns < self.cache_ns
    }
}

/// Gives each deferred file its parent's chunks (from the stat cache the
/// parent wrote when it committed). Returns whether every one was found;
/// one that was not is read from the workspace (and if it changed since
/// staging, the snapshot is no longer the workspace at staging time).
pub(super) fn resolve(
    store: &Store,
    ws: &Path,
    nodes: &[Node],
    deferred: &[usize],
    results: &mut [Option<FileResult>],
    params: ChunkParams,
    writer: &ObjectWriter,
) -> Result<bool> {
    if deferred.is_empty() {
        return Ok(true);
    }
    let cache = statcache::load(store, ws).unwrap_or_else(|_| StatCache::default());
    let index = store.index()?;
    let mut exact = true;
    for &i in deferred {
        let n = &nodes[i];
        let held = cache
            .lookup(&n.rel, &n.stat)
            .filter(|chunks| chunks.iter().all(|c| index.contains(c)));
        results[i] = Some(match held {
            Some(chunks) => FileResult::Stored(chunks.to_vec(), n.stat),
            None => {
                let r = read::read_file(&ws.join(OsStr::from_bytes(&n.rel)), params, writer)?;
                exact &= matches!(&r, FileResult::Stored(_, st) if *st == n.stat);
                r
            }
        });
    }
    Ok(exact)
}
