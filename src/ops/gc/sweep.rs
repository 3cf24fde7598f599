//! gc's sweep: deciding what each pack becomes, then freeing space before
//! writing anything, then rewriting.
//!
//! Order (each step publishes before it deletes, so a crash anywhere
//! leaves every kept object listed by an index and present in a pack):
//! 1. free without writing: packs no index lists, then index files that
//!    list only dead packs no other index lists (the file first, then its
//!    packs);
//! 2. if packs must be rewritten and others are dead, publish an index
//!    without the dead ones and delete them, so the rewrite has their room;
//! 3. rewrite the packs under 75% live (every object verified first; a
//!    pack holding an object that fails stays as it is and is reported),
//!    publish one index of every live copy, delete the old index files and
//!    the dead and rewritten packs.
//!
//! Before each write the free space is checked: an index that does not fit
//! is an error saying how much room it needs; a rewrite that does not fit
//! is skipped with a note. A write that fails (disk filled meanwhile, EIO)
//! removes the packs this gc wrote and fails; what was published stands.

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::format::id::ObjectId;
use crate::format::index::{IndexEntry, IndexFile};
use crate::format::pack::{self, FinishedPack, ObjectKind};
use crate::store::Store;
use crate::store::index::Index;
use crate::store::pack_writer::PackWriter;
use crate::util::failpoint;
use crate::util::progress::Progress;

use super::GcReport;
use super::mark::is_set;

/// A pack whose live objects are less than this share of its bytes is
/// rewritten (a pack is kept as is while at least 3/4 of it is in use).
pub const REPACK_BELOW: f64 = 0.75;

/// What the sweep will do with each pack (by number in the index).
#[derive(Default)]
pub struct SweepPlan {
    pub delete: HashSet<u32>,
    pub repack: HashSet<u32>,
    /// Packs in the store that no index lists.
    pub unindexed: Vec<ObjectId>,
    /// Index files (positions in `Index::files`) that list only dead
    /// packs that no other index file lists.
    pub dead_files: Vec<usize>,
    /// Bytes freed by deleting dead and unindexed packs.
    pub freed_dead: u64,
    /// Bytes freed by rewriting `repack`.
    pub freed_repack: u64,
    /// Live stored bytes of `repack` (what the rewrite writes).
    pub repack_bytes: u64,
}

pub fn plan(store: &Store, index: &Index, live: &[u64]) -> Result<SweepPlan> {
    let n = index.packs().len();
    let (mut live_bytes, mut live_count, mut total) = (vec![0u64; n], vec![0u64; n], vec![0u64; n]);
    for (i, e) in index.iter() {
        total[e.pack as usize] += 1;
        if is_set(live, i) {
            live_bytes[e.pack as usize] += e.stored_len as u64;
            live_count[e.pack as usize] += 1;
        }
    }
    let mut plan = SweepPlan::default();
    for (p, id) in index.packs().iter().enumerate() {
        let size = store.pack_size(id).ok().flatten().unwrap_or(0);
        // Object bytes = file minus framing; objects an earlier gc dropped
        // from the index count as dead.
        let objects = size.saturating_sub(pack::overhead(total[p]));
        if live_count[p] == 0 {
            plan.delete.insert(p as u32);
            plan.freed_dead += size;
        } else if (live_bytes[p] as f64) < REPACK_BELOW * objects as f64 {
            plan.repack.insert(p as u32);
            plan.freed_repack += size.saturating_sub(live_bytes[p]);
            plan.repack_bytes += live_bytes[p];
        }
    }
    for (id, size) in store.unindexed_packs(index)? {
        plan.freed_dead += size;
        plan.unindexed.push(id);
    }
    let mut listers = vec![0u32; n];
    for f in 0..index.file_count() {
        for &p in index.file_packs(f) {
            listers[p as usize] += 1;
        }
    }
    plan.dead_files = (0..index.file_count())
        .filter(|&f| {
            index
                .file_packs(f)
                .iter()
                .all(|p| plan.delete.contains(p) && listers[*p as usize] == 1)
        })
        .collect();
    Ok(plan)
}

/// Room for a file of `len` bytes, with a page of slack for rounding.
fn room(len: u64) -> u64 {
    len.saturating_add(4096)
}

pub fn sweep(
    store: &Store,
    index: &Index,
    live: &[u64],
    plan: &SweepPlan,
    report: &mut GcReport,
    progress: &dyn Progress,
) -> Result<()> {
    // 1. Free what needs no write.
    let mut deleted = Deleted::default();
    for id in &plan.unindexed {
        deleted.pack(store.delete_pack(id)?);
    }
    let mut gone: HashSet<u32> = HashSet::new();
    for &f in &plan.dead_files {
        store.delete_index_files(&[index.file_id(f)])?;
        for &p in index.file_packs(f) {
            deleted.pack(store.delete_pack(&index.pack_id(p))?);
            gone.insert(p);
        }
    }
    let res = rewrite_and_delete(store, index, live, plan, gone, &mut deleted, report, progress);
    report.packs_deleted = deleted.n;
    res
}

