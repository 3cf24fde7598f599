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
//!
//! Memory: marking uses one bit per index entry, not a set of ids.

pub mod retention;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::format::id::ObjectId;
use crate::format::index::{IndexEntry, IndexFile};
use crate::format::pack::{self, FinishedPack, ObjectKind};
use crate::format::tree::Content;
use crate::store::cleanup::{self, TempItem};
use crate::store::index::Index;
use crate::store::pack_writer::PackWriter;
use crate::store::{SnapshotRecord, Store};
use crate::util::failpoint;
use crate::util::progress::Progress;
use retention::{Candidate, Policy};

/// A pack whose live objects are less than this share of its bytes is
/// rewritten (a pack is kept as is while at least 3/4 of it is in use).
pub const REPACK_BELOW: f64 = 0.75;
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
}

/// What the sweep will do with each pack (by number in the index).
#[derive(Default)]
struct SweepPlan {
    delete: HashSet<u32>,
    repack: HashSet<u32>,
    /// Packs on disk that no index lists.
    unindexed: Vec<PathBuf>,
    freed: u64,
    dead_entries: bool,
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
    progress.start("marking", kept.len() as u64);
    let live = mark(store, &index, &kept, progress)?;
    let plan = plan_sweep(store, &index, &live)?;
    let mut report = GcReport {
        kept: kept.len(),
        freed: plan.freed,
        ..GcReport::default()
    };
    report.temps = cleanup::find(store.root(), opts.min_age_ns)?;
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
    sweep(store, &index, &live, &plan, &mut report, progress)?;
    let (temps, _) = cleanup::remove(std::mem::take(&mut report.temps), opts.min_age_ns);
    report.temps = temps;
    report.caches_removed = drop_orphan_caches(store);
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

fn test_and_set(bits: &mut [u64], i: usize) -> bool {
    let (w, b) = (i / 64, 1u64 << (i % 64));
    let was = bits[w] & b != 0;
    bits[w] |= b;
    was
}

fn is_set(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1u64 << (i % 64)) != 0
}

/// One bit per index entry: set when a kept snapshot reaches the object.
fn mark(store: &Store, index: &Index, kept: &[&SnapshotRecord], progress: &dyn Progress) -> Result<Vec<u64>> {
    let mut live = vec![0u64; index.len().div_ceil(64)];
    for s in kept {
        let mut stack = vec![s.snap.root];
        while let Some(id) = stack.pop() {
            let pos = position(index, &id, s)?;
            if test_and_set(&mut live, pos) {
                continue;
            }
            for e in store.read_tree(&id)?.entries {
                match e.content {
                    Content::Dir(sub) => stack.push(sub),
                    Content::File(chunks) => {
                        for c in chunks {
                            let p = position(index, &c, s)?;
                            test_and_set(&mut live, p);
                        }
                    }
                    Content::Symlink(_) => {}
                }
            }
        }
        progress.inc(1);
    }
    Ok(live)
}

fn position(index: &Index, id: &ObjectId, s: &SnapshotRecord) -> Result<usize> {
    index.position(id).ok_or_else(|| Error::MissingObject {
        id: *id,
        by: format!(
            "kept snapshot {}; gc deletes nothing until `moat check` passes",
            s.id.short()
        ),
    })
}

fn plan_sweep(store: &Store, index: &Index, live: &[u64]) -> Result<SweepPlan> {
    let n = index.packs().len();
    let (mut live_bytes, mut live_count, mut total) = (vec![0u64; n], vec![0u64; n], vec![0u64; n]);
    for (i, e) in index.entries().iter().enumerate() {
        total[e.pack as usize] += 1;
        if is_set(live, i) {
            live_bytes[e.pack as usize] += e.stored_len as u64;
            live_count[e.pack as usize] += 1;
        }
    }
    let mut plan = SweepPlan {
        dead_entries: live_count.iter().sum::<u64>() < index.len() as u64,
        ..Default::default()
    };
    for (p, id) in index.packs().iter().enumerate() {
        let size = fs::metadata(store.pack_path(id)).map(|m| m.len()).unwrap_or(0);
        // Object bytes = file minus framing; objects an earlier gc dropped
        // from the index count as dead.
        let objects = size.saturating_sub(pack::overhead(total[p]));
        if live_count[p] == 0 {
            plan.delete.insert(p as u32);
            plan.freed += size;
        } else if (live_bytes[p] as f64) < REPACK_BELOW * objects as f64 {
            plan.repack.insert(p as u32);
            plan.freed += size.saturating_sub(live_bytes[p]);
        }
    }
    for (path, size) in index.unindexed_packs(store.root()) {
        plan.freed += size;
        plan.unindexed.push(path);
    }
    Ok(plan)
}

