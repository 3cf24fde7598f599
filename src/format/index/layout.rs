//! Reading an index file in place: `Layout::parse` validates the whole
//! file once (checksum, counts against the size, sorted ids, the fan-out
//! table, every record) and records where its parts lie; `find` and
//! `entry` then read the bytes where they are.

use std::ops::Range;
use std::path::Path;

use super::{ID_LEN, IndexEntry, MAGIC, MAX_FANOUT_BITS, RECORD_LEN, VERSIONS, WINDOW, bucket, fanout_bits};
use crate::error::{Error, Result};
use crate::format::compress::Compression;
use crate::format::header::{self, HEADER_LEN, Reader};
use crate::format::id::ObjectId;
use crate::format::pack::ObjectKind;

#[derive(Clone, Debug)]
pub(super) enum Fanout {
    /// At this offset in the file (version 2).
    InFile(usize),
    /// Built by the parse (version 1 files have none).
    Built(Vec<u32>),
}

/// Where the parts of one validated index file lie in its bytes. Every
/// accessor takes the bytes `parse` validated.
#[derive(Clone, Debug)]
pub struct Layout {
    pub(super) version: u32,
    pub(super) packs_off: usize,
    pub(super) npacks: usize,
    pub(super) n: usize,
    pub(super) bits: u8,
    pub(super) fanout: Fanout,
    pub(super) ids_off: usize,
    pub(super) id_stride: usize,
    pub(super) rec_off: usize,
    pub(super) rec_stride: usize,
}

