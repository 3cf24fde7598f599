//! The parallel workspace walk (`ignore` crate): honours `.gitignore` and
//! `.ignore` unless told not to, applies `--exclude` globs, never enters
//! `.git` or the store itself, and never follows symlinks. A directory whose
//! ignore files the crate could not read safely (`ignore_files`: a FIFO, a
//! device, a huge file) is left out with a warning, never handed to it.
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
use crate::worktree::ignore_files;

#[derive(Clone, Debug, Default)]
pub struct WalkOptions {
    /// Do not read `.gitignore`/`.ignore` files.
    pub no_ignore: bool,
    /// Gitignore-style globs of paths to leave out.
    pub excludes: Vec<String>,
    /// Directories never to enter (moat's own store and runs, when they sit
    /// in the workspace).
    pub skip_dirs: Vec<PathBuf>,
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
}

enum Found {
    Node(Node),
    Warning(String),
    /// Stored, but not exactly (a directory's out-of-range mtime).
    Both(Node, String),
}

/// Walks `root` (which must be absolute and canonical). Entries that cannot
/// be stored (sockets, FIFOs, devices) and unreadable directories come back
/// as warnings, one line each.
pub fn walk(root: &Path, opts: &WalkOptions) -> Result<(Vec<Node>, Vec<String>)> {
    let w = walk_pruned(root, opts, None)?;
    Ok((w.nodes, w.warnings))
}

/// `walk`, leaving out the directories `prune` names, and reporting the
/// `.git` entries it passed over.
pub fn walk_pruned(root: &Path, opts: &WalkOptions, prune: Option<Prune>) -> Result<Walked> {
    let mut ov = OverrideBuilder::new(root);
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
    // The ignore crate reads ignore files with a blocking, unbounded read:
    // a directory whose ignore files are not small regular files is left
    // out (the root's is an error) rather than handed to it.
    let check_ignore_files = !opts.no_ignore;
    if let Some((file, why)) = check_ignore_files.then(|| ignore_files::check(root)).flatten() {
        return Err(Error::Config {
            path: file,
            detail: format!("is {why}; moat reads it for the ignore rules (or pass --no-ignore)"),
        });
    }
    let refused: Arc<Mutex<Vec<String>>> = Arc::default();
    let refused_in_filter = refused.clone();
    let skip = opts.skip_dirs.clone();
    let git_dirs: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let seen_git = git_dirs.clone();
    let base = root.to_path_buf();
    let mut b = ignore::WalkBuilder::new(root);
    b.hidden(false)
        .parents(false)
        .ignore(!opts.no_ignore)
        .git_ignore(!opts.no_ignore)
        .git_exclude(!opts.no_ignore)
        .git_global(false)
        .require_git(false)
        .follow_links(false)
        .overrides(overrides)
        .threads(rayon::current_num_threads().max(2))
        .filter_entry(move |e| {
            let rel = || {
                e.path()
                    .strip_prefix(&base)
                    .map_or(&b""[..], |r| r.as_os_str().as_bytes())
            };
            if e.file_name() == ".git" {
                seen_git
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(rel().to_vec());
                return false;
            }
            if skip.iter().any(|s| e.path() == s) {
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
                    let w = format!("skipped {}: {} is {why}", e.path().display(), file.display());
                    refused_in_filter
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(w);
                    false
                }
                None => true,
            }
        });
    // Each walker thread collects into its own buffer and hands it over
    // once, when it finishes (no per-entry channel send).
    let done: Mutex<(Vec<Node>, Vec<String>)> = Mutex::new((Vec::new(), Vec::new()));
    b.build_parallel().visit(&mut Collector { root, done: &done });
    let (nodes, mut warnings) = done.into_inner().unwrap_or_else(|p| p.into_inner());
    warnings.append(&mut refused.lock().unwrap_or_else(|p| p.into_inner()));
    let git_dirs = std::mem::take(&mut *git_dirs.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(Walked {
        nodes,
        warnings,
        git_dirs,
    })
}

struct Collector<'a> {
    root: &'a Path,
    done: &'a Mutex<(Vec<Node>, Vec<String>)>,
}

impl<'s> ignore::ParallelVisitorBuilder<'s> for Collector<'s> {
    fn build(&mut self) -> Box<dyn ignore::ParallelVisitor + 's> {
        Box::new(Buffer {
            root: self.root,
            done: self.done,
            nodes: Vec::new(),
            warnings: Vec::new(),
        })
    }
}

struct Buffer<'a> {
    root: &'a Path,
    done: &'a Mutex<(Vec<Node>, Vec<String>)>,
    nodes: Vec<Node>,
    warnings: Vec<String>,
}

impl ignore::ParallelVisitor for Buffer<'_> {
    fn visit(&mut self, res: std::result::Result<ignore::DirEntry, ignore::Error>) -> WalkState {
        match visit(self.root, res) {
            Some(Found::Node(n)) => self.nodes.push(n),
            Some(Found::Warning(w)) => self.warnings.push(w),
            Some(Found::Both(n, w)) => {
                self.nodes.push(n);
                self.warnings.push(w);
            }
            None => {}
        }
        WalkState::Continue
    }
}

impl Drop for Buffer<'_> {
    fn drop(&mut self) {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        done.0.append(&mut self.nodes);
        done.1.append(&mut self.warnings);
    }
}

fn visit(root: &Path, res: std::result::Result<ignore::DirEntry, ignore::Error>) -> Option<Found> {
    let ent = match res {
        Ok(e) => e,
        Err(e) => return Some(Found::Warning(format!("skipped: {e}"))),
    };
    // The workspace root itself, and the temp siblings of an interrupted
    // rollback, are not workspace content.
    if ent.depth() == 0
        || ent
            .file_name()
            .as_bytes()
            .starts_with(crate::worktree::materialize::TEMP_PREFIX)
    {
        return None;
    }
    let path = ent.path();
    let rel = path.strip_prefix(root).ok()?.as_os_str().as_bytes().to_vec();
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        // Deleted between readdir and lstat: it is simply not there.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Found::Warning(format!("skipped {}: {e}", path.display()))),
    };
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        NodeKind::File
    } else if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_symlink() {
        match std::fs::read_link(path) {
            Ok(t) => NodeKind::Symlink(t.as_os_str().as_bytes().to_vec()),
            Err(e) => return Some(Found::Warning(format!("skipped {}: {e}", path.display()))),
        }
    } else {
        let what = if ft.is_socket() {
            "socket"
        } else if ft.is_fifo() {
            "FIFO"
        } else {
            "device file"
        };
        return Some(Found::Warning(format!("skipped {what}: {}", path.display())));
    };
    let node = Node {
        rel,
        stat: FileStat::of(&meta),
        multi_link: kind != NodeKind::Dir && std::os::unix::fs::MetadataExt::nlink(&meta) > 1,
        kind,
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
        return Some(match node.kind {
            NodeKind::Dir => Found::Both(
                node,
                format!("{}: directory {why}; stored clamped", path.display()),
            ),
            _ => Found::Warning(format!("skipped {}: {why}", path.display())),
        });
    }
    Some(Found::Node(node))
}
