//! Reusing content that is already on the target filesystem: `restore` and
//! `rollback` clone a file whose bytes another file there already holds
//! (in the workspace under another path, per its stat cache) instead of
//! decompressing them from the store.
//!
//! Invariants: a donor is only a hint from a stat cache, which a hostile
//! store can forge, so nothing about it is trusted:
//! - it is opened below its workspace without following any symlink
//!   (`clone::open_beneath`), and must be a regular file owned by the user
//!   running moat whose stat (device, inode, mode, size, mtime, ctime)
//!   equals the cached one and is not racy, before and after the clone;
//! - the cloned bytes are read back and checked against the entry's chunk
//!   ids (each chunk's length from the index, its blake3 against its id)
//!   before the copy is ever renamed into place.
//!
//! Anything else is decompressed from the store. Clones go to a holding
//! directory (`.moat-tmp-clones` in the target root) before anything in
//! the target changes, so a rollback that deletes or overwrites the donor
//! path (a rename, a swap of two files) still has its content. The holding
//! directory is removed when the restore ends; a crashed run's leftover is
//! removed by the next one (`clear_stale`) and skipped by every walk.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::{IoContext, Result};
use crate::format::id::ObjectId;
use crate::format::statcache::FileStat;
use crate::store::Store;
use crate::worktree::clone::{self, Cloner, Outcome};
use crate::worktree::materialize;

/// The holding directory's name in the target root (a `.moat-tmp-` name,
/// so walks skip it and no tree may hold it).
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

/// A file a stat cache says holds some content.
struct Donor {
    /// The workspace, and the file's path below it.
    ws: PathBuf,
    rel: Vec<u8>,
    stat: FileStat,
}

/// Files on disk that hold known content, keyed by their chunk list.
pub struct Donors<'s> {
    store: &'s Store,
    by_content: HashMap<ObjectId, Vec<Donor>>,
    cloner: &'static dyn Cloner,
}

fn content_key(chunks: &[ObjectId]) -> ObjectId {
    let mut h = blake3::Hasher::new();
    for c in chunks {
        h.update(&c.0);
    }
    ObjectId(*h.finalize().as_bytes())
}

impl<'s> Donors<'s> {
    /// Donors from the stat caches of `workspaces` (missing or unreadable
    /// caches add nothing).
    pub fn from_caches(store: &'s Store, workspaces: &[&Path], cloner: &'static dyn Cloner) -> Self {
        let mut by_content: HashMap<ObjectId, Vec<Donor>> = HashMap::new();
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
                by_content
                    .entry(content_key(&cf.chunks))
                    .or_default()
                    .push(Donor {
                        ws: ws.to_path_buf(),
                        rel: rel.clone(),
                        stat: cf.stat,
                    });
            }
        }
        Donors {
            store,
            by_content,
            cloner,
        }
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
        let jobs: Vec<(usize, &[ObjectId], &Vec<Donor>)> = wanted
            .iter()
            .enumerate()
            .filter_map(|(k, c)| self.by_content.get(&content_key(c)).map(|d| (k, *c, d)))
            .collect();
        let Some(&(first_k, first_chunks, first_donors)) = jobs.first() else {
            return Ok(h);
        };
        let dir = root.join(HOLD_DIR);
        materialize::clear(&dir)?;
        std::fs::create_dir(&dir).at(&dir)?;
        h.dir = Some(dir.clone());
        let file = |k: usize| dir.join(k.to_string());
        // One probe first: without clone support nothing more is tried.
        let first = self.clone_one(first_donors, first_chunks, &file(first_k))?;
        if let Err(why) = &first {
            h.stats.fallback = Some(why.clone());
            return Ok(h);
        }
        let rest: Vec<(usize, std::result::Result<Option<FileStat>, String>)> = jobs[1..]
            .par_iter()
            .map(|&(k, c, d)| Ok((k, self.clone_one(d, c, &file(k))?)))
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

    /// Clones the first donor that is still as cached and holds exactly
    /// `chunks` to `dst`. `Ok(Err(why))`: cloning is unsupported or failed
    /// here; `Ok(Ok(None))`: no donor is fit.
    fn clone_one(
        &self,
        donors: &[Donor],
        chunks: &[ObjectId],
        dst: &Path,
    ) -> Result<std::result::Result<Option<FileStat>, String>> {
        let me = nix::unistd::geteuid().as_raw();
        for d in donors {
            let Ok(src) = clone::open_beneath(&d.ws, &d.rel) else {
                continue;
            };
            let same = |f: &File| {
                f.metadata()
                    .is_ok_and(|m| m.is_file() && m.uid() == me && FileStat::of(&m) == d.stat)
            };
            if !same(&src) {
                continue;
            }
            // A failed clone (no space, no permission) is not fatal: the
            // content is decompressed instead, and that reports any real error.
            match self.cloner.clone_open(&src, dst) {
                Err(e) => {
                    let path = d.ws.join(OsStr::from_bytes(&d.rel));
                    return Ok(Err(format!("could not clone {}: {e}", path.display())));
                }
                Ok(Outcome::Unsupported(why)) => return Ok(Err(why)),
                Ok(Outcome::Cloned) if same(&src) && holds(self.store, dst, chunks)? => {
                    return Ok(Ok(Some(d.stat)));
                }
                Ok(Outcome::Cloned) => std::fs::remove_file(dst).at(dst)?,
            }
        }
        Ok(Ok(None))
    }
}

/// Whether the file at `path` holds exactly the bytes of `chunks`: each
/// chunk's length comes from the index, and its blake3 must be its id.
pub fn holds(store: &Store, path: &Path, chunks: &[ObjectId]) -> Result<bool> {
    let index = store.index()?;
    let mut f = clone::open_source(path)?;
    let mut buf = Vec::new();
    for c in chunks {
        let Some(e) = index.get(c) else {
            return Ok(false);
        };
        buf.resize(e.raw_len as usize, 0);
        if f.read_exact(&mut buf).is_err() || ObjectId::hash(&buf) != *c {
            return Ok(false);
        }
    }
    // Nothing may follow the last chunk.
    Ok(f.read(&mut [0u8; 1]).at(path)? == 0)
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
/// A holding dir a crashed run left in `root` is removed either way.
pub fn hold_for(
    store: &Store,
    root: &Path,
    donor_workspaces: &[&Path],
    wanted: &[&[ObjectId]],
    enabled: bool,
) -> Result<Holding> {
    materialize::clear(&root.join(HOLD_DIR))?;
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
        let paths: Vec<PathBuf> = donors
            .by_content
            .values()
            .flatten()
            .map(|d| d.ws.join(OsStr::from_bytes(&d.rel)))
            .collect();
        assert_eq!(paths, [ws.join("dir/ok")]);
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
