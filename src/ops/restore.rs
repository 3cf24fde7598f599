//! `moat restore`: write a snapshot (or one path of it) into a directory.
//!
//! Invariants: names come only from trees that passed `Tree::decode`, so
//! every name is one plain path component. Each directory is checked with
//! `lstat` (a symlink already in the target is replaced, never followed)
//! before anything is created below it, files are created with
//! `O_CREAT|O_EXCL|O_NOFOLLOW`, and every chunk is verified before it is
//! written. A file's length must equal its manifest size. The whole plan
//! is read before the target is touched, within the limits of
//! `format::tree`. moat's own directories (the store, `$MOAT_HOME`) are
//! never a target, never inside one's path, and never written into.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rayon::prelude::*;

use crate::error::{Error, IoContext, Result};
use crate::format::id::ObjectId;
use crate::format::snapshot::Snapshot;
use crate::format::statcache::CachedFile;
use crate::format::tree::{Budget, Content, Entry};
use crate::ops::trees::{Trees, walk};
use crate::store::Store;
use crate::util::progress::Progress;
use crate::worktree::materialize;
use crate::worktree::protect::{self, Protected};
use crate::worktree::reuse::{self, CloneStats};

#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// Restore into a non-empty directory, replacing what is in the way.
    pub force: bool,
    /// Restore only this path (relative, `/`-separated) of the snapshot.
    pub subpath: Option<Vec<u8>>,
    /// Clone content already on the target filesystem (`--no-clone` turns
    /// it off).
    pub clone: bool,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            force: false,
            subpath: None,
            clone: true,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
    /// Files cloned from content already on the filesystem.
    pub clones: CloneStats,
}

/// What to write, gathered from the trees before anything is written;
/// paths are relative to the target.
#[derive(Default)]
struct Plan {
    /// Pre-order, so a parent comes before its children.
    dirs: Vec<(Vec<u8>, Entry)>,
    files: Vec<(Vec<u8>, Entry)>,
    links: Vec<(Vec<u8>, Entry)>,
}

fn chunks_of(e: &Entry) -> &[ObjectId] {
    match &e.content {
        Content::File(c) => c,
        _ => &[],
    }
}

pub fn restore(
    store: &Store,
    snap: &Snapshot,
    target: &Path,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    // Readers hold the shared lock too, so gc never deletes under them.
    let _lock = store.lock_shared()?;
    let protected = Protected::of(store);
    protected.refuse_inside(target, "restore target")?;
    if let Some(p) = &opts.subpath {
        // A path that is not in the snapshot fails before the target is touched.
        crate::ops::inspect::lookup(store, &snap.root, p)?;
    }
    // The whole plan is read (and every tree checked) before the target is.
    let plan = plan(store, &snap.root, opts.subpath.as_deref())?;
    prepare_target(target, opts.force)?;
    let target = fs::canonicalize(target).at(target)?;
    // The racy line of the stat cache saved below, by the target's own
    // filesystem clock, read before any file is written.
    let start_ns = crate::util::fs_clock_ns(&target);
    refuse_own_dirs(&protected, &target, &plan, opts.force)?;
    let at = |rel: &[u8]| target.join(OsStr::from_bytes(rel));
    for (rel, _) in &plan.dirs {
        materialize::ensure_dir(&at(rel))?;
    }
    let bytes = plan
        .files
        .iter()
        .fold(0u64, |sum, (_, e)| sum.saturating_add(e.size));
    let wanted: Vec<&[ObjectId]> = plan.files.iter().map(|(_, e)| chunks_of(e)).collect();
    let ws = snap.workspace_path();
    let holding = reuse::hold_for(store, &target, &[&ws, &target], &wanted, opts.clone)?;
    progress.start("restoring", bytes);
    let cached: Vec<(Vec<u8>, CachedFile)> = plan
        .files
        .par_iter()
        .enumerate()
        .map(|(k, (rel, e))| {
            let held = holding.get(k);
            let stat = materialize::write_file(store, &at(rel), e, chunks_of(e), false, held)?;
            progress.inc(e.size);
            Ok((
                rel.clone(),
                CachedFile {
                    stat,
                    chunks: chunks_of(e).to_vec(),
                },
            ))
        })
        .collect::<Result<_>>()?;
    for (rel, e) in &plan.links {
        materialize::write_symlink(&at(rel), e, false)?;
    }
    let clones = holding.stats.clone();
    // The holding dir goes before the directories get their mtimes.
    drop(holding);
    for (rel, e) in plan.dirs.iter().rev() {
        materialize::set_dir_meta(&at(rel), e)?;
    }
    progress.finish();
    // A restored tree is a workspace the stat cache already knows, so the
    // next snapshot of it reads nothing.
    if opts.subpath.is_none() {
        let _ = crate::worktree::statcache::save(store, &target, start_ns, cached);
    }
    Ok(RestoreReport {
        files: plan.files.len() as u64,
        dirs: plan.dirs.len() as u64,
        symlinks: plan.links.len() as u64,
        bytes,
        clones,
    })
}

