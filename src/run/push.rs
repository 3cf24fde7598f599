//! Auto-push: with `remote: {url: …, auto_push: true}` in `moat.yaml`,
//! every snapshot of a run is pushed to that store by a thread of its
//! own, at low priority, while CMD goes on (`ops::transfer`).
//!
//! Invariants: a push never fails the run or delays CMD; a failed push
//! is retried (three tries, 1 s then 2 s apart) and, failing that, kept
//! for the next snapshot's push and the final one at the end of the run;
//! every failure is logged with its cause, and the run's last log line
//! about pushing says what, if anything, was left unpushed.

use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use super::log::RunLog;
use crate::error::Result;
use crate::format::id::ObjectId;
use crate::ops::transfer;
use crate::store::{SnapshotRecord, Store};

const TRIES: u32 = 3;

pub struct AutoPush<'a> {
    pub store: &'a Store,
    pub url: PathBuf,
    pub log: &'a RunLog<'a>,
    /// Opened on first use, kept for the run.
    remote: Option<Store>,
    pending: Vec<ObjectId>,
}

impl<'a> AutoPush<'a> {
    pub fn new(store: &'a Store, url: PathBuf, log: &'a RunLog<'a>) -> Self {
        AutoPush {
            store,
            url,
            log,
            remote: None,
            pending: Vec::new(),
        }
    }

    /// Pushes each id `ids` yields, until it closes; then pushes what is
    /// left once more and says what could not be pushed.
    pub fn serve(mut self, ids: Receiver<ObjectId>) {
        super::lower_thread_priority();
        for id in ids {
            self.pending.push(id);
            self.push_pending();
        }
        if !self.pending.is_empty() {
            self.push_pending();
        }
        if !self.pending.is_empty() {
            self.log.line(&format!(
                "warning: {} snapshots were not pushed to {}; run `moat push {} --all`",
                self.pending.len(),
                self.url.display(),
                self.url.display()
            ));
        }
    }

    fn push_pending(&mut self) {
        for attempt in 1..=TRIES {
            match self.try_push() {
                Ok(()) => return,
                Err(e) => self.log.line(&format!(
                    "warning: push to {} failed (try {attempt} of {TRIES}): {e}",
                    self.url.display()
                )),
            }
            if attempt < TRIES {
                std::thread::sleep(Duration::from_secs(u64::from(attempt)));
            }
        }
    }

    fn try_push(&mut self) -> Result<()> {
        if self.remote.is_none() {
            self.remote = Some(Store::open_or_create_like(&self.url, &self.store.config)?);
        }
        let Some(remote) = self.remote.as_ref() else {
            return Ok(());
        };
        let mut snaps = Vec::new();
        for id in &self.pending {
            // A snapshot retention removed meanwhile needs no push.
            if let Ok(snap) = self.store.load_snapshot(id) {
                snaps.push(SnapshotRecord { id: *id, snap });
            }
        }
        let r = transfer::transfer(self.store, remote, &snaps, &mut ())?;
        self.pending.clear();
        self.log.line(&format!(
            "pushed {} snapshots to {}: {} objects, {} bytes, {} requests",
            r.snapshots,
            self.url.display(),
            r.objects,
            r.dest.bytes_sent,
            r.dest.requests
        ));
        Ok(())
    }
}
