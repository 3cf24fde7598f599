//! The live workspace directory: the ignore-aware walk, its stat cache, its
//! watcher, its git HEAD, its `moat.yaml`, writing tree entries into it
//! without following links, and reusing content already on its filesystem
//! by cloning. Uses `format`, `store` and `util`.

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

use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// Canonical absolute path of a workspace directory.
pub fn workspace_root(path: &Path) -> Result<PathBuf> {
    let p = std::fs::canonicalize(path).at(path)?;
    if !p.is_dir() {
        return Err(Error::NotADirectory(p));
    }
    Ok(p)
}
