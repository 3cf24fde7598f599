//! The parallel workspace walk (`ignore` crate): honours `.gitignore` and
//! `.ignore` unless told not to, applies `--exclude` globs, and never
//! follows symlinks. A directory whose ignore files the crate could not
//! read safely (`ignore_files`: a FIFO, a device, a huge file) is left out
//! with a warning, never handed to it.
//!
//! Invariants: it never yields a name capture never stores
//! (`format::tree::reserved`: `.git` in any case, moat's temp names), the
//! same rule every tree reader enforces; it never enters a directory of
//! `skip_dirs` (the store, `$MOAT_HOME`), recognised by device and inode
//! however it is reached; and it names every path it could not store
//! (unreadable, special files, deeper than `MAX_DEPTH`), so a snapshot can
//! record what it left out.
//!
//! A watched capture passes a `Prune` hook: a directory it names is not
//! entered (the caller already knows its tree), so the walk costs only the
//! directories that changed and their ancestors.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ignore::WalkState;
use ignore::overrides::OverrideBuilder;

use crate::error::{Error, Result};
use crate::format::statcache::FileStat;
use crate::format::tree::{MAX_DEPTH, TEMP_PREFIX, reserved};
use crate::worktree::ignore_files;

#[derive(Clone, Debug, Default)]
pub struct WalkOptions {
    /// Do not read `.gitignore`/`.ignore` files.
    pub no_ignore: bool,
    /// Gitignore-style globs of paths to leave out.
    pub excludes: Vec<String>,
    /// Directories never to enter (moat's own store and `$MOAT_HOME`, when
    /// they sit in the workspace), compared by device and inode.
    pub skip_dirs: Vec<PathBuf>,
    /// Workspace-relative paths walked whatever the ignore rules and
    /// excludes say, with what lies below them (rollback's safety snapshot:
    /// the ignored paths it is about to replace).
    pub include: Vec<Vec<u8>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeKind {
    File,
    Dir,
    Symlink(Vec<u8>),
}

/// One walked entry; `rel` is its path below the workspace root.
#[derive(Clone, Debug)]
pub struct Node {
    pub rel: Vec<u8>,
    pub stat: FileStat,
    pub kind: NodeKind,
    /// A file or symlink with more than one hard link (a change through
    /// another name changes it without an event naming this path).
    pub multi_link: bool,
}

/// Decides, for a directory about to be entered (its workspace-relative
/// path), whether to leave it out because the caller knows its tree.
pub type Prune = Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// What a walk found.
#[derive(Default)]
pub struct Walked {
    pub nodes: Vec<Node>,
    pub warnings: Vec<String>,
    /// Workspace-relative paths of the `.git` entries passed over (their
    /// `info/exclude` files are ignore rules the walk read).
    pub git_dirs: Vec<Vec<u8>>,
    /// Paths in the workspace that cannot be stored (each has a warning).
    pub skipped: Vec<Vec<u8>>,
    /// moat temp names met (a crashed rollback's leftovers), not walked.
    pub temps: Vec<Vec<u8>>,
}

/// Something the walk could not store: its path below the root when known
/// (an error reading an ignore file names none), and one line saying why.
struct Skip {
    rel: Option<Vec<u8>>,
    why: String,
    /// A moat temp name: a leftover, not a failure (no warning).
    temp: bool,
}

enum Found {
    Node(Node),
    Skipped(Skip),
    /// Stored, but not exactly (a directory's out-of-range mtime).
    Both(Node, String),
}

/// Where a walk is: its root, how deep below it the walked directory
/// starts, and the directories never to enter (device, inode).
#[derive(Clone, Copy)]
struct At<'a> {
    root: &'a Path,
    depth_base: usize,
    skip: &'a [(u64, u64)],
}

/// Walks `root` (which must be absolute and canonical). Entries that cannot
/// be stored (sockets, FIFOs, devices) and unreadable directories come back
/// as warnings, one line each.
pub fn walk(root: &Path, opts: &WalkOptions) -> Result<(Vec<Node>, Vec<String>)> {
    let w = walk_pruned(root, opts, None)?;
    Ok((w.nodes, w.warnings))
}

/// `walk`, leaving out the directories `prune` names, and reporting the
/// `.git` entries it passed over; then the paths of `opts.include`.
pub fn walk_pruned(root: &Path, opts: &WalkOptions, prune: Option<Prune>) -> Result<Walked> {
    let mut w = walk_at(root, b"", opts, prune)?;
    include(root, opts, &mut w)?;
    Ok(w)
}

