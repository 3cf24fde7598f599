//! Index files: where every object lives (pack, offset, lengths), so an
//! object is found without scanning packs, and found in place: a reader
//! maps the file and binary-searches it, it never decodes it whole.
//!
//! Version 2 (written): header (`MOATIDX\0`, 2) | pack count (u32) | pack
//! ids | entry count n (u32) | fan-out bits b (u8) and 3 zero bytes |
//! fan-out table (2^b × u32: entries whose id's first b bits are <= i) |
//! n ids sorted (32 bytes each) | n records (kind, compression, pack,
//! offset, stored_len, raw_len: 18 bytes each) | blake3 of everything
//! before. Version 1 (still read): no fan-out, and each entry is its id
//! followed by its record (50 bytes). The file name is the checksum in
//! hex. A writer publishes whole files only; no index file is rewritten.
//!
//! Pure codec: `Layout::parse` validates a file (checksum, counts, sorted
//! ids, fan-out, every record) and gives offsets into its bytes; the
//! lookups read those bytes in place. `store::index` maps the files of a
//! store and searches them.

use std::ops::Range;
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::compress::Compression;
use crate::format::header::{self, HEADER_LEN, Reader};
use crate::format::id::ObjectId;
use crate::format::pack::{FinishedPack, ObjectKind};

pub const MAGIC: &[u8; 8] = b"MOATIDX\0";
/// The version written.
pub const VERSION: u32 = 2;
/// The versions read.
pub const VERSIONS: [u32; 2] = [1, 2];
/// kind, compression, pack, offset, stored_len, raw_len.
const RECORD_LEN: usize = 1 + 1 + 4 * 4;
const ID_LEN: usize = 32;
/// Fan-out tables have at most 2^16 buckets.
pub const MAX_FANOUT_BITS: u8 = 16;
/// Bytes a parse reads before it lets the caller drop them (`release`).
const WINDOW: usize = 4 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub id: ObjectId,
    pub kind: ObjectKind,
    pub compression: Compression,
    /// Position in the pack table of the file (on disk) or of the merged
    /// index (in memory).
    pub pack: u32,
    pub offset: u32,
    pub stored_len: u32,
    pub raw_len: u32,
}

impl IndexEntry {
    /// The object as a pack's table describes it.
    pub fn to_pack_entry(&self) -> crate::format::pack::PackEntry {
        crate::format::pack::PackEntry {
            id: self.id,
            kind: self.kind,
            compression: self.compression,
            offset: self.offset,
            stored_len: self.stored_len,
            raw_len: self.raw_len,
        }
    }
}

/// One index file, decoded whole (writers build these; readers use `Layout`).
#[derive(Debug, PartialEq, Eq)]
pub struct IndexFile {
    pub packs: Vec<ObjectId>,
    pub entries: Vec<IndexEntry>,
}

/// The fan-out bits for `n` entries: buckets of about 8 entries.
pub fn fanout_bits(n: usize) -> u8 {
    let mut b = 0;
    while b < MAX_FANOUT_BITS && (n >> b) > 8 {
        b += 1;
    }
    b
}

/// The bucket of an id in a table of `bits` bits: its first `bits` bits.
fn bucket(id: &[u8], bits: u8) -> usize {
    let top = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
    match bits {
        0 => 0,
        b => (top >> (32 - u32::from(b))) as usize,
    }
}

impl IndexFile {
    /// The index of `packs`, entries sorted by (id, pack, offset).
    pub fn from_packs(packs: &[FinishedPack]) -> Self {
        let mut entries = Vec::new();
        for (n, p) in packs.iter().enumerate() {
            entries.extend(p.entries.iter().map(|e| IndexEntry {
                id: e.id,
                kind: e.kind,
                compression: e.compression,
                pack: n as u32,
                offset: e.offset,
                stored_len: e.stored_len,
                raw_len: e.raw_len,
            }));
        }
        entries.sort_by_key(|e| (e.id, e.pack, e.offset));
        IndexFile {
            packs: packs.iter().map(|p| p.id).collect(),
            entries,
        }
    }

    /// Encodes the file (the current version); returns its id (= file
    /// name) and bytes. Entries must be sorted by id.
    pub fn encode(&self) -> (ObjectId, Vec<u8>) {
        let mut out = Vec::new();
        let id = encode_to(&self.packs, || self.entries.iter().cloned(), &mut |b| {
            out.extend_from_slice(b);
            Ok(())
        });
        // A Vec sink never fails; the count fits (entries are in memory).
        (id.unwrap_or(ObjectId([0; 32])), out)
    }

    /// Decodes a whole file of any readable version.
    pub fn decode(data: &[u8], path: &Path) -> Result<Self> {
        let l = Layout::parse(data, path, &mut |_| {})?;
        Ok(IndexFile {
            packs: (0..l.packs_len()).map(|j| l.pack(data, j)).collect(),
            entries: (0..l.len()).map(|i| l.entry(data, i)).collect(),
        })
    }
}

