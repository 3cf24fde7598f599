//! Tree objects: one manifest per directory.
//!
//! Encoding: one version byte, then the postcard encoding of `Vec<Entry>`,
//! entries strictly sorted by raw name bytes. The tree id is the blake3 of
//! the whole encoding, so an unchanged directory keeps its id.
//!
//! Invariant: `decode` refuses any name that could leave the directory it
//! is restored into (empty, `.`, `..`, containing `/` or NUL) and any
//! unsorted or duplicate name, so restore can join names onto a path safely.

use serde::{Deserialize, Serialize};

use crate::format::id::ObjectId;

pub const VERSION: u8 = 1;

/// The largest tree object (its encoding) moat writes or reads: 64 MiB,
/// about a million entries, or two million chunk ids (files totalling
/// some 120 GiB directly in one directory). Readers refuse an index entry
/// claiming more before decompressing anything, so a hostile store cannot
/// make a reader allocate more than this per tree.
pub const MAX_TREE_BYTES: u32 = 64 << 20;

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

/// Why a name cannot be a tree entry, or `None` when it can.
pub fn bad_name(name: &[u8]) -> Option<&'static str> {
    match name {
        b"" => Some("empty name"),
        b"." | b".." => Some("name is . or .."),
        n if n.contains(&b'/') => Some("name contains /"),
        n if n.contains(&0) => Some("name contains NUL"),
        _ => None,
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
        for (i, e) in entries.iter().enumerate() {
            if let Some(why) = bad_name(&e.name) {
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

    fn entry(name: &[u8], content: Content) -> Entry {
        Entry {
            name: name.to_vec(),
            mode: 0o644,
            mtime_ns: 1,
            size: 0,
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
}