/// A walk from `start` with the rules every scan applies: `.gitignore`,
/// `.ignore` and `.git/info/exclude` at every level (unless `no_ignore`;
/// no global git excludes, nothing above `start`), the `excludes` globs,
/// hidden files included, symlinks not followed. The one place those
/// rules are set: the watcher leaves unwatched exactly the directories a
/// walk built here never enters because of them.
pub fn rules(start: &Path, opts: &WalkOptions) -> Result<ignore::WalkBuilder> {
    let mut ov = OverrideBuilder::new(start);
    for g in &opts.excludes {
        ov.add(&format!("!{g}")).map_err(|e| Error::BadPattern {
            pattern: g.clone(),
            detail: e.to_string(),
        })?;
    }
    let overrides = ov.build().map_err(|e| Error::BadPattern {
        pattern: opts.excludes.join(" "),
        detail: e.to_string(),
    })?;
    let mut b = ignore::WalkBuilder::new(start);
    b.hidden(false)
        .parents(false)
        .ignore(!opts.no_ignore)
        .git_ignore(!opts.no_ignore)
        .git_exclude(!opts.no_ignore)
        .git_global(false)
        .require_git(false)
        .follow_links(false)
        .overrides(overrides);
    Ok(b)
}

/// Walks the directory `base` below `root` as `walk_pruned` walks a root:
/// the nodes' paths (and depths) are below `root`.
fn walk_at(root: &Path, base: &[u8], opts: &WalkOptions, prune: Option<Prune>) -> Result<Walked> {
    let start = if base.is_empty() {
        root.to_path_buf()
    } else {
        root.join(std::ffi::OsStr::from_bytes(base))
    };
    // The ignore crate reads ignore files with a blocking, unbounded read:
    // a directory whose ignore files are not small regular files is left
    // out (the root's is an error) rather than handed to it.
    let check_ignore_files = !opts.no_ignore;
    if let Some((file, why)) = check_ignore_files.then(|| ignore_files::check(&start)).flatten() {
        return Err(Error::Config {
            path: file,
            detail: format!("is {why}; moat reads it for the ignore rules (or pass --no-ignore)"),
        });
    }
    let refused: Arc<Mutex<Vec<Skip>>> = Arc::default();
    let refused_in_filter = refused.clone();
    let skip = crate::worktree::protect::Protected::from_paths(&opts.skip_dirs).ids();
    let git_dirs: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let seen_git = git_dirs.clone();
    let owned_root = root.to_path_buf();
    let mut b = rules(&start, opts)?;
    b.threads(rayon::current_num_threads().max(2))
        .filter_entry(move |e| {
            let rel = || {
                e.path()
                    .strip_prefix(&owned_root)
                    .map_or(&b""[..], |r| r.as_os_str().as_bytes())
            };
            let name = e.file_name().as_bytes();
            if name == b".git" {
                seen_git
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(rel().to_vec());
                return false;
            }
            // Temp names reach `visit`, which reports them as leftovers.
            if reserved(name).is_some() && !name.starts_with(TEMP_PREFIX) {
                return false;
            }
            let dir = e.file_type().is_some_and(|t| t.is_dir());
            if dir && e.depth() > 0 && prune.as_ref().is_some_and(|p| p(rel())) {
                return false;
            }
            match (dir && check_ignore_files)
                .then(|| ignore_files::check(e.path()))
                .flatten()
            {
                Some((file, why)) => {
                    let s = Skip {
                        rel: Some(rel().to_vec()),
                        why: format!("skipped {}: {} is {why}", e.path().display(), file.display()),
                        temp: false,
                    };
                    refused_in_filter
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(s);
                    false
                }
                None => true,
            }
        });
    // Each walker thread collects into its own buffer and hands it over
    // once, when it finishes (no per-entry channel send).
    let done: Mutex<(Vec<Node>, Vec<Skip>)> = Mutex::new((Vec::new(), Vec::new()));
    let at = At {
        root,
        depth_base: crate::format::path::components(base).len(),
        skip: &skip,
    };
    b.build_parallel().visit(&mut Collector { at, done: &done });
    let (nodes, mut skips) = done.into_inner().unwrap_or_else(|p| p.into_inner());
    skips.append(&mut refused.lock().unwrap_or_else(|p| p.into_inner()));
    let mut w = Walked {
        nodes,
        git_dirs: std::mem::take(&mut *git_dirs.lock().unwrap_or_else(|p| p.into_inner())),
        ..Walked::default()
    };
    add_skips(&mut w, skips);
    Ok(w)
}

