//! Turning what a user types (`latest`, `latest~N`, a hex prefix) into a
//! snapshot.

use std::path::Path;

use crate::error::{Error, Result};
use crate::store::{SnapshotRecord, Store};

pub const MIN_PREFIX: usize = 6;

/// Resolves `spec`. `latest` means the newest snapshot of `workspace` when it
/// has any, else the newest in the store, newest by `(time_ns, id)`;
/// `latest~N` the one N before it in that order.
pub fn snapshot(store: &Store, spec: &str, workspace: Option<&Path>) -> Result<SnapshotRecord> {
    if let Some(rest) = spec.strip_prefix("latest") {
        let back: usize = match rest {
            "" => 0,
            r => r
                .strip_prefix('~')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| Error::BadSnapshotSpec(spec.into()))?,
        };
        let (all, _) = store.list_snapshots()?;
        let mine: Vec<&SnapshotRecord> = match workspace {
            Some(ws) => all.iter().filter(|r| r.snap.workspace_path() == ws).collect(),
            None => Vec::new(),
        };
        let pool: Vec<&SnapshotRecord> = if mine.is_empty() {
            all.iter().collect()
        } else {
            mine
        };
        // N comes from the user: any usize, so no unchecked arithmetic.
        return pool
            .len()
            .checked_sub(back)
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| pool.get(i))
            .map(|r| (*r).clone())
            .ok_or_else(|| Error::NoSuchSnapshot(spec.into()));
    }
    let prefix = spec.to_ascii_lowercase();
    if prefix.len() < MIN_PREFIX || prefix.len() > 64 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::BadSnapshotSpec(spec.into()));
    }
    let matches: Vec<_> = store
        .snapshot_ids()?
        .into_iter()
        .filter(|id| id.to_hex().starts_with(&prefix))
        .collect();
    match matches.as_slice() {
        [] => Err(Error::NoSuchSnapshot(spec.into())),
        [id] => Ok(SnapshotRecord {
            id: *id,
            snap: store.load_snapshot(id)?,
        }),
        many => Err(Error::AmbiguousSnapshot {
            prefix: spec.into(),
            candidates: many.iter().map(|i| i.short()).collect::<Vec<_>>().join(", "),
        }),
    }
}
