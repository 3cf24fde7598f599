//! Carrying out a checked rollback plan.
//!
//! Order: leftovers of a crashed run go first; then content the workspace
//! holds under other paths is cloned aside (a rename or a swap deletes or
//! overwrites its donor); then deletions (deepest first), directories that
//! become something else or vanish, writes (shallowest first; before
//! anything is written below a directory it is made a real directory,
//! `lstat`-checked, a symlink in the way replaced, never followed), mtimes
//! of entries whose content is unchanged, and last the mode and mtime of
//! every directory whose contents changed, deepest first, so nothing
//! written afterwards moves them.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{Plan, RollbackReport, under};
use crate::error::{Error, Result};
use crate::format::id::ObjectId;
use crate::format::statcache::{CachedFile, FileStat, StatCache};
use crate::format::tree::{Content, Entry};
use crate::ops::diff::{Change, Status};
use crate::store::Store;
use crate::worktree::materialize;
use crate::worktree::reuse;
use crate::worktree::statcache;

/// Carries out a plan made without `dry_run`.
pub fn apply(store: &Store, mut plan: Plan) -> Result<RollbackReport> {
    let _lock = store.lock_shared()?;
    let mut report = std::mem::take(&mut plan.report);
    apply_changes(store, &plan, &mut report)?;
    Ok(report)
}

/// One filesystem step of the plan.
enum Step<'c> {
    Remove(&'c [u8]),
    Write(&'c [u8], &'c Entry),
    MakeDir(&'c [u8]),
    Chmod(&'c [u8], &'c Entry),
}

impl Step<'_> {
    fn path(&self) -> &[u8] {
        match self {
            Step::Remove(p) | Step::MakeDir(p) | Step::Write(p, _) | Step::Chmod(p, _) => p,
        }
    }
}

/// The removals and the writes of `changes` (directories that vanish are
/// the walk's `gone_dirs`).
fn steps(changes: &[Change]) -> (Vec<Step<'_>>, Vec<Step<'_>>) {
    let (mut removes, mut writes) = (Vec::new(), Vec::new());
    for c in changes {
        let dir_path = c.path.strip_suffix(b"/");
        match (c.status, &c.old, &c.new, dir_path) {
            (Status::Added, _, _, Some(d)) => writes.push(Step::MakeDir(d)),
            (Status::Deleted, _, _, Some(_)) => {}
            (Status::Deleted, _, _, None) => removes.push(Step::Remove(&c.path)),
            (Status::Modified, Some(o), Some(n), _) if same_bytes(o, n) => {
                writes.push(Step::Chmod(&c.path, n))
            }
            (Status::Renamed, _, Some(n), _) => {
                removes.push(Step::Remove(c.from.as_deref().unwrap_or_default()));
                writes.push(Step::Write(&c.path, n));
            }
            (_, _, Some(n), _) => writes.push(Step::Write(&c.path, n)),
            _ => {}
        }
    }
    removes.sort_by(|a, b| b.path().cmp(a.path()));
    writes.sort_by(|a, b| a.path().cmp(b.path()));
    (removes, writes)
}

fn same_bytes(a: &Entry, b: &Entry) -> bool {
    matches!((&a.content, &b.content), (Content::File(x), Content::File(y)) if x == y)
}

fn abs(ws: &Path, rel: &[u8]) -> PathBuf {
    ws.join(OsStr::from_bytes(rel))
}

fn parents(rel: &[u8]) -> impl Iterator<Item = &[u8]> {
    rel.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'/')
        .map(move |(i, _)| &rel[..i])
}

