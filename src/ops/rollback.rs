//! `moat rollback`: make a workspace's tracked state exactly a snapshot's,
//! with the fewest writes, after taking a safety snapshot that undoes it.
//!
//! Invariants: only paths in the diff between the current state and the
//! snapshot are touched, so `.git/`, ignored and excluded paths are never
//! written. Deletions run first (deepest first), then writes (shallowest
//! first); before anything is written below a directory, that directory is
//! made a real directory (`lstat`; a symlink in the way is replaced, never
//! followed). Files and links are written to a sibling temp and renamed over,
//! so a crash leaves each path old or new, and a re-run completes the job.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::capture::{self, CaptureOptions, Outcome};
use crate::error::{Error, Result};
use crate::format::id::ObjectId;
use crate::format::snapshot::Trigger;
use crate::format::statcache::{CachedFile, StatCache};
use crate::format::tree::{Content, Entry};
use crate::ops::diff::{self, Change, Status, Trees};
use crate::store::{SnapshotRecord, Store};
use crate::util::progress::Progress;
use crate::worktree::materialize;
use crate::worktree::reuse::{self, CloneStats};
use crate::worktree::statcache;
use crate::worktree::walk::WalkOptions;

#[derive(Clone, Debug)]
pub struct RollbackOptions {
    pub walk: WalkOptions,
    pub dry_run: bool,
    /// Allow a snapshot of another workspace.
    pub force: bool,
    /// Roll back only these paths (empty: everything).
    pub paths: Vec<Vec<u8>>,
    /// Clone content the workspace already holds under another path
    /// instead of decompressing it (`--no-clone` turns it off).
    pub clone: bool,
}

impl Default for RollbackOptions {
    fn default() -> Self {
        RollbackOptions {
            walk: WalkOptions::default(),
            dry_run: false,
            force: false,
            paths: Vec::new(),
            clone: true,
        }
    }
}

#[derive(Debug, Default)]
pub struct RollbackReport {
    /// The safety snapshot (None for a dry run).
    pub safety: Option<ObjectId>,
    /// The plan: changes from the current state to the snapshot.
    pub changes: Vec<Change>,
    pub written: u64,
    pub deleted: u64,
    pub warnings: Vec<String>,
    /// Files cloned from content the workspace already held.
    pub clones: CloneStats,
}

/// What a rollback will do: computed (after the safety snapshot) before
/// anything in the workspace changes.
pub struct Plan<'a> {
    ws: PathBuf,
    target: ObjectId,
    trees: Trees<'a>,
    clone: bool,
    pub report: RollbackReport,
}

