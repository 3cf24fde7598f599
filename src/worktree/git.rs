//! Reads a workspace's git HEAD (commit and branch) straight from `.git`,
//! without running git: a snapshot records which commit it sits on.

use std::fs;
use std::path::{Path, PathBuf};

use crate::format::snapshot::GitInfo;

/// The git dir of `workspace`: `.git` itself, or where a `.git` file
/// (worktree, submodule) points.
fn git_dir(workspace: &Path) -> Option<PathBuf> {
    let dot = workspace.join(".git");
    let meta = fs::symlink_metadata(&dot).ok()?;
    if meta.is_dir() {
        return Some(dot);
    }
    let text = fs::read_to_string(&dot).ok()?;
    let target = text.strip_prefix("gitdir:")?.trim();
    Some(workspace.join(target))
}

fn read_ref(git_dir: &Path, name: &str) -> Option<String> {
    let common = fs::read_to_string(git_dir.join("commondir"))
        .ok()
        .map(|c| git_dir.join(c.trim()))
        .unwrap_or_else(|| git_dir.to_path_buf());
    for dir in [git_dir, common.as_path()] {
        if let Ok(s) = fs::read_to_string(dir.join(name)) {
            return Some(s.trim().to_string());
        }
    }
    let packed = fs::read_to_string(common.join("packed-refs")).ok()?;
    packed.lines().find_map(|l| {
        let (hash, r) = l.split_once(' ')?;
        (r == name).then(|| hash.to_string())
    })
}

/// HEAD of the repository at `workspace`, if it is one. An unborn branch
/// has no commit and yields `None`.
pub fn head(workspace: &Path) -> Option<GitInfo> {
    let dir = git_dir(workspace)?;
    let head = fs::read_to_string(dir.join("HEAD")).ok()?;
    let head = head.trim();
    match head.strip_prefix("ref:") {
        Some(r) => {
            let r = r.trim();
            Some(GitInfo {
                commit: read_ref(&dir, r)?,
                branch: Some(r.strip_prefix("refs/heads/").unwrap_or(r).to_string()),
            })
        }
        None => Some(GitInfo {
            commit: head.to_string(),
            branch: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_loose_packed_and_detached() {
        let d = tempfile::tempdir().unwrap();
        let g = d.path().join(".git");
        fs::create_dir_all(g.join("refs/heads")).unwrap();
        fs::write(g.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        assert_eq!(head(d.path()), None, "unborn branch");
        fs::write(g.join("packed-refs"), "# pack-refs\nabc123 refs/heads/main\n").unwrap();
        assert_eq!(head(d.path()).unwrap().commit, "abc123");
        fs::write(g.join("refs/heads/main"), "def456\n").unwrap();
        let h = head(d.path()).unwrap();
        assert_eq!((h.commit.as_str(), h.branch.as_deref()), ("def456", Some("main")));
        fs::write(g.join("HEAD"), "0123abcd\n").unwrap();
        assert_eq!(head(d.path()).unwrap().branch, None);
    }
}
