//! `moat snapshot`: walk a workspace, store what changed, commit a snapshot.
//!
//! Two phases. `stage` walks the workspace, checks the stat cache
//! (unchanged files are never opened), and takes a private copy of every
//! file that must be read (`stage.rs`: small files into memory, larger ones
//! cloned on copy-on-write filesystems); what it cannot copy it reads and
//! stores directly (`read.rs`). `ingest` then chunks, hashes and compresses
//! the copies, builds the trees
//! bottom-up (`assemble.rs`; an unchanged directory hashes to its old id and
//! is not written again) and publishes packs, index, snapshot and stat
//! cache, in that order. `capture` runs both back to back; `moat run` runs
//! `ingest` in the background while its command already works.
//!
//! Invariants: after `stage` returns, the workspace is never read again, so
//! the snapshot is the workspace as of staging, and git's HEAD is read
//! then too. A file is stored only if its stat before and after reading (or
//! cloning) agree, so a file written meanwhile is re-read, never stored
//! torn. The parent is the workspace's newest snapshot when the capture
//! commits, so captures staged one after another and committed in that
//! order chain up.
//!
//! Uses `worktree`, `store`, `format` and `util`.

mod assemble;
pub mod chunker;
mod commit;
mod guard;
mod prior;
mod provisional;
mod read;
mod stage;
mod watched;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;

pub use guard::{Base, Guard};
pub use provisional::Provisional;
pub use stage::StagingReport;

use crate::capture::chunker::ChunkParams;
use crate::error::Result;
use crate::format::id::ObjectId;
use crate::format::snapshot::{self, GitInfo, Snapshot, Stats, Trigger};
use crate::format::statcache::{FileStat, Meta};
use crate::store::Store;
use crate::store::writer::ObjectWriter;
use crate::util::progress::Progress;
use crate::worktree::clone::{self, Cloner};
use crate::worktree::walk::{Node, NodeKind, WalkOptions};
use crate::worktree::watch::{Since, WatchLink};
use prior::Prior;
use read::FileResult;
use stage::StageDir;

#[derive(Clone, Debug)]
pub struct CaptureOptions {
    pub walk: WalkOptions,
    pub trigger: Trigger,
    pub message: String,
    pub allow_empty: bool,
    pub run_id: Option<String>,
    /// Pin the snapshot (or, when unchanged, its parent) against retention.
    pub pin: bool,
    /// Growth guard: refuse (or warn about) a snapshot that adds too much.
    pub guard: Option<Guard>,
    /// zstd level for this snapshot's new objects [default: the store's].
    pub zstd_level: Option<i32>,
    /// Stage files by cloning them when the filesystem can (`--no-clone`
    /// turns it off).
    pub clone: bool,
    /// Where to learn what changed since the cached scan.
    pub watch: WatchLink,
    /// The snapshot is the workspace at the instant its trigger names
    /// (false: some time after it).
    pub exact: bool,
    /// A capture staged before this one and not committed yet: this one's
    /// parent (for the growth guard, and files it need not read again).
    pub parent: Option<Arc<Provisional>>,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            walk: WalkOptions::default(),
            trigger: Trigger::Manual,
            message: String::new(),
            allow_empty: false,
            run_id: None,
            pin: false,
            guard: None,
            zstd_level: None,
            clone: true,
            watch: WatchLink::default(),
            exact: true,
            parent: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Written(ObjectId),
    /// The tree equals the parent's; no snapshot was written.
    Unchanged(ObjectId),
}

#[derive(Debug)]
pub struct CaptureReport {
    pub outcome: Outcome,
    pub snapshot: Snapshot,
    pub warnings: Vec<String>,
    /// How the files that had to be read got read (cloned or directly).
    pub staging: StagingReport,
    /// Why the workspace was walked rather than watched (`--verbose`).
    pub scan_note: Option<String>,
    /// moat temp names the walk met (leftovers of a crashed rollback).
    pub stale_temps: Vec<Vec<u8>>,
}

/// The result of walking a workspace and hashing what changed.
pub struct Scan {
    pub ws: PathBuf,
    pub start_ns: i64,
    /// The workspace filesystem's clock at the start (the stat cache's racy
    /// line).
    pub cache_ns: i64,
    pub root: ObjectId,
    /// The stat cache records describing the workspace as scanned.
    pub records: Vec<Vec<u8>>,
    pub meta: Meta,
    /// The header checksum of the stat cache on disk when it already
    /// describes this scan (nothing to write).
    pub cache_kept: Option<[u8; 32]>,
    /// `records` are a delta on top of the cache with this header check
    /// (a watched scan's), not a whole cache.
    pub delta_base: Option<[u8; 32]>,
    pub stats: Stats,
    pub warnings: Vec<String>,
    pub staging: StagingReport,
    pub scan: snapshot::Scan,
    pub scan_note: Option<String>,
    /// The watch token of this scan, to save beside the new cache.
    pub next: Option<Since>,
    /// Paths in the workspace the snapshot does not hold because they could
    /// not be stored, sorted (the snapshot's `skipped`), as far as walked.
    pub skipped: Vec<Vec<u8>>,
    /// The directories a watched scan took from the cache without walking
    /// them, and whether it walked nothing at all: what the parent
    /// snapshot skipped there is still skipped.
    pub unwalked: (Vec<Vec<u8>>, bool),
    /// moat temp names the walk met (leftovers of a crashed rollback).
    pub stale_temps: Vec<Vec<u8>>,
    /// Every file is as it was at staging (false when a file a pending
    /// parent vouched for had to be read again and had changed).
    pub exact: bool,
}

