//! `moat log [PATH]`: the snapshots of a workspace in which PATH changed,
//! newest first — like `git log -- PATH`. Each step diffs consecutive
//! snapshots along PATH only, skipping equal subtrees by id.

use std::path::Path;

use crate::error::Result;
use crate::ops::diff::{self, Change, Trees};
use crate::store::{SnapshotRecord, Store};

pub struct LogEntry {
    pub record: SnapshotRecord,
    pub changes: Vec<Change>,
}

pub fn log(store: &Store, workspace: &Path, path: &[u8]) -> Result<Vec<LogEntry>> {
    let (all, _) = store.list_snapshots()?;
    let mine: Vec<SnapshotRecord> = all
        .into_iter()
        .filter(|r| r.snap.workspace_path() == workspace)
        .collect();
    let trees = Trees::new(store);
    let paths: Vec<Vec<u8>> = if crate::format::path::components(path).is_empty() {
        Vec::new()
    } else {
        vec![path.to_vec()]
    };
    let mut out = Vec::new();
    let mut prev = None;
    for r in mine {
        let changes = diff::diff(&trees, prev.as_ref(), Some(&r.snap.root), &paths)?;
        prev = Some(r.snap.root);
        if !changes.is_empty() {
            out.push(LogEntry { record: r, changes });
        }
    }
    out.reverse();
    Ok(out)
}
