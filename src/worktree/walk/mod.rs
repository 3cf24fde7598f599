//! The parallel workspace walk: honours `.gitignore`, `.ignore` and git's
//! `info/exclude` unless told not to, applies `--exclude` globs, and never
//! follows symlinks. `fast` lists each directory once and stats its
//! entries relative to the directory's descriptor; `levels` holds the
//! ignore rules, matched as the `ignore` crate's walker built by `rules`
//! matches them (the watcher lists its directories with that walker; a
//! test compares the two). A directory whose ignore files cannot be read
//! safely (`ignore_files`: a FIFO, a device, a huge file) is left out with
//! a warning.
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

use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ignore::overrides::OverrideBuilder;

use crate::error::{Error, Result};
use crate::format::statcache::FileStat;
use crate::worktree::ignore_files;

mod collapse;
mod fast;
mod levels;

pub use collapse::Collapse;

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
    /// Directories whose whole subtree matched the cache (`walk_collapsing`;
    /// "" for the root): none of their nodes are in `nodes`.
    pub collapsed: Vec<Vec<u8>>,
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

/// Where a walk is: how deep below the root the walked directory
/// starts, and the directories never to enter (device, inode).
#[derive(Clone, Copy)]
struct At<'a> {
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
    let mut w = walk_at(root, b"", opts, prune, None)?;
    include(root, opts, &mut w)?;
    Ok(w)
}

/// `walk`, collapsing every directory whose subtree matches the cache as
/// `cache` says (`collapse.rs`), and reporting the `.git` entries it passed
/// over. A walk with `opts.include` does not collapse.
pub fn walk_collapsing(root: &Path, opts: &WalkOptions, cache: &dyn Collapse) -> Result<Walked> {
    if !opts.include.is_empty() {
        return walk_pruned(root, opts, None);
    }
    walk_at(root, b"", opts, None, Some(cache))
}

