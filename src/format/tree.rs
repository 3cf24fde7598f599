//! Tree objects: one manifest per directory.
//!
//! Encoding: one version byte, then the postcard encoding of `Vec<Entry>`,
//! entries strictly sorted by raw name bytes. The tree id is the blake3 of
//! the whole encoding, so an unchanged directory keeps its id.
//!
//! Invariants: `decode` refuses any name that could leave the directory it
//! is restored into (empty, `.`, `..`, containing `/` or NUL), any name
//! capture never stores (`reserved`: `.git`, moat's temp names), any
//! unsorted or duplicate name, and sizes or counts no capture can produce
//! (the limits below), so restore can join names onto a path safely and no
//! reader allocates more than a real tree needs. The walkers over trees
//! (restore, ls, diff, rollback, check) charge a `Budget` per tree they
//! load, which bounds a walk's depth, entries and bytes even when a hostile
//! store names one subtree many times.

use serde::{Deserialize, Serialize};

use crate::format::id::ObjectId;

pub const VERSION: u8 = 1;

/// The largest tree object (its encoding) moat writes or reads: 64 MiB,
/// about a million entries, or two million chunk ids (files totalling
/// some 120 GiB directly in one directory). Readers refuse an index entry
/// claiming more before decompressing anything, so a hostile store cannot
/// make a reader allocate more than this per tree.
pub const MAX_TREE_BYTES: u32 = 64 << 20;
/// Deepest nesting of a tree walk, in path components: `PATH_MAX` (4096
/// bytes) holds at most 2,048 components, so no real path is deeper.
pub const MAX_DEPTH: usize = 2048;
/// Most entries in one tree (one directory).
pub const MAX_ENTRIES: usize = 1 << 20;
/// Most entries one snapshot's walk may meet, counting a subtree again each
/// time a tree names it.
pub const MAX_SNAPSHOT_ENTRIES: u64 = 1 << 21;
/// Most tree bytes one snapshot's walk may load, counted the same way.
pub const MAX_SNAPSHOT_TREE_BYTES: u64 = 512 << 20;
/// fastcdc's largest chunk: no store cuts a chunk larger than this.
pub const MAX_CHUNK: u64 = 16 << 20;
/// Prefix of moat's temp names in a workspace (rollback's temp siblings,
/// the holding dir of clones, clock probes); capture never stores such a
/// name.
pub const TEMP_PREFIX: &[u8] = crate::util::WORKSPACE_TEMP_PREFIX;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Content {
    /// Chunk ids in file order.
    File(Vec<ObjectId>),
    Dir(ObjectId),
    Symlink(#[serde(with = "serde_bytes")] Vec<u8>),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub mtime_ns: i64,
    /// File length in bytes; 0 for dirs; target length for symlinks.
    pub size: u64,
    pub content: Content,
}

impl Entry {
    pub fn kind_name(&self) -> &'static str {
        match self.content {
            Content::File(_) => "file",
            Content::Dir(_) => "dir",
            Content::Symlink(_) => "symlink",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    pub entries: Vec<Entry>,
}

/// Why capture never stores `name`, or `None` when it does: `.git` (in any
/// letter case, which is the same directory on case-insensitive
/// filesystems) and moat's own temp names. The walk skips exactly these,
/// and every tree reader refuses them.
pub fn reserved(name: &[u8]) -> Option<&'static str> {
    if name.eq_ignore_ascii_case(b".git") {
        Some("capture never stores .git")
    } else if name.starts_with(TEMP_PREFIX) {
        Some("moat's own temp name, never captured")
    } else {
        None
    }
}

/// Why a name cannot be a tree entry, or `None` when it can.
pub fn bad_name(name: &[u8]) -> Option<&'static str> {
    match name {
        b"" => Some("empty name"),
        b"." | b".." => Some("name is . or .."),
        n if n.contains(&b'/') => Some("name contains /"),
        n if n.contains(&0) => Some("name contains NUL"),
        n => reserved(n),
    }
}

/// Why an entry's size cannot be real for its content, or `None`.
fn bad_size(e: &Entry) -> Option<String> {
    match &e.content {
        Content::File(chunks) => {
            let n = chunks.len() as u64;
            // Every chunk holds at least one byte and at most MAX_CHUNK.
            (e.size < n || e.size > n.saturating_mul(MAX_CHUNK))
                .then(|| format!("size {} cannot be held by its {n} chunks", e.size))
        }
        Content::Symlink(t) => (e.size != t.len() as u64)
            .then(|| format!("size {} differs from its target's length {}", e.size, t.len())),
        Content::Dir(_) => (e.size != 0).then(|| format!("directory with size {}", e.size)),
    }
}

