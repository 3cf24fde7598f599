//! The growth guard: the classic accident is a new `node_modules/` or
//! `target/` that is not ignored. Checked after the walk, before any file
//! is read or staged, from the sizes of new files and the growth of
//! changed ones.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::worktree::walk::Node;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Guard {
    pub max_new_bytes: u64,
    pub max_new_files: u64,
    /// Refuse the snapshot (automatic ones); otherwise only warn (manual).
    pub enforce: bool,
}

/// Applies the growth guard to the files about to be read: an error when
/// enforced, else a warning to show.
pub fn check_growth(
    g: &Guard,
    nodes: &[Node],
    to_read: &[usize],
    old_size: &dyn Fn(usize) -> Option<u64>,
) -> Result<Option<String>> {
    let mut files = 0u64;
    let mut bytes = 0u64;
    let mut by_dir: HashMap<&[u8], (u64, u64)> = HashMap::new();
    for &i in to_read {
        let n = &nodes[i];
        let grown = match old_size(i) {
            Some(old) => n.stat.size.saturating_sub(old),
            None => {
                files += 1;
                n.stat.size
            }
        };
        bytes += grown;
        // Group by the top-level entry: `node_modules/`, `target/`.
        let cut = n
            .rel
            .iter()
            .position(|b| *b == b'/')
            .map_or(n.rel.len(), |k| k + 1);
        let e = by_dir.entry(&n.rel[..cut]).or_default();
        e.0 += 1;
        e.1 += grown;
    }
    if files <= g.max_new_files && bytes <= g.max_new_bytes {
        return Ok(None);
    }
    let mut top: Vec<(&[u8], (u64, u64))> = by_dir.into_iter().collect();
    top.sort_by_key(|(_, (files, bytes))| std::cmp::Reverse((*bytes, *files)));
    let names: Vec<String> = top
        .iter()
        .take(3)
        .map(|(p, (f, b))| format!("{} ({f} files, {b} bytes)", String::from_utf8_lossy(p)))
        .collect();
    let msg = format!(
        "snapshot would add {files} new files and {bytes} bytes (limits {} files, {} bytes); biggest: {}. \
         Add them to .gitignore or snapshots.exclude.additional in moat.yaml if they are build output",
        g.max_new_files,
        g.max_new_bytes,
        names.join(", ")
    );
    if g.enforce {
        Err(Error::GrowthGuard(msg))
    } else {
        Ok(Some(msg))
    }
}
