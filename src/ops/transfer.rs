//! `push` and `pull`: copying snapshots from one store to another (local
//! or remote, either way), with exactly the objects they need that the
//! destination lacks.
//!
//! Invariants:
//! - a snapshot the destination already has costs nothing (its file is
//!   listed once); an object the destination's index already lists is
//!   never sent (compared by id);
//! - every object copied is read through the source's verified paths
//!   (`Store::decode_object` checks it against its id) before it is
//!   written; a pack of which most bytes are needed is read whole (one
//!   GET on a remote store), else object by object (ranged GETs);
//! - the commit order of a capture holds: packs, then an index listing
//!   them, then the snapshot file, copied byte for byte last. Objects are
//!   published in checkpoints (every `CHECKPOINT` bytes and after each
//!   snapshot), so a transfer killed midway resumes where its last
//!   checkpoint was: the next run finds those objects in the index;
//! - the destination's shared lock is held from the first look at its
//!   index to the last snapshot written (a writer session always exists),
//!   so no gc of the destination can delete what the transfer relies on.
//!   The source is read under its shared lock, too.

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::format::id::ObjectId;
use crate::format::index::IndexEntry;
use crate::format::pack::ObjectKind;
use crate::format::tree::{Content, Tree};
use crate::store::backend::{FileKind, Traffic};
use crate::store::writer::ObjectWriter;
use crate::store::{SnapshotRecord, Store};

/// Stored bytes after which the objects sent so far are published.
const CHECKPOINT: u64 = 64 << 20;

/// What a transfer did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Snapshots copied.
    pub snapshots: usize,
    /// Snapshots the destination already had.
    pub present: usize,
    /// Objects written to the destination, and their stored bytes.
    pub objects: u64,
    pub bytes: u64,
    /// What went over the wire, each side (zero for a local store).
    pub source: Traffic,
    pub dest: Traffic,
}

/// Something to say while a transfer runs.
pub trait Events {
    fn snapshot_done(&mut self, id: &ObjectId, copied: bool);
}

impl Events for () {
    fn snapshot_done(&mut self, _: &ObjectId, _: bool) {}
}

/// The snapshots of `store` to transfer when none are named: those of
/// `workspace`, or all with `all`; oldest first.
pub fn default_selection(
    store: &Store,
    workspace: Option<&std::path::Path>,
    all: bool,
) -> Result<Vec<SnapshotRecord>> {
    let (snaps, _) = store.list_snapshots()?;
    Ok(snaps
        .into_iter()
        .filter(|r| all || workspace.is_some_and(|ws| r.snap.workspace_path() == ws))
        .collect())
}

/// Copies `snaps` (of `src`) into `dst`, oldest first.
pub fn transfer(src: &Store, dst: &Store, snaps: &[SnapshotRecord], ev: &mut dyn Events) -> Result<Report> {
    let (src0, dst0) = (src.backend().traffic(), dst.backend().traffic());
    let _src_hold = src.lock_shared()?;
    let mut order: Vec<&SnapshotRecord> = snaps.iter().collect();
    order.sort_by_key(|r| (r.snap.time_ns, r.id));
    order.dedup_by_key(|r| r.id);
    let present: HashSet<ObjectId> = dst.snapshot_ids()?.into_iter().collect();
    let (had, todo): (Vec<&SnapshotRecord>, Vec<&SnapshotRecord>) =
        order.into_iter().partition(|r| present.contains(&r.id));
    let mut report = Report {
        present: had.len(),
        ..Report::default()
    };
    for r in had {
        ev.snapshot_done(&r.id, false);
    }
    // Nothing to copy: no lock, no index (one listing in all).
    if !todo.is_empty() {
        copy(src, dst, &todo, &mut report, ev)?;
    }
    report.source = diff(src.backend().traffic(), src0);
    report.dest = diff(dst.backend().traffic(), dst0);
    Ok(report)
}

fn copy(
    src: &Store,
    dst: &Store,
    todo: &[&SnapshotRecord],
    report: &mut Report,
    ev: &mut dyn Events,
) -> Result<()> {
    let mut t = Copier {
        src,
        dst,
        writer: ObjectWriter::new(dst)?,
        src_index: src.index()?,
        pack_bytes: HashMap::new(),
        sent: HashSet::new(),
        since_checkpoint: 0,
        report,
    };
    for r in todo {
        t.copy_objects(r)?;
        t.checkpoint()?;
        t.copy_snapshot_file(&r.id)?;
        t.report.snapshots += 1;
        ev.snapshot_done(&r.id, true);
    }
    t.writer.close();
    Ok(())
}

fn diff(a: Traffic, b: Traffic) -> Traffic {
    Traffic {
        requests: a.requests.saturating_sub(b.requests),
        bytes_sent: a.bytes_sent.saturating_sub(b.bytes_sent),
        bytes_received: a.bytes_received.saturating_sub(b.bytes_received),
    }
}