/// What one walk over a snapshot's trees may still load (see the limits).
#[derive(Clone, Debug)]
pub struct Budget {
    entries: u64,
    bytes: u64,
}

impl Budget {
    /// The budget of one walk over `trees` snapshots (a diff walks two).
    pub fn for_snapshots(trees: u64) -> Self {
        Budget {
            entries: MAX_SNAPSHOT_ENTRIES.saturating_mul(trees),
            bytes: MAX_SNAPSHOT_TREE_BYTES.saturating_mul(trees),
        }
    }

    /// Charges one tree of `bytes` encoded bytes and `entries` entries whose
    /// entries sit `depth` components below the root; the error says which
    /// limit a walk that goes on would break.
    pub fn charge(&mut self, bytes: usize, entries: usize, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH && entries > 0 {
            return Err(format!(
                "trees nested deeper than {MAX_DEPTH} directories (no real path is deeper)"
            ));
        }
        match (
            self.entries.checked_sub(entries as u64),
            self.bytes.checked_sub(bytes as u64),
        ) {
            (Some(e), Some(b)) => {
                (self.entries, self.bytes) = (e, b);
                Ok(())
            }
            (None, _) => Err(format!(
                "the snapshot's trees hold more than {MAX_SNAPSHOT_ENTRIES} entries (the limit)"
            )),
            (_, None) => Err(format!(
                "the snapshot's trees hold more than {MAX_SNAPSHOT_TREE_BYTES} bytes (the limit)"
            )),
        }
    }
}

impl Tree {
    /// Sorts entries by name; callers build trees in any order.
    pub fn sort(&mut self) {
        self.entries.sort_by(|a, b| a.name.cmp(&b.name));
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        // Serialising plain data into a Vec cannot fail.
        out.extend(postcard::to_stdvec(&self.entries).unwrap_or_default());
        out
    }

    pub fn id_and_bytes(&self) -> (ObjectId, Vec<u8>) {
        let bytes = self.encode();
        (ObjectId::hash(&bytes), bytes)
    }

    pub fn decode(data: &[u8]) -> Result<Tree, String> {
        if data.len() > MAX_TREE_BYTES as usize {
            return Err(format!(
                "{} bytes is more than the {MAX_TREE_BYTES} a tree may hold",
                data.len()
            ));
        }
        let (&v, body) = data.split_first().ok_or("empty tree object")?;
        if v != VERSION {
            return Err(format!(
                "tree format version {v} is not supported (this moat reads {VERSION}); upgrade moat"
            ));
        }
        let (entries, rest): (Vec<Entry>, &[u8]) =
            postcard::take_from_bytes(body).map_err(|e| format!("undecodable tree: {e}"))?;
        if !rest.is_empty() {
            return Err(format!("{} trailing bytes after the tree", rest.len()));
        }
        if entries.len() > MAX_ENTRIES {
            return Err(format!(
                "{} entries is more than the {MAX_ENTRIES} a tree may hold",
                entries.len()
            ));
        }
        for (i, e) in entries.iter().enumerate() {
            if let Some(why) = bad_name(&e.name) {
                return Err(format!("entry {:?}: {why}", String::from_utf8_lossy(&e.name)));
            }
            if let Some(why) = bad_size(e) {
                return Err(format!("entry {:?}: {why}", String::from_utf8_lossy(&e.name)));
            }
            if i > 0 && entries[i - 1].name >= e.name {
                return Err(format!(
                    "entry {:?} is out of order or duplicated",
                    String::from_utf8_lossy(&e.name)
                ));
            }
            if let Content::Symlink(t) = &e.content
                && (t.is_empty() || t.contains(&0))
            {
                return Err(format!(
                    "symlink {:?} has an empty target or one containing NUL",
                    String::from_utf8_lossy(&e.name)
                ));
            }
        }
        let tree = Tree { entries };
        // postcard accepts over-long varints; one tree must have one id, so
        // only the canonical encoding is accepted (found by fuzzing).
        if tree.encode() != data {
            return Err("tree is not in canonical encoding".into());
        }
        Ok(tree)
    }

