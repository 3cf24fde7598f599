//! The watcher's bookkeeping, the same for every platform: the epoch, the
//! numbered segments of dirty paths, and the answer to a capture's
//! `begin` (the protocol is in the parent module's doc).
//!
//! Invariant: `begin` polls the backend before it opens a new segment, so
//! every event queued before the request lands in a segment older than the
//! token it hands out. Observers (`observe`) see every dirty path as it is
//! taken in, whoever takes it in; they never change what is vouched for.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use rustc_hash::FxHashSet;

use super::{Answer, Change, Since, Vouch, Watcher};

/// Dirty paths held before the watcher gives up and starts a new epoch
/// (bounds its memory; the next capture then walks).
pub const MAX_DIRTY: usize = 1 << 20;

struct Inner {
    watcher: Box<dyn Watcher>,
    epoch: [u8; 16],
    /// Why the last epoch ended, for the capture that falls back.
    last_reset: Option<String>,
    broken: Option<String>,
    seq: u64,
    segments: BTreeMap<u64, FxHashSet<Vec<u8>>>,
    held: usize,
    held_bytes: usize,
    max_dirty: usize,
    observers: Vec<Observer>,
}

/// Told of every dirty path the hub takes in (`moat run`'s idle detection).
pub type Observer = Box<dyn Fn(&[u8]) + Send>;

/// A watcher and its history; answers captures (`Vouch`).
pub struct Hub {
    inner: Mutex<Inner>,
    wait: Box<dyn Fn(Duration) + Send + Sync>,
}

/// What `moat watch --status` shows of one watcher.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Status {
    pub workspace: String,
    pub pid: u32,
    /// Paths marked dirty and not yet handed to a capture that used them.
    pub dirty: u64,
    pub watched_dirs: u64,
    /// Bytes the watcher holds (watch table and dirty paths).
    pub memory_bytes: u64,
    pub bytes_per_dir: u64,
    /// Why it cannot vouch, if it cannot.
    pub broken: Option<String>,
    pub last_reset: Option<String>,
}

fn new_epoch() -> [u8; 16] {
    crate::util::unique_id16()
}

impl Inner {
    fn pump(&mut self) {
        let mut changes = Vec::new();
        if let Err(e) = self.watcher.poll(&mut changes) {
            changes.push(Change::Broken(format!("reading events failed: {e}")));
        }
        for c in changes {
            match c {
                Change::Dirty(p) => {
                    for o in &self.observers {
                        o(&p);
                    }
                    let len = p.len();
                    if self.segments.entry(self.seq).or_default().insert(p) {
                        self.held += 1;
                        self.held_bytes += len + 32;
                    }
                    if self.held > self.max_dirty {
                        self.reset(format!("more than {} paths changed", self.max_dirty));
                    }
                }
                Change::Reset(why) => self.reset(why),
                Change::Broken(why) => {
                    self.broken.get_or_insert(why);
                }
            }
        }
    }

    fn reset(&mut self, why: String) {
        self.epoch = new_epoch();
        self.last_reset = Some(why);
        self.segments.clear();
        self.held = 0;
        self.held_bytes = 0;
    }
}

impl Hub {
    /// Starts the history of `watcher` (which watches everything already).
    pub fn new(watcher: Box<dyn Watcher>) -> Self {
        Self::with_max_dirty(watcher, MAX_DIRTY)
    }

    /// `new` with another bound on the dirty paths held.
    pub fn with_max_dirty(watcher: Box<dyn Watcher>, max_dirty: usize) -> Self {
        let wait = watcher.waiter();
        Hub {
            inner: Mutex::new(Inner {
                watcher,
                epoch: new_epoch(),
                last_reset: None,
                broken: None,
                seq: 0,
                segments: BTreeMap::new(),
                held: 0,
                held_bytes: 0,
                max_dirty,
                observers: Vec::new(),
            }),
            wait,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits up to `timeout` for events, then takes them in. A watcher
    /// process runs this in a loop so the kernel queue never fills.
    pub fn pump(&self, timeout: Duration) {
        (self.wait)(timeout);
        self.lock().pump();
    }

    /// Tells `f` of every dirty path taken in from now on (called with
    /// the hub locked: `f` must be quick and must not call the hub).
    pub fn observe(&self, f: Observer) {
        self.lock().observers.push(f);
    }

    /// (watched directories, bytes the watcher holds for them).
    pub fn usage(&self) -> (u64, u64) {
        self.lock().watcher.usage()
    }

    pub fn status(&self) -> Status {
        let mut g = self.lock();
        g.pump();
        let (dirs, bytes) = g.watcher.usage();
        Status {
            dirty: g.segments.values().map(|s| s.len() as u64).sum(),
            watched_dirs: dirs,
            memory_bytes: bytes.saturating_add(g.held_bytes as u64),
            bytes_per_dir: bytes.checked_div(dirs).unwrap_or(0),
            broken: g.broken.clone(),
            last_reset: g.last_reset.clone(),
            ..Status::default()
        }
    }
}

impl Vouch for Hub {
    fn begin(&self, since: Option<Since>) -> Answer {
        let mut g = self.lock();
        g.pump();
        if let Some(why) = &g.broken {
            return Answer::Refused {
                reason: format!("the watcher cannot vouch: {why}"),
                next: None,
            };
        }
        let closed = g.seq;
        g.seq += 1;
        let seq = g.seq;
        g.segments.insert(seq, FxHashSet::default());
        let next = Since { epoch: g.epoch, seq };
        let refuse = |reason: String| Answer::Refused {
            reason,
            next: Some(next),
        };
        let Some(since) = since else {
            return refuse("no watch token for the cached scan".into());
        };
        if since.epoch != g.epoch {
            return refuse(match &g.last_reset {
                Some(why) => format!("the watcher lost events since the cached scan ({why})"),
                None => "the watcher started after the cached scan".into(),
            });
        }
        let oldest = g.segments.keys().next().copied().unwrap_or(seq);
        if since.seq > closed || since.seq < oldest {
            return refuse("the watcher no longer holds the history since the cached scan".into());
        }
        // Segments before the one asked about are no longer needed.
        let old: Vec<u64> = g.segments.range(..since.seq).map(|(k, _)| *k).collect();
        for k in old {
            if let Some(s) = g.segments.remove(&k) {
                g.held = g.held.saturating_sub(s.len());
                g.held_bytes = g.held_bytes.saturating_sub(s.iter().map(|p| p.len() + 32).sum());
            }
        }
        let mut dirty: FxHashSet<&Vec<u8>> = FxHashSet::default();
        for s in g.segments.range(since.seq..seq).map(|(_, s)| s) {
            dirty.extend(s.iter());
        }
        let dirty = dirty.into_iter().cloned().collect();
        let ignoring = g.watcher.ignoring();
        Answer::Vouched {
            dirty,
            next,
            ignoring,
        }
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
