//! `moat gc`: apply retention, then reclaim the space of everything no kept
//! snapshot references, then remove orphaned temp files.
//!
//! Concurrency protocol (see store-format.md, "Garbage collection"): every
//! writer and reader holds a shared flock(2) on `lock` while it works; gc
//! holds it exclusively from the first look at the snapshots to the last
//! deletion. So no capture is in flight while gc decides what is garbage: a
//! capture that started before gc finishes before gc looks, and one that
//! starts during gc waits and then sees the new index. Nothing gc deletes
//! can be needed by a snapshot committed before or after it.
//!
//! Crash safety: new packs, then the new index, are published before any
//! old index file or pack is deleted, so at every point each kept object is
//! listed by some index and present in some pack. Leftovers of a killed gc
//! (unindexed packs, stale index entries) are garbage the next gc removes.
//! A full disk: gc frees what needs no write first (`sweep`).
//!
//! Memory: marking uses one bit per index entry, not a set of ids
//! (`mark`, which also picks a copy that verifies among duplicates).

mod mark;
pub mod retention;
mod sweep;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::id::ObjectId;
use crate::store::backend::FileKind;
use crate::store::cleanup::TempItem;
use crate::store::{SnapshotRecord, Store};
use crate::util::failpoint;
use crate::util::progress::Progress;
use retention::{Candidate, Policy};

pub use sweep::REPACK_BELOW;
pub const DEFAULT_MIN_AGE_NS: i64 = 3600 * 1_000_000_000;

/// Adjusts the command's policy for one workspace (the CLI adds that
/// workspace's `moat.yaml` retention); gc itself reads no configuration.
pub type WorkspacePolicy = std::sync::Arc<dyn Fn(&Path, Policy) -> Policy + Send + Sync>;

#[derive(Clone)]
pub struct GcOptions {
    pub policy: Policy,
    /// Apply the policy to this workspace only; `None`: to every workspace.
    pub workspace: Option<PathBuf>,
    pub dry_run: bool,
    /// Temp files younger than this are left alone.
    pub min_age_ns: i64,
    /// The policy of each workspace, from the command's (`None`: the
    /// command's policy as it is).
    pub workspace_policy: Option<WorkspacePolicy>,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            policy: Policy::default(),
            workspace: None,
            dry_run: false,
            min_age_ns: DEFAULT_MIN_AGE_NS,
            workspace_policy: None,
        }
    }
}

#[derive(Debug, Default)]
pub struct GcReport {
    pub removed: Vec<SnapshotRecord>,
    pub kept: usize,
    pub packs_deleted: u64,
    pub packs_repacked: u64,
    pub packs_written: u64,
    /// Bytes freed (for a dry run: that would be freed).
    pub freed: u64,
    pub temps: Vec<TempItem>,
    /// Stat caches removed because their workspace no longer exists.
    pub caches_removed: u64,
    /// Damage found (objects with no copy that verifies): gc deleted
    /// nothing of those objects. Each one makes the command fail.
    pub problems: Vec<String>,
    /// Harmless findings (work left for a later gc, and why).
    pub notes: Vec<String>,
}