struct Copier<'a, 'r> {
    src: &'a Store,
    dst: &'a Store,
    writer: ObjectWriter<'a>,
    src_index: std::sync::Arc<crate::store::index::Index>,
    /// Stored bytes of each source pack (by its number in the index),
    /// counted on first need.
    pack_bytes: HashMap<u32, u64>,
    /// Objects taken on by this transfer.
    sent: HashSet<ObjectId>,
    since_checkpoint: u64,
    report: &'r mut Report,
}

impl Copier<'_, '_> {
    fn dst_has(&self, id: &ObjectId) -> bool {
        self.sent.contains(id) || self.writer.in_store(id)
    }

    /// Publishes what was sent so far, keeping the destination's lock:
    /// the next session starts before this one is dropped.
    fn checkpoint(&mut self) -> Result<()> {
        let p = self.writer.publish()?;
        self.report.objects += p.objects;
        self.report.bytes += p.bytes;
        let next = ObjectWriter::new(self.dst)?;
        let old = std::mem::replace(&mut self.writer, next);
        drop(old);
        self.since_checkpoint = 0;
        Ok(())
    }

    /// Sends every object of snapshot `r` the destination lacks.
    fn copy_objects(&mut self, r: &SnapshotRecord) -> Result<()> {
        // Every tree is read (they may sit in the destination without
        // everything below them, after an interrupted transfer); chunks
        // the destination lacks are gathered by source pack.
        let mut stack = vec![r.snap.root];
        let mut seen: HashSet<ObjectId> = HashSet::new();
        let mut chunks: Vec<IndexEntry> = Vec::new();
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            let raw = self.src.read_tree_bytes(&id)?;
            let tree = Tree::decode(&raw).map_err(|detail| Error::BadTree { id, detail })?;
            if !self.dst_has(&id) {
                self.put(ObjectKind::Tree, id, &raw)?;
            }
            for e in tree.entries {
                match e.content {
                    Content::Dir(sub) => stack.push(sub),
                    Content::File(ids) => {
                        for c in ids {
                            if !self.dst_has(&c) && seen.insert(c) {
                                chunks.push(self.src_index.get(&c).ok_or_else(|| Error::MissingObject {
                                    id: c,
                                    by: format!("snapshot {}", r.id.short()),
                                })?);
                            }
                        }
                    }
                    Content::Symlink(_) => {}
                }
            }
        }
        chunks.sort_by_key(|e| (e.pack, e.offset));
        for group in chunks.chunk_by(|a, b| a.pack == b.pack) {
            self.copy_from_pack(group)?;
        }
        Ok(())
    }

    /// Copies `group` (entries of one source pack), reading the pack whole
    /// when most of it is needed.
    fn copy_from_pack(&mut self, group: &[IndexEntry]) -> Result<()> {
        let pack_no = group[0].pack;
        let pack_id = self.src_index.pack_id(pack_no);
        let needed: u64 = group.iter().map(|e| u64::from(e.stored_len)).sum();
        let total = self.pack_total(pack_no);
        let whole = match needed.saturating_mul(2) >= total && group.len() > 1 {
            true => Some(self.src.read_pack(&pack_id)?),
            false => None,
        };
        for e in group {
            let bad = |detail: String| Error::BadObject {
                id: e.id,
                pack: pack_id.to_hex(),
                detail,
            };
            let stored = match &whole {
                Some(p) => {
                    let s = p.slice(u64::from(e.offset), u64::from(e.stored_len));
                    match s.len() == e.stored_len as usize {
                        true => s,
                        false => return Err(bad("lies beyond the end of the pack".into())),
                    }
                }
                None => self.src.read_stored(&pack_id, e)?.map_err(bad)?,
            };
            let raw = self.src.decode_object(&e.to_pack_entry(), &stored).map_err(bad)?;
            self.put(ObjectKind::Chunk, e.id, &raw)?;
        }
        Ok(())
    }

    fn pack_total(&mut self, pack_no: u32) -> u64 {
        if self.pack_bytes.is_empty() {
            for (_, e) in self.src_index.iter() {
                *self.pack_bytes.entry(e.pack).or_default() += u64::from(e.stored_len);
            }
        }
        self.pack_bytes.get(&pack_no).copied().unwrap_or(u64::MAX)
    }

    fn put(&mut self, kind: ObjectKind, id: ObjectId, raw: &[u8]) -> Result<()> {
        self.writer.put(kind, id, raw)?;
        self.sent.insert(id);
        self.since_checkpoint = self.since_checkpoint.saturating_add(raw.len() as u64);
        if self.since_checkpoint >= CHECKPOINT {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Copies the snapshot file byte for byte, checked against its id:
    /// the commit point, after the index that lists its objects.
    fn copy_snapshot_file(&self, id: &ObjectId) -> Result<()> {
        let name = id.to_hex();
        let path = self.src.describe(FileKind::Snapshot, &name);
        let data = self
            .src
            .backend()
            .read(FileKind::Snapshot, &name)?
            .ok_or_else(|| Error::io(&path, std::io::ErrorKind::NotFound.into()))?;
        if ObjectId::hash(&data) != *id {
            return Err(Error::corrupt(&path, "snapshot", "content does not match its id"));
        }
        crate::util::failpoint("transfer-snapshot");
        self.dst.backend().write(FileKind::Snapshot, &name, &data)
    }
}
