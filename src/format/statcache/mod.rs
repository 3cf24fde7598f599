//! The per-workspace stat cache (like git's index): for every entry of the
//! last capture, the stat fields that change when it changes and what it
//! stored (a file's chunk ids, a directory's tree id), so an unchanged file
//! is never opened and an unchanged directory is never re-encoded.
//!
//! Layout (version 2, store-format.md "Stat cache"): header (`MOATSTAT`,
//! 2) | fixed fields | fan-out | offset table | header checksum | records
//! sorted by path, each with its own checksum. A reader maps the file and
//! binary-searches it; nothing is decoded whole. Pure codec and the
//! "unchanged?" predicate; `worktree::statcache` maps and writes the files.
//!
//! Invariants: a cache is trusted only when its header checksum holds, it
//! names the workspace being captured, and every record read passes its
//! checksum, which is keyed by the workspace (a record moved into another
//! workspace's cache fails). It is only a cache: version 1 and damaged
//! files are reported and ignored, and the next capture rebuilds them.

use rustc_hash::FxHashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::Result;
use crate::format::header;
use crate::format::id::ObjectId;
use crate::util::timestamp_ns_clamped;

mod table;

pub use table::Table;

pub const MAGIC: &[u8; 8] = b"MOATSTAT";
pub const VERSION: u32 = 2;
const FANOUT: usize = 256;
const STAT_LEN: usize = 44;
const CHECK_LEN: usize = 8;
/// Longest path or workspace name a record may hold (bounds allocation).
const MAX_NAME: usize = 1 << 20;

/// The stat fields compared to decide whether an entry changed. `mode` is
/// the whole `st_mode` (file type and permission bits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileStat {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl FileStat {
    pub fn of(m: &std::fs::Metadata) -> Self {
        Self::from_parts(
            m.dev(),
            m.ino(),
            m.mode(),
            m.size(),
            (m.mtime(), m.mtime_nsec()),
            (m.ctime(), m.ctime_nsec()),
        )
    }

    /// From raw `lstat` fields: `mtime` and `ctime` as (seconds,
    /// nanoseconds), clamped to what a tree holds (only compared here; the
    /// walk refuses to store a file whose mtime is beyond the range).
    pub fn from_parts(
        dev: u64,
        ino: u64,
        mode: u32,
        size: u64,
        mtime: (i64, i64),
        ctime: (i64, i64),
    ) -> Self {
        FileStat {
            dev,
            ino,
            mode,
            size,
            mtime_ns: timestamp_ns_clamped(mtime.0, mtime.1),
            ctime_ns: timestamp_ns_clamped(ctime.0, ctime.1),
        }
    }

    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.dev.to_le_bytes());
        out.extend_from_slice(&self.ino.to_le_bytes());
        out.extend_from_slice(&self.mode.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.mtime_ns.to_le_bytes());
        out.extend_from_slice(&self.ctime_ns.to_le_bytes());
    }

    fn get(b: &[u8]) -> Self {
        FileStat {
            dev: le64(&b[0..]),
            ino: le64(&b[8..]),
            mode: le32(&b[16..]),
            size: le64(&b[20..]),
            mtime_ns: le64(&b[28..]) as i64,
            ctime_ns: le64(&b[36..]) as i64,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedFile {
    pub stat: FileStat,
    pub chunks: Vec<ObjectId>,
}

/// What a record stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    File(Vec<ObjectId>),
    /// A directory: its tree, how many entries that tree has, and what
    /// lies below it.
    Dir {
        tree: ObjectId,
        entries: u32,
        totals: Totals,
    },
    Symlink,
}

/// What lies below a directory (its whole subtree).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
    /// Files and symlinks with more than one hard link.
    pub multi_links: u64,
}

impl Totals {
    pub fn add(&mut self, o: &Totals) {
        self.files = self.files.saturating_add(o.files);
        self.dirs = self.dirs.saturating_add(o.dirs);
        self.symlinks = self.symlinks.saturating_add(o.symlinks);
        self.bytes = self.bytes.saturating_add(o.bytes);
        self.multi_links = self.multi_links.saturating_add(o.multi_links);
    }

