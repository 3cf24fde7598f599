//! How long-running library operations report progress. The library only
//! calls this trait; the CLI draws bars (indicatif) or stays silent.

pub trait Progress: Sync {
    /// A new phase with `total` units (0 when unknown).
    fn start(&self, _phase: &str, _total: u64) {}
    fn inc(&self, _n: u64) {}
    fn finish(&self) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}
