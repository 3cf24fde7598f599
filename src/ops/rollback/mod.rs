//! `moat rollback`: make a workspace's tracked state exactly a snapshot's,
//! with the fewest writes, after taking a safety snapshot that undoes it.
//!
//! Invariants:
//! - Rollback never removes or overwrites bytes no snapshot holds. Before
//!   the first change the whole plan is checked against the safety
//!   snapshot (`cover`): what the plan would replace that the snapshot left
//!   out (an ignored file in a directory that becomes a file, an excluded
//!   file the target has) is captured by a second safety snapshot that
//!   includes exactly those paths; what still cannot be captured
//!   (unreadable files, `.git`, special files) makes the rollback refuse,
//!   naming the paths, unless `--force`.
//! - Paths the target snapshot skipped are left alone, and nothing is
//!   written into moat's own directories (the store, `$MOAT_HOME`).
//! - Only paths that differ between the current state and the snapshot are
//!   touched; ignored and excluded paths elsewhere are never written.
//!   Files and links are written to a sibling temp and renamed over, so a
//!   crash leaves each path old or new, and a re-run completes the job.
//! - A completed rollback leaves every entry's mode and mtime as the
//!   snapshot has them (directories after their contents, symlinks on the
//!   link itself) and no temp entry, so the next snapshot's root is the
//!   target's.

mod apply;
mod cover;

use std::path::{Path, PathBuf};

use crate::capture::{self, CaptureOptions, CaptureReport, Outcome};
use crate::error::{Error, Result};
use crate::format::id::ObjectId;
use crate::format::path::components;
use crate::format::snapshot::Trigger;
use crate::ops::diff::{self, Change, Status, Trees, Walked};
use crate::store::{SnapshotRecord, Store};
use crate::util::progress::Progress;
use crate::worktree::protect::{self, Protected};
use crate::worktree::reuse::CloneStats;
use crate::worktree::walk::WalkOptions;

pub use apply::apply;

