//! Small crate-wide helpers below every layer: the progress trait, the
//! clocks, unique temp names, quoting for the terminal, opening files that
//! must be regular, and the test failpoints (`fault`). Uses no other layer
//! (only `error`).

pub mod clock;
pub mod date;
pub mod fault;
pub mod fs;
pub mod progress;
pub mod quote;

pub use clock::{fs_clock_ns, now_ns, timestamp_ns, timestamp_ns_clamped};

use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The prefix of every name moat creates inside a workspace (a rollback's
/// temp siblings, its clone holding dir, a clock probe). Walks skip such
/// names, so they are never captured.
pub const WORKSPACE_TEMP_PREFIX: &[u8] = b".moat-tmp-";

/// A name no other writer (process or thread) will pick: `<pid>-<ns>-<n>.<ext>.tmp`.
pub fn temp_name(ext: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{}-{}.{}.tmp", std::process::id(), now_ns(), n, ext)
}

/// Crash-test hook: when `MOAT_FAILPOINT` names this point, the process
/// aborts here like a `kill -9` would (no destructors, no cleanup), so the
/// tests can prove the store survives a crash at exactly this step (see
/// `fault` for the other modes).
pub fn failpoint(name: &str) {
    fault::point(name);
}

/// 16 bytes that differ between calls, processes and moments (watcher
/// epochs, stat cache nonces); not secret, only distinct.
pub fn unique_id16() -> [u8; 16] {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut h = blake3::Hasher::new();
    h.update(&std::process::id().to_le_bytes());
    h.update(&now_ns().to_le_bytes());
    h.update(&N.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let mut e = [0; 16];
    e.copy_from_slice(&h.finalize().as_bytes()[..16]);
    e
}

/// Test helpers shared by the unit tests of several layers.
#[cfg(test)]
pub mod testing {
    /// Runs `f` on its own thread and returns its result, or panics when it
    /// has not finished after `secs` seconds: a hang fails the test instead
    /// of stalling the suite (the stuck thread dies with the test process).
    pub fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        match rx.recv_timeout(std::time::Duration::from_secs(secs)) {
            Ok(v) => v,
            Err(_) => panic!("still running after {secs} s: it hangs"),
        }
    }

    /// `n` deterministic pseudo-random bytes (xorshift), incompressible
    /// and without repeats, so the chunker cuts them into many chunks.
    pub fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    pub fn mkfifo(path: &std::path::Path) {
        nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
    }
}