/// A walk from `start` with the rules every scan applies: `.gitignore`,
/// `.ignore` and `.git/info/exclude` at every level (unless `no_ignore`;
/// no global git excludes, nothing above `start`), the `excludes` globs,
/// hidden files included, symlinks not followed. The watcher lists the
/// directories to watch with it; `walk` matches the same rules itself
/// (`levels`), and `tests/walk_rules.rs` holds the two to the same result.
pub fn rules(start: &Path, opts: &WalkOptions) -> Result<ignore::WalkBuilder> {
    let overrides = overrides(start, opts)?;
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

/// The `--exclude` globs as the crate's overrides rooted at `start`.
fn overrides(start: &Path, opts: &WalkOptions) -> Result<ignore::overrides::Override> {
    let mut ov = OverrideBuilder::new(start);
    for g in &opts.excludes {
        ov.add(&format!("!{g}")).map_err(|e| Error::BadPattern {
            pattern: g.clone(),
            detail: e.to_string(),
        })?;
    }
    ov.build().map_err(|e| Error::BadPattern {
        pattern: opts.excludes.join(" "),
        detail: e.to_string(),
    })
}

/// Walks the directory `base` below `root` as `walk_pruned` walks a root:
/// the nodes' paths (and depths) are below `root`.
fn walk_at(
    root: &Path,
    base: &[u8],
    opts: &WalkOptions,
    prune: Option<Prune>,
    collapse: Option<&dyn Collapse>,
) -> Result<Walked> {
    let start = if base.is_empty() {
        root.to_path_buf()
    } else {
        root.join(std::ffi::OsStr::from_bytes(base))
    };
    // A start whose ignore files cannot be read safely is an error; any
    // other such directory is left out with a warning (`fast`).
    if let Some((file, why)) = (!opts.no_ignore).then(|| ignore_files::check(&start)).flatten() {
        return Err(Error::Config {
            path: file,
            detail: format!("is {why}; moat reads it for the ignore rules (or pass --no-ignore)"),
        });
    }
    let skip = crate::worktree::protect::Protected::from_paths(&opts.skip_dirs).ids();
    let shared = fast::Shared {
        at: At {
            depth_base: crate::format::path::components(base).len(),
            skip: &skip,
        },
        overrides: overrides(&start, opts)?,
        no_ignore: opts.no_ignore,
        prune,
        collapse,
        out: Mutex::default(),
    };
    let task = fast::Task {
        abs: start,
        rel: base.to_vec(),
        node: None,
        depth: 0,
        level: levels::Level::none(),
        pend: collapse.map(|_| collapse::Pend::root(base)),
    };
    fast::run(&shared, task);
    let out = shared.out.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut w = Walked {
        nodes: out.nodes,
        git_dirs: out.git_dirs,
        collapsed: out.collapsed,
        ..Walked::default()
    };
    add_skips(&mut w, out.skips);
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

/// What `lstat` says of an entry, from `std` or from a raw `fstatat`.
pub(super) struct Stat {
    dev: u64,
    ino: u64,
    mode: u32,
    nlink: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stat {
    fn of_meta(m: &std::fs::Metadata) -> Self {
        Stat {
            dev: m.dev(),
            ino: m.ino(),
            mode: m.mode(),
            nlink: m.nlink(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    pub(super) fn of_raw(s: &libc::stat) -> Self {
        Stat {
            dev: s.st_dev,
            ino: s.st_ino,
            mode: s.st_mode,
            nlink: s.st_nlink,
            size: s.st_size as u64,
            mtime: (s.st_mtime, s.st_mtime_nsec),
            ctime: (s.st_ctime, s.st_ctime_nsec),
        }
    }

    fn format(&self) -> u32 {
        self.mode & libc::S_IFMT
    }

    pub(super) fn is_dir(&self) -> bool {
        self.format() == libc::S_IFDIR
    }

    pub(super) fn file_stat(&self) -> FileStat {
        FileStat::from_parts(self.dev, self.ino, self.mode, self.size, self.mtime, self.ctime)
    }
}

/// What the entry at `path` (whose `lstat` is `st`; `link` reads its
/// target when it is a symlink) is to a capture, and whether to descend.
fn classify(
    at: At,
    path: &Path,
    rel: Vec<u8>,
    st: &Stat,
    link: impl FnOnce() -> std::io::Result<Vec<u8>>,
) -> (Option<Found>, bool) {
    let skipped = |rel, why| {
        let s = Skip {
            rel: Some(rel),
            why,
            temp: false,
        };
        (Some(Found::Skipped(s)), false)
    };
    let kind = match st.format() {
        libc::S_IFREG => NodeKind::File,
        libc::S_IFDIR => {
            // moat's own directories are not content, however reached.
            if at.skip.contains(&(st.dev, st.ino)) {
                return (None, false);
            }
            NodeKind::Dir
        }
        libc::S_IFLNK => match link() {
            Ok(t) => NodeKind::Symlink(t),
            Err(e) => return skipped(rel, format!("skipped {}: {e}", path.display())),
        },
        f => {
            let what = match f {
                libc::S_IFSOCK => "socket",
                libc::S_IFIFO => "FIFO",
                _ => "device file",
            };
            return skipped(rel, format!("skipped {what}: {}", path.display()));
        }
    };
    let dir = kind == NodeKind::Dir;
    // A tree holds mtimes as i64 nanoseconds (1677-09-21 to 2262-04-11).
    // Beyond that a file or link would be restored with another mtime, so
    // it is refused; a directory (whose contents matter more) is kept with
    // its mtime clamped.
    if crate::util::timestamp_ns(st.mtime.0, st.mtime.1).is_none() {
        let why = format!(
            "mtime {}s is outside what a snapshot holds (1677-09-21 to 2262-04-11)",
            st.mtime.0
        );
        if !dir {
            return skipped(rel, format!("skipped {}: {why}", path.display()));
        }
        let node = Node {
            rel,
            stat: st.file_stat(),
            kind,
            multi_link: false,
        };
        let why = format!("{}: directory {why}; stored clamped", path.display());
        return (Some(Found::Both(node, why)), true);
    }
    let node = Node {
        rel,
        stat: st.file_stat(),
        multi_link: !dir && st.nlink > 1,
        kind,
    };
    (Some(Found::Node(node)), dir)
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
            let link = || std::fs::read_link(&path).map(|t| t.into_os_string().into_vec());
            let found = classify(at, &path, rel.clone(), &Stat::of_meta(&meta), link);
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
                let below = walk_at(root, &rel, &all, None, None)?;
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