/// A scan between its phases: every workspace file it needs has been read
/// or staged; what is left reads only staged copies and the store.
struct Pending {
    ws: PathBuf,
    start_ns: i64,
    cache_ns: i64,
    nodes: Arc<Vec<Node>>,
    results: Vec<Option<FileResult>>,
    /// (node index, staged copy, the workspace file's stat when copied).
    staged: Vec<(usize, stage::Copy, FileStat)>,
    /// Files a pending parent will store as they are (see `provisional`).
    deferred: Vec<usize>,
    stage_dir: Option<StageDir>,
    files_read: u64,
    warnings: Vec<String>,
    staging: StagingReport,
    found: watched::Found,
}

/// Walks `ws` (canonical), or only what a watcher says changed, then
/// stages or reads every file neither the stat cache nor a pending
/// `parent` can vouch for. `base` says what the parent held (the guard
/// asks only when its cheap count is over a limit).
#[allow(clippy::too_many_arguments)]
fn prepare(
    store: &Store,
    ws: &Path,
    walk_opts: &WalkOptions,
    guard: Option<&Guard>,
    base: impl FnOnce() -> Result<Base>,
    parent: Option<&Provisional>,
    cloner: Option<&dyn Cloner>,
    writer: &ObjectWriter,
    watch: &WatchLink,
    progress: &dyn Progress,
) -> Result<Pending> {
    let started = Instant::now();
    let start_ns = crate::util::now_ns();
    // The workspace's own clock: on another filesystem (NFS, a coarse
    // granularity) the store's could run ahead of its mtimes.
    let cache_ns = crate::util::fs_clock_ns(ws);
    let mut wopts = walk_opts.clone();
    wopts.skip_dirs.extend(store.own_dirs());
    crate::worktree::protect::Protected::from_paths(&wopts.skip_dirs).refuse_inside(ws, "workspace")?;
    progress.start("scanning", 0);
    let mut found = watched::scan(store, ws, &wopts, writer, watch)?;
    // Between the walk's lstat and the first open (a test swaps files here).
    crate::util::failpoint("after-walk");
    let mut warnings = std::mem::take(&mut found.warnings);
    let nodes = std::mem::take(&mut found.nodes);
    let mut results = std::mem::take(&mut found.results);
    let (deferred, to_read): (Vec<usize>, Vec<usize>) = (0..nodes.len())
        .filter(|&i| nodes[i].kind == NodeKind::File && results[i].is_none())
        .partition(|&i| parent.is_some_and(|p| p.vouches(&nodes[i].rel, &nodes[i].stat)));
    if let Some(g) = guard {
        let old_size = |i: usize| match &found.prior[i] {
            Prior::Changed(s) => Some(*s),
            Prior::Same => Some(nodes[i].stat.size),
            _ => None,
        };
        warnings.extend(guard::check_growth(
            g, ws, &nodes, &to_read, &old_size, base, store,
        )?);
    }
    let stage::Staging {
        dir: stage_dir,
        copies,
        report: mut staging,
    } = stage::stage_files(store, ws, &nodes, &to_read, cloner)?;
    crate::util::failpoint("after-stage");
    let mut staged = Vec::new();
    let mut direct = Vec::new();
    for (&i, copy) in to_read.iter().zip(copies) {
        match copy {
            Some((copy, st)) => staged.push((i, copy, st)),
            None => direct.push(i),
        }
    }
    let params = ChunkParams::from_config(&store.config);
    for (i, r) in read_direct(ws, &nodes, &direct, params, writer, progress)? {
        results[i] = Some(r);
    }
    staging.stage_ns = started.elapsed().as_nanos() as u64;
    Ok(Pending {
        ws: ws.to_path_buf(),
        start_ns,
        cache_ns,
        nodes: Arc::new(nodes),
        results,
        staged,
        deferred,
        stage_dir,
        files_read: to_read.len() as u64,
        warnings,
        staging,
        found,
    })
}

