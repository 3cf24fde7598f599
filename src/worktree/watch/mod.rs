//! Watching a workspace, so a snapshot costs what changed.
//!
//! A watcher keeps, for one workspace, the set of paths that changed, in
//! numbered *segments*: a capture's `begin` request first reads every event
//! the kernel has queued (inotify queues an event inside the system call
//! that changed the file, so every change completed before `begin` is
//! read), then closes the current segment and opens segment `seq`, and
//! answers with the paths of every segment from the one the capture asked
//! about on. The capture saves `(epoch, seq)` as a *token* beside the stat
//! cache it writes; the next capture asks "what changed since that token".
//!
//! The vouching protocol (the watcher answers `Vouched` only if all hold):
//! 1. The token's epoch is the watcher's current epoch. An epoch starts
//!    once every directory of the workspace is watched, and ends at
//!    anything that may lose an event: a queue overflow, a watch that
//!    could not be added (watch limit), a mount or unmount under the
//!    workspace, the workspace root moved or deleted, the dirty set
//!    growing past its bound, the watcher restarting or crashing (its
//!    epoch dies with it). A capture with no token, or one of another
//!    epoch, walks the whole workspace.
//! 2. The watcher still holds every segment from the token's on (it drops
//!    segments older than the oldest token asked about).
//! 3. Because the token is taken *before* the capture's scan begins, a
//!    change during the scan lands in a segment the next capture receives:
//!    it stays dirty for the next snapshot, whether or not this scan saw it.
//!
//! 4. Every directory a capture's walk may enter is watched. A watcher
//!    leaves unwatched only the directories its ignore rules (`Ignoring`:
//!    ignore files, exclude globs) keep every walk out of, found by that
//!    walk itself (`listing`); its answer names those rules, and a capture
//!    whose own rules might enter such a directory (`--no-ignore`, fewer
//!    excludes) walks instead. Where a rule may have changed (an event on
//!    a `.gitignore`, `.ignore` or `.git` entry, a `.git/info/exclude`
//!    whose stamp changed, checked at every poll since `.git` is not
//!    watched), the watcher lists that directory again before it answers:
//!    what is no longer ignored is watched and marked dirty as a whole, and
//!    the capture re-walks that directory anyway (a changed exclude file,
//!    or rules changed in the configuration, end the epoch or make the
//!    capture walk). Events below an unwatched ignored directory are not
//!    missed: no walk would have looked there.
//!
//! A dirty path means "this entry, and for a directory everything below
//! it, may differ from the stat cache"; the capture re-walks it and its
//! ancestors and reuses the cached tree of every other directory. A
//! directory renamed inside the workspace keeps its watches (they follow
//! the inode); the watcher renames their paths and marks both names dirty.
//!
//! Not seen by any inotify watcher, and so never vouched for: writes
//! through a shared memory mapping (no event at all; git and watchman have
//! the same limit), and writes through a hard link outside the workspace
//! (the capture re-stats every multi-link file instead of trusting it) or
//! made inside an ignored directory, which is not watched (its creation
//! gives no event either; a link count change reaches only watches on the
//! file itself).

#[cfg(target_os = "linux")]
pub mod linux;
pub mod listing;
pub mod socket;
pub mod state;
pub mod twin;

use std::fmt;
use std::sync::Arc;

use crate::worktree::walk::WalkOptions;

pub use state::{Hub, Status};

/// A position in a watcher's history: everything after it is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Since {
    pub epoch: [u8; 16],
    pub seq: u64,
}

/// A watcher's answer to a capture about to scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// These workspace-relative paths (a directory: with all below it) are
    /// all that may have changed since the token asked about, in every
    /// directory not left out by `ignoring`. `next` is the token of the
    /// scan about to start.
    Vouched {
        dirty: Vec<Vec<u8>>,
        next: Since,
        ignoring: Ignoring,
    },
    /// The watcher cannot vouch (`reason`); if `next` is given, the scan
    /// about to start can be the base of the next capture.
    Refused { reason: String, next: Option<Since> },
}

/// Something that can answer a capture's `begin`: the in-process `Hub`,
/// or the socket client of a `moat watch` process.
pub trait Vouch: Send + Sync {
    fn begin(&self, since: Option<Since>) -> Answer;
}

/// The directories a watcher leaves unwatched: those a walk by these
/// rules never enters because they are ignored. The default ignores
/// nothing (every directory is watched).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ignoring {
    /// By `.gitignore`, `.ignore` and `.git/info/exclude` files.
    pub ignore_files: bool,
    /// By these gitignore-style globs.
    pub excludes: Vec<String>,
}

impl Ignoring {
    /// What a walk by `opts` leaves out as ignored.
    pub fn of(opts: &WalkOptions) -> Self {
        Ignoring {
            ignore_files: !opts.no_ignore,
            excludes: opts.excludes.clone(),
        }
    }

    /// The walk options that leave out what this leaves out.
    pub fn walk_options(&self) -> WalkOptions {
        WalkOptions {
            no_ignore: !self.ignore_files,
            excludes: self.excludes.clone(),
            ..WalkOptions::default()
        }
    }

