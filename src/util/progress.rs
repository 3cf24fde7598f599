//! How long-running library operations report progress. The library only
//! calls this trait; the CLI draws bars (indicatif) or stays silent.

pub trait Progress: Sync {
    /// A new phase of `total` bytes (0 when unknown).
    fn start(&self, _phase: &str, _total: u64) {}
    /// A new phase of `total` items (snapshots, packs; 0 when unknown):
    /// shown as counts, not bytes.
    fn start_count(&self, phase: &str, total: u64) {
        self.start(phase, total)
    }
    fn inc(&self, _n: u64) {}
    fn finish(&self) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}