fn u32_at(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

impl Layout {
    /// Validates an index file: header, checksum, counts against the size,
    /// ids sorted, the fan-out table, every record (kind, compression, a
    /// pack in the table). Reads the bytes in windows and calls `release`
    /// with each range it is done with (so a mapped file's pages can leave
    /// the caller's resident set).
    pub fn parse(data: &[u8], path: &Path, release: &mut dyn FnMut(Range<usize>)) -> Result<Layout> {
        let (version, _) = header::check_any(data, MAGIC, &VERSIONS, "index", path)?;
        let bad = |d: String| Error::corrupt(path, "index", d);
        if data.len() < HEADER_LEN + 32 {
            return Err(bad("file is truncated".into()));
        }
        let end = data.len() - 32;
        let mut hasher = blake3::Hasher::new();
        for start in (0..end).step_by(WINDOW) {
            let w = start..end.min(start + WINDOW);
            hasher.update(&data[w.clone()]);
            release(w);
        }
        if hasher.finalize().as_bytes() != &data[end..] {
            return Err(bad("checksum mismatch (truncated or altered)".into()));
        }
        let mut r = Reader::new(&data[HEADER_LEN..end]);
        let npacks = r.u32().ok_or_else(|| bad("truncated pack table".into()))? as usize;
        if npacks > r.remaining() / 32 {
            return Err(bad("pack count exceeds the file size".into()));
        }
        let packs_off = HEADER_LEN + 4;
        r.bytes(npacks * 32);
        let n = r.u32().ok_or_else(|| bad("truncated entry count".into()))? as usize;
        let mut l = Layout {
            version,
            packs_off,
            npacks,
            n,
            bits: fanout_bits(n),
            fanout: Fanout::Built(Vec::new()),
            ids_off: 0,
            id_stride: ID_LEN,
            rec_off: 0,
            rec_stride: RECORD_LEN,
        };
        if version == 1 {
            if r.remaining() != n.saturating_mul(ID_LEN + RECORD_LEN) {
                return Err(bad("entry table size does not match its count".into()));
            }
            l.ids_off = end - r.remaining();
            l.id_stride = ID_LEN + RECORD_LEN;
            l.rec_off = l.ids_off + ID_LEN;
            l.rec_stride = ID_LEN + RECORD_LEN;
        } else {
            let f = r.bytes(4).ok_or_else(|| bad("truncated fan-out header".into()))?;
            if f[0] > MAX_FANOUT_BITS || f[1..] != [0, 0, 0] {
                return Err(bad(format!("bad fan-out header {f:?}")));
            }
            l.bits = f[0];
            l.fanout = Fanout::InFile(end - r.remaining());
            let table = 4usize << l.bits;
            if r.remaining() != table.saturating_add(n.saturating_mul(ID_LEN + RECORD_LEN)) {
                return Err(bad("entry table size does not match its count".into()));
            }
            l.ids_off = end - r.remaining() + table;
            l.rec_off = l.ids_off + n * ID_LEN;
        }
        l.check_ids(data, release).map_err(bad)?;
        l.check_records(data, release).map_err(bad)?;
        Ok(l)
    }

    /// Ids sorted; the fan-out table is theirs (built for version 1).
    fn check_ids(&mut self, data: &[u8], release: &mut dyn FnMut(Range<usize>)) -> Result<(), String> {
        let mut counts = vec![0u32; 1 << self.bits];
        let per_window = (WINDOW / self.id_stride).max(1);
        for i in 0..self.n {
            let id = self.id_bytes(data, i);
            if i > 0 && self.id_bytes(data, i - 1) > id {
                return Err(format!("entries are not sorted by id (at entry {i})"));
            }
            counts[bucket(id, self.bits)] += 1;
            if (i + 1) % per_window == 0 || i + 1 == self.n {
                let first = i - i % per_window;
                release(self.ids_off + first * self.id_stride..self.ids_off + (i + 1) * self.id_stride);
            }
        }
        let mut total = 0u32;
        for c in counts.iter_mut() {
            total += *c;
            *c = total;
        }
        match &self.fanout {
            Fanout::InFile(off) => {
                let stored = (0..counts.len()).map(|b| u32_at(data, off + 4 * b));
                if !stored.eq(counts.iter().copied()) {
                    return Err("fan-out table does not match the ids".into());
                }
            }
            Fanout::Built(_) => self.fanout = Fanout::Built(counts),
        }
        Ok(())
    }

    /// Every record names a known kind, compression and pack.
    fn check_records(&self, data: &[u8], release: &mut dyn FnMut(Range<usize>)) -> Result<(), String> {
        let per_window = (WINDOW / self.rec_stride).max(1);
        for i in 0..self.n {
            let r = &data[self.rec_off + i * self.rec_stride..][..RECORD_LEN];
            if ObjectKind::from_u8(r[0]).is_none() || Compression::from_u8(r[1]).is_none() {
                return Err(format!("invalid entry {i}"));
            }
            let pack = u32_at(r, 2) as usize;
            if pack >= self.npacks {
                let id = ObjectId::from_slice(self.id_bytes(data, i)).unwrap_or(ObjectId([0; 32]));
                return Err(format!("object {id} names pack #{pack} of {}", self.npacks));
            }
            if (i + 1) % per_window == 0 || i + 1 == self.n {
                let first = i - i % per_window;
                release(self.rec_off + first * self.rec_stride..self.rec_off + (i + 1) * self.rec_stride);
            }
        }
        Ok(())
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// Entries in the file.
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn packs_len(&self) -> usize {
        self.npacks
    }

    /// Pack `j` of the file's table.
    pub fn pack(&self, data: &[u8], j: usize) -> ObjectId {
        let at = self.packs_off + 32 * j;
        ObjectId::from_slice(&data[at..at + 32]).unwrap_or(ObjectId([0; 32]))
    }

    fn id_bytes<'d>(&self, data: &'d [u8], i: usize) -> &'d [u8] {
        let at = self.ids_off + i * self.id_stride;
        &data[at..at + ID_LEN]
    }

    /// Entry `i` (its pack numbered in this file's table).
    pub fn entry(&self, data: &[u8], i: usize) -> IndexEntry {
        let r = &data[self.rec_off + i * self.rec_stride..][..RECORD_LEN];
        IndexEntry {
            id: ObjectId::from_slice(self.id_bytes(data, i)).unwrap_or(ObjectId([0; 32])),
            kind: ObjectKind::from_u8(r[0]).unwrap_or(ObjectKind::Chunk),
            compression: Compression::from_u8(r[1]).unwrap_or(Compression::None),
            pack: u32_at(r, 2),
            offset: u32_at(r, 6),
            stored_len: u32_at(r, 10),
            raw_len: u32_at(r, 14),
        }
    }

    /// The entries of `id` (its copies; usually one, or none).
    pub fn find(&self, data: &[u8], id: &ObjectId) -> Range<usize> {
        let b = bucket(&id.0, self.bits);
        let cum = |b: usize| match &self.fanout {
            Fanout::InFile(off) => u32_at(data, off + 4 * b) as usize,
            Fanout::Built(v) => v[b] as usize,
        };
        let (mut lo, hi) = (if b == 0 { 0 } else { cum(b - 1) }, cum(b));
        let mut len = hi - lo;
        // Lower bound: the first entry whose id is >= `id`.
        while len > 0 {
            let half = len / 2;
            if self.id_bytes(data, lo + half) < &id.0[..] {
                lo += half + 1;
                len -= half + 1;
            } else {
                len = half;
            }
        }
        let mut end = lo;
        while end < hi && self.id_bytes(data, end) == &id.0[..] {
            end += 1;
        }
        lo..end
    }
}
