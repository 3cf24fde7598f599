//! The test twin of a platform watcher: changes are fed by hand through a
//! `TwinFeed`, so the protocol (segments, epochs, every fallback) can be
//! driven deterministically, including the losses a kernel rarely shows.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Change, Watcher};

/// The hand that feeds a `Twin`.
#[derive(Clone, Default)]
pub struct TwinFeed(Arc<Mutex<Vec<Change>>>);

impl TwinFeed {
    pub fn push(&self, c: Change) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(c);
    }

    pub fn dirty(&self, path: &str) {
        self.push(Change::Dirty(path.as_bytes().to_vec()));
    }
}

/// A watcher whose events come from a `TwinFeed`.
pub struct Twin {
    feed: TwinFeed,
}

impl Twin {
    pub fn new() -> (Self, TwinFeed) {
        let feed = TwinFeed::default();
        (Twin { feed: feed.clone() }, feed)
    }
}

impl Watcher for Twin {
    fn poll(&mut self, out: &mut Vec<Change>) -> crate::Result<()> {
        out.append(&mut self.feed.0.lock().unwrap_or_else(|p| p.into_inner()));
        Ok(())
    }

    fn waiter(&self) -> Box<dyn Fn(Duration) + Send + Sync> {
        Box::new(|t| std::thread::sleep(t.min(Duration::from_millis(10))))
    }

    fn usage(&self) -> (u64, u64) {
        (0, 0)
    }
}
