//! The live workspace directory: finding its root, the ignore-aware walk,
//! its stat cache, its watcher, its git HEAD, its `moat.yaml`, writing tree
//! entries into it without following links, and reusing content already on
//! its filesystem by cloning. Uses `format`, `store` and `util`.

pub mod clone;
pub mod config;
pub mod git;
pub mod ignore_files;
pub mod materialize;
pub mod protect;
pub mod reuse;
pub mod statcache;
pub mod walk;
pub mod watch;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::store::Store;

/// Canonical absolute path of a workspace directory.
pub fn workspace_root(path: &Path) -> Result<PathBuf> {
    let p = std::fs::canonicalize(path).at(path)?;
    if !p.is_dir() {
        return Err(Error::NotADirectory(p));
    }
    Ok(p)
}

/// Why `find_root` chose its directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootFound {
    /// It holds `.git` (a directory, or a file pointing at one).
    Git,
    /// It already has snapshots in the store.
    Snapshots,
    /// Neither it nor an ancestor does: the starting directory itself.
    Start,
}

impl RootFound {
    pub fn describe(self) -> &'static str {
        match self {
            RootFound::Git => "it holds .git",
            RootFound::Snapshots => "it has snapshots in the store",
            RootFound::Start => "no ancestor holds .git or has snapshots",
        }
    }
}

/// The workspace a directory belongs to, found as git finds a repository:
/// the nearest of `start` and its ancestors that holds `.git` or that
/// `has_snapshots`; else `start`. The result is canonical.
pub fn find_root(start: &Path, mut has_snapshots: impl FnMut(&Path) -> bool) -> Result<(PathBuf, RootFound)> {
    let start = workspace_root(start)?;
    for dir in start.ancestors() {
        if std::fs::symlink_metadata(dir.join(".git")).is_ok() {
            return Ok((dir.to_path_buf(), RootFound::Git));
        }
        if has_snapshots(dir) {
            return Ok((dir.to_path_buf(), RootFound::Snapshots));
        }
    }
    Ok((start, RootFound::Start))
}

/// The workspaces that have snapshots in `store` (none if it has no
/// readable snapshot directory yet).
pub fn snapshotted(store: &Store) -> HashSet<PathBuf> {
    match store.list_snapshots() {
        Ok((snaps, _)) => snaps.iter().map(|r| r.snap.workspace_path()).collect(),
        Err(_) => HashSet::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_git_or_snapshotted_ancestor_is_the_root() {
        let d = tempfile::tempdir().unwrap();
        let top = workspace_root(d.path()).unwrap();
        let deep = top.join("repo/src/a/b");
        std::fs::create_dir_all(&deep).unwrap();
        let none = |_: &Path| false;
        // No marker anywhere up to the temp dir: its ancestors may hold
        // one (the machine's own), so only check below it.
        std::fs::create_dir_all(top.join("repo/.git")).unwrap();
        assert_eq!(
            find_root(&deep, none).unwrap(),
            (top.join("repo"), RootFound::Git)
        );
        let src = top.join("repo/src");
        let known = |p: &Path| p == src;
        assert_eq!(
            find_root(&deep, known).unwrap(),
            (top.join("repo/src"), RootFound::Snapshots)
        );
        // A .git file (worktree, submodule) counts as well.
        std::fs::write(top.join("repo/src/a/.git"), "gitdir: /elsewhere\n").unwrap();
        assert_eq!(
            find_root(&deep, known).unwrap(),
            (top.join("repo/src/a"), RootFound::Git)
        );
    }
}
