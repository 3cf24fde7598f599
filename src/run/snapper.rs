//! The snapshots of a run, in the order their moments happened.
//!
//! Two threads. The stager takes moments one after another: each is staged
//! (walked and copied: the workspace as of that instant) as soon as the one
//! before it is staged, and a held process (a commit, a build) is released
//! right after its own staging, so its snapshot is the tree at its exit.
//! The ingester then chunks, stores and commits the staged captures in the
//! same order, in the background at low priority. Nothing is dropped: a
//! moment that arrives while a snapshot is being taken is taken right
//! after it. Moments nobody holds that queue up behind a busy stager with
//! the same trigger (an idle tick, a commit a non-holding tracer saw) are
//! taken together: the snapshot after them covers them all.
//!
//! Invariants: snapshots are committed in moment order, each naming the
//! one before as parent; a capture staged before its parent is committed
//! judges its growth against the parent's walk and never trusts a stat
//! cache its parent has not written yet (it re-reads what the parent read).
//! Every snapshot of a run is written even when nothing changed (a ~200
//! byte record of the same tree), so each moment, and the state before and
//! after every run, has a snapshot retention can see.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};

use super::log::RunLog;
use super::trace::Release;
use super::watcher::RunWatch;
use super::{RunInfo, lock};
use crate::capture::{self, CaptureOptions, Guard, Outcome, Provisional, Staged};
use crate::format::snapshot::Trigger;
use crate::ops::gc::retention::Policy;
use crate::store::Store;
use crate::util::progress::NoProgress;
use crate::worktree::config::WorkspaceConfig;
use crate::worktree::walk::WalkOptions;

/// Something worth a snapshot.
pub struct Moment {
    pub trigger: Trigger,
    /// The snapshot can be the workspace at the moment itself: the process
    /// is held, or the moment is now (start, idle, end).
    pub exact: bool,
    /// The held process: released once the snapshot is staged.
    pub release: Option<Release>,
    /// What happened, for the log (`git commit -m x`).
    pub what: String,
}

/// A staged capture on its way to the ingester.
pub struct Ready<'a> {
    trigger: Trigger,
    seq: u64,
    staged: Staged<'a>,
}

pub struct Snapper<'a> {
    pub store: &'a Store,
    pub ws: PathBuf,
    pub cfg: WorkspaceConfig,
    pub run_id: String,
    pub info: Arc<Mutex<RunInfo>>,
    pub clone: bool,
    pub log: &'a RunLog<'a>,
    /// Low-priority threads for background snapshot work.
    pub pool: Option<rayon::ThreadPool>,
    /// The run's own watcher: where its captures learn what changed once
    /// it is ready.
    pub watch: Option<Arc<RunWatch>>,
    /// The sequence number of the newest staged capture, and what it will
    /// store (the next capture's parent until it commits).
    last_staged: Mutex<Option<(u64, Arc<Provisional>)>>,
    /// The sequence number of the newest capture the ingester finished.
    ingested: AtomicU64,
    /// Where committed snapshots go to be pushed (`run::push`).
    pushes: Mutex<Option<Sender<crate::format::id::ObjectId>>>,
}

