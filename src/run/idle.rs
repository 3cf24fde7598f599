//! Idle detection: notices changes in the workspace, ignoring `.git/`, the
//! store, moat's own files and ignored paths; "idle" is a change followed
//! by a quiet period.
//!
//! The changes come from the run's own watcher (the hub its snapshots ask
//! what changed) when it has one, so the workspace is watched once; without
//! one, from a watcher of its own (inotify/FSEvents via `notify`).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::lock;
use crate::worktree::config::WorkspaceConfig;
use crate::worktree::watch::Hub;

/// Notices changes in the workspace, ignoring `.git/`, the store, moat's
/// own files and ignored paths.
pub struct IdleWatch {
    /// The watcher of its own, if it has one (dropping it stops it).
    _watcher: Option<notify::RecommendedWatcher>,
    last_change: Arc<Mutex<Option<Instant>>>,
}

impl IdleWatch {
    /// Takes its changes from `hub` if given, else watches `ws` itself.
    pub fn start(
        ws: &Path,
        store: &Path,
        runs: &Path,
        cfg: &WorkspaceConfig,
        hub: Option<&Hub>,
    ) -> std::result::Result<Self, String> {
        use notify::Watcher;
        let ignore = ignore_matcher(ws, cfg);
        let skip: Vec<PathBuf> = [store, runs]
            .iter()
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .collect();
        let root = ws.to_path_buf();
        let last_change = Arc::new(Mutex::new(None));
        let seen = last_change.clone();
        if let Some(hub) = hub {
            hub.observe(Box::new(move |rel: &[u8]| {
                let p = root.join(std::ffi::OsStr::from_bytes(rel));
                if relevant(&p, &root, &skip, &ignore) {
                    *lock(&seen) = Some(Instant::now());
                }
            }));
            return Ok(IdleWatch {
                _watcher: None,
                last_change,
            });
        }
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(ev) = res else { return };
            if matches!(ev.kind, notify::EventKind::Access(_)) {
                return;
            }
            let counts = ev.paths.iter().any(|p| relevant(p, &root, &skip, &ignore));
            if counts {
                *lock(&seen) = Some(Instant::now());
            }
        })
        .map_err(|e| e.to_string())?;
        watcher
            .watch(ws, notify::RecursiveMode::Recursive)
            .map_err(|e| e.to_string())?;
        Ok(IdleWatch {
            _watcher: Some(watcher),
            last_change,
        })
    }

    /// True once, after a change followed by `threshold` of quiet.
    pub fn quiet_for(&self, threshold: Duration) -> bool {
        let mut last = lock(&self.last_change);
        match *last {
            Some(t) if t.elapsed() >= threshold => {
                *last = None;
                true
            }
            _ => false,
        }
    }
}

fn ignore_matcher(ws: &Path, cfg: &WorkspaceConfig) -> ignore::gitignore::Gitignore {
    let mut b = ignore::gitignore::GitignoreBuilder::new(ws);
    if !cfg.snapshots.exclude.ignore_gitignore {
        b.add(ws.join(".gitignore"));
    }
    for p in &cfg.snapshots.exclude.additional {
        let _ = b.add_line(None, p);
    }
    b.build()
        .unwrap_or_else(|_| ignore::gitignore::Gitignore::empty())
}

fn relevant(p: &Path, root: &Path, skip: &[PathBuf], ignore: &ignore::gitignore::Gitignore) -> bool {
    let Ok(rel) = p.strip_prefix(root) else {
        return false;
    };
    if rel.components().any(|c| c.as_os_str() == ".git") || skip.iter().any(|s| p.starts_with(s)) {
        return false;
    }
    if rel.file_name().is_some_and(|n| {
        std::os::unix::ffi::OsStrExt::as_bytes(n).starts_with(crate::worktree::materialize::TEMP_PREFIX)
    }) {
        return false;
    }
    !ignore.matched_path_or_any_parents(rel, p.is_dir()).is_ignore()
}