    fn fields(&self) -> [u64; 5] {
        [self.files, self.dirs, self.symlinks, self.bytes, self.multi_links]
    }
}

/// One decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub stat: FileStat,
    /// The file or symlink had more than one hard link when cached (a
    /// change through another name gets no event naming this path).
    pub multi_link: bool,
    pub payload: Payload,
}

/// The header fields of a cache file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// The workspace this cache describes (absolute, canonical).
    pub workspace: Vec<u8>,
    /// When the capture that wrote this cache started, by the filesystem
    /// clock (`util::fs_clock_ns`).
    pub taken_ns: i64,
    /// Fingerprint of the walk options (ignore rules on or off, excludes)
    /// the directory records were built with; all zero: none.
    pub walk_key: [u8; 32],
    /// Random per written cache, so two caches never share a header
    /// checksum (a watch token names its cache by that checksum).
    pub nonce: [u8; 16],
    /// The `.git/info/exclude` files the walk read, with their stat.
    pub excludes: Vec<(Vec<u8>, FileStat)>,
}

/// The "unchanged?" predicate. An entry is unchanged when every stat field
/// matches and its mtime is strictly older than the start of the capture
/// that cached it: a file written in the same clock tick as that capture
/// may have changed after it was read without changing its mtime (racy git).
pub fn unchanged(cached: &FileStat, now: &FileStat, taken_ns: i64) -> bool {
    cached == now && now.mtime_ns < taken_ns
}

/// The key every record checksum of workspace `ws` is computed with.
pub fn ws_key(ws: &[u8]) -> [u8; 32] {
    *blake3::hash(ws).as_bytes()
}

/// Encodes one record (see store-format.md for the fields).
pub fn encode_record(key: &[u8; 32], path: &[u8], rec: &Record) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len() + 96);
    out.extend_from_slice(&(path.len() as u32).to_le_bytes());
    out.extend_from_slice(path);
    let kind = match rec.payload {
        Payload::File(_) => 0u8,
        Payload::Dir { .. } => 1,
        Payload::Symlink => 2,
    };
    out.push(kind | if rec.multi_link { 4 } else { 0 });
    rec.stat.put(&mut out);
    match &rec.payload {
        Payload::File(chunks) => {
            out.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
            for c in chunks {
                out.extend_from_slice(&c.0);
            }
        }
        Payload::Dir {
            tree,
            entries,
            totals,
        } => {
            out.extend_from_slice(&entries.to_le_bytes());
            out.extend_from_slice(&tree.0);
            for f in totals.fields() {
                out.extend_from_slice(&f.to_le_bytes());
            }
        }
        Payload::Symlink => {}
    }
    let check = record_check(key, &out);
    out.extend_from_slice(&check);
    out
}

/// Record flag bit 3, used in a stat cache delta only (`statdelta`): this
/// directory was listed whole when the delta was written, so a path below
/// it that neither the delta nor its listed subdirectories hold is gone.
pub const LISTED: u8 = 8;

/// Whether an encoded record has the `LISTED` flag.
pub fn is_listed(rec: &[u8]) -> bool {
    let n = rec.get(..4).map_or(0, |b| le32(b) as usize);
    rec.get(4 + n).is_some_and(|f| f & LISTED != 0)
}

/// Whether an encoded record is a directory's.
pub fn is_dir_record(rec: &[u8]) -> bool {
    let n = rec.get(..4).map_or(0, |b| le32(b) as usize);
    rec.get(4 + n).is_some_and(|f| f & 3 == 1)
}

/// An encoded record with its `LISTED` flag set or cleared (and its check
/// recomputed with `key`); a malformed record is returned unchanged.
pub fn with_listed(key: &[u8; 32], rec: &[u8], listed: bool) -> Vec<u8> {
    let n = rec.get(..4).map_or(0, |b| le32(b) as usize);
    let Some(body_len) = rec.len().checked_sub(CHECK_LEN).filter(|&l| l > 4 + n) else {
        return rec.to_vec();
    };
    let mut out = rec[..body_len].to_vec();
    if listed {
        out[4 + n] |= LISTED;
    } else {
        out[4 + n] &= !LISTED;
    }
    let check = record_check(key, &out);
    out.extend_from_slice(&check);
    out
}

