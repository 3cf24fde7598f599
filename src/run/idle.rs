//! Idle detection: watches the workspace for changes (inotify/FSEvents via
//! `notify`), ignoring `.git/`, the store, moat's own files and ignored
//! paths; "idle" is a change followed by a quiet period.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::lock;
use crate::worktree::config::WorkspaceConfig;

/// Watches the workspace for changes (inotify/FSEvents via `notify`),
/// ignoring `.git/`, the store, moat's own files and ignored paths.
pub struct IdleWatch {
    _watcher: notify::RecommendedWatcher,
    last_change: Arc<Mutex<Option<Instant>>>,
}

impl IdleWatch {
    pub fn start(
        ws: &Path,
        store: &Path,
        runs: &Path,
        cfg: &WorkspaceConfig,
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
            _watcher: watcher,
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