#[derive(Clone, Debug)]
pub struct RollbackOptions {
    pub walk: WalkOptions,
    pub dry_run: bool,
    /// Allow a snapshot of another workspace, and replacing what no
    /// snapshot can hold.
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
pub struct Plan {
    ws: PathBuf,
    walked: Walked,
    /// moat's temp names the safety snapshot's walk met (a crashed run's).
    stale: Vec<Vec<u8>>,
    clone: bool,
    pub report: RollbackReport,
}

/// Takes the safety snapshot (unless `dry_run`) and computes the changes
/// from the workspace's current state to `target`, checking that nothing
/// they replace is missing from every snapshot.
pub fn plan(
    store: &Store,
    target: &SnapshotRecord,
    workspace: &Path,
    opts: &RollbackOptions,
    progress: &dyn Progress,
) -> Result<Plan> {
    let ws = crate::worktree::workspace_root(workspace)?;
    let protected = Protected::of(store);
    protected.refuse_inside(&ws, "workspace")?;
    if target.snap.workspace_path() != ws && !opts.force {
        return Err(Error::OtherWorkspace {
            snapshot: target.id.short(),
            snap_ws: target.snap.workspace_path(),
            ws,
        });
    }
    let mut report = RollbackReport::default();
    let mut trees = Trees::new(store);
    let leave = leave_alone(target);
    let own: Vec<Vec<u8>> = protected.inside(&ws);
    let (mut current, mut stale) = if opts.dry_run {
        let (scan, mem) = capture::scan_dry(store, &ws, &opts.walk, progress)?;
        trees.mem = mem;
        report.warnings.extend(scan.warnings);
        (scan.root, Vec::new())
    } else {
        let safety = safety_snapshot(store, &ws, target, opts, Vec::new(), progress)?;
        take_safety(&mut report, safety)
    };
    let mut walked = walk(&trees, &current, target, opts, &leave, &own, &ws)?;
    let mut lost = uncovered(&trees, &current, &ws, &walked, &protected)?;
    if !lost.is_empty() && !opts.dry_run {
        // Capture exactly what the plan would replace that the first safety
        // snapshot left out, then plan again from that snapshot.
        let safety = safety_snapshot(store, &ws, target, opts, lost, progress)?;
        let (root, more) = take_safety(&mut report, safety);
        current = root;
        stale.extend(more);
        walked = walk(&trees, &current, target, opts, &leave, &own, &ws)?;
        lost = uncovered(&trees, &current, &ws, &walked, &protected)?;
    }
    if !lost.is_empty() {
        let shown: Vec<String> = lost
            .iter()
            .take(20)
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        let mut paths = shown.join(", ");
        if lost.len() > shown.len() {
            paths.push_str(&format!(" and {} more", lost.len() - shown.len()));
        }
        if opts.dry_run {
            report.warnings.push(format!(
                "not in any snapshot yet (rollback captures them first, or refuses when it cannot): {paths}"
            ));
        } else if opts.force {
            report
                .warnings
                .push(format!("--force: replacing what no snapshot holds: {paths}"));
        } else {
            return Err(Error::Uncovered { paths });
        }
    }
    report.changes = walked.changes.clone();
    Ok(Plan {
        ws,
        walked,
        stale,
        clone: opts.clone,
        report,
    })
}

fn safety_snapshot(
    store: &Store,
    ws: &Path,
    target: &SnapshotRecord,
    opts: &RollbackOptions,
    include: Vec<Vec<u8>>,
    progress: &dyn Progress,
) -> Result<CaptureReport> {
    capture::capture(
        store,
        ws,
        &CaptureOptions {
            walk: WalkOptions {
                include,
                ..opts.walk.clone()
            },
            trigger: Trigger::Safety,
            message: format!("before rollback to {}", target.id.short()),
            ..CaptureOptions::default()
        },
        progress,
    )
}

/// Records a safety snapshot in the report; returns its root and the
/// stale temp names its walk met.
fn take_safety(report: &mut RollbackReport, safety: CaptureReport) -> (ObjectId, Vec<Vec<u8>>) {
    report.warnings.extend(safety.warnings);
    report.safety = Some(match safety.outcome {
        Outcome::Written(id) | Outcome::Unchanged(id) => id,
    });
    (safety.snapshot.root, safety.stale_temps)
}

/// The paths the target snapshot skipped: rollback leaves them alone.
fn leave_alone(target: &SnapshotRecord) -> Vec<Vec<u8>> {
    target
        .snap
        .skipped_paths()
        .map(|p| components(p).join(&b'/'))
        .filter(|p| !p.is_empty())
        .collect()
}

/// `path` is `top` or below it.
fn under(path: &[u8], top: &[u8]) -> bool {
    path.starts_with(top) && matches!(path.get(top.len()), None | Some(b'/'))
}

/// The walk from the current state to the target, without what the target
/// skipped; refuses a change inside one of moat's own directories.
fn walk(
    trees: &Trees,
    current: &ObjectId,
    target: &SnapshotRecord,
    opts: &RollbackOptions,
    leave: &[Vec<u8>],
    own: &[Vec<u8>],
    ws: &Path,
) -> Result<Walked> {
    let mut w = diff::walk(trees, Some(current), Some(&target.snap.root), &opts.paths)?;
    let kept = |p: &[u8]| !leave.iter().any(|l| under(p, l));
    w.changes.retain_mut(|c| {
        // A rename whose source is left alone is a plain addition.
        if c.status == Status::Renamed && c.from.as_deref().is_some_and(|f| !kept(f)) {
            c.status = Status::Added;
            c.from = None;
            c.old = None;
        }
        kept(c.path.strip_suffix(b"/").unwrap_or(&c.path))
    });
    w.touched.retain(|(p, _)| kept(p));
    w.dirs.retain(|(p, _)| kept(p));
    w.gone_dirs.retain(|p| kept(p));
    let touched = w
        .changes
        .iter()
        .flat_map(|c| std::iter::once(&c.path).chain(c.from.as_ref()))
        .chain(w.dirs.iter().map(|(p, _)| p))
        .chain(w.touched.iter().map(|(p, _)| p));
    for p in touched {
        let p = p.strip_suffix(b"/").unwrap_or(p);
        if let Some(o) = own.iter().find(|o| under(p, o)) {
            let path = ws.join(std::ffi::OsStr::from_bytes(p));
            return Err(protect::refused_write(
                &path,
                &ws.join(std::ffi::OsStr::from_bytes(o)),
            ));
        }
    }
    Ok(w)
}

use std::os::unix::ffi::OsStrExt;

/// What the plan `w` would replace that snapshot `current` does not hold.
fn uncovered(
    trees: &Trees,
    current: &ObjectId,
    ws: &Path,
    w: &Walked,
    protected: &Protected,
) -> Result<Vec<Vec<u8>>> {
    let mut uses: Vec<(Vec<u8>, cover::Use)> =
        w.dirs.iter().map(|(p, _)| (p.clone(), cover::Use::Dir)).collect();
    for c in &w.changes {
        match (&c.new, c.path.strip_suffix(b"/")) {
            (_, Some(d)) if c.status == Status::Added => uses.push((d.to_vec(), cover::Use::Dir)),
            (Some(_), None) => uses.push((c.path.clone(), cover::Use::Leaf)),
            _ => {}
        }
    }
    let mut held = cover::Lookup::new(trees, *current);
    cover::uncovered(&mut held, ws, &uses, protected)
}