/// Reads and stores the files `direct` straight from the workspace.
fn read_direct(
    ws: &Path,
    nodes: &[Node],
    direct: &[usize],
    params: ChunkParams,
    writer: &ObjectWriter,
    progress: &dyn Progress,
) -> Result<Vec<(usize, FileResult)>> {
    progress.start("reading", direct.iter().map(|&i| nodes[i].stat.size).sum());
    direct
        .par_iter()
        .map(|&i| {
            let r = read::read_file(&ws.join(OsStr::from_bytes(&nodes[i].rel)), params, writer)?;
            progress.inc(nodes[i].stat.size);
            Ok((i, r))
        })
        .collect()
}

/// Ingests the staged copies and builds the trees.
fn finish(store: &Store, mut p: Pending, writer: &ObjectWriter, progress: &dyn Progress) -> Result<Scan> {
    progress.start("ingesting", p.staged.iter().map(|s| s.2.size).sum());
    let params = ChunkParams::from_config(&store.config);
    let read: Vec<(usize, FileResult)> = std::mem::take(&mut p.staged)
        .into_par_iter()
        .map(|(i, copy, st)| {
            let r = read::read_staged(&copy, st, params, writer)?;
            progress.inc(st.size);
            Ok((i, r))
        })
        .collect::<Result<_>>()?;
    for (i, r) in read {
        p.results[i] = Some(r);
    }
    drop(p.stage_dir.take());
    let exact = provisional::resolve(
        store,
        &p.ws,
        &p.nodes,
        &p.deferred,
        &mut p.results,
        params,
        writer,
    )?;
    let f = &mut p.found;
    let meta = prior::meta(&p.ws, p.cache_ns, f.walk_key, std::mem::take(&mut f.excludes));
    // The cache on disk can stay only if it was built the same way.
    let same_build = f
        .table
        .as_ref()
        .is_some_and(|t| t.meta.walk_key == meta.walk_key && t.meta.excludes == meta.excludes);
    let built = match f.whole {
        Some((root, totals)) => assemble::Built {
            root,
            records: Vec::new(),
            stats: Stats {
                files: totals.files,
                dirs: totals.dirs,
                symlinks: totals.symlinks,
                bytes: totals.bytes,
                ..Stats::default()
            },
            warnings: Vec::new(),
            skipped: Vec::new(),
            root_reused: true,
        },
        None => assemble::assemble(
            &p.nodes,
            std::mem::take(&mut p.results),
            assemble::Cached {
                prior: &f.prior,
                pruned: &f.pruned,
                root_prior: &f.root_prior,
                key: &f.key,
                need_records: !same_build,
            },
            writer,
        )?,
    };
    let assemble::Built {
        root,
        mut records,
        mut stats,
        warnings: unread,
        skipped: unread_paths,
        root_reused,
    } = built;
    p.warnings.extend(unread);
    let mut skipped = std::mem::take(&mut f.skipped);
    skipped.extend(unread_paths);
    skipped.sort();
    skipped.dedup();
    stats.skipped = skipped.len() as u64;
    let unwalked = (
        f.pruned.iter().map(|(rel, _)| rel.clone()).collect(),
        f.whole.is_some(),
    );
    // The cache on disk already says all this scan would when every entry
    // matched it and it was built the same way.
    let cache_kept = f
        .table
        .as_ref()
        .and_then(|t| (root_reused && same_build).then_some(t.header_check));
    // A watched scan recorded only what it walked: written as a delta on
    // top of the cache while that stays small, else the cache is whole again.
    let mut delta_base = None;
    if cache_kept.is_none()
        && let Some(t) = &f.table
    {
        let watched = f.scan == snapshot::Scan::Watched && same_build;
        let carried = watched.then(|| prior::carry(t, &f.pruned, true, &mut p.warnings));
        match carried {
            Some(c) if prior::fits_delta(t, records.len() + c.len()) => {
                // Every directory this scan recorded it listed whole.
                for r in records.iter_mut() {
                    if crate::format::statcache::is_dir_record(r) {
                        *r = crate::format::statcache::with_listed(&f.key, r, true);
                    }
                }
                records.extend(c);
                delta_base = Some(t.base_check());
            }
            _ => records.extend(prior::carry(t, &f.pruned, false, &mut p.warnings)),
        }
    }
    stats.files_read = p.files_read;
    Ok(Scan {
        ws: p.ws,
        start_ns: p.start_ns,
        cache_ns: p.cache_ns,
        root,
        records,
        meta,
        cache_kept,
        delta_base,
        stats,
        warnings: p.warnings,
        staging: p.staging,
        scan: f.scan,
        scan_note: f.note.take(),
        next: f.next,
        skipped,
        unwalked,
        stale_temps: std::mem::take(&mut f.temps),
        exact,
    })
}

