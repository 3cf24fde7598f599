//! What a rollback plan would destroy that its safety snapshot does not
//! hold: entries on disk at the paths the plan replaces, or inside the
//! directories it replaces with a file, that the snapshot left out
//! (ignored, excluded, unreadable, special files, `.git`).
//!
//! Invariants: only `lstat`/`readdir` are used, nothing is followed; an
//! entry counts as held when the snapshot has an entry of the same kind
//! (directory or not) at its path; moat's own temp names are its own
//! leftovers and never count. Reaching one of moat's own directories (the
//! store, `$MOAT_HOME`, by device and inode) is an error: nothing is
//! rolled back into them.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{IoContext, Result};
use crate::format::id::ObjectId;
use crate::format::tree::{Content, Tree};
use crate::ops::trees::{Trees, join};
use crate::worktree::protect::{self, Protected};

/// Finds entries of one tree by path, reading each directory's tree once.
pub struct Lookup<'t, 'a> {
    trees: &'t Trees<'a>,
    root: ObjectId,
    dirs: HashMap<Vec<u8>, Option<Tree>>,
}

impl<'t, 'a> Lookup<'t, 'a> {
    pub fn new(trees: &'t Trees<'a>, root: ObjectId) -> Self {
        Lookup {
            trees,
            root,
            dirs: HashMap::new(),
        }
    }

    /// The tree of the directory at `rel`, if the snapshot has one there.
    fn dir(&mut self, rel: &[u8]) -> Result<Option<&Tree>> {
        if !self.dirs.contains_key(rel) {
            let id = if rel.is_empty() {
                Some(self.root)
            } else {
                let (parent, name) = split(rel);
                match self.dir(parent)?.and_then(|t| t.find(name)).map(|e| &e.content) {
                    Some(Content::Dir(id)) => Some(*id),
                    _ => None,
                }
            };
            let tree = id.map(|id| self.trees.tree(&id)).transpose()?;
            self.dirs.insert(rel.to_vec(), tree);
        }
        Ok(self.dirs.get(rel).and_then(|t| t.as_ref()))
    }

    /// Whether the snapshot has a directory (`Some(true)`), another entry
    /// (`Some(false)`) or nothing (`None`) at `rel`.
    pub fn kind(&mut self, rel: &[u8]) -> Result<Option<bool>> {
        let (parent, name) = split(rel);
        Ok(self
            .dir(parent)?
            .and_then(|t| t.find(name))
            .map(|e| matches!(e.content, Content::Dir(_))))
    }
}

fn split(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (b"", rel),
    }
}

/// What the plan does at a path.
pub enum Use {
    /// Needs a directory there (replacing a non-directory in the way).
    Dir,
    /// Puts a file or symlink there (replacing whatever is in the way,
    /// directories with everything in them).
    Leaf,
}

/// The paths below `ws` the plan would destroy although the snapshot
/// `held` (the current state) does not have them; each path stands for
/// everything below it. `uses` are the plan's paths and what it does there.
pub fn uncovered(
    held: &mut Lookup,
    ws: &Path,
    uses: &[(Vec<u8>, Use)],
    protected: &Protected,
) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for (rel, u) in uses {
        let path = ws.join(OsStr::from_bytes(rel));
        let Ok(m) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if let Some(own) = protected.which(&m) {
            return Err(protect::refused_write(&path, own));
        }
        let on_disk_dir = m.is_dir();
        match (u, held.kind(rel)?) {
            (Use::Dir, _) if on_disk_dir => {}
            // A leaf of the snapshot in the way: the plan removes it as a change.
            (_, Some(false)) if !on_disk_dir => {}
            // A directory of the snapshot replaced by a leaf: what it holds
            // beyond the snapshot is lost with it.
            (Use::Leaf, Some(true)) if on_disk_dir => below(held, ws, rel, protected, &mut out)?,
            _ => out.push(rel.clone()),
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The entries below the directory `rel` (held as a directory) that the
/// snapshot does not hold.
fn below(
    held: &mut Lookup,
    ws: &Path,
    rel: &[u8],
    protected: &Protected,
    out: &mut Vec<Vec<u8>>,
) -> Result<()> {
    let mut stack = vec![rel.to_vec()];
    while let Some(dir) = stack.pop() {
        let path = ws.join(OsStr::from_bytes(&dir));
        for ent in std::fs::read_dir(&path).at(&path)? {
            let ent = ent.at(&path)?;
            let name = ent.file_name();
            if name.as_bytes().starts_with(crate::format::tree::TEMP_PREFIX) {
                continue;
            }
            let child = join(&dir, name.as_bytes());
            let m = std::fs::symlink_metadata(ent.path()).at(ent.path())?;
            if let Some(own) = protected.which(&m) {
                return Err(protect::refused_write(&ent.path(), own));
            }
            match held.kind(&child)? {
                Some(true) if m.is_dir() => stack.push(child),
                Some(false) if !m.is_dir() => {}
                _ => out.push(child),
            }
        }
    }
    Ok(())
}