fn record_check(key: &[u8; 32], body: &[u8]) -> [u8; CHECK_LEN] {
    let h = blake3::keyed_hash(key, body);
    let mut c = [0; CHECK_LEN];
    c.copy_from_slice(&h.as_bytes()[..CHECK_LEN]);
    c
}

/// The path of an encoded record (as made by `encode_record`).
pub fn record_path(rec: &[u8]) -> &[u8] {
    let n = rec.get(..4).map_or(0, |b| le32(b) as usize);
    rec.get(4..4 + n).unwrap_or_default()
}

/// Encodes a whole cache from records already encoded with `ws_key(meta.
/// workspace)`; sorts them by path (a later duplicate path is dropped).
pub fn encode(meta: &Meta, mut records: Vec<Vec<u8>>) -> Vec<u8> {
    records.sort_by(|a, b| record_path(a).cmp(record_path(b)));
    records.dedup_by(|a, b| record_path(a) == record_path(b));
    let mut out = Vec::new();
    header::write(&mut out, MAGIC, VERSION);
    out.extend_from_slice(&meta.taken_ns.to_le_bytes());
    out.extend_from_slice(&meta.walk_key);
    out.extend_from_slice(&meta.nonce);
    out.extend_from_slice(&(meta.workspace.len() as u32).to_le_bytes());
    out.extend_from_slice(&meta.workspace);
    out.extend_from_slice(&(meta.excludes.len() as u32).to_le_bytes());
    for (p, st) in &meta.excludes {
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(p);
        st.put(&mut out);
    }
    out.extend_from_slice(&(records.len() as u64).to_le_bytes());
    let mut fanout = [0u64; FANOUT];
    for r in &records {
        let b = record_path(r).first().copied().unwrap_or(0);
        fanout[b as usize] += 1;
    }
    let mut sum = 0;
    for f in fanout.iter_mut() {
        sum += *f;
        *f = sum;
        out.extend_from_slice(&f.to_le_bytes());
    }
    let mut off = (out.len() + records.len() * 8 + 32) as u64;
    for r in &records {
        out.extend_from_slice(&off.to_le_bytes());
        off += r.len() as u64;
    }
    let check = blake3::hash(&out);
    out.extend_from_slice(check.as_bytes());
    for r in records {
        out.extend_from_slice(&r);
    }
    out
}

pub(super) fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

pub(super) fn le64(b: &[u8]) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// A cache's file records on the heap (for rollback, which edits them, and
/// the clone donor search).
#[derive(Debug, Default)]
pub struct StatCache {
    pub workspace: Vec<u8>,
    pub taken_ns: i64,
    /// Keyed by workspace-relative path; FxHash, as these keys are not
    /// attacker-chosen and SipHash showed in the no-change profile.
    pub entries: FxHashMap<Vec<u8>, CachedFile>,
}

impl StatCache {
    pub fn decode(data: &[u8], path: &Path) -> Result<Self> {
        let t = Table::open(data, path)?;
        Ok(StatCache {
            entries: t.files()?,
            workspace: t.meta.workspace,
            taken_ns: t.meta.taken_ns,
        })
    }

    /// A cache of file records only (no directory records, so nothing
    /// about a directory's tree is claimed).
    pub fn encode(workspace: &[u8], taken_ns: i64, entries: Vec<(Vec<u8>, CachedFile)>) -> Vec<u8> {
        let key = ws_key(workspace);
        let records = entries
            .into_iter()
            .map(|(p, f)| {
                let rec = Record {
                    stat: f.stat,
                    multi_link: false,
                    payload: Payload::File(f.chunks),
                };
                encode_record(&key, &p, &rec)
            })
            .collect();
        let meta = Meta {
            workspace: workspace.to_vec(),
            taken_ns,
            ..Meta::default()
        };
        encode(&meta, records)
    }

    /// The cached chunks of `rel` if the file is unchanged since.
    pub fn lookup(&self, rel: &[u8], now: &FileStat) -> Option<&[ObjectId]> {
        let c = self.entries.get(rel)?;
        unchanged(&c.stat, now, self.taken_ns).then_some(c.chunks.as_slice())
    }
}

#[cfg(test)]
mod tests;