/// Scans a workspace without writing anything to the store. Returns the
/// scan and the trees the store does not hold yet (encoded), so the
/// workspace can be compared with snapshots.
pub fn scan_dry(
    store: &Store,
    workspace: &Path,
    walk_opts: &WalkOptions,
    progress: &dyn Progress,
) -> Result<(Scan, HashMap<ObjectId, Vec<u8>>)> {
    let ws = crate::worktree::workspace_root(workspace)?;
    let writer = ObjectWriter::dry(store)?;
    let pending = prepare(
        store,
        &ws,
        walk_opts,
        None,
        || Ok(Base::First),
        None,
        None,
        &writer,
        &WatchLink::Off,
        progress,
    )?;
    let scan = finish(store, pending, &writer, progress)?;
    Ok((scan, writer.finish_dry()))
}

/// Takes a snapshot: `stage` then `ingest`.
pub fn capture(
    store: &Store,
    workspace: &Path,
    opts: &CaptureOptions,
    progress: &dyn Progress,
) -> Result<CaptureReport> {
    stage(store, workspace, opts, progress)?.ingest(progress)
}

/// A capture whose workspace reads are done. Its writer holds the store's
/// shared lock until `ingest` finishes (or it is dropped, which abandons
/// it and removes what it wrote).
pub struct Staged<'a> {
    store: &'a Store,
    started: Instant,
    /// git's HEAD as of staging.
    git: Option<GitInfo>,
    writer: ObjectWriter<'a>,
    opts: CaptureOptions,
    pending: Pending,
}

/// The first phase of a capture: walk, then stage or read every file the
/// stat cache cannot vouch for. The workspace may change freely afterwards.
pub fn stage<'a>(
    store: &'a Store,
    workspace: &Path,
    opts: &CaptureOptions,
    progress: &dyn Progress,
) -> Result<Staged<'a>> {
    let started = Instant::now();
    let ws = crate::worktree::workspace_root(workspace)?;
    // The writer takes the store's shared lock before anything is read.
    let mut writer = ObjectWriter::new(store)?;
    if let Some(level) = opts.zstd_level {
        writer = writer.with_level(level);
    }
    let cloner = opts.clone.then(|| clone::cloner(true));
    let committed = || Ok::<_, crate::error::Error>(store.latest_of(&ws)?.map(|(_, s)| s.root));
    let base = || match &opts.parent {
        Some(p) => Ok(Base::Staged(p.walk.clone(), committed()?)),
        None => Ok(committed()?.map_or(Base::First, Base::Tree)),
    };
    let prepared = prepare(
        store,
        &ws,
        &opts.walk,
        opts.guard.as_ref(),
        base,
        opts.parent.as_deref(),
        cloner,
        &writer,
        &opts.watch,
        progress,
    );
    // HEAD as of the same instant as the files (a held commit has finished
    // writing it; nothing else has moved it yet). An error drops the writer,
    // which removes what it wrote.
    let git = crate::worktree::git::head(&ws);
    Ok(Staged {
        store,
        started,
        git,
        writer,
        opts: opts.clone(),
        pending: prepared?,
    })
}

impl Staged<'_> {
    /// What staging did.
    pub fn staging(&self) -> &StagingReport {
        &self.pending.staging
    }

    /// How staging found what changed, for a log: `watched`, or `walked`
    /// and why.
    pub fn scan_kind(&self) -> String {
        let f = &self.pending.found;
        match (&f.scan, &f.note) {
            (snapshot::Scan::Watched, _) => "watched".into(),
            (_, Some(why)) => format!("walked: {why}"),
            (_, None) => "walked".into(),
        }
    }

    /// This capture as the next one's pending parent, until it commits.
    pub fn provisional(&self) -> Provisional {
        Provisional::of(&self.pending)
    }

    /// git's HEAD as of staging.
    pub fn git(&self) -> Option<&GitInfo> {
        self.git.as_ref()
    }

    /// The moment this capture names had passed before staging finished
    /// (a held process was let go early): the snapshot is not exact.
    pub fn mark_inexact(&mut self) {
        self.opts.exact = false;
    }

    /// The second phase: ingest the staged copies and commit the snapshot.
    pub fn ingest(self, progress: &dyn Progress) -> Result<CaptureReport> {
        let Staged {
            store,
            started,
            git,
            mut writer,
            opts,
            pending,
        } = self;
        // Any error drops the writer, which removes what it wrote.
        let mut scan = finish(store, pending, &writer, progress)?;
        // Counted once published: nothing counts as stored before.
        let published = writer.publish()?;
        scan.stats.new_objects = published.objects;
        scan.stats.new_bytes = published.bytes;
        crate::util::failpoint("before-snapshot");
        // The writer (and its shared lock) lives until the snapshot is
        // committed: a gc must not run between the index and the snapshot.
        let report = commit::commit(store, &opts, git, scan, started)?;
        writer.close();
        progress.finish();
        Ok(report)
    }
}