fn sweep(
    store: &Store,
    index: &Index,
    live: &[u64],
    plan: &SweepPlan,
    report: &mut GcReport,
    progress: &dyn Progress,
) -> Result<()> {
    let nothing_to_do = plan.delete.is_empty()
        && plan.repack.is_empty()
        && plan.unindexed.is_empty()
        && !plan.dead_entries
        && index.files.len() <= 1;
    if nothing_to_do {
        return Ok(());
    }
    progress.start("repacking", plan.repack.len() as u64);
    let new_packs = repack(store, index, live, &plan.repack, progress)?;
    report.packs_written = new_packs.len() as u64;
    report.packs_repacked = plan.repack.len() as u64;
    failpoint("gc-after-repack");
    let new_index = write_index(store, index, live, plan, &new_packs)?;
    failpoint("gc-after-index");
    let old: Vec<ObjectId> = index.files.iter().filter(|f| **f != new_index).copied().collect();
    store.delete_index_files(&old)?;
    failpoint("gc-after-index-delete");
    // A repacked pack can come out byte-identical (same id): never delete
    // a pack the new index lists.
    let fresh: HashSet<ObjectId> = new_packs.iter().map(|p| p.id).collect();
    let doomed = plan
        .delete
        .iter()
        .chain(&plan.repack)
        .map(|p| index.pack_id(*p))
        .filter(|id| !fresh.contains(id))
        .map(|id| store.pack_path(&id));
    for (n, path) in doomed.chain(plan.unindexed.iter().cloned()).enumerate() {
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&path, e)),
            _ => {}
        }
        // An emptied fan-out directory goes too (no writer runs during gc).
        if let Some(dir) = path.parent() {
            let _ = fs::remove_dir(dir);
        }
        report.packs_deleted += 1;
        if n == 0 {
            failpoint("gc-mid-pack-delete");
        }
    }
    report.packs_deleted -= report.packs_repacked;
    Ok(())
}

/// Copies the live objects of `packs` into new packs, verifying each.
fn repack(
    store: &Store,
    index: &Index,
    live: &[u64],
    packs: &HashSet<u32>,
    progress: &dyn Progress,
) -> Result<Vec<FinishedPack>> {
    let mut members: HashMap<u32, Vec<&IndexEntry>> = HashMap::new();
    for (i, e) in index.entries().iter().enumerate() {
        if packs.contains(&e.pack) && is_set(live, i) {
            members.entry(e.pack).or_default().push(e);
        }
    }
    let mut writers: [Option<PackWriter>; 2] = [None, None];
    let mut done = Vec::new();
    for (p, entries) in members {
        let pack_id = index.pack_id(p);
        let path = store.pack_path(&pack_id);
        let data = fs::read(&path).at(&path)?;
        for e in entries {
            let stored = data
                .get(e.offset as usize..e.offset as usize + e.stored_len as usize)
                .ok_or_else(|| Error::BadObject {
                    id: e.id,
                    pack: pack_id.to_hex(),
                    detail: "truncated pack".into(),
                })?;
            crate::format::compress::decode(&e.id, e.compression, e.raw_len, stored).map_err(|detail| {
                Error::BadObject {
                    id: e.id,
                    pack: pack_id.to_hex(),
                    detail,
                }
            })?;
            let slot = &mut writers[(e.kind == ObjectKind::Tree) as usize];
            if slot.is_none() {
                *slot = Some(PackWriter::create(&store.tmp_dir())?);
            }
            let w = slot.as_mut().expect("just created");
            w.add(e.id, e.kind, e.compression, e.raw_len, stored)?;
            if w.bytes() >= store.config.pack_target as u64 {
                done.push(slot.take().expect("present").finish(store.root())?);
            }
        }
        progress.inc(1);
    }
    for w in writers.into_iter().flatten() {
        done.push(w.finish(store.root())?);
    }
    Ok(done)
}

/// Publishes one index of every live object (kept packs and new packs).
fn write_index(
    store: &Store,
    index: &Index,
    live: &[u64],
    plan: &SweepPlan,
    new_packs: &[FinishedPack],
) -> Result<ObjectId> {
    let mut renumber: HashMap<u32, u32> = HashMap::new();
    let mut packs = Vec::new();
    let mut entries = Vec::new();
    for (i, e) in index.entries().iter().enumerate() {
        if !is_set(live, i) || plan.delete.contains(&e.pack) || plan.repack.contains(&e.pack) {
            continue;
        }
        let n = *renumber.entry(e.pack).or_insert_with(|| {
            packs.push(index.pack_id(e.pack));
            packs.len() as u32 - 1
        });
        entries.push(IndexEntry { pack: n, ..e.clone() });
    }
    let fresh = IndexFile::from_packs(new_packs);
    let base = packs.len() as u32;
    packs.extend(fresh.packs);
    entries.extend(fresh.entries.into_iter().map(|e| IndexEntry {
        pack: e.pack + base,
        ..e
    }));
    entries.sort_by_key(|e| e.id);
    store.write_index(&IndexFile { packs, entries })
}

/// Removes stat caches of workspaces that no longer exist (a deleted restore
/// target, a removed checkout). Unreadable caches go too: they are rebuilt.
fn drop_orphan_caches(store: &Store) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let mut n = 0;
    for path in store.stat_cache_paths() {
        let cache = fs::read(&path)
            .at(&path)
            .and_then(|d| crate::format::statcache::StatCache::decode(&d, &path));
        let keep = match cache {
            Ok(c) => Path::new(std::ffi::OsStr::from_bytes(&c.workspace)).is_dir(),
            Err(_) => false,
        };
        if !keep && fs::remove_file(&path).is_ok() {
            n += 1;
        }
    }
    n
}