fn add_skips(w: &mut Walked, skips: Vec<Skip>) {
    for s in skips {
        match (s.rel, s.temp) {
            (Some(rel), true) => w.temps.push(rel),
            (rel, _) => {
                w.skipped.extend(rel);
                w.warnings.push(s.why);
            }
        }
    }
}

struct Collector<'a> {
    at: At<'a>,
    done: &'a Mutex<(Vec<Node>, Vec<Skip>)>,
}

impl<'s> ignore::ParallelVisitorBuilder<'s> for Collector<'s> {
    fn build(&mut self) -> Box<dyn ignore::ParallelVisitor + 's> {
        Box::new(Buffer {
            at: self.at,
            done: self.done,
            nodes: Vec::new(),
            skips: Vec::new(),
        })
    }
}

struct Buffer<'a> {
    at: At<'a>,
    done: &'a Mutex<(Vec<Node>, Vec<Skip>)>,
    nodes: Vec<Node>,
    skips: Vec<Skip>,
}

impl ignore::ParallelVisitor for Buffer<'_> {
    fn visit(&mut self, res: std::result::Result<ignore::DirEntry, ignore::Error>) -> WalkState {
        let (found, state) = visit(self.at, res);
        match found {
            Some(Found::Node(n)) => self.nodes.push(n),
            Some(Found::Skipped(s)) => self.skips.push(s),
            Some(Found::Both(n, why)) => {
                self.nodes.push(n);
                self.skips.push(Skip {
                    rel: None,
                    why,
                    temp: false,
                });
            }
            None => {}
        }
        state
    }
}

impl Drop for Buffer<'_> {
    fn drop(&mut self) {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        done.0.append(&mut self.nodes);
        done.1.append(&mut self.skips);
    }
}

/// The path an error of the walk is about, when it is an I/O error (an
/// unreadable directory or entry); a bad pattern in an ignore file names
/// the ignore file, which is still stored.
fn error_path(e: &ignore::Error) -> Option<&Path> {
    match e {
        ignore::Error::WithPath { path, err } if err.io_error().is_some() => Some(path),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => error_path(err),
        _ => None,
    }
}

fn visit(at: At, res: std::result::Result<ignore::DirEntry, ignore::Error>) -> (Option<Found>, WalkState) {
    let rel_of = |p: &Path| {
        p.strip_prefix(at.root)
            .ok()
            .map(|r| r.as_os_str().as_bytes().to_vec())
    };
    let skipped = |rel: Option<Vec<u8>>, why: String| {
        Some(Found::Skipped(Skip {
            rel,
            why,
            temp: false,
        }))
    };
    let ent = match res {
        Ok(e) => e,
        Err(e) => {
            let rel = error_path(&e).and_then(rel_of);
            return (skipped(rel, format!("skipped: {e}")), WalkState::Continue);
        }
    };
    // The walked directory itself is not content of its own.
    if ent.depth() == 0 {
        return (None, WalkState::Continue);
    }
    let path = ent.path();
    let Some(rel) = rel_of(path) else {
        return (None, WalkState::Continue);
    };
    if ent.file_name().as_bytes().starts_with(TEMP_PREFIX) {
        let temp = Skip {
            rel: Some(rel),
            why: String::new(),
            temp: true,
        };
        return (Some(Found::Skipped(temp)), WalkState::Skip);
    }
    if ent.depth() + at.depth_base > MAX_DEPTH {
        let why = format!(
            "skipped {}: nested deeper than {MAX_DEPTH} directories",
            path.display()
        );
        return (skipped(Some(rel), why), WalkState::Skip);
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) => classify(at, path, rel, &m),
        // Deleted between readdir and lstat: it is simply not there.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, WalkState::Continue),
        Err(e) => (
            skipped(Some(rel), format!("skipped {}: {e}", path.display())),
            WalkState::Continue,
        ),
    }
}

