//! The delta of a stat cache (`cache/<wsid>.delta`, store-format.md "Stat
//! cache delta"): what a watched capture changed, written beside the
//! unchanged cache instead of rewriting it, so the cache written per
//! snapshot costs what changed.
//!
//! Layout (version 1): header (`MOATSDLT`, 1) | the header check of the
//! cache it applies to (32) | a whole version-2 stat cache (its own header,
//! fan-out, offsets, header check and records) holding the delta's records.
//! Pure codec and the lookup rule; `worktree::statcache` reads and writes
//! the files.
//!
//! The lookup rule (the *layered* view): a path's record is the delta's
//! record of it if any; else the path is gone if some ancestor of it has a
//! delta record flagged `LISTED` while the child of that ancestor on the
//! way to the path has no delta record; else it is the base cache's record.
//!
//! Invariants: a delta is used only with the base cache whose header check
//! it names (any other pairing is ignored: the base alone is an older, still
//! valid cache); its identity for a watch token covers both.

use std::path::Path;

use crate::error::{Error, Result};
use crate::format::header::{self, HEADER_LEN};
use crate::format::statcache::{self, Meta};

pub const MAGIC: &[u8; 8] = b"MOATSDLT";
pub const VERSION: u32 = 1;

/// Encodes a delta on top of the cache whose header check is `base`.
pub fn encode(base: &[u8; 32], meta: &Meta, records: Vec<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    header::write(&mut out, MAGIC, VERSION);
    out.extend_from_slice(base);
    out.extend_from_slice(&statcache::encode(meta, records));
    out
}

/// The base check a delta names and the offset of its embedded cache.
pub fn split(data: &[u8], path: &Path) -> Result<([u8; 32], usize)> {
    let rest = header::check(data, MAGIC, VERSION, "stat cache delta", path)?;
    let base = rest
        .get(..32)
        .ok_or_else(|| Error::corrupt(path, "stat cache delta", "file is truncated"))?;
    let mut b = [0; 32];
    b.copy_from_slice(base);
    Ok((b, HEADER_LEN + 32))
}

/// The identity of a base cache with a delta on top (what a watch token
/// names).
pub fn identity(base: &[u8; 32], delta: &[u8; 32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"moat stat cache delta\0");
    h.update(base);
    h.update(delta);
    *h.finalize().as_bytes()
}

/// The proper ancestors of `path`, root first (`""`, `a`, `a/b` for
/// `a/b/c`), each with the child on the way to `path`.
pub fn ancestors(path: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let cuts = std::iter::once(None).chain(
        path.iter()
            .enumerate()
            .filter(|(_, b)| **b == b'/')
            .map(|(i, _)| Some(i)),
    );
    let path_ref = path;
    let mut cuts: Vec<Option<usize>> = if path.is_empty() {
        Vec::new()
    } else {
        cuts.collect()
    };
    cuts.push(Some(path.len()));
    (0..cuts.len().saturating_sub(1)).map(move |k| {
        let dir = cuts[k].map_or(&path_ref[..0], |i| &path_ref[..i]);
        let child = cuts[k + 1].map_or(path_ref, |i| &path_ref[..i]);
        (dir, child)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_root_first_with_the_child_on_the_way() {
        let v: Vec<_> = ancestors(b"a/b/c").collect();
        assert_eq!(
            v,
            vec![
                (&b""[..], &b"a"[..]),
                (&b"a"[..], &b"a/b"[..]),
                (&b"a/b"[..], &b"a/b/c"[..])
            ]
        );
        assert_eq!(ancestors(b"x").collect::<Vec<_>>(), vec![(&b""[..], &b"x"[..])]);
        assert!(ancestors(b"").next().is_none());
    }

    #[test]
    fn split_refuses_what_is_not_a_delta() {
        let meta = Meta::default();
        let d = encode(&[7; 32], &meta, Vec::new());
        let (base, at) = split(&d, Path::new("d")).unwrap();
        assert_eq!(base, [7; 32]);
        assert!(statcache::Table::open(&d[at..], Path::new("d")).is_ok());
        assert!(split(&d[..HEADER_LEN + 3], Path::new("d")).is_err());
        assert!(split(b"MOATSTAT\x02\0\0\0", Path::new("d")).is_err());
    }
}