/// Counts deleted dead packs; the first pack deletion of any kind passes
/// failpoint `gc-mid-pack-delete` (a crash there must leave a sound store).
#[derive(Default)]
struct Deleted {
    n: u64,
    any: bool,
}

impl Deleted {
    fn pack(&mut self, existed: bool) {
        self.n += existed as u64;
        self.rewritten();
    }

    fn rewritten(&mut self) {
        if !self.any {
            self.any = true;
            failpoint("gc-mid-pack-delete");
        }
    }
}

/// Steps 2 and 3 (see the module doc).
#[allow(clippy::too_many_arguments)]
fn rewrite_and_delete(
    store: &Store,
    index: &Index,
    live: &[u64],
    plan: &SweepPlan,
    mut gone: HashSet<u32>,
    deleted: &mut Deleted,
    report: &mut GcReport,
    progress: &dyn Progress,
) -> Result<()> {
    report.freed = plan.freed_dead;
    let mut old_files: Vec<ObjectId> = (0..index.file_count())
        .filter(|f| !plan.dead_files.contains(f))
        .map(|f| index.file_id(f))
        .collect();
    let mut delete: Vec<u32> = plan
        .delete
        .iter()
        .copied()
        .filter(|p| !gone.contains(p))
        .collect();
    delete.sort_unstable();
    let dead_entries = index
        .iter()
        .any(|(i, e)| !is_set(live, i) && !gone.contains(&e.pack));
    if delete.is_empty() && plan.repack.is_empty() && !dead_entries && old_files.len() <= 1 {
        return Ok(());
    }
    // 2. Dead packs go before a rewrite needs their room.
    if !plan.repack.is_empty() && !delete.is_empty() {
        let exclude: HashSet<u32> = gone.iter().chain(&delete).copied().collect();
        let new = publish_index(store, index, live, &exclude, &[])?;
        replace_files(store, &old_files, new)?;
        old_files = vec![new];
        for p in delete.drain(..) {
            deleted.pack(store.delete_pack(&index.pack_id(p))?);
            gone.insert(p);
        }
    }
    // 3. Rewrite.
    let mut repack = plan.repack.clone();
    if !repack.is_empty() {
        let needed = room(plan.repack_bytes + pack::overhead(index.len() as u64))
            .saturating_add(room(index_size(index)));
        if let Some(free) = store.free_space().filter(|f| *f < needed) {
            report.notes.push(format!(
                "{} packs under {}% live not rewritten: that needs {needed} bytes free, {free} are; run gc again when there is room",
                repack.len(),
                (REPACK_BELOW * 100.0) as u32
            ));
            repack.clear();
        }
    }
    progress.start_count("repacking", repack.len() as u64);
    let (new_packs, repacked) = rewrite(store, index, live, &repack, &mut report.problems, progress)?;
    report.packs_written = new_packs.len() as u64;
    report.packs_repacked = repacked.len() as u64;
    report.freed += plan.freed_repack * (repacked.len() == plan.repack.len()) as u64;
    failpoint("gc-after-repack");
    let exclude: HashSet<u32> = gone.iter().chain(&delete).chain(&repacked).copied().collect();
    let new_index = match publish_index(store, index, live, &exclude, &new_packs) {
        Ok(id) => id,
        Err(e) => {
            drop_new_packs(store, index, &new_packs);
            return Err(e);
        }
    };
    failpoint("gc-after-index");
    replace_files(store, &old_files, new_index)?;
    failpoint("gc-after-index-delete");
    // A rewritten pack can come out byte-identical (same id): never delete
    // a pack the new index lists.
    let fresh: HashSet<ObjectId> = new_packs.iter().map(|p| p.id).collect();
    for p in &delete {
        deleted.pack(store.delete_pack(&index.pack_id(*p))?);
    }
    let doomed = repacked
        .iter()
        .map(|p| index.pack_id(*p))
        .filter(|id| !fresh.contains(id));
    for id in doomed {
        store.delete_pack(&id)?;
        deleted.rewritten();
    }
    Ok(())
}

/// Deletes the old index files once `new` (which replaces them) is published.
fn replace_files(store: &Store, old: &[ObjectId], new: ObjectId) -> Result<()> {
    let old: Vec<ObjectId> = old.iter().filter(|f| **f != new).copied().collect();
    store.delete_index_files(&old)
}

