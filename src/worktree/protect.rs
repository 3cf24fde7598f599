//! moat's own directories (the store, `$MOAT_HOME`) inside the directories
//! it captures and writes: they are never captured, restored into or
//! rolled back, and a workspace or restore target that is one of them, or
//! lies inside one, is refused.
//!
//! Invariant: directories are compared by device and inode, not by path,
//! so a symlink, a bind mount or another spelling of the path reaches the
//! same answer. A protected directory that does not exist protects nothing
//! (there is nothing to damage).

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::Store;

#[derive(Clone, Debug)]
struct Own {
    /// Canonical path, for messages and to find it inside a tree by path.
    path: PathBuf,
    dev: u64,
    ino: u64,
}

/// The directories a walk or a write must leave alone.
#[derive(Clone, Debug, Default)]
pub struct Protected {
    dirs: Vec<Own>,
}

impl Protected {
    /// The store's root and `$MOAT_HOME` (`Store::own_dirs`).
    pub fn of(store: &Store) -> Self {
        Self::from_paths(&store.own_dirs())
    }

    /// The existing directories among `paths`.
    pub fn from_paths(paths: &[PathBuf]) -> Self {
        let dirs = paths
            .iter()
            .filter_map(|p| {
                let path = std::fs::canonicalize(p).ok()?;
                let m = std::fs::symlink_metadata(&path).ok()?;
                m.is_dir().then(|| Own {
                    path,
                    dev: m.dev(),
                    ino: m.ino(),
                })
            })
            .collect();
        Protected { dirs }
    }

    /// The (device, inode) of each protected directory.
    pub fn ids(&self) -> Vec<(u64, u64)> {
        self.dirs.iter().map(|d| (d.dev, d.ino)).collect()
    }

    /// The protected directory whose `lstat` is `m`, if it is one.
    pub fn which(&self, m: &std::fs::Metadata) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|d| m.is_dir() && d.dev == m.dev() && d.ino == m.ino())
            .map(|d| d.path.as_path())
    }

    /// The protected directory `path` is (not following a final symlink).
    pub fn at(&self, path: &Path) -> Option<&Path> {
        std::fs::symlink_metadata(path).ok().and_then(|m| self.which(&m))
    }

    /// Refuses `dir` as a `role` ("workspace", "restore target") when it is
    /// a protected directory or lies inside one. A `dir` that does not
    /// exist yet is judged by its nearest existing ancestor.
    pub fn refuse_inside(&self, dir: &Path, role: &str) -> Result<()> {
        let mut probe = dir;
        let canon = loop {
            match std::fs::canonicalize(probe) {
                Ok(c) => break c,
                Err(_) => match probe.parent() {
                    Some(p) => probe = p,
                    None => return Ok(()),
                },
            }
        };
        for a in canon.ancestors() {
            if let Some(own) = self.at(a) {
                let what = if a == canon && probe == dir {
                    "is"
                } else {
                    "is inside"
                };
                return Err(Error::OwnDir {
                    path: dir.to_path_buf(),
                    detail: format!(
                        "{what} {}, moat's own directory (its store or $MOAT_HOME); it cannot be a {role}",
                        own.display()
                    ),
                });
            }
        }
        Ok(())
    }

    /// The protected directories below `root` (canonical), as `/`-separated
    /// paths relative to it, found by path (bind mounts are found by `which`
    /// as writers reach them).
    pub fn inside(&self, root: &Path) -> Vec<Vec<u8>> {
        self.dirs
            .iter()
            .filter_map(|d| d.path.strip_prefix(root).ok())
            .filter(|rel| !rel.as_os_str().is_empty())
            .map(|rel| rel.as_os_str().as_bytes().to_vec())
            .collect()
    }
}

/// The error for an entry of a snapshot that would land on `own`.
pub fn refused_write(path: &Path, own: &Path) -> Error {
    Error::OwnDir {
        path: path.to_path_buf(),
        detail: format!(
            "is {}, moat's own directory (its store or $MOAT_HOME); nothing is restored or rolled back into it",
            own.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_protected_dirs_by_identity_and_refuses_roots_inside() {
        let d = tempfile::tempdir().unwrap();
        let store = d.path().join("ws/store");
        std::fs::create_dir_all(store.join("packs")).unwrap();
        std::os::unix::fs::symlink(&store, d.path().join("link")).unwrap();
        let p = Protected::from_paths(&[d.path().join("link"), d.path().join("missing")]);
        assert_eq!(p.ids().len(), 1);
        assert!(p.at(&store).is_some());
        assert!(p.at(&d.path().join("link")).is_none(), "a symlink is not the dir");
        let ws = std::fs::canonicalize(d.path().join("ws")).unwrap();
        assert_eq!(p.inside(&ws), vec![b"store".to_vec()]);
        assert!(p.refuse_inside(&ws, "workspace").is_ok());
        for bad in [
            store.clone(),
            store.join("packs"),
            store.join("new/dir"),
            d.path().join("link"),
        ] {
            let err = p.refuse_inside(&bad, "workspace").unwrap_err().to_string();
            assert!(err.contains("store") && err.contains("workspace"), "{err}");
        }
    }
}