/// What the entry at `path` (whose `lstat` is `meta`) is to a capture.
fn classify(at: At, path: &Path, rel: Vec<u8>, meta: &std::fs::Metadata) -> (Option<Found>, WalkState) {
    let skipped = |rel, why| {
        let s = Skip {
            rel: Some(rel),
            why,
            temp: false,
        };
        (Some(Found::Skipped(s)), WalkState::Continue)
    };
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        NodeKind::File
    } else if ft.is_dir() {
        // moat's own directories are not content, however reached.
        if at.skip.contains(&(meta.dev(), meta.ino())) {
            return (None, WalkState::Skip);
        }
        NodeKind::Dir
    } else if ft.is_symlink() {
        match std::fs::read_link(path) {
            Ok(t) => NodeKind::Symlink(t.as_os_str().as_bytes().to_vec()),
            Err(e) => return skipped(rel, format!("skipped {}: {e}", path.display())),
        }
    } else {
        let what = if ft.is_socket() {
            "socket"
        } else if ft.is_fifo() {
            "FIFO"
        } else {
            "device file"
        };
        return skipped(rel, format!("skipped {what}: {}", path.display()));
    };
    // A tree holds mtimes as i64 nanoseconds (1677-09-21 to 2262-04-11).
    // Beyond that a file or link would be restored with another mtime, so
    // it is refused; a directory (whose contents matter more) is kept with
    // its mtime clamped.
    if crate::util::timestamp_ns(meta.mtime(), meta.mtime_nsec()).is_none() {
        let why = format!(
            "mtime {}s is outside what a snapshot holds (1677-09-21 to 2262-04-11)",
            meta.mtime()
        );
        if kind != NodeKind::Dir {
            return skipped(rel, format!("skipped {}: {why}", path.display()));
        }
        let node = Node {
            rel,
            stat: FileStat::of(meta),
            kind,
            multi_link: false,
        };
        let why = format!("{}: directory {why}; stored clamped", path.display());
        return (Some(Found::Both(node, why)), WalkState::Continue);
    }
    let node = Node {
        rel,
        stat: FileStat::of(meta),
        multi_link: kind != NodeKind::Dir && meta.nlink() > 1,
        kind,
    };
    (Some(Found::Node(node)), WalkState::Continue)
}

/// Adds to `w` the paths of `opts.include` (relative to `root`) and what
/// lies below them, whatever the ignore rules and excludes say, with the
/// directories above them; paths already walked are not added twice. A
/// reserved name, a path inside `skip_dirs`, or one that does not exist is
/// left out.
fn include(root: &Path, opts: &WalkOptions, w: &mut Walked) -> Result<()> {
    use std::collections::HashSet;
    if opts.include.is_empty() {
        return Ok(());
    }
    let skip = crate::worktree::protect::Protected::from_paths(&opts.skip_dirs).ids();
    let at = At {
        root,
        depth_base: 0,
        skip: &skip,
    };
    let mut have: HashSet<Vec<u8>> = w.nodes.iter().map(|n| n.rel.clone()).collect();
    let all = WalkOptions {
        no_ignore: true,
        skip_dirs: opts.skip_dirs.clone(),
        ..WalkOptions::default()
    };
    for p in &opts.include {
        let comps = crate::format::path::components(p);
        if comps.is_empty() || comps.iter().any(|c| crate::format::tree::bad_name(c).is_some()) {
            continue;
        }
        // The path and each directory above it, shallowest first.
        let mut rel = Vec::new();
        for (i, c) in comps.iter().enumerate() {
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(c);
            let path = root.join(std::ffi::OsStr::from_bytes(&rel));
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                break;
            };
            let last = i + 1 == comps.len();
            let found = classify(at, &path, rel.clone(), &meta);
            let is_dir = matches!(&found, (Some(Found::Node(n)), _) if n.kind == NodeKind::Dir);
            match found {
                (Some(Found::Node(n)), _) if !have.contains(&n.rel) => {
                    have.insert(n.rel.clone());
                    w.nodes.push(n);
                }
                (Some(Found::Skipped(s)), _) if last => add_skips(w, vec![s]),
                _ => {}
            }
            if !is_dir {
                break;
            }
            if last {
                let below = walk_at(root, &rel, &all, None)?;
                w.warnings.extend(below.warnings);
                w.skipped.extend(below.skipped);
                w.temps.extend(below.temps);
                w.nodes
                    .extend(below.nodes.into_iter().filter(|n| have.insert(n.rel.clone())));
            }
        }
    }
    Ok(())
}
