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
//! Pure codec (`layout`: reading in place): `Layout::parse` validates a file (checksum, counts, sorted
//! ids, fan-out, every record) and gives offsets into its bytes; the
//! lookups read those bytes in place. `store::index` maps the files of a
//! store and searches them.

use std::path::Path;

use crate::error::{Error, Result};
use crate::format::compress::Compression;
use crate::format::header::{self, HEADER_LEN};
use crate::format::id::ObjectId;
use crate::format::pack::{FinishedPack, ObjectKind};

mod layout;

pub use layout::Layout;

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

/// The size of an index file (the current version) listing `packs` packs
/// and `n` entries.
pub fn encoded_len(packs: usize, n: usize) -> u64 {
    let fixed = HEADER_LEN + 4 + 4 + 4 + 32;
    (fixed as u64)
        .saturating_add(32u64.saturating_mul(packs as u64))
        .saturating_add(4u64 << fanout_bits(n))
        .saturating_add(((ID_LEN + RECORD_LEN) as u64).saturating_mul(n as u64))
}

/// The bucket of an id in a table of `bits` bits: its first `bits` bits.
fn bucket(id: &[u8], bits: u8) -> usize {
    let top = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
    match bits {
        0 => 0,
        b => (top >> (32 - u32::from(b))) as usize,
    }
}

/// Whether an index file's bytes are those its name `id` promises: its
/// closing checksum is `id` (the checksum itself is `Layout::parse`'s).
pub fn named_by(data: &[u8], id: &ObjectId) -> bool {
    data.len() >= 32 && data[data.len() - 32..] == id.0
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
mod tests;
