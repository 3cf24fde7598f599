//! The run's own watcher of the workspace (`worktree::watch::spawn`),
//! started in the background as the run starts.
//!
//! Watching a large workspace takes seconds (one inotify watch per
//! directory: 5 s for 24,551 directories on a loaded machine), and CMD
//! must not wait for it: the pre-run snapshot waits for the watcher at most
//! `PRE_RUN_WAIT` (a small workspace is watched by then, so every later
//! snapshot can be vouched for from the pre-run scan on); after that every
//! capture uses the watcher once it is ready, and walks until then (the
//! first capture after it is ready walks once more to take a token).
//!
//! Invariant: a capture is handed the hub only once every directory is
//! watched (`spawn` returns then), so whatever the hub vouches for it saw.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::lock;
use crate::store::Store;
use crate::worktree::watch::{Hub, Ignoring, Rules, WatchLink};

/// How long the pre-run snapshot waits for the watcher to be ready.
pub const PRE_RUN_WAIT: Duration = Duration::from_millis(300);

enum State {
    Starting,
    /// Ready, or failed (none); the line for the log until it is taken.
    Settled(Option<Arc<Hub>>, Option<String>),
}

/// The run's watcher, starting or settled.
pub struct RunWatch {
    state: Mutex<State>,
    settled: Condvar,
}

impl RunWatch {
    /// Starts watching `ws` on a thread of its own, leaving unwatched the
    /// directories the run's snapshots ignore.
    pub fn start(store: &Store, ws: &std::path::Path, ignoring: Ignoring) -> Arc<Self> {
        let rw = Arc::new(RunWatch {
            state: Mutex::new(State::Starting),
            settled: Condvar::new(),
        });
        let (me, ws, skip) = (rw.clone(), ws.to_path_buf(), store.own_dirs());
        let started = std::thread::Builder::new()
            .name("moat-run-watch".into())
            .spawn(move || {
                let t = std::time::Instant::now();
                let (hub, line) = match crate::worktree::watch::spawn_with(&ws, skip, Rules::Fixed(ignoring)) {
                    Ok(hub) => {
                        let (dirs, bytes) = hub.usage();
                        let line = format!(
                            "watching {dirs} directories ({} KiB) after {:.1} ms: snapshots from now on re-examine only what changed",
                            bytes / 1024,
                            t.elapsed().as_secs_f64() * 1e3
                        );
                        (Some(hub), line)
                    }
                    Err(e) => (
                        None,
                        format!("not watching the workspace ({e}): snapshots walk it (unless `moat watch` runs)"),
                    ),
                };
                *lock(&me.state) = State::Settled(hub, Some(line));
                me.settled.notify_all();
            });
        if let Err(e) = started {
            *lock(&rw.state) = State::Settled(
                None,
                Some(format!(
                    "not watching the workspace (no thread: {e}): snapshots walk it"
                )),
            );
        }
        rw
    }

    /// Waits up to `d` for the watcher to settle.
    pub fn wait(&self, d: Duration) {
        let g = lock(&self.state);
        let _ = self
            .settled
            .wait_timeout_while(g, d, |s| matches!(s, State::Starting));
    }

    /// Whether it is ready or has failed.
    pub fn settled(&self) -> bool {
        !matches!(*lock(&self.state), State::Starting)
    }

    /// The hub, once ready.
    pub fn hub(&self) -> Option<Arc<Hub>> {
        match &*lock(&self.state) {
            State::Settled(h, _) => h.clone(),
            State::Starting => None,
        }
    }

    /// Where a capture learns what changed: the hub once ready, else a
    /// `moat watch` process if one runs.
    pub fn link(&self) -> WatchLink {
        match self.hub() {
            Some(h) => WatchLink::With(h),
            None => WatchLink::default(),
        }
    }

    /// The line saying how watching went, once (when settled).
    pub fn take_line(&self) -> Option<String> {
        match &mut *lock(&self.state) {
            State::Settled(_, line) => line.take(),
            State::Starting => None,
        }
    }
}