impl<'a> Snapper<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: &'a Store,
        ws: PathBuf,
        cfg: WorkspaceConfig,
        run_id: String,
        info: Arc<Mutex<RunInfo>>,
        clone: bool,
        log: &'a RunLog<'a>,
        pool: Option<rayon::ThreadPool>,
        watch: Option<Arc<RunWatch>>,
    ) -> Self {
        Snapper {
            store,
            ws,
            cfg,
            run_id,
            info,
            clone,
            log,
            pool,
            watch,
            last_staged: Mutex::new(None),
            ingested: AtomicU64::new(0),
            pushes: Mutex::new(None),
        }
    }

    /// Sends every snapshot committed from now on to `tx`.
    pub fn push_to(&self, tx: Sender<crate::format::id::ObjectId>) {
        *lock(&self.pushes) = Some(tx);
    }

    /// Ends the pushes (the pusher finishes what it has).
    pub fn close_pushes(&self) {
        lock(&self.pushes).take();
    }

    /// Stages the moments in order until their channel closes, handing
    /// each staged capture to `ready`.
    pub fn stage_all(&self, moments: Receiver<Moment>, ready: Sender<Ready<'a>>) {
        let mut queue: VecDeque<Moment> = VecDeque::new();
        loop {
            if queue.is_empty() {
                match moments.recv() {
                    Ok(m) => queue.push_back(m),
                    Err(_) => return,
                }
            }
            queue.extend(moments.try_iter());
            let Some(m) = queue.pop_front() else { continue };
            let mut covered = 1;
            if m.release.is_none() {
                while queue
                    .front()
                    .is_some_and(|n| n.release.is_none() && n.trigger == m.trigger)
                {
                    queue.pop_front();
                    covered += 1;
                }
            }
            if let Some(r) = self.take(m, covered) {
                let _ = ready.send(r);
            }
        }
    }

    /// Stages one moment and lets its held process go.
    fn take(&self, m: Moment, covered: usize) -> Option<Ready<'a>> {
        let staged = self.stage(m.trigger, m.exact);
        let name = m.trigger.name();
        let staged = match (staged, m.release) {
            (staged, None) => staged,
            (staged, Some(release)) => {
                let late = release.too_late();
                let held = release.release();
                lock(&self.info).holds_ns.push(held.as_nanos() as u64);
                self.log.line(&format!(
                    "{name}: `{}` held {:.1} ms at its exit{}",
                    m.what,
                    held.as_secs_f64() * 1e3,
                    if late {
                        ", then let go before staging finished"
                    } else {
                        ""
                    }
                ));
                staged.map(|mut s| {
                    if late {
                        s.mark_inexact();
                    }
                    s
                })
            }
        }?;
        if covered > 1 {
            self.log.line(&format!(
                "{name} snapshot covers {covered} moments that queued up"
            ));
        }
        let seq = {
            let mut last = lock(&self.last_staged);
            let seq = last.as_ref().map_or(1, |(s, _)| s + 1);
            *last = Some((seq, Arc::new(staged.provisional())));
            seq
        };
        Some(Ready {
            trigger: m.trigger,
            seq,
            staged,
        })
    }

    /// The pre-run snapshot, staged before CMD starts (sequence number 1).
    pub fn stage_first(&self) -> Option<Ready<'a>> {
        self.take(
            Moment {
                trigger: Trigger::PreRun,
                exact: true,
                release: None,
                what: String::new(),
            },
            1,
        )
    }

    /// The first phase of a snapshot: after it, the workspace may change.
    fn stage(&self, trigger: Trigger, exact: bool) -> Option<Staged<'a>> {
        let s = &self.cfg.snapshots;
        // The parent is the newest staged capture until it is committed.
        let parent = lock(&self.last_staged)
            .as_ref()
            .filter(|(seq, _)| *seq > self.ingested.load(Ordering::SeqCst))
            .map(|(_, p)| p.clone());
        let opts = CaptureOptions {
            walk: self.cfg.walk_options(WalkOptions::default()),
            trigger,
            run_id: Some(self.run_id.clone()),
            guard: Some(Guard {
                max_new_bytes: s.max_new_bytes,
                max_new_files: s.max_new_files,
                enforce: true,
            }),
            clone: self.clone,
            allow_empty: true,
            exact,
            parent,
            watch: self.watch.as_ref().map(|w| w.link()).unwrap_or_default(),
            ..CaptureOptions::default()
        };
        match capture::stage(self.store, &self.ws, &opts, &NoProgress) {
            Ok(staged) => {
                let st = staged.staging();
                self.log.line(&format!(
                    "{} snapshot staged in {:.1} ms ({}): {} files in memory, {} cloned, {} read directly{}",
                    trigger.name(),
                    st.stage_ns as f64 / 1e6,
                    staged.scan_kind(),
                    st.memory_files,
                    st.cloned_files,
                    st.direct_files,
                    st.fallback
                        .as_ref()
                        .map(|w| format!(" ({w})"))
                        .unwrap_or_default()
                ));
                Some(staged)
            }
            Err(e) => {
                self.log
                    .line(&format!("warning: {} snapshot not taken: {e}", trigger.name()));
                None
            }
        }
    }

    /// Ingests and commits the staged captures in order until the channel
    /// closes.
    pub fn ingest_all(&self, ready: Receiver<Ready<'a>>) {
        for r in ready {
            self.ingest(r);
        }
    }

    /// The second phase: ingest what was staged and commit the snapshot.
    fn ingest(&self, r: Ready) {
        let Ready { trigger, seq, staged } = r;
        let res = match &self.pool {
            Some(p) => p.install(|| staged.ingest(&NoProgress)),
            None => staged.ingest(&NoProgress),
        };
        self.ingested.store(seq, Ordering::SeqCst);
        let name = trigger.name();
        match res {
            Ok(r) => {
                for w in &r.warnings {
                    self.log.line(&format!("warning: {w}"));
                }
                let (Outcome::Written(id) | Outcome::Unchanged(id)) = r.outcome;
                let same = r.snapshot.parent.is_some_and(|p| {
                    self.store
                        .load_snapshot(&p)
                        .is_ok_and(|ps| ps.root == r.snapshot.root)
                });
                self.log.line(&format!(
                    "{name} snapshot {}{}{}",
                    id.short(),
                    if r.snapshot.exact {
                        ""
                    } else {
                        " (not exact: taken after the moment)"
                    },
                    if same {
                        ", the same files as its parent"
                    } else {
                        ""
                    }
                ));
                let mut info = lock(&self.info);
                info.snapshots.push((name.into(), id.to_hex()));
                if trigger == Trigger::PreRun {
                    info.pre_run = Some(id.to_hex());
                }
                drop(info);
                if let Some(tx) = lock(&self.pushes).as_ref() {
                    let _ = tx.send(id);
                }
                self.apply_retention();
            }
            Err(e) => self.log.line(&format!("warning: {name} snapshot not taken: {e}")),
        }
    }

    fn apply_retention(&self) {
        let policy = Policy::for_workspace(&self.cfg.snapshots.retention);
        match crate::ops::gc::forget(self.store, &policy, &self.ws) {
            Ok(gone) if !gone.is_empty() => self.log.line(&format!(
                "retention removed {} snapshots (data goes at the next moat gc)",
                gone.len()
            )),
            Ok(_) => {}
            Err(e) => self.log.line(&format!("warning: retention not applied: {e}")),
        }
    }
}
