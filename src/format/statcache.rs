//! The per-workspace stat cache (like git's index): for every file of the
//! last capture, the stat fields that change when a file changes and the
//! chunk ids of its content, so an unchanged file is never opened.
//!
//! Layout: header (`MOATSTAT`, version) | postcard(`CacheFile`). Pure
//! codec and the "unchanged?" predicate; `worktree::statcache` loads and
//! saves a workspace's cache. It is only a cache: an unreadable one is
//! ignored and rebuilt.

use rustc_hash::FxHashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::header;
use crate::format::id::ObjectId;
use crate::util::timestamp_ns_clamped;

pub const MAGIC: &[u8; 8] = b"MOATSTAT";
pub const VERSION: u32 = 1;

/// The stat fields compared to decide whether a file changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedFile {
    pub stat: FileStat,
    pub chunks: Vec<ObjectId>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    /// The workspace this cache describes (so `gc` can drop caches of
    /// directories that no longer exist).
    workspace: serde_bytes::ByteBuf,
    /// When the capture that wrote this cache started, by the filesystem
    /// clock (`util::fs_clock_ns`).
    taken_ns: i64,
    entries: Vec<(serde_bytes::ByteBuf, CachedFile)>,
}

#[derive(Debug, Default)]
pub struct StatCache {
    pub workspace: Vec<u8>,
    pub taken_ns: i64,
    /// Keyed by workspace-relative path; FxHash, as these keys are not
    /// attacker-chosen and SipHash showed in the no-change profile.
    pub entries: FxHashMap<Vec<u8>, CachedFile>,
}

/// The "unchanged?" predicate. A file is unchanged when every stat field
/// matches and its mtime is strictly older than the start of the capture
/// that cached it: a file written in the same clock tick as that capture
/// may have changed after it was read without changing its mtime (racy git).
pub fn unchanged(cached: &FileStat, now: &FileStat, taken_ns: i64) -> bool {
    cached == now && now.mtime_ns < taken_ns
}

impl StatCache {
    pub fn decode(data: &[u8], path: &Path) -> Result<Self> {
        let body = header::check(data, MAGIC, VERSION, "stat cache", path)?;
        let f: CacheFile =
            postcard::from_bytes(body).map_err(|e| Error::corrupt(path, "stat cache", e.to_string()))?;
        Ok(StatCache {
            workspace: f.workspace.into_vec(),
            taken_ns: f.taken_ns,
            entries: f.entries.into_iter().map(|(k, v)| (k.into_vec(), v)).collect(),
        })
    }

    pub fn encode(workspace: &[u8], taken_ns: i64, entries: Vec<(Vec<u8>, CachedFile)>) -> Vec<u8> {
        let f = CacheFile {
            workspace: serde_bytes::ByteBuf::from(workspace.to_vec()),
            taken_ns,
            entries: entries
                .into_iter()
                .map(|(k, v)| (serde_bytes::ByteBuf::from(k), v))
                .collect(),
        };
        let mut out = Vec::new();
        header::write(&mut out, MAGIC, VERSION);
        out.extend(postcard::to_stdvec(&f).unwrap_or_default());
        out
    }

    /// The cached chunks of `rel` if the file is unchanged since.
    pub fn lookup(&self, rel: &[u8], now: &FileStat) -> Option<&[ObjectId]> {
        let c = self.entries.get(rel)?;
        unchanged(&c.stat, now, self.taken_ns).then_some(c.chunks.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_stat() -> impl Strategy<Value = FileStat> {
        (0..3u64, 0..3u64, 0..3u32, 0..3u64, 0..5i64, 0..5i64).prop_map(
            |(dev, ino, mode, size, mtime_ns, ctime_ns)| FileStat {
                dev,
                ino,
                mode,
                size,
                mtime_ns,
                ctime_ns,
            },
        )
    }

    proptest! {
        /// Any difference in any field, or a racy mtime, means "changed".
        #[test]
        fn unchanged_predicate(a in arb_stat(), b in arb_stat(), taken in 0..6i64) {
            let expect = a.dev == b.dev && a.ino == b.ino && a.mode == b.mode
                && a.size == b.size && a.mtime_ns == b.mtime_ns && a.ctime_ns == b.ctime_ns
                && b.mtime_ns < taken;
            prop_assert_eq!(unchanged(&a, &b, taken), expect);
        }
    }

    #[test]
    fn encode_decode() {
        let st = FileStat {
            dev: 1,
            ino: 2,
            mode: 0o100644,
            size: 3,
            mtime_ns: 4,
            ctime_ns: 5,
        };
        let bytes = StatCache::encode(
            b"/ws",
            10,
            vec![(
                b"a/\xff".to_vec(),
                CachedFile {
                    stat: st,
                    chunks: vec![ObjectId::hash(b"x")],
                },
            )],
        );
        let c = StatCache::decode(&bytes, Path::new("c")).unwrap();
        assert_eq!(c.lookup(b"a/\xff", &st).map(|c| c.len()), Some(1));
        assert!(c.lookup(b"a/\xff", &FileStat { size: 4, ..st }).is_none());
        assert!(StatCache::decode(&bytes[..bytes.len() - 3], Path::new("c")).is_err());
    }
}