    /// What it ignores by, for a reason to walk.
    pub fn describe(&self) -> String {
        let mut by = Vec::new();
        if self.ignore_files {
            by.push("ignore files".to_string());
        }
        if !self.excludes.is_empty() {
            by.push(format!("the globs {}", self.excludes.join(" ")));
        }
        match by.is_empty() {
            true => "nothing".into(),
            false => format!("by {}", by.join(" and ")),
        }
    }

    pub fn is_nothing(&self) -> bool {
        !self.ignore_files && self.excludes.is_empty()
    }

    /// Whether a walk by `opts` enters only directories a watcher ignoring
    /// this watches: it ignores by the same files, and by every glob
    /// (a directory is left out when any rule says so, so more rules
    /// leave out more), and walks no path whatever the rules say.
    pub fn covers(&self, opts: &WalkOptions) -> bool {
        self.is_nothing()
            || (opts.include.is_empty()
                && (!self.ignore_files || !opts.no_ignore)
                && self.excludes.iter().all(|e| opts.excludes.contains(e)))
    }
}

/// Where a watcher takes the rules of what it leaves unwatched from.
#[derive(Clone, Debug)]
pub enum Rules {
    /// These, for its whole life (`moat run`: its snapshots walk by the
    /// configuration it read as it started).
    Fixed(Ignoring),
    /// The workspace's `moat.yaml` (or `agent.yaml`), read again whenever
    /// it changes (`moat watch`: each `moat snapshot` reads it afresh); a
    /// configuration that cannot be read ignores nothing.
    Workspace,
}

impl Rules {
    /// The rules in force now for workspace `ws`.
    pub fn current(&self, ws: &std::path::Path) -> Ignoring {
        match self {
            Rules::Fixed(i) => i.clone(),
            Rules::Workspace => crate::worktree::config::scan(ws, None, WalkOptions::default())
                .map(|r| Ignoring::of(&r.walk))
                .unwrap_or_default(),
        }
    }
}

/// How a capture learns what changed.
#[derive(Clone, Default)]
pub enum WatchLink {
    /// Walk the whole workspace.
    Off,
    /// Ask the `moat watch` process of the workspace, if one runs.
    #[default]
    Socket,
    /// Ask this watcher (one embedded in the calling process).
    With(Arc<dyn Vouch>),
}

impl fmt::Debug for WatchLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WatchLink::Off => "Off",
            WatchLink::Socket => "Socket",
            WatchLink::With(_) => "With(..)",
        })
    }
}

/// One thing a watcher backend reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// This workspace-relative path (and all below it) may have changed.
    Dirty(Vec<u8>),
    /// Events may have been lost; watches are intact again from now on.
    Reset(String),
    /// The watcher can no longer vouch for anything (until restarted).
    Broken(String),
}

/// A platform's file watcher for one workspace (inotify on Linux; a test
/// twin fed by hand). Every directory is watched once `new` returns.
pub trait Watcher: Send {
    /// Reads every queued event without blocking and reports what changed.
    fn poll(&mut self, out: &mut Vec<Change>) -> crate::Result<()>;
    /// A function that waits up to the given time for events (returning
    /// early when some arrive), usable while another thread polls.
    fn waiter(&self) -> Box<dyn Fn(std::time::Duration) + Send + Sync>;
    /// (watched directories, bytes the watcher holds for them).
    fn usage(&self) -> (u64, u64);
    /// The directories it leaves unwatched (default: none).
    fn ignoring(&self) -> Ignoring {
        Ignoring::default()
    }
}

/// This platform's watcher of `ws` (canonical), with every directory
/// watched except `.git`, `skip` and those `rules` ignore.
pub fn platform_watcher(
    ws: &std::path::Path,
    skip: Vec<std::path::PathBuf>,
    rules: Rules,
) -> crate::Result<Box<dyn Watcher>> {
    #[cfg(target_os = "linux")]
    {
        Ok(Box::new(linux::Inotify::new(ws, skip, rules)?))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (skip, rules);
        Err(crate::Error::io(
            ws,
            std::io::Error::new(std::io::ErrorKind::Unsupported, "watching needs Linux (inotify)"),
        ))
    }
}

/// Starts watching `ws` in this process (the library API): every
/// directory is watched when it returns, except those the workspace's
/// configuration and ignore files ignore (`Rules::Workspace`), and a
/// background thread takes events in until the last handle is dropped.
/// Pass the hub to a capture as `WatchLink::With(hub)`.
pub fn spawn(ws: &std::path::Path, skip: Vec<std::path::PathBuf>) -> crate::Result<Arc<Hub>> {
    spawn_with(ws, skip, Rules::Workspace)
}

/// `spawn`, leaving unwatched what `rules` ignore (`moat run`: the rules
/// its snapshots walk by).
pub fn spawn_with(
    ws: &std::path::Path,
    skip: Vec<std::path::PathBuf>,
    rules: Rules,
) -> crate::Result<Arc<Hub>> {
    let hub = Arc::new(Hub::new(platform_watcher(ws, skip, rules)?));
    let weak = Arc::downgrade(&hub);
    let started = std::thread::Builder::new()
        .name("moat-watch".into())
        .spawn(move || {
            while let Some(h) = weak.upgrade() {
                h.pump(std::time::Duration::from_millis(200));
            }
        });
    started.map_err(|e| crate::Error::io(ws, e))?;
    Ok(hub)
}
