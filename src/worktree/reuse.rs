//! Reusing content that is already on the target filesystem: `restore` and
//! `rollback` clone a file whose bytes another file there already holds
//! (in the workspace under another path, per its stat cache) instead of
//! decompressing them from the store.
//!
//! Invariants: a donor is a path inside its workspace, and it is trusted
//! exactly as far as `capture` trusts the stat cache: its stat (device, inode, mode, size, mtime, ctime) must equal
//! the cached one and not be racy, checked on the open file before and
//! after the clone; anything else is decompressed from the store. Clones go
//! to a holding directory (`.moat-tmp-clones` in the target root) before
//! anything in the target changes, so a rollback that deletes or overwrites
//! the donor path (a rename, a swap of two files) still has its content.
//! The holding directory is removed when the restore ends; a crashed run's
//! leftover is replaced by the next one and skipped by every walk.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::{IoContext, Result};
use crate::format::id::ObjectId;
use crate::format::statcache::FileStat;
use crate::store::Store;
use crate::worktree::clone::{self, Cloner, Outcome};
use crate::worktree::materialize;

/// The holding directory's name in the target root (a `.moat-tmp-` name,
/// so walks skip it).
pub const HOLD_DIR: &str = ".moat-tmp-clones";

/// What cloning did during a restore or rollback.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CloneStats {
    /// The clone call used (`FICLONE`, `clonefile`, `none`).
    pub cloner: &'static str,
    pub cloned_files: u64,
    pub cloned_bytes: u64,
    /// Why content that had a donor was decompressed instead.
    pub fallback: Option<String>,
}

/// Files on disk that hold known content, keyed by their chunk list.
pub struct Donors {
    by_content: HashMap<ObjectId, Vec<(PathBuf, FileStat)>>,
    cloner: &'static dyn Cloner,
}

fn content_key(chunks: &[ObjectId]) -> ObjectId {
    let mut h = blake3::Hasher::new();
    for c in chunks {
        h.update(&c.0);
    }
    ObjectId(*h.finalize().as_bytes())
}

impl Donors {
    /// Donors from the stat caches of `workspaces` (missing or unreadable
    /// caches add nothing).
    pub fn from_caches(store: &Store, workspaces: &[&Path], cloner: &'static dyn Cloner) -> Self {
        let mut by_content: HashMap<ObjectId, Vec<(PathBuf, FileStat)>> = HashMap::new();
        for ws in workspaces {
            let Ok(cache) = crate::worktree::statcache::load(store, ws) else {
                continue;
            };
            if cache.workspace != ws.as_os_str().as_bytes() {
                continue;
            }
            for (rel, cf) in &cache.entries {
                // A racy entry may hide a change the cache never saw, and a
                // path must stay inside its workspace.
                let inside = rel
                    .split(|&b| b == b'/')
                    .all(|c| crate::format::tree::bad_name(c).is_none());
                if cf.stat.size == 0 || cf.stat.mtime_ns >= cache.taken_ns || !inside {
                    continue;
                }
                let path = ws.join(OsStr::from_bytes(rel));
                by_content
                    .entry(content_key(&cf.chunks))
                    .or_default()
                    .push((path, cf.stat));
            }
        }
        Donors { by_content, cloner }
    }

    pub fn is_empty(&self) -> bool {
        self.by_content.is_empty()
    }

    /// Clones a donor of each `wanted` content into a fresh holding dir in
    /// `root`. Contents without a donor (or whose donor changed) get None.
    pub fn hold(&self, root: &Path, wanted: &[&[ObjectId]]) -> Result<Holding> {
        let mut h = Holding {
            dir: None,
            held: vec![None; wanted.len()],
            stats: CloneStats {
                cloner: self.cloner.name(),
                ..CloneStats::default()
            },
        };
        let jobs: Vec<(usize, &Vec<(PathBuf, FileStat)>)> = wanted
            .iter()
            .enumerate()
            .filter_map(|(k, c)| self.by_content.get(&content_key(c)).map(|d| (k, d)))
            .collect();
        let Some(&(first_k, first_donors)) = jobs.first() else {
            return Ok(h);
        };
        let dir = root.join(HOLD_DIR);
        materialize::clear(&dir)?;
        std::fs::create_dir(&dir).at(&dir)?;
        h.dir = Some(dir.clone());
        let file = |k: usize| dir.join(k.to_string());
        // One probe first: without clone support nothing more is tried.
        let first = self.clone_one(first_donors, &file(first_k))?;
        if let Err(why) = &first {
            h.stats.fallback = Some(why.clone());
            return Ok(h);
        }
        let rest: Vec<(usize, std::result::Result<Option<FileStat>, String>)> = jobs[1..]
            .par_iter()
            .map(|&(k, d)| Ok((k, self.clone_one(d, &file(k))?)))
            .collect::<Result<_>>()?;
        for (k, r) in std::iter::once((first_k, first)).chain(rest) {
            match r {
                Ok(Some(st)) => {
                    h.stats.cloned_files += 1;
                    h.stats.cloned_bytes += st.size;
                    h.held[k] = Some(file(k));
                }
                Ok(None) => {}
                Err(why) => {
                    h.stats.fallback.get_or_insert(why);
                }
            }
        }
        Ok(h)
    }

