//! gc's mark phase: one bit per index entry (per copy of an object), set
//! for the copy gc keeps of every object a kept snapshot reaches. A copy
//! two index files list (same pack and offset) is one copy: its second
//! entry stays unmarked and drops out of gc's new index.
//!
//! Invariants: an object with one copy keeps it (a rewrite verifies it
//! later). Of an object with several copies (two writers stored it), the
//! first copy that decodes and hashes to its id is kept and the others are
//! dead; when no copy verifies, every copy is kept (gc deletes nothing of
//! it) and the object is reported. A missing object is an error: gc
//! deletes nothing while a kept snapshot is incomplete.

use crate::error::{Error, Result};
use crate::format::id::ObjectId;
use crate::format::pack::ObjectKind;
use crate::format::tree::Content;
use crate::store::index::Index;
use crate::store::{SnapshotRecord, Store};
use crate::util::progress::Progress;

/// The mark: which copies live, and objects with no good copy.
pub struct Marks {
    pub live: Vec<u64>,
    pub problems: Vec<String>,
}

pub fn is_set(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1u64 << (i % 64)) != 0
}

fn set(bits: &mut [u64], i: usize) {
    bits[i / 64] |= 1u64 << (i % 64);
}

/// Marks what the kept snapshots reach.
pub fn mark(
    store: &Store,
    index: &Index,
    kept: &[&SnapshotRecord],
    progress: &dyn Progress,
) -> Result<Marks> {
    let mut m = Marks {
        live: vec![0u64; index.len().div_ceil(64)],
        problems: Vec::new(),
    };
    for s in kept {
        let mut stack = vec![s.snap.root];
        while let Some(id) = stack.pop() {
            if !m.keep(store, index, &id, ObjectKind::Tree, s)? {
                continue;
            }
            for e in store.read_tree(&id)?.entries {
                match e.content {
                    Content::Dir(sub) => stack.push(sub),
                    Content::File(chunks) => {
                        for c in chunks {
                            m.keep(store, index, &c, ObjectKind::Chunk, s)?;
                        }
                    }
                    Content::Symlink(_) => {}
                }
            }
        }
        progress.inc(1);
    }
    Ok(m)
}

impl Marks {
    /// Marks the copy of `id` to keep; false when it was marked already.
    fn keep(
        &mut self,
        store: &Store,
        index: &Index,
        id: &ObjectId,
        kind: ObjectKind,
        s: &SnapshotRecord,
    ) -> Result<bool> {
        let copies = index.copies_at(id);
        if copies.is_empty() {
            return Err(Error::MissingObject {
                id: *id,
                by: format!(
                    "kept snapshot {}; gc deletes nothing until `moat check` passes",
                    s.id.short()
                ),
            });
        }
        if copies.iter().any(|(i, _)| is_set(&self.live, *i)) {
            return Ok(false);
        }
        if let [(i, _)] = copies[..] {
            set(&mut self.live, i);
            return Ok(true);
        }
        let good = copies
            .iter()
            .find(|(_, e)| e.kind == kind && store.read_copy(e, index).is_ok());
        match good {
            Some((i, _)) => set(&mut self.live, *i),
            None => {
                for (i, _) in &copies {
                    set(&mut self.live, *i);
                }
                self.problems.push(format!(
                    "{} {id}: no copy verifies ({} copies); gc kept them all; run `moat check --read-data`",
                    kind.name(),
                    copies.len()
                ));
            }
        }
        Ok(true)
    }
}
