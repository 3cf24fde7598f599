//! Content-level views of a change: git-style unified patches and line
//! counts (`diff -p`, `diff --stat`), using the `similar` crate.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use similar::{ChangeTag, TextDiff};

use crate::error::{IoContext, Result};
use crate::format::pack::ObjectKind;
use crate::format::tree::{Content, Entry};
use crate::ops::diff::{Change, Status, Trees};

/// Files larger than this are summarised, not diffed line by line.
const MAX_TEXT_DIFF: u64 = 16 << 20;

/// The bytes of an entry: file contents (from the store, or from the live
/// workspace `ws` for files the store does not hold) or a symlink target.
pub fn load(trees: &Trees, ws: Option<&Path>, path: &[u8], entry: &Entry) -> Result<Vec<u8>> {
    match &entry.content {
        Content::Symlink(t) => Ok(t.clone()),
        Content::Dir(_) => Ok(Vec::new()),
        Content::File(chunks) => {
            let index = trees.store.index()?;
            if let Some(ws) = ws.filter(|_| !chunks.iter().all(|c| index.contains(c))) {
                let p = ws.join(OsStr::from_bytes(path));
                return std::fs::read(&p).at(p);
            }
            let mut out = Vec::with_capacity(entry.size as usize);
            for c in chunks {
                out.extend(trees.store.read_object(c, ObjectKind::Chunk)?);
            }
            Ok(out)
        }
    }
}

/// git's rule: a NUL byte in the first 8000 bytes means binary.
pub fn is_binary(data: &[u8]) -> bool {
    data[..data.len().min(8000)].contains(&0)
}

fn too_big(e: &Option<Entry>) -> bool {
    e.as_ref().is_some_and(|e| e.size > MAX_TEXT_DIFF)
}

/// Lines added and removed, or `None` when either side is binary.
pub fn line_counts(c: &Change, old: &[u8], new: &[u8]) -> Option<(usize, usize)> {
    if is_binary(old) || is_binary(new) || too_big(&c.old) || too_big(&c.new) {
        return None;
    }
    let d = TextDiff::from_lines(old, new);
    let (mut add, mut del) = (0, 0);
    for op in d.ops() {
        for ch in d.iter_changes(op) {
            match ch.tag() {
                ChangeTag::Insert => add += 1,
                ChangeTag::Delete => del += 1,
                ChangeTag::Equal => {}
            }
        }
    }
    Some((add, del))
}

/// git's mode notation for an entry.
pub fn git_mode(e: &Entry) -> &'static str {
    match e.content {
        Content::Symlink(_) => "120000",
        Content::Dir(_) => "040000",
        Content::File(_) if e.mode & 0o100 != 0 => "100755",
        Content::File(_) => "100644",
    }
}

/// A git-style patch for one change.
pub fn patch(c: &Change, old: &[u8], new: &[u8]) -> String {
    let p = String::from_utf8_lossy(&c.path);
    let from = c
        .from
        .as_ref()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .unwrap_or_else(|| p.to_string());
    let mut out = format!("diff --git a/{from} b/{p}\n");
    match (c.status, &c.old, &c.new) {
        (Status::Added, _, Some(n)) => out += &format!("new file mode {}\n", git_mode(n)),
        (Status::Deleted, Some(o), _) => out += &format!("deleted file mode {}\n", git_mode(o)),
        (_, Some(o), Some(n)) if git_mode(o) != git_mode(n) => {
            out += &format!("old mode {}\nnew mode {}\n", git_mode(o), git_mode(n));
        }
        _ => {}
    }
    if c.status == Status::Renamed {
        out += &format!("similarity index 100%\nrename from {from}\nrename to {p}\n");
    }
    if old == new {
        return out;
    }
    let a = if c.old.is_some() {
        format!("a/{from}")
    } else {
        "/dev/null".into()
    };
    let b = if c.new.is_some() {
        format!("b/{p}")
    } else {
        "/dev/null".into()
    };
    if line_counts(c, old, new).is_none() {
        out += &format!("Binary files {a} and {b} differ\n");
        return out;
    }
    let d = TextDiff::from_lines(old, new);
    out += &d.unified_diff().context_radius(3).header(&a, &b).to_string();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::id::ObjectId;

    fn file(mode: u32) -> Entry {
        Entry {
            name: b"f".to_vec(),
            mode,
            mtime_ns: 0,
            size: 3,
            content: Content::File(vec![ObjectId::hash(b"x")]),
        }
    }

    fn change(status: Status, old: Option<Entry>, new: Option<Entry>) -> Change {
        Change {
            status,
            path: b"src/f".to_vec(),
            from: None,
            old,
            new,
        }
    }

    #[test]
    fn text_patch_and_counts() {
        let c = change(Status::Modified, Some(file(0o644)), Some(file(0o755)));
        let p = patch(&c, b"a\nb\nc\n", b"a\nB\nc\nd\n");
        assert!(
            p.starts_with(
                "diff --git a/src/f b/src/f\nold mode 100644\nnew mode 100755\n--- a/src/f\n+++ b/src/f\n"
            ),
            "{p}"
        );
        assert!(p.contains("-b\n+B\n") && p.contains("+d\n"), "{p}");
        assert_eq!(line_counts(&c, b"a\nb\nc\n", b"a\nB\nc\nd\n"), Some((2, 1)));
    }

    #[test]
    fn binary_and_added() {
        let c = change(Status::Added, None, Some(file(0o644)));
        let p = patch(&c, b"", b"\0\x01");
        assert!(
            p.contains("new file mode 100644") && p.contains("Binary files /dev/null and b/src/f differ"),
            "{p}"
        );
        assert_eq!(line_counts(&c, b"", b"\0"), None);
    }
}