    pub fn find(&self, name: &[u8]) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.entries[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry whose size fits its content.
    fn entry(name: &[u8], content: Content) -> Entry {
        let size = match &content {
            Content::File(c) => c.len() as u64,
            Content::Symlink(t) => t.len() as u64,
            Content::Dir(_) => 0,
        };
        Entry {
            name: name.to_vec(),
            mode: 0o644,
            mtime_ns: 1,
            size,
            content,
        }
    }

    #[test]
    fn round_trip_non_utf8() {
        let mut t = Tree {
            entries: vec![
                entry(b"z", Content::Symlink(b"../x".to_vec())),
                entry(b"\xff\xfe", Content::File(vec![ObjectId::hash(b"a")])),
                entry(b"a", Content::Dir(ObjectId::hash(b"t"))),
            ],
        };
        t.sort();
        let (id, bytes) = t.id_and_bytes();
        assert_eq!(Tree::decode(&bytes).unwrap(), t);
        assert_eq!(ObjectId::hash(&bytes), id);
        assert!(t.find(b"\xff\xfe").is_some());
    }

    #[test]
    fn hostile_names_refused() {
        for name in [&b""[..], b".", b"..", b"../x", b"a/b", b"a\0"] {
            let t = Tree {
                entries: vec![entry(name, Content::File(vec![]))],
            };
            assert!(Tree::decode(&t.encode()).is_err(), "{name:?}");
        }
        let dup = Tree {
            entries: vec![
                entry(b"a", Content::File(vec![])),
                entry(b"a", Content::File(vec![])),
            ],
        };
        assert!(Tree::decode(&dup.encode()).is_err());
        assert!(Tree::decode(&[2, 0]).is_err());
        // The same tree with an over-long varint (mtime 15 as 8f 00).
        assert!(Tree::decode(&[1, 1, 1, 8, 0, 0x8f, 0, 0, 0, 0]).is_err());
        assert!(Tree::decode(&[1, 1, 1, 8, 0, 15, 0, 0, 0]).is_ok());
        assert!(Tree::decode(&[]).is_err());
    }

    #[test]
    fn reserved_names_refused() {
        for name in [
            &b".git"[..],
            b".GIT",
            b".Git",
            b".moat-tmp-x",
            b".moat-tmp-clones",
        ] {
            assert!(reserved(name).is_some(), "{name:?}");
            let t = Tree {
                entries: vec![entry(name, Content::Dir(ObjectId::hash(b"t")))],
            };
            let err = Tree::decode(&t.encode()).unwrap_err();
            assert!(err.contains(&*String::from_utf8_lossy(name)), "{err}");
        }
        for name in [&b".gitignore"[..], b"git", b".git2", b".moat-tmp"] {
            assert!(reserved(name).is_none(), "{name:?}");
        }
    }

    #[test]
    fn impossible_sizes_refused() {
        let c = ObjectId::hash(b"c");
        let mut cases = vec![
            entry(b"f", Content::File(vec![c])),
            entry(b"l", Content::Symlink(b"abc".to_vec())),
            entry(b"d", Content::Dir(c)),
        ];
        cases[0].size = MAX_CHUNK + 1;
        cases[1].size = 2;
        cases[2].size = 1;
        for e in cases {
            let mut t = Tree { entries: vec![e] };
            assert!(Tree::decode(&t.encode()).is_err(), "{t:?}");
            t.entries[0].size = match &t.entries[0].content {
                Content::File(_) => 5,
                Content::Symlink(x) => x.len() as u64,
                Content::Dir(_) => 0,
            };
            assert!(Tree::decode(&t.encode()).is_ok(), "{t:?}");
        }
        let mut empty = entry(b"e", Content::File(vec![]));
        empty.size = 1;
        assert!(Tree::decode(&Tree { entries: vec![empty] }.encode()).is_err());
    }

    #[test]
    fn budget_bounds_depth_entries_and_bytes() {
        let mut b = Budget::for_snapshots(1);
        assert!(b.charge(10, 10, MAX_DEPTH).is_ok());
        assert!(
            b.charge(10, 10, MAX_DEPTH + 1)
                .unwrap_err()
                .contains("deeper than")
        );
        assert!(
            b.charge(0, MAX_SNAPSHOT_ENTRIES as usize, 1)
                .unwrap_err()
                .contains("more than")
        );
        let mut b = Budget::for_snapshots(1);
        assert!(b.charge(MAX_SNAPSHOT_TREE_BYTES as usize, 1, 1).is_ok());
        assert!(b.charge(1, 0, 1).unwrap_err().contains("bytes"));
    }
}