pub fn gc(
    store: &Store,
    opts: &GcOptions,
    progress: &dyn Progress,
    on_wait: impl FnOnce(),
) -> Result<GcReport> {
    let _lock = store.lock_exclusive(on_wait)?;
    store.invalidate_index();
    let (snaps, problems) = store.list_snapshots()?;
    if let Some(p) = problems.first() {
        return Err(refuse(p));
    }
    let removed = select(store, &snaps, opts)?;
    let gone: HashSet<ObjectId> = removed.iter().map(|r| r.id).collect();
    let kept: Vec<&SnapshotRecord> = snaps.iter().filter(|s| !gone.contains(&s.id)).collect();
    let index = store.index()?;
    if let Some(p) = index.problems.first() {
        return Err(refuse(p));
    }
    progress.start_count("marking", kept.len() as u64);
    let marks = mark::mark(store, &index, &kept, progress)?;
    let plan = sweep::plan(store, &index, &marks.live)?;
    let mut report = GcReport {
        kept: kept.len(),
        freed: plan.freed_dead + plan.freed_repack,
        problems: marks.problems,
        ..GcReport::default()
    };
    report.temps = store.find_temps(opts.min_age_ns)?;
    if opts.dry_run {
        report.removed = removed;
        report.packs_deleted = (plan.delete.len() + plan.unindexed.len()) as u64;
        report.packs_repacked = plan.repack.len() as u64;
        return Ok(report);
    }
    for r in &removed {
        store.delete_snapshot(&r.id)?;
    }
    report.removed = removed;
    failpoint("gc-after-forget");
    // What needs no write goes first: on a full disk it makes the room.
    let (temps, _) = store.remove_temps(std::mem::take(&mut report.temps), opts.min_age_ns);
    report.temps = temps;
    report.caches_removed = drop_orphan_caches(store);
    sweep::sweep(store, &index, &marks.live, &plan, &mut report, progress)?;
    store.invalidate_index();
    progress.finish();
    Ok(report)
}

/// Applies a retention policy to one workspace's snapshots without
/// reclaiming space (what `moat run` does after each snapshot; the data
/// goes at the next `gc`). Returns the removed snapshots.
pub fn forget(store: &Store, policy: &Policy, workspace: &Path) -> Result<Vec<SnapshotRecord>> {
    let _lock = store.lock_shared()?;
    let (snaps, _) = store.list_snapshots()?;
    let opts = GcOptions {
        policy: policy.clone(),
        workspace: Some(workspace.to_path_buf()),
        ..GcOptions::default()
    };
    let removed = select(store, &snaps, &opts)?;
    for r in &removed {
        store.delete_snapshot(&r.id)?;
    }
    Ok(removed)
}

fn refuse(problem: &Error) -> Error {
    Error::corrupt(
        "store",
        "store",
        format!("{problem}; gc deletes nothing while part of the store is unreadable (run `moat check`)"),
    )
}

/// The snapshots the policy removes, per workspace.
fn select(store: &Store, snaps: &[SnapshotRecord], opts: &GcOptions) -> Result<Vec<SnapshotRecord>> {
    let pins = store.pinned()?;
    let mut by_ws: HashMap<PathBuf, Vec<Candidate>> = HashMap::new();
    for s in snaps {
        let ws = s.snap.workspace_path();
        if opts.workspace.as_ref().is_some_and(|w| *w != ws) {
            continue;
        }
        by_ws.entry(ws).or_default().push(Candidate {
            id: s.id,
            time_ns: s.snap.time_ns,
            run_id: s.snap.run_id.clone(),
            trigger: s.snap.trigger,
            pinned: pins.contains(&s.id),
        });
    }
    let now = crate::util::now_ns();
    let gone: HashSet<ObjectId> = by_ws
        .iter()
        .flat_map(|(ws, c)| retention::to_remove(c, &policy_for(ws, opts), now))
        .collect();
    Ok(snaps.iter().filter(|s| gone.contains(&s.id)).cloned().collect())
}

/// The policy for one workspace.
fn policy_for(ws: &Path, opts: &GcOptions) -> Policy {
    match &opts.workspace_policy {
        Some(f) => f(ws, opts.policy.clone()),
        None => opts.policy.clone(),
    }
}

/// Removes stat caches of workspaces that no longer exist (a deleted restore
/// target, a removed checkout). Unreadable caches go too: they are rebuilt.
fn drop_orphan_caches(store: &Store) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let mut n = 0;
    for name in store.stat_cache_names().unwrap_or_default() {
        let path = store.describe(FileKind::Cache, &name);
        let cache = store.read_named_stat_cache(&name).and_then(|d| match d {
            Some(d) => crate::format::statcache::StatCache::decode(&d, &path),
            None => Err(Error::io(&path, std::io::ErrorKind::NotFound.into())),
        });
        let keep = match cache {
            Ok(c) => Path::new(std::ffi::OsStr::from_bytes(&c.workspace)).is_dir(),
            Err(_) => false,
        };
        if !keep && store.delete_stat_cache(&name).unwrap_or(false) {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests;