    /// Clones the first donor still as cached to `dst`. `Ok(Err(why))`:
    /// cloning is unsupported or failed here; `Ok(Ok(None))`: no donor is
    /// unchanged.
    fn clone_one(
        &self,
        donors: &[(PathBuf, FileStat)],
        dst: &Path,
    ) -> Result<std::result::Result<Option<FileStat>, String>> {
        for (path, cached) in donors {
            let Ok(src) = clone::open_source(path) else {
                continue;
            };
            let same = |f: &std::fs::File| f.metadata().is_ok_and(|m| FileStat::of(&m) == *cached);
            if !same(&src) {
                continue;
            }
            // A failed clone (no space, no permission) is not fatal: the
            // content is decompressed instead, and that reports any real error.
            match self.cloner.clone_open(&src, dst) {
                Err(e) => return Ok(Err(format!("could not clone {}: {e}", path.display()))),
                Ok(Outcome::Unsupported(why)) => return Ok(Err(why)),
                Ok(Outcome::Cloned) if same(&src) => return Ok(Ok(Some(*cached))),
                Ok(Outcome::Cloned) => std::fs::remove_file(dst).at(dst)?,
            }
        }
        Ok(Ok(None))
    }
}

/// Cloned copies waiting to be renamed into place; the holding dir goes
/// when this is dropped.
pub struct Holding {
    dir: Option<PathBuf>,
    /// Per wanted content: its held copy.
    pub held: Vec<Option<PathBuf>>,
    pub stats: CloneStats,
}

impl Holding {
    /// Nothing held, for `n` wanted contents (cloning off).
    pub fn empty(n: usize) -> Self {
        Holding {
            dir: None,
            held: vec![None; n],
            stats: CloneStats {
                cloner: "none",
                ..CloneStats::default()
            },
        }
    }

    pub fn get(&self, k: usize) -> Option<&Path> {
        self.held.get(k).and_then(|p| p.as_deref())
    }
}

/// Holds donor clones for `wanted` in `root` when cloning is `enabled`.
/// `root` must not have an entry named `HOLD_DIR` of its own to write.
pub fn hold_for(
    store: &Store,
    root: &Path,
    donor_workspaces: &[&Path],
    wanted: &[&[ObjectId]],
    enabled: bool,
) -> Result<Holding> {
    if !enabled {
        return Ok(Holding::empty(wanted.len()));
    }
    let donors = Donors::from_caches(store, donor_workspaces, clone::cloner(true));
    if donors.is_empty() {
        let mut h = Holding::empty(wanted.len());
        h.stats.cloner = donors.cloner.name();
        return Ok(h);
    }
    donors.hold(root, wanted)
}

impl Drop for Holding {
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::statcache::{CachedFile, StatCache};

    #[test]
    fn donors_stay_inside_their_workspace_and_skip_racy_or_empty_entries() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(&d.path().join("store")).unwrap();
        let ws = d.path().join("ws");
        let entry = |size, mtime_ns| CachedFile {
            stat: FileStat {
                dev: 1,
                ino: 2,
                mode: 0o100644,
                size,
                mtime_ns,
                ctime_ns: mtime_ns,
            },
            chunks: vec![ObjectId([7; 32])],
        };
        let entries = vec![
            (b"../outside".to_vec(), entry(5, 10)),
            (b"a//b".to_vec(), entry(5, 10)),
            (b"racy".to_vec(), entry(5, 50)),
            (b"empty".to_vec(), entry(0, 10)),
            (b"dir/ok".to_vec(), entry(5, 10)),
        ];
        let bytes = StatCache::encode(ws.as_os_str().as_bytes(), 50, entries);
        store.write_stat_cache(&ws, &bytes).unwrap();
        let donors = Donors::from_caches(&store, &[&ws], clone::cloner(true));
        let paths: Vec<&PathBuf> = donors.by_content.values().flatten().map(|(p, _)| p).collect();
        assert_eq!(paths, [&ws.join("dir/ok")]);
        // A cache that claims another workspace gives nothing.
        let other = d.path().join("other");
        store.write_stat_cache(&other, &bytes).unwrap();
        let donors = Donors::from_caches(&store, &[&other], clone::cloner(true));
        assert!(donors.is_empty());
    }

    #[test]
    fn content_key_depends_on_order_and_every_id() {
        let (a, b) = (ObjectId([1; 32]), ObjectId([2; 32]));
        assert_ne!(content_key(&[a, b]), content_key(&[b, a]));
        assert_ne!(content_key(&[a]), content_key(&[a, a]));
        assert_eq!(content_key(&[a, b]), content_key(&[a, b]));
    }
}