fn apply_changes(store: &Store, plan: &Plan, report: &mut RollbackReport) -> Result<()> {
    let (ws, w) = (plan.ws.as_path(), &plan.walked);
    let (removes, writes) = steps(&w.changes);
    let mut cache = statcache::load(store, ws).unwrap_or_default();
    remove_stale(ws, &plan.stale)?;
    let wanted: Vec<&[ObjectId]> = writes
        .iter()
        .map(|s| match s {
            Step::Write(_, e) => file_chunks(e),
            _ => &[],
        })
        .collect();
    let holding = reuse::hold_for(store, ws, &[ws], &wanted, plan.clone)?;
    for step in &removes {
        let path = abs(ws, step.path());
        match std::fs::symlink_metadata(&path) {
            // A directory now: not what the plan removes, so left alone.
            Ok(m) if m.is_dir() => report
                .warnings
                .push(format!("kept {}: it became a directory", path.display())),
            Ok(_) => {
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                report.deleted += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
        cache.entries.remove(step.path());
        crate::util::failpoint("rollback-remove");
    }
    let leaves: HashSet<&[u8]> = writes
        .iter()
        .filter(|s| matches!(s, Step::Write(..)))
        .map(|s| s.path())
        .collect();
    for g in w.gone_dirs.iter().rev() {
        let path = abs(ws, g);
        if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        if leaves.contains(g.as_slice()) {
            // Checked by the plan: everything left in it is in a snapshot.
            materialize::clear(&path)?;
            cache.entries.retain(|k, _| !under(k, g));
            report.deleted += 1;
        } else {
            remove_dir_if_empty(&path, report);
        }
        crate::util::failpoint("rollback-remove");
    }
    for (k, step) in writes.iter().enumerate() {
        let rel = step.path();
        for p in parents(rel) {
            materialize::ensure_dir(&abs(ws, p))?;
        }
        let path = abs(ws, rel);
        match step {
            Step::MakeDir(_) => materialize::ensure_dir(&path)?,
            Step::Chmod(_, e) => {
                chmod_file(&path, e)?;
                update_cache(&mut cache, rel, e, &path);
            }
            Step::Write(_, e) => match &e.content {
                Content::File(chunks) => {
                    let stat = materialize::write_file(store, &path, e, chunks, true, holding.get(k))?;
                    cache.entries.insert(
                        rel.to_vec(),
                        CachedFile {
                            stat,
                            chunks: chunks.clone(),
                        },
                    );
                }
                Content::Symlink(_) => materialize::write_symlink(&path, e, true)?,
                Content::Dir(_) => materialize::ensure_dir(&path)?,
            },
            Step::Remove(_) => {}
        }
        report.written += 1;
        crate::util::failpoint("rollback-step");
    }
    for (rel, e) in &w.touched {
        let path = abs(ws, rel);
        let on_disk = std::fs::symlink_metadata(&path).map(|m| m.file_type());
        let fits = match &e.content {
            Content::File(_) => on_disk.is_ok_and(|t| t.is_file()),
            Content::Symlink(_) => on_disk.is_ok_and(|t| t.is_symlink()),
            Content::Dir(_) => false,
        };
        if fits {
            materialize::set_mtime_nofollow(&path, e.mtime_ns)?;
            update_cache(&mut cache, rel, e, &path);
        }
    }
    report.clones = holding.stats.clone();
    drop(holding);
    for (rel, e) in w.dirs.iter().rev() {
        let path = abs(ws, rel);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            materialize::set_dir_meta(&path, e)?;
        }
    }
    let StatCache {
        taken_ns, entries, ..
    } = cache;
    // The workspace is rolled back by now; the cache only saves the next
    // snapshot some reading, so failing to save it is a warning (as it is
    // for `snapshot`), not a failed rollback.
    if let Err(e) = statcache::save(store, ws, taken_ns, entries.into_iter().collect()) {
        report
            .warnings
            .push(format!("could not save the stat cache: {e}"));
    }
    Ok(())
}

/// Removes the temp entries a crashed rollback left (the safety
/// snapshot's walk found them): temp siblings, and the holding dir.
fn remove_stale(ws: &Path, stale: &[Vec<u8>]) -> Result<()> {
    for rel in stale {
        let path = abs(ws, rel);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() && rel.as_slice() != reuse::HOLD_DIR.as_bytes() => {}
            Ok(_) => materialize::clear(&path)?,
            Err(_) => {}
        }
    }
    Ok(())
}

fn file_chunks(e: &Entry) -> &[ObjectId] {
    match &e.content {
        Content::File(c) => c,
        _ => &[],
    }
}

/// Records a file's new stat after its mode or mtime was set.
fn update_cache(cache: &mut StatCache, rel: &[u8], e: &Entry, path: &Path) {
    if let (Content::File(chunks), Ok(m)) = (&e.content, std::fs::symlink_metadata(path)) {
        cache.entries.insert(
            rel.to_vec(),
            CachedFile {
                stat: FileStat::of(&m),
                chunks: chunks.clone(),
            },
        );
    }
}

fn chmod_file(path: &Path, e: &Entry) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let m = std::fs::symlink_metadata(path).map_err(|err| Error::io(path, err))?;
    if !m.is_file() {
        return Err(Error::io(path, std::io::Error::other("expected a regular file")));
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(e.mode & 0o1777))
        .map_err(|err| Error::io(path, err))?;
    materialize::set_mtime_nofollow(path, e.mtime_ns)
}

fn remove_dir_if_empty(path: &Path, report: &mut RollbackReport) {
    match std::fs::remove_dir(path) {
        Ok(()) => report.deleted += 1,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) => report.warnings.push(format!(
            "kept {}: it still holds ignored or excluded files",
            path.display()
        )),
    }
}
