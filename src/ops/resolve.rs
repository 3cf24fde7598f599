//! Turning what a user types (`latest`, `latest~N`, a hex prefix) into a
//! snapshot.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::{SnapshotRecord, Store};
use crate::worktree::RootFound;

pub const MIN_PREFIX: usize = 6;

/// Resolves `spec` (store-format.md, "Snapshot files"). `latest` means the
/// newest readable snapshot of `workspace` when it has any, else the newest
/// in the store, newest by `(time_ns, id)`; `latest~N` (N decimal digits)
/// the one N before it in that order.
pub fn snapshot(store: &Store, spec: &str, workspace: Option<&Path>) -> Result<SnapshotRecord> {
    if let Some(rest) = spec.strip_prefix("latest") {
        let back: usize = match rest {
            "" => 0,
            r => r
                .strip_prefix('~')
                // Decimal digits only (`parse` would also take `+3`).
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
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

/// The snapshots a command with an optional WORKSPACE and `--all` acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every workspace (`--all`).
    All,
    /// One workspace; `implicit` when it is the current directory because
    /// none was named.
    Workspace { path: PathBuf, implicit: bool },
}

impl Scope {
    pub fn workspace(&self) -> Option<&Path> {
        match self {
            Scope::All => None,
            Scope::Workspace { path, .. } => Some(path),
        }
    }
}

/// The workspace a command without one acts on: the root of the current
/// directory's, found as `moat snapshot` finds it (`worktree::find_root`:
/// the nearest ancestor holding `.git` or with snapshots), and why.
pub fn implicit_workspace(store: &Store) -> Result<(PathBuf, RootFound)> {
    let mut known = None;
    crate::worktree::find_root(Path::new("."), |dir| {
        known
            .get_or_insert_with(|| crate::worktree::snapshotted(store))
            .contains(dir)
    })
}

/// Decides the scope of a command: `--all`, the named workspace, else the
/// current directory's (`implicit_workspace`) — which must then have
/// snapshots, or the command would act on nothing while seeming to
/// succeed (`hint` says how to name one, e.g. "name a WORKSPACE or pass
/// --all").
pub fn scope(store: &Store, named: Option<&Path>, all: bool, hint: &'static str) -> Result<Scope> {
    if all {
        return Ok(Scope::All);
    }
    let Some(named) = named else {
        let (path, _) = implicit_workspace(store)?;
        let (snaps, _) = store.list_snapshots()?;
        if !snaps.iter().any(|r| r.snap.workspace_path() == path) {
            return Err(Error::NoSnapshotsOf { path, hint });
        }
        return Ok(Scope::Workspace { path, implicit: true });
    };
    let path = crate::worktree::workspace_root(named)?;
    Ok(Scope::Workspace {
        path,
        implicit: false,
    })
}
