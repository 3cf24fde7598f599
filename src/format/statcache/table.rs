//! Reading a stat cache in place: the header is checked once, records are
//! found by binary search over the fan-out and offset tables and checked
//! (against the workspace-keyed record checksum) as they are read.
//!
//! Invariant: no offset, count or length read from the file is used before
//! it is bounds-checked against the mapped bytes.

use rustc_hash::FxHashMap;
use std::path::{Path, PathBuf};

use super::*;
use crate::error::{Error, Result};
use crate::format::header::{self, HEADER_LEN};

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

    /// The bytes the table reads (to release a mapping's pages).
    pub fn data(&self) -> &B {
        &self.data
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

    /// The path of record `i`, bounds-checked but not verified: a binary
    /// search reads ~17 records per lookup, and checking each one's keyed
    /// hash cost more than the rest of a no-change snapshot. A damaged
    /// record met here can only steer the search to a miss (the file is
    /// read again) or to a record that `raw` then verifies before use.
    fn path_at(&self, i: usize) -> Result<&[u8]> {
        let d = self.data.as_ref();
        let start = usize::try_from(le64(&d[self.offsets_at + i * 8..]))
            .map_err(|_| self.bad("record offset out of range"))?;
        let end = record_end(d, start).ok_or_else(|| self.bad(format!("record {i} is malformed")))?;
        Ok(record_path(&d[start..end]))
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