/// Bytes of an index file listing everything `index` lists.
fn index_size(index: &Index) -> u64 {
    crate::format::index::encoded_len(index.packs().len(), index.len())
}

/// Packs this gc wrote and will not publish: no index lists them, and gc
/// holds the store exclusively, so nothing can rely on them.
fn drop_new_packs(store: &Store, index: &Index, new_packs: &[FinishedPack]) {
    let old: HashSet<&ObjectId> = index.packs().iter().collect();
    for p in new_packs.iter().filter(|p| !old.contains(&p.id)) {
        let _ = store.delete_pack(&p.id);
    }
}

/// Copies the live objects of `packs` into new packs, each verified first.
/// Returns the new packs and the packs actually rewritten.
fn rewrite(
    store: &Store,
    index: &Index,
    live: &[u64],
    packs: &HashSet<u32>,
    problems: &mut Vec<String>,
    progress: &dyn Progress,
) -> Result<(Vec<FinishedPack>, HashSet<u32>)> {
    let mut members: HashMap<u32, Vec<IndexEntry>> = HashMap::new();
    for (i, e) in index.iter() {
        if packs.contains(&e.pack) && is_set(live, i) {
            members.entry(e.pack).or_default().push(e);
        }
    }
    let mut order: Vec<u32> = members.keys().copied().collect();
    order.sort_unstable();
    let mut done = Vec::new();
    let mut repacked = HashSet::new();
    let res = (|| {
        let mut writers: [Option<PackWriter>; 2] = [None, None];
        for p in order {
            let pack_id = index.pack_id(p);
            let mut objects = Vec::new();
            for e in &members[&p] {
                let checked = store
                    .read_stored(&pack_id, e)?
                    .and_then(|stored| store.decode_object(&e.to_pack_entry(), &stored).map(|_| stored));
                match checked {
                    Ok(stored) => objects.push((e, stored)),
                    Err(detail) => {
                        problems.push(format!(
                            "{}; pack {pack_id} was not rewritten",
                            Error::BadObject {
                                id: e.id,
                                pack: pack_id.to_hex(),
                                detail,
                            }
                        ));
                        objects.clear();
                        break;
                    }
                }
            }
            if objects.is_empty() {
                progress.inc(1);
                continue;
            }
            for (e, stored) in objects {
                let slot = &mut writers[(e.kind == ObjectKind::Tree) as usize];
                let w = match slot {
                    Some(w) => w,
                    None => slot.insert(PackWriter::create(store)?),
                };
                w.add(e.id, e.kind, e.compression, e.raw_len, &stored)?;
                if w.bytes() >= store.config.pack_target as u64
                    && let Some(full) = slot.take()
                {
                    done.push(full.finish()?);
                }
            }
            repacked.insert(p);
            progress.inc(1);
        }
        for w in writers.into_iter().flatten() {
            done.push(w.finish()?);
        }
        Ok(())
    })();
    match res {
        Ok(()) => Ok((done, repacked)),
        Err(e) => {
            drop_new_packs(store, index, &done);
            Err(e)
        }
    }
}

/// Publishes one index of every live copy outside `exclude`, plus the
/// objects of `new_packs`; refuses up front when the disk cannot hold it.
fn publish_index(
    store: &Store,
    index: &Index,
    live: &[u64],
    exclude: &HashSet<u32>,
    new_packs: &[FinishedPack],
) -> Result<ObjectId> {
    let mut renumber: HashMap<u32, u32> = HashMap::new();
    let mut packs = Vec::new();
    let mut entries = Vec::new();
    for (i, e) in index.iter() {
        if !is_set(live, i) || exclude.contains(&e.pack) {
            continue;
        }
        let n = *renumber.entry(e.pack).or_insert_with(|| {
            packs.push(index.pack_id(e.pack));
            packs.len() as u32 - 1
        });
        entries.push(IndexEntry { pack: n, ..e });
    }
    let fresh = IndexFile::from_packs(new_packs);
    let base = packs.len() as u32;
    packs.extend(fresh.packs);
    entries.extend(fresh.entries.into_iter().map(|e| IndexEntry {
        pack: e.pack + base,
        ..e
    }));
    entries.sort_by_key(|e| e.id);
    let file = IndexFile { packs, entries };
    let needed = room(crate::format::index::encoded_len(
        file.packs.len(),
        file.entries.len(),
    ));
    if let Some(free) = store.free_space().filter(|f| *f < needed) {
        return Err(Error::NoSpace {
            path: store.location().to_path_buf(),
            what: "write its new index",
            needed,
            free,
        });
    }
    store.write_index(&file)
}
