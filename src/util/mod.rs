//! Small crate-wide helpers below every layer: the progress trait, the
//! clocks, unique temp names and the test failpoints (`fault`).

pub mod fault;
pub mod fs;
pub mod progress;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name no other writer (process or thread) will pick: `<pid>-<ns>-<n>.<ext>.tmp`.
pub fn temp_name(ext: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{}-{}.{}.tmp", std::process::id(), now_ns(), n, ext)
}

pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The filesystem clock now: the mtime of a file created in `dir`. File
/// timestamps come from the kernel's coarse clock, which lags the system
/// clock by up to a tick, so a file written just after `now_ns()` can carry
/// an earlier mtime. The stat cache's racy rule compares against this
/// instead: a file written in the same tick as a scan starts counts as
/// racy. Without a writable `dir`, the last second counts as racy.
pub fn fs_clock_ns(dir: &Path) -> i64 {
    use std::os::unix::fs::MetadataExt;
    let fallback = now_ns() - 1_000_000_000;
    let Ok((file, path)) = create_clock_file(dir) else {
        return fallback;
    };
    let t = file
        .metadata()
        .map(|m| m.mtime() * 1_000_000_000 + m.mtime_nsec());
    let _ = std::fs::remove_file(&path);
    t.unwrap_or(fallback)
}

fn create_clock_file(dir: &Path) -> std::io::Result<(std::fs::File, std::path::PathBuf)> {
    let path = dir.join(temp_name("clock"));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    Ok((f, path))
}

/// Crash-test hook: when `MOAT_FAILPOINT` names this point, the process
/// aborts here like a `kill -9` would (no destructors, no cleanup), so the
/// tests can prove the store survives a crash at exactly this step (see
/// `fault` for the other modes).
pub fn failpoint(name: &str) {
    fault::point(name);
}