/// Streams an index file (the current version) listing `packs` and the
/// entries `entries()` yields, sorted by id, into `sink`; returns its id.
/// `entries` is called three times (counts, ids, records), so a merge of
/// files read in place needs no copy of them in memory.
pub fn encode_to<I: Iterator<Item = IndexEntry>>(
    packs: &[ObjectId],
    entries: impl Fn() -> I,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<ObjectId> {
    let mut fine = vec![0u32; 1 << MAX_FANOUT_BITS];
    let mut n = 0usize;
    for e in entries() {
        fine[bucket(&e.id.0, MAX_FANOUT_BITS)] += 1;
        n += 1;
    }
    let too_many = |what: &str| Error::Limit {
        path: "index".into(),
        detail: format!("an index file holds at most {} {what}", u32::MAX),
    };
    let n32 = u32::try_from(n).map_err(|_| too_many("entries"))?;
    let np = u32::try_from(packs.len()).map_err(|_| too_many("packs"))?;
    let bits = fanout_bits(n);
    let mut out = Out::new(sink);
    let mut head = Vec::new();
    header::write(&mut head, MAGIC, VERSION);
    out.put(&head)?;
    out.put(&np.to_le_bytes())?;
    for p in packs {
        out.put(&p.0)?;
    }
    out.put(&n32.to_le_bytes())?;
    out.put(&[bits, 0, 0, 0])?;
    let shift = MAX_FANOUT_BITS - bits;
    let mut total = 0u32;
    for (i, c) in fine.iter().enumerate() {
        total += c;
        if (i + 1) % (1 << shift) == 0 {
            out.put(&total.to_le_bytes())?;
        }
    }
    for e in entries() {
        out.put(&e.id.0)?;
    }
    for e in entries() {
        out.put(&record(&e))?;
    }
    out.finish()
}

fn record(e: &IndexEntry) -> [u8; RECORD_LEN] {
    let mut r = [0u8; RECORD_LEN];
    r[0] = e.kind as u8;
    r[1] = e.compression as u8;
    for (k, v) in [e.pack, e.offset, e.stored_len, e.raw_len]
        .into_iter()
        .enumerate()
    {
        r[2 + 4 * k..6 + 4 * k].copy_from_slice(&v.to_le_bytes());
    }
    r
}

/// A buffered, hashing writer over a sink.
struct Out<'s> {
    sink: &'s mut dyn FnMut(&[u8]) -> Result<()>,
    buf: Vec<u8>,
    hasher: blake3::Hasher,
}

impl<'s> Out<'s> {
    fn new(sink: &'s mut dyn FnMut(&[u8]) -> Result<()>) -> Self {
        Out {
            sink,
            buf: Vec::with_capacity(1 << 16),
            hasher: blake3::Hasher::new(),
        }
    }