/// Refuses a plan that would write onto one of moat's own directories in
/// the target: by path, and (when the target held something already) by
/// device and inode of every directory the plan writes into.
fn refuse_own_dirs(protected: &Protected, target: &Path, plan: &Plan, force: bool) -> Result<()> {
    let own = protected.inside(target);
    let all = plan.dirs.iter().chain(&plan.files).chain(&plan.links);
    for (rel, _) in all {
        let under = |o: &Vec<u8>| rel.starts_with(o) && matches!(rel.get(o.len()), None | Some(b'/'));
        if let Some(o) = own.iter().find(|o| under(o)) {
            let path = target.join(OsStr::from_bytes(rel));
            return Err(protect::refused_write(&path, &target.join(OsStr::from_bytes(o))));
        }
    }
    if force {
        for (rel, _) in &plan.dirs {
            let path = target.join(OsStr::from_bytes(rel));
            if let Some(o) = protected.at(&path) {
                return Err(protect::refused_write(&path, o));
            }
        }
    }
    Ok(())
}

fn prepare_target(target: &Path, force: bool) -> Result<()> {
    match fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => {
            let nonempty = fs::read_dir(target).at(target)?.next().is_some();
            if nonempty && !force {
                return Err(Error::TargetNotEmpty(target.to_path_buf()));
            }
            Ok(())
        }
        Ok(_) => Err(Error::NotADirectory(target.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::create_dir_all(target).at(target),
        Err(e) => Err(Error::io(target, e)),
    }
}

/// Every entry to write, from the trees (iteratively and within the
/// limits, see `ops::trees`). `subpath` limits it to one path: the
/// directories along it and everything below it.
fn plan(store: &Store, root: &ObjectId, subpath: Option<&[u8]>) -> Result<Plan> {
    let want = crate::format::path::components(subpath.unwrap_or_default());
    let chunk_max = u64::from(store.config.chunk_max);
    let mut plan = Plan::default();
    let mut budget = Budget::for_snapshots(1);
    walk(&Trees::new(store), root, b"", &mut budget, |rel, e| {
        let inside = want.is_empty() || {
            let comps = crate::format::path::components(rel);
            if comps.len() <= want.len() && comps[..] != want[..comps.len()] {
                return Ok(false);
            }
            comps.len() >= want.len()
        };
        match &e.content {
            Content::Dir(_) => plan.dirs.push((rel.to_vec(), e)),
            Content::File(chunks) if inside => {
                // No chunk of this store holds more than chunk_max bytes.
                if e.size > (chunks.len() as u64).saturating_mul(chunk_max) {
                    return Err(Error::corrupt(
                        OsStr::from_bytes(rel),
                        "tree entry",
                        format!(
                            "size {} cannot be held by {} chunks of at most {chunk_max} bytes",
                            e.size,
                            chunks.len()
                        ),
                    ));
                }
                plan.files.push((rel.to_vec(), e));
            }
            Content::Symlink(_) if inside => plan.links.push((rel.to_vec(), e)),
            _ => {}
        }
        Ok(true)
    })?;
    Ok(plan)
}
