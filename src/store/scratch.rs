//! Private scratch directories on this machine: a capture clones the files
//! it stages into one (`capture::stage`), on the store's filesystem so
//! that clones work where store and workspace share it.
//!
//! Invariant: a scratch dir is `<scratch>/<pid>-<ns>-<n>.<what>.tmp/`, a
//! temp name (`util::temp_name`), so a crashed process's dir is found and
//! removed by `cleanup` (only once its pid is dead); a live one removes
//! its dir, and everything in it, when dropped.

use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// A new, empty directory in `parent`.
    pub fn create(parent: &Path, what: &str) -> Result<Self> {
        let path = parent.join(crate::util::temp_name(what));
        std::fs::create_dir(&path).at(&path)?;
        Ok(ScratchDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // remove_dir_all does not follow symlinks.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
