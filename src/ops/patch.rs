//! Content-level views of a change: git-style unified patches and line
//! counts (`diff -p`, `diff --stat`), using the `similar` crate.
//!
//! Invariants: no side is ever held in memory beyond `MAX_TEXT_DIFF` bytes,
//! whatever size a (possibly corrupt) tree claims or a live file grows to:
//! a larger side is summarised, not read. Paths in patch headers are quoted
//! as git quotes them, so a name's control bytes never reach a terminal;
//! file contents are left exact (the CLI escapes them for a terminal).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use similar::{ChangeTag, TextDiff};

use crate::error::{IoContext, Result};
use crate::format::pack::ObjectKind;
use crate::format::tree::{Content, Entry};
use crate::ops::diff::{Change, Status, Trees};
use crate::util::quote::quote;

/// Files larger than this are summarised, not diffed line by line.
pub const MAX_TEXT_DIFF: u64 = 16 << 20;

/// One side of a change, as far as a content diff needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// File contents or a symlink's target (empty for a missing side).
    Bytes(Vec<u8>),
    /// A file of more than `MAX_TEXT_DIFF` bytes (its size), not read.
    TooLarge(u64),
}

/// The content of an entry for a diff: file contents (from the store, or
/// from the live workspace `ws` for files the store does not hold) or a
/// symlink target; `TooLarge` past `MAX_TEXT_DIFF`.
pub fn load(trees: &Trees, ws: Option<&Path>, path: &[u8], entry: &Entry) -> Result<Body> {
    match &entry.content {
        Content::Symlink(t) => Ok(Body::Bytes(t.clone())),
        Content::Dir(_) => Ok(Body::Bytes(Vec::new())),
        Content::File(_) if entry.size > MAX_TEXT_DIFF => Ok(Body::TooLarge(entry.size)),
        Content::File(chunks) => {
            let index = trees.store.index()?;
            if let Some(ws) = ws.filter(|_| !chunks.iter().all(|c| index.contains(c))) {
                let p = ws.join(OsStr::from_bytes(path));
                let (file, _) = crate::util::fs::open_regular(&p, false).at(&p)?;
                let data = crate::util::fs::read_at_most(file, MAX_TEXT_DIFF).at(&p)?;
                return Ok(data.map_or(Body::TooLarge(entry.size), Body::Bytes));
            }
            // The size is at most MAX_TEXT_DIFF here, but the chunks may hold
            // more than it says: stop reading once past the bound.
            let mut out = Vec::with_capacity(entry.size as usize);
            for c in chunks {
                out.extend(trees.store.read_object(c, ObjectKind::Chunk)?);
                if out.len() as u64 > MAX_TEXT_DIFF {
                    return Ok(Body::TooLarge(entry.size));
                }
            }
            Ok(Body::Bytes(out))
        }
    }
}

/// git's rule: a NUL byte in the first 8000 bytes means binary.
pub fn is_binary(data: &[u8]) -> bool {
    data[..data.len().min(8000)].contains(&0)
}

/// Lines added and removed, or `None` when either side is binary or too
/// large for a text diff.
pub fn line_counts(old: &Body, new: &Body) -> Option<(usize, usize)> {
    let (Body::Bytes(old), Body::Bytes(new)) = (old, new) else {
        return None;
    };
    if is_binary(old) || is_binary(new) {
        return None;
    }
    let d = TextDiff::from_lines(old.as_slice(), new.as_slice());
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
pub fn patch(c: &Change, old: &Body, new: &Body) -> String {
    let from = c.from.as_deref().unwrap_or(&c.path);
    let a_name = quote(&[b"a/", from].concat()).into_owned();
    let b_name = quote(&[b"b/", c.path.as_slice()].concat()).into_owned();
    let mut out = format!("diff --git {a_name} {b_name}\n");
    match (c.status, &c.old, &c.new) {
        (Status::Added, _, Some(n)) => out += &format!("new file mode {}\n", git_mode(n)),
        (Status::Deleted, Some(o), _) => out += &format!("deleted file mode {}\n", git_mode(o)),
        (_, Some(o), Some(n)) if git_mode(o) != git_mode(n) => {
            out += &format!("old mode {}\nnew mode {}\n", git_mode(o), git_mode(n));
        }
        _ => {}
    }
    if c.status == Status::Renamed {
        out += &format!(
            "similarity index 100%\nrename from {}\nrename to {}\n",
            quote(from),
            quote(&c.path)
        );
    }
    let same = match (old, new) {
        (Body::Bytes(a), Body::Bytes(b)) => a == b,
        _ => matches!((&c.old, &c.new), (Some(o), Some(n)) if o.content == n.content),
    };
    if same {
        return out;
    }
    let a = if c.old.is_some() {
        a_name
    } else {
        "/dev/null".into()
    };
    let b = if c.new.is_some() {
        b_name
    } else {
        "/dev/null".into()
    };
    if matches!(old, Body::TooLarge(_)) || matches!(new, Body::TooLarge(_)) {
        out += &format!(
            "Large files {a} and {b} differ (over {} MiB: too large for a text diff)\n",
            MAX_TEXT_DIFF >> 20
        );
        return out;
    }
    let (Body::Bytes(old), Body::Bytes(new)) = (old, new) else {
        return out;
    };
    if is_binary(old) || is_binary(new) {
        out += &format!("Binary files {a} and {b} differ\n");
        return out;
    }
    let d = TextDiff::from_lines(old.as_slice(), new.as_slice());
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
        let (old, new) = (
            Body::Bytes(b"a\nb\nc\n".to_vec()),
            Body::Bytes(b"a\nB\nc\nd\n".to_vec()),
        );
        let p = patch(&c, &old, &new);
        assert!(
            p.starts_with(
                "diff --git a/src/f b/src/f\nold mode 100644\nnew mode 100755\n--- a/src/f\n+++ b/src/f\n"
            ),
            "{p}"
        );
        assert!(p.contains("-b\n+B\n") && p.contains("+d\n"), "{p}");
        assert_eq!(line_counts(&old, &new), Some((2, 1)));
    }

    #[test]
    fn names_are_quoted_as_git_quotes_them() {
        let mut c = change(Status::Renamed, Some(file(0o644)), Some(file(0o644)));
        c.path = b"new\x1b[2J".to_vec();
        c.from = Some(b"old\tname".to_vec());
        let p = patch(&c, &Body::Bytes(b"x\n".to_vec()), &Body::Bytes(b"y\n".to_vec()));
        assert!(
            p.starts_with(
                "diff --git \"a/old\\tname\" \"b/new\\033[2J\"\nsimilarity index 100%\n\
                 rename from \"old\\tname\"\nrename to \"new\\033[2J\"\n--- \"a/old\\tname\"\n"
            ),
            "{p}"
        );
    }

    #[test]
    fn binary_and_added() {
        let c = change(Status::Added, None, Some(file(0o644)));
        let p = patch(&c, &Body::Bytes(vec![]), &Body::Bytes(b"\0\x01".to_vec()));
        assert!(
            p.contains("new file mode 100644") && p.contains("Binary files /dev/null and b/src/f differ"),
            "{p}"
        );
        assert_eq!(line_counts(&Body::Bytes(vec![]), &Body::Bytes(vec![0])), None);
        let big = Body::TooLarge(MAX_TEXT_DIFF + 1);
        assert_eq!(line_counts(&Body::Bytes(vec![]), &big), None);
        let p = patch(&c, &Body::Bytes(vec![]), &big);
        assert!(p.contains("Large files /dev/null and b/src/f differ"), "{p}");
    }
}
