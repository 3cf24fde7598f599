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
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::header::{self, HEADER_LEN};
use crate::format::id::ObjectId;
use crate::util::timestamp_ns_clamped;

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
        FileStat {
            dev: m.dev(),
            ino: m.ino(),
            mode: m.mode(),
            size: m.size(),
            // Clamped: only compared here; the walk refuses to store a
            // file whose mtime is beyond the range.
            mtime_ns: timestamp_ns_clamped(m.mtime(), m.mtime_nsec()),
            ctime_ns: timestamp_ns_clamped(m.ctime(), m.ctime_nsec()),
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

/// A cache file read in place: the header is parsed and checked, records
/// are found by binary search and checked as they are read.
pub struct Table<B> {
    data: B,
    path: PathBuf,
    pub meta: Meta,
    key: [u8; 32],
    count: usize,
    fanout_at: usize,
    offsets_at: usize,
    /// blake3 of the header (the cache's identity for a watch token).
    pub header_check: [u8; 32],
}

impl<B: AsRef<[u8]>> Table<B> {
    /// Parses and checks the header of `data` (read from `path`).
    pub fn open(data: B, path: &Path) -> Result<Self> {
        let bad = |d: &str| Error::corrupt(path, "stat cache", d.to_string());
        let d = data.as_ref();
        header::check(d, MAGIC, VERSION, "stat cache", path)?;
        let mut r = Reader { d, at: HEADER_LEN };
        let taken_ns = r.u64().ok_or_else(|| bad("truncated header"))? as i64;
        let mut walk_key = [0; 32];
        walk_key.copy_from_slice(r.take(32).ok_or_else(|| bad("truncated header"))?);
        let mut nonce = [0; 16];
        nonce.copy_from_slice(r.take(16).ok_or_else(|| bad("truncated header"))?);
        let workspace = r.name().ok_or_else(|| bad("bad workspace name"))?.to_vec();
        let n_ex = r.u32().ok_or_else(|| bad("truncated header"))? as usize;
        let mut excludes = Vec::new();
        for _ in 0..n_ex {
            let p = r.name().ok_or_else(|| bad("bad exclude entry"))?.to_vec();
            let st = FileStat::get(r.take(STAT_LEN).ok_or_else(|| bad("bad exclude entry"))?);
            excludes.push((p, st));
        }
        let count = usize::try_from(r.u64().ok_or_else(|| bad("truncated header"))?)
            .map_err(|_| bad("record count out of range"))?;
        let fanout_at = r.at;
        r.take(FANOUT * 8).ok_or_else(|| bad("truncated fan-out"))?;
        let offsets_at = r.at;
        let table_len = count
            .checked_mul(8)
            .ok_or_else(|| bad("record count out of range"))?;
        r.take(table_len).ok_or_else(|| bad("truncated offset table"))?;
        let body_end = r.at;
        let stored = r.take(32).ok_or_else(|| bad("truncated header checksum"))?;
        let check = blake3::hash(&d[..body_end]);
        if check.as_bytes() != stored {
            return Err(bad("header checksum mismatch"));
        }
        if le64(&d[fanout_at + (FANOUT - 1) * 8..]) != count as u64 {
            return Err(bad("fan-out does not add up to the record count"));
        }
        let key = ws_key(&workspace);
        Ok(Table {
            data,
            path: path.to_path_buf(),
            meta: Meta {
                workspace,
                taken_ns,
                walk_key,
                nonce,
                excludes,
            },
            key,
            count,
            fanout_at,
            offsets_at,
            header_check: *check.as_bytes(),
        })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn bad(&self, detail: impl Into<String>) -> Error {
        Error::corrupt(&self.path, "stat cache", detail)
    }

    /// The raw bytes of record `i`, checksum verified.
    pub fn raw(&self, i: usize) -> Result<&[u8]> {
        let d = self.data.as_ref();
        let start = usize::try_from(le64(&d[self.offsets_at + i * 8..]))
            .map_err(|_| self.bad("record offset out of range"))?;
        let end = record_end(d, start).ok_or_else(|| self.bad(format!("record {i} is malformed")))?;
        let (body, check) = d[start..end].split_at(end - start - CHECK_LEN);
        if record_check(&self.key, body) != check {
            return Err(self.bad(format!("record {i} fails its checksum")));
        }
        Ok(&d[start..end])
    }

    fn path_at(&self, i: usize) -> Result<&[u8]> {
        Ok(record_path(self.raw(i)?))
    }

    /// The first record index whose path is not less than `p`, within the
    /// fan-out bucket of `p`'s first byte.
    fn lower_bound(&self, p: &[u8]) -> Result<usize> {
        let d = self.data.as_ref();
        let b = p.first().copied().unwrap_or(0) as usize;
        let mut lo = if b == 0 {
            0
        } else {
            le64(&d[self.fanout_at + (b - 1) * 8..]) as usize
        };
        let mut hi = le64(&d[self.fanout_at + b * 8..]) as usize;
        if lo > hi || hi > self.count {
            return Err(self.bad("fan-out is not ascending"));
        }
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.path_at(mid)? < p {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// The index of `path`'s record, if any.
    pub fn find(&self, path: &[u8]) -> Result<Option<usize>> {
        let i = self.lower_bound(path)?;
        Ok((i < self.count && self.path_at(i)? == path).then_some(i))
    }

    /// The record of `path`, if any.
    pub fn get(&self, path: &[u8]) -> Result<Option<Record>> {
        let i = self.lower_bound(path)?;
        if i >= self.count {
            return Ok(None);
        }
        let raw = self.raw(i)?;
        if record_path(raw) != path {
            return Ok(None);
        }
        decode_record(raw)
            .map(Some)
            .ok_or_else(|| self.bad(format!("record {i} is malformed")))
    }

    /// The index range of the records strictly below directory `dir`
    /// (`dir/...`; the whole table for the root, "").
    pub fn below(&self, dir: &[u8]) -> Result<std::ops::Range<usize>> {
        if dir.is_empty() {
            return Ok(0..self.count);
        }
        let mut lo_key = dir.to_vec();
        lo_key.push(b'/');
        let mut hi_key = dir.to_vec();
        hi_key.push(b'/' + 1);
        // Both keys start with `dir`'s first byte: one fan-out bucket.
        let lo = self.lower_bound(&lo_key)?;
        let hi = self.lower_bound(&hi_key)?;
        Ok(lo..hi.max(lo))
    }

    /// Every file record, decoded (rollback and the clone donor search,
    /// which need them all).
    pub fn files(&self) -> Result<FxHashMap<Vec<u8>, CachedFile>> {
        let mut out = FxHashMap::default();
        for i in 0..self.count {
            let raw = self.raw(i)?;
            let rec = decode_record(raw).ok_or_else(|| self.bad(format!("record {i} is malformed")))?;
            if let Payload::File(chunks) = rec.payload {
                out.insert(
                    record_path(raw).to_vec(),
                    CachedFile {
                        stat: rec.stat,
                        chunks,
                    },
                );
            }
        }
        Ok(out)
    }
}

/// The end of the record starting at `start`, if it lies within `d`.
fn record_end(d: &[u8], start: usize) -> Option<usize> {
    let mut r = Reader { d, at: start };
    r.name()?;
    let flags = *r.take(1)?.first()?;
    r.take(STAT_LEN)?;
    match flags & 3 {
        0 => {
            let n = r.u32()? as usize;
            r.take(n.checked_mul(32)?)?;
        }
        1 => {
            r.take(4 + 32 + 5 * 8)?;
        }
        2 => {}
        _ => return None,
    }
    r.take(CHECK_LEN)?;
    Some(r.at)
}

fn decode_record(raw: &[u8]) -> Option<Record> {
    let mut r = Reader { d: raw, at: 0 };
    r.name()?;
    let flags = *r.take(1)?.first()?;
    if flags & !(7 | LISTED) != 0 {
        return None;
    }
    let stat = FileStat::get(r.take(STAT_LEN)?);
    let payload = match flags & 3 {
        0 => {
            let n = r.u32()? as usize;
            let ids = r.take(n.checked_mul(32)?)?;
            Payload::File(
                ids.chunks_exact(32)
                    .map(ObjectId::from_slice)
                    .collect::<Option<Vec<_>>>()?,
            )
        }
        1 => {
            let entries = r.u32()?;
            let tree = ObjectId::from_slice(r.take(32)?)?;
            let mut f = [0u64; 5];
            for v in f.iter_mut() {
                *v = r.u64()?;
            }
            Payload::Dir {
                entries,
                tree,
                totals: Totals {
                    files: f[0],
                    dirs: f[1],
                    symlinks: f[2],
                    bytes: f[3],
                    multi_links: f[4],
                },
            }
        }
        _ => Payload::Symlink,
    };
    Some(Record {
        stat,
        multi_link: flags & 4 != 0,
        payload,
    })
}

struct Reader<'a> {
    d: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.d.get(self.at..end)?;
        self.at = end;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(le32)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(le64)
    }
    fn name(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        if n > MAX_NAME {
            return None;
        }
        self.take(n)
    }
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

pub const TOKEN_MAGIC: &[u8; 8] = b"MOATWTOK";
pub const TOKEN_VERSION: u32 = 1;
const TOKEN_LEN: usize = HEADER_LEN + 32 + 16 + 8 + 32;

/// A watch token: the watcher epoch and sequence number at which the scan
/// that wrote the cache with header checksum `cache_check` began (the
/// `.watch` file beside the cache; see `worktree::watch`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    pub cache_check: [u8; 32],
    pub epoch: [u8; 16],
    pub seq: u64,
}

impl Token {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(TOKEN_LEN);
        header::write(&mut out, TOKEN_MAGIC, TOKEN_VERSION);
        out.extend_from_slice(&self.cache_check);
        out.extend_from_slice(&self.epoch);
        out.extend_from_slice(&self.seq.to_le_bytes());
        let check = blake3::hash(&out);
        out.extend_from_slice(check.as_bytes());
        out
    }

    pub fn decode(data: &[u8], path: &Path) -> Result<Self> {
        let body = header::check(data, TOKEN_MAGIC, TOKEN_VERSION, "watch token", path)?;
        if data.len() != TOKEN_LEN
            || blake3::hash(&data[..TOKEN_LEN - 32]).as_bytes() != &data[TOKEN_LEN - 32..]
        {
            return Err(Error::corrupt(path, "watch token", "checksum mismatch"));
        }
        let mut t = Token {
            cache_check: [0; 32],
            epoch: [0; 16],
            seq: le64(&body[48..]),
        };
        t.cache_check.copy_from_slice(&body[..32]);
        t.epoch.copy_from_slice(&body[32..48]);
        Ok(t)
    }
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
#[path = "statcache_tests.rs"]
mod tests;