/// Takes the safety snapshot (unless `dry_run`) and computes the changes
/// from the workspace's current state to `target`.
pub fn plan<'a>(
    store: &'a Store,
    target: &SnapshotRecord,
    workspace: &Path,
    opts: &RollbackOptions,
    progress: &dyn Progress,
) -> Result<Plan<'a>> {
    let ws = crate::worktree::workspace_root(workspace)?;
    if target.snap.workspace_path() != ws && !opts.force {
        return Err(Error::OtherWorkspace {
            snapshot: target.id.short(),
            snap_ws: target.snap.workspace_path(),
            ws,
        });
    }
    let mut report = RollbackReport::default();
    let mut trees = Trees::new(store);
    let current = if opts.dry_run {
        let (scan, mem) = capture::scan_dry(store, &ws, &opts.walk, progress)?;
        trees.mem = mem;
        report.warnings.extend(scan.warnings);
        scan.root
    } else {
        let safety = capture::capture(
            store,
            &ws,
            &CaptureOptions {
                walk: opts.walk.clone(),
                trigger: Trigger::Safety,
                message: format!("before rollback to {}", target.id.short()),
                ..CaptureOptions::default()
            },
            progress,
        )?;
        report.warnings.extend(safety.warnings);
        report.safety = Some(match safety.outcome {
            Outcome::Written(id) | Outcome::Unchanged(id) => id,
        });
        safety.snapshot.root
    };
    report.changes = diff::diff(&trees, Some(&current), Some(&target.snap.root), &opts.paths)?;
    Ok(Plan {
        ws,
        target: target.snap.root,
        trees,
        clone: opts.clone,
        report,
    })
}

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
    RemoveEmptyDir(&'c [u8]),
    Write(&'c [u8], &'c Entry),
    MakeDir(&'c [u8]),
    Chmod(&'c [u8], &'c Entry),
}

fn steps(changes: &[Change]) -> (Vec<Step<'_>>, Vec<Step<'_>>) {
    let (mut removes, mut writes) = (Vec::new(), Vec::new());
    for c in changes {
        let dir_path = c.path.strip_suffix(b"/");
        match (c.status, &c.old, &c.new, dir_path) {
            (Status::Added, _, _, Some(d)) => writes.push(Step::MakeDir(d)),
            (Status::Deleted, _, _, Some(d)) => removes.push(Step::RemoveEmptyDir(d)),
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
    let path = |s: &Step| match s {
        Step::Remove(p) | Step::RemoveEmptyDir(p) | Step::MakeDir(p) => p.to_vec(),
        Step::Write(p, _) | Step::Chmod(p, _) => p.to_vec(),
    };
    removes.sort_by_key(|s| std::cmp::Reverse(path(s)));
    writes.sort_by_key(path);
    (removes, writes)
}

/// The chunks a step writes, for a file write.
fn file_chunks<'c>(s: &Step<'c>) -> Option<&'c [ObjectId]> {
    match s {
        Step::Write(
            _,
            Entry {
                content: Content::File(chunks),
                ..
            },
        ) => Some(chunks),
        _ => None,
    }
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
    let (trees, ws, root) = (&plan.trees, plan.ws.as_path(), &plan.target);
    let changes = std::mem::take(&mut report.changes);
    let (removes, writes) = steps(&changes);
    let mut cache = statcache::load(store, ws).unwrap_or_default();
    // Content the workspace holds under other paths is cloned aside before
    // the first change: a rename or a swap deletes or overwrites its donor.
    let wanted: Vec<&[ObjectId]> = writes
        .iter()
        .map(|s| file_chunks(s).unwrap_or_default())
        .collect();
    let holding = reuse::hold_for(store, ws, &[ws], &wanted, plan.clone)?;
    let mut touched_dirs: BTreeSet<Vec<u8>> = BTreeSet::new();
    for step in &removes {
        match step {
            Step::Remove(rel) => {
                materialize::clear(&abs(ws, rel))?;
                cache.entries.remove(*rel);
                report.deleted += 1;
                touched_dirs.extend(parents(rel).map(<[u8]>::to_vec));
            }
            Step::RemoveEmptyDir(rel) => {
                remove_dir_if_empty(&abs(ws, rel), report);
                touched_dirs.extend(parents(rel).map(<[u8]>::to_vec));
                touched_dirs.insert(rel.to_vec());
            }
            _ => {}
        }
    }
    for (k, step) in writes.iter().enumerate() {
        let rel = match step {
            Step::Write(p, _) | Step::MakeDir(p) | Step::Chmod(p, _) => *p,
            _ => continue,
        };
        for p in parents(rel) {
            materialize::ensure_dir(&abs(ws, p))?;
            touched_dirs.insert(p.to_vec());
        }
        let path = abs(ws, rel);
        match step {
            Step::MakeDir(_) => {
                materialize::ensure_dir(&path)?;
                touched_dirs.insert(rel.to_vec());
            }
            Step::Chmod(_, e) => {
                chmod_file(&path, e)?;
                if let Ok(m) = std::fs::symlink_metadata(&path) {
                    update_cache(&mut cache, rel, e, crate::format::statcache::FileStat::of(&m));
                }
            }
            Step::Write(_, e) => match &e.content {
                Content::File(chunks) => {
                    let stat = materialize::write_file(store, &path, e, chunks, true, holding.get(k))?;
                    update_cache(&mut cache, rel, e, stat);
                }
                Content::Symlink(_) => materialize::write_symlink(&path, e, true)?,
                Content::Dir(_) => materialize::ensure_dir(&path)?,
            },
            _ => {}
        }
        report.written += 1;
        crate::util::failpoint("rollback-step");
    }
    report.clones = holding.stats.clone();
    drop(holding);
    remove_vanished_dirs(trees, root, ws, &mut touched_dirs, report)?;
    restore_dir_meta(trees, root, ws, &touched_dirs)?;
    let entries = cache.entries.into_iter().collect();
    statcache::save(store, ws, cache.taken_ns, entries)?;
    report.changes = changes;
    Ok(())
}

fn update_cache(cache: &mut StatCache, rel: &[u8], e: &Entry, stat: crate::format::statcache::FileStat) {
    if let Content::File(chunks) = &e.content {
        cache.entries.insert(
            rel.to_vec(),
            CachedFile {
                stat,
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

/// The target's directory entries along the given paths.
fn dir_entries(trees: &Trees, root: &ObjectId, dirs: &BTreeSet<Vec<u8>>) -> Result<HashMap<Vec<u8>, Entry>> {
    let mut out = HashMap::new();
    let mut cache: HashMap<Vec<u8>, Option<ObjectId>> = HashMap::new();
    cache.insert(Vec::new(), Some(*root));
    // BTreeSet order visits a parent before its children.
    for d in dirs {
        let (parent, name) = match d.iter().rposition(|&b| b == b'/') {
            Some(i) => (&d[..i], &d[i + 1..]),
            None => (&b""[..], &d[..]),
        };
        let parent_id = match cache.get(parent) {
            Some(id) => *id,
            None => lookup_dir(trees, root, parent)?,
        };
        let entry = match parent_id {
            Some(pid) => trees.tree(&pid)?.find(name).cloned(),
            None => None,
        };
        let id = match entry.as_ref().map(|e| &e.content) {
            Some(Content::Dir(id)) => Some(*id),
            _ => None,
        };
        if let Some(e) = entry.filter(|_| id.is_some()) {
            out.insert(d.clone(), e);
        }
        cache.insert(d.clone(), id);
    }
    Ok(out)
}

fn lookup_dir(trees: &Trees, root: &ObjectId, rel: &[u8]) -> Result<Option<ObjectId>> {
    let mut id = *root;
    for c in crate::format::path::components(rel) {
        match trees.tree(&id)?.find(c).map(|e| &e.content) {
            Some(Content::Dir(sub)) => id = *sub,
            _ => return Ok(None),
        }
    }
    Ok(Some(id))
}

/// Directories emptied by deletions that the snapshot does not have.
fn remove_vanished_dirs(
    trees: &Trees,
    root: &ObjectId,
    ws: &Path,
    dirs: &mut BTreeSet<Vec<u8>>,
    report: &mut RollbackReport,
) -> Result<()> {
    let present = dir_entries(trees, root, dirs)?;
    let gone: Vec<Vec<u8>> = dirs
        .iter()
        .filter(|d| !d.is_empty() && !present.contains_key(*d))
        .cloned()
        .collect();
    for d in gone.iter().rev() {
        let p = abs(ws, d);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            remove_dir_if_empty(&p, report);
        }
        dirs.remove(d);
    }
    Ok(())
}

/// Puts back the mode and mtime of every directory whose contents changed.
fn restore_dir_meta(trees: &Trees, root: &ObjectId, ws: &Path, dirs: &BTreeSet<Vec<u8>>) -> Result<()> {
    let present = dir_entries(trees, root, dirs)?;
    for d in dirs.iter().rev() {
        if let Some(e) = present.get(d) {
            materialize::set_dir_meta(&abs(ws, d), e)?;
        }
    }
    Ok(())
}