    fn put(&mut self, b: &[u8]) -> Result<()> {
        self.hasher.update(b);
        self.buf.extend_from_slice(b);
        if self.buf.len() >= 1 << 16 {
            (self.sink)(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    fn finish(mut self) -> Result<ObjectId> {
        let id = ObjectId::from_hasher(&self.hasher);
        self.buf.extend_from_slice(&id.0);
        (self.sink)(&self.buf)?;
        Ok(id)
    }
}

#[derive(Clone, Debug)]
enum Fanout {
    /// At this offset in the file (version 2).
    InFile(usize),
    /// Built by the parse (version 1 files have none).
    Built(Vec<u32>),
}

/// Where the parts of one validated index file lie in its bytes. Every
/// accessor takes the bytes `parse` validated.
#[derive(Clone, Debug)]
pub struct Layout {
    version: u32,
    packs_off: usize,
    npacks: usize,
    n: usize,
    bits: u8,
    fanout: Fanout,
    ids_off: usize,
    id_stride: usize,
    rec_off: usize,
    rec_stride: usize,
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

/// `f` in version 1's layout (what moat wrote before version 2), for
/// tests that old stores still read.
#[cfg(test)]
pub(crate) fn encode_v1(f: &IndexFile) -> Vec<u8> {
    let mut out = Vec::new();
    header::write(&mut out, MAGIC, 1);
    out.extend_from_slice(&(f.packs.len() as u32).to_le_bytes());
    for p in &f.packs {
        out.extend_from_slice(&p.0);
    }
    out.extend_from_slice(&(f.entries.len() as u32).to_le_bytes());
    for e in &f.entries {
        out.extend_from_slice(&e.id.0);
        out.extend_from_slice(&record(e));
    }
    let id = ObjectId::hash(&out);
    out.extend_from_slice(&id.0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::PackEntry;

    fn sample(packs: u8, per_pack: u32) -> IndexFile {
        let packs: Vec<FinishedPack> = (0..packs)
            .map(|p| FinishedPack {
                id: ObjectId::hash(&[p]),
                bytes: 0,
                entries: (0..per_pack)
                    .map(|i| PackEntry {
                        id: ObjectId::hash(&[&[p][..], &i.to_le_bytes()].concat()),
                        kind: if i % 3 == 0 {
                            ObjectKind::Tree
                        } else {
                            ObjectKind::Chunk
                        },
                        compression: Compression::Zstd,
                        offset: 12 + i * 10,
                        stored_len: 10,
                        raw_len: 20 + i,
                    })
                    .collect(),
            })
            .collect();
        IndexFile::from_packs(&packs)
    }

    #[test]
    fn round_trip_and_truncation() {
        let f = sample(3, 5);
        let (_, bytes) = f.encode();
        let p = Path::new("i");
        assert_eq!(IndexFile::decode(&bytes, p).unwrap(), f);
        for n in 0..bytes.len() {
            assert!(IndexFile::decode(&bytes[..n], p).is_err());
        }
        let mut flipped = bytes.clone();
        flipped[40] ^= 1;
        assert!(IndexFile::decode(&flipped, p).is_err());
    }

    #[test]
    fn every_entry_is_found_in_place_in_both_versions() {
        for (packs, per) in [(1, 0), (1, 1), (2, 9), (3, 700), (5, 3000)] {
            let f = sample(packs, per);
            for bytes in [f.encode().1, encode_v1(&f)] {
                let l = Layout::parse(&bytes, Path::new("i"), &mut |_| {}).unwrap();
                assert_eq!(l.len(), f.entries.len());
                for (i, e) in f.entries.iter().enumerate() {
                    assert_eq!(l.find(&bytes, &e.id), i..i + 1);
                    assert_eq!(&l.entry(&bytes, i), e);
                }
                assert!(l.find(&bytes, &ObjectId::hash(b"absent")).is_empty());
                assert!(l.find(&bytes, &ObjectId([0; 32])).is_empty());
                assert!(l.find(&bytes, &ObjectId([0xff; 32])).is_empty());
            }
        }
    }

    #[test]
    fn copies_are_adjacent_and_all_found() {
        let mut f = sample(2, 50);
        let dup = IndexEntry {
            pack: 1,
            offset: 999,
            ..f.entries[7].clone()
        };
        f.entries.insert(8, dup);
        let (_, bytes) = f.encode();
        let l = Layout::parse(&bytes, Path::new("i"), &mut |_| {}).unwrap();
        assert_eq!(l.find(&bytes, &f.entries[7].id), 7..9);
    }

    #[test]
    fn hostile_tables_are_refused_with_a_valid_checksum() {
        let p = Path::new("i");
        let reseal = |mut b: Vec<u8>| {
            let n = b.len() - 32;
            let sum = ObjectId::hash(&b[..n]);
            b[n..].copy_from_slice(&sum.0);
            b
        };
        let f = sample(2, 40);
        let (_, good) = f.encode();
        let l = Layout::parse(&good, p, &mut |_| {}).unwrap();
        let ids = l.ids_off;
        // Unsorted ids.
        let mut b = good.clone();
        b[ids..ids + 32].copy_from_slice(&[0xff; 32]);
        let err = Layout::parse(&reseal(b), p, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("sorted"), "{err}");
        // A fan-out entry off by one.
        let mut b = good.clone();
        if let Fanout::InFile(off) = l.fanout {
            b[off] ^= 1;
        }
        let err = Layout::parse(&reseal(b), p, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("fan-out"), "{err}");
        // A pack number out of the table, a bad kind.
        let mut b = good.clone();
        b[l.rec_off + 2] = 9;
        let err = Layout::parse(&reseal(b), p, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("names pack #9 of 2"), "{err}");
        let mut b = good.clone();
        b[l.rec_off] = 7;
        assert!(Layout::parse(&reseal(b), p, &mut |_| {}).is_err());
        // Fan-out bits beyond the limit.
        let mut b = good.clone();
        b[HEADER_LEN + 4 + 64 + 4] = 17;
        assert!(Layout::parse(&reseal(b), p, &mut |_| {}).is_err());
    }

    #[test]
    fn parse_releases_every_byte_it_read() {
        let f = sample(2, 100);
        let (_, bytes) = f.encode();
        let mut seen = vec![false; bytes.len()];
        Layout::parse(&bytes, Path::new("i"), &mut |r| {
            seen[r].iter_mut().for_each(|s| *s = true)
        })
        .unwrap();
        let l = Layout::parse(&bytes, Path::new("i"), &mut |_| {}).unwrap();
        assert!(seen[l.ids_off..bytes.len() - 32].iter().all(|s| *s));
    }
}
