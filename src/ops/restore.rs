//! `moat restore`: write a snapshot (or one path of it) into a directory.
//!
//! Invariants: names come only from trees that passed `Tree::decode`, so
//! every name is one plain path component. Each directory is checked with
//! `lstat` (a symlink already in the target is replaced, never followed)
//! before anything is created below it, files are created with
//! `O_CREAT|O_EXCL|O_NOFOLLOW`, and every chunk is verified before it is
//! written. A file's length must equal its manifest size.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::{Error, IoContext, Result};
use crate::format::id::ObjectId;
use crate::format::snapshot::Snapshot;
use crate::format::statcache::CachedFile;
use crate::format::tree::{Content, Entry};
use crate::store::Store;
use crate::util::progress::Progress;
use crate::worktree::materialize;
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

struct FileJob {
    path: PathBuf,
    rel: Vec<u8>,
    chunks: Vec<ObjectId>,
    entry: Entry,
}

/// What to write, gathered from the trees before anything is written.
#[derive(Default)]
struct Plan {
    /// Pre-order, so a parent comes before its children.
    dirs: Vec<(PathBuf, Vec<u8>, Entry)>,
    files: Vec<FileJob>,
    links: Vec<(PathBuf, Entry)>,
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
    if let Some(p) = &opts.subpath {
        // A path that is not in the snapshot fails before the target is touched.
        crate::ops::inspect::lookup(store, &snap.root, p)?;
    }
    prepare_target(target, opts.force)?;
    let target = fs::canonicalize(target).at(target)?;
    // The racy line of the stat cache saved below, by the target's own
    // filesystem clock, read before any file is written.
    let start_ns = crate::util::fs_clock_ns(&target);
    let plan = plan(store, &snap.root, &target, opts.subpath.as_deref())?;
    for (path, _, _) in &plan.dirs {
        materialize::ensure_dir(path)?;
    }
    let bytes: u64 = plan.files.iter().map(|j| j.entry.size).sum();
    let holding = hold(store, snap, &target, &plan, opts.clone)?;
    progress.start("restoring", bytes);
    let cached: Vec<(Vec<u8>, CachedFile)> = plan
        .files
        .par_iter()
        .enumerate()
        .map(|(k, job)| {
            let held = holding.get(k);
            let stat = materialize::write_file(store, &job.path, &job.entry, &job.chunks, false, held)?;
            progress.inc(job.entry.size);
            Ok((
                job.rel.clone(),
                CachedFile {
                    stat,
                    chunks: job.chunks.clone(),
                },
            ))
        })
        .collect::<Result<_>>()?;
    for (path, e) in &plan.links {
        materialize::write_symlink(path, e, false)?;
    }
    for (path, _, e) in plan.dirs.iter().rev() {
        materialize::set_dir_meta(path, e)?;
    }
    progress.finish();
    let clones = holding.stats.clone();
    drop(holding);
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

/// Clones of the files whose content is already on disk: in the snapshot's
/// workspace or in the target itself (per their stat caches).
fn hold(store: &Store, snap: &Snapshot, target: &Path, plan: &Plan, enabled: bool) -> Result<reuse::Holding> {
    let wanted: Vec<&[ObjectId]> = plan.files.iter().map(|j| j.chunks.as_slice()).collect();
    // A snapshot that has the holding dir's name itself gets no clones.
    let top = |p: &Path| p.parent() == Some(target) && p.ends_with(reuse::HOLD_DIR);
    let clash = plan.dirs.iter().any(|(p, _, _)| top(p))
        || plan.files.iter().any(|j| top(&j.path))
        || plan.links.iter().any(|(p, _)| top(p));
    let ws = snap.workspace_path();
    reuse::hold_for(store, target, &[&ws, target], &wanted, enabled && !clash)
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

fn plan(store: &Store, root: &ObjectId, target: &Path, subpath: Option<&[u8]>) -> Result<Plan> {
    let mut plan = Plan::default();
    let want = crate::format::path::components(subpath.unwrap_or_default());
    plan_tree(store, root, target, b"", &want, &mut plan)?;
    Ok(plan)
}

/// Adds tree `id` (at `dir`, relative `rel`) to the plan. `want` limits the
/// walk to one path: its first component is the only entry taken here.
fn plan_tree(
    store: &Store,
    id: &ObjectId,
    dir: &Path,
    rel: &[u8],
    want: &[&[u8]],
    plan: &mut Plan,
) -> Result<()> {
    let tree = store.read_tree(id)?;
    for e in tree.entries {
        if want.first().is_some_and(|first| e.name.as_slice() != *first) {
            continue;
        }
        let path = dir.join(OsStr::from_bytes(&e.name));
        let erel = if rel.is_empty() {
            e.name.clone()
        } else {
            [rel, b"/", &e.name].concat()
        };
        let rest = want.get(1..).unwrap_or_default();
        match &e.content {
            Content::Dir(sub) => {
                let sub = *sub;
                plan.dirs.push((path.clone(), erel.clone(), e));
                plan_tree(store, &sub, &path, &erel, rest, plan)?;
            }
            Content::File(chunks) if rest.is_empty() => plan.files.push(FileJob {
                path,
                rel: erel,
                chunks: chunks.clone(),
                entry: e,
            }),
            Content::Symlink(_) if rest.is_empty() => plan.links.push((path, e)),
            _ => {}
        }
    }
    Ok(())
}
