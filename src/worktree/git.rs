//! Reads a workspace's git HEAD (commit and branch) straight from `.git`,
//! without running git: a snapshot records which commit it sits on. Asks
//! git itself which files it tracks (the growth guard's rare exact count).
//!
//! `.git` is workspace content anyone may have written: only regular files
//! are read (a FIFO there never blocks a snapshot), each up to a bound, a
//! ref name never climbs out of the git dir, and a commit is hex or
//! nothing.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::format::snapshot::GitInfo;

/// The git dir of `workspace`: `.git` itself, or where a `.git` file
/// (worktree, submodule) points.
fn git_dir(workspace: &Path) -> Option<PathBuf> {
    let dot = workspace.join(".git");
    let meta = fs::symlink_metadata(&dot).ok()?;
    if meta.is_dir() {
        return Some(dot);
    }
    let text = read_text(&dot, SMALL)?;
    let target = text.strip_prefix("gitdir:")?.trim();
    Some(workspace.join(target))
}

/// Bound of `.git`, `HEAD`, `commondir` and loose refs (a few bytes each).
const SMALL: u64 = 64 << 10;
/// Bound of `packed-refs` (about 100 bytes per ref).
const PACKED: u64 = 256 << 20;

/// The text of the regular file `path` if it holds at most `limit` bytes.
fn read_text(path: &Path, limit: u64) -> Option<String> {
    let (file, _) = crate::util::fs::open_regular(path, true).ok()?;
    let data = crate::util::fs::read_at_most(file, limit).ok()??;
    String::from_utf8(data).ok()
}

/// A commit id as git writes one (40 or 64 hex digits).
fn commit_id(s: &str) -> Option<String> {
    let ok = matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| s.to_string())
}

fn read_ref(git_dir: &Path, name: &str) -> Option<String> {
    if name.starts_with('/') || name.split('/').any(|c| c == ".." || c.is_empty()) {
        return None;
    }
    let common = read_text(&git_dir.join("commondir"), SMALL)
        .map(|c| git_dir.join(c.trim()))
        .unwrap_or_else(|| git_dir.to_path_buf());
    for dir in [git_dir, common.as_path()] {
        if let Some(s) = read_text(&dir.join(name), SMALL) {
            return commit_id(s.trim());
        }
    }
    let packed = read_text(&common.join("packed-refs"), PACKED)?;
    packed.lines().find_map(|l| {
        let (hash, r) = l.split_once(' ')?;
        (r == name).then(|| commit_id(hash)).flatten()
    })
}

/// HEAD of the repository at `workspace`, if it is one. An unborn branch
/// has no commit and yields `None`.
pub fn head(workspace: &Path) -> Option<GitInfo> {
    let dir = git_dir(workspace)?;
    let head = read_text(&dir.join("HEAD"), SMALL)?;
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
            commit: commit_id(head)?,
            branch: None,
        }),
    }
}

/// The files git tracks at `workspace` (paths relative to it), from `git
/// ls-files -z`; `None` when it is not in a repository or git cannot say.
pub fn tracked_files(workspace: &Path) -> Option<HashSet<Vec<u8>>> {
    let out = Command::new("git")
        .arg("-C")
        .arg(workspace)
        .args(["ls-files", "-z"])
        .env("GIT_OPTIONAL_LOCKS", "0")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(
        out.stdout
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(<[u8]>::to_vec)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracked_files_are_the_index_of_the_repository() {
        let d = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let ok = Command::new("git")
                .arg("-C")
                .arg(d.path())
                .args(args)
                .stdout(Stdio::null())
                .status()
                .unwrap()
                .success();
            assert!(ok, "git {args:?}");
        };
        assert_eq!(tracked_files(d.path()), None, "not a repository");
        git(&["init", "-q"]);
        fs::create_dir(d.path().join("src")).unwrap();
        fs::write(d.path().join("src/a b.txt"), "a").unwrap();
        fs::write(d.path().join("untracked"), "u").unwrap();
        git(&["add", "src"]);
        let want: HashSet<Vec<u8>> = [b"src/a b.txt".to_vec()].into();
        assert_eq!(tracked_files(d.path()), Some(want));
    }

    #[test]
    fn reads_loose_packed_and_detached() {
        let (a, b) = ("a".repeat(40), "b".repeat(64));
        let d = tempfile::tempdir().unwrap();
        let g = d.path().join(".git");
        fs::create_dir_all(g.join("refs/heads")).unwrap();
        fs::write(g.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        assert_eq!(head(d.path()), None, "unborn branch");
        fs::write(
            g.join("packed-refs"),
            format!("# pack-refs\n{a} refs/heads/main\n"),
        )
        .unwrap();
        assert_eq!(head(d.path()).unwrap().commit, a);
        fs::write(g.join("refs/heads/main"), format!("{b}\n")).unwrap();
        let h = head(d.path()).unwrap();
        assert_eq!(
            (h.commit.as_str(), h.branch.as_deref()),
            (b.as_str(), Some("main"))
        );
        fs::write(g.join("HEAD"), format!("{a}\n")).unwrap();
        assert_eq!(head(d.path()).unwrap().branch, None);
    }

    #[test]
    fn hostile_git_dirs_yield_nothing() {
        let d = tempfile::tempdir().unwrap();
        let g = d.path().join(".git");
        fs::create_dir_all(&g).unwrap();
        fs::write(d.path().join("secret"), "c".repeat(40)).unwrap();
        for head_text in [
            "ref: ../secret",
            "ref: /etc/hostname",
            "not-a-commit",
            "ref: refs//x",
        ] {
            fs::write(g.join("HEAD"), head_text).unwrap();
            assert_eq!(head(d.path()), None, "{head_text}");
        }
        fs::remove_file(g.join("HEAD")).unwrap();
        crate::util::testing::mkfifo(&g.join("HEAD"));
        assert_eq!(
            crate::util::testing::within(20, {
                let ws = d.path().to_path_buf();
                move || head(&ws)
            }),
            None
        );
        fs::remove_file(g.join("HEAD")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", g.join("HEAD")).unwrap();
        assert_eq!(head(d.path()), None);
    }
}
