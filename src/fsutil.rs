//! Crash-safe file writing: write a uniquely named temp file, fsync it,
//! rename it into place, fsync the directory.
//!
//! Invariant: a reader never sees a partly written store file. Temp names
//! carry the writer's pid, so two processes never share one, and stale temps
//! of dead writers can be recognised by `gc`.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{IoContext, Result};

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
    let Ok((file, path)) = create_temp(dir, "clock") else {
        return fallback;
    };
    let t = file
        .metadata()
        .map(|m| m.mtime() * 1_000_000_000 + m.mtime_nsec());
    let _ = fs::remove_file(&path);
    t.unwrap_or(fallback)
}

/// Creates a new temp file in `dir` (exclusive create, never follows links).
pub fn create_temp(dir: &Path, ext: &str) -> Result<(File, PathBuf)> {
    let path = dir.join(temp_name(ext));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .at(&path)?;
    Ok((file, path))
}

pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Writes `data` to `dest` atomically. With `durable`, the data and the
/// rename are fsynced before returning.
pub fn atomic_write(tmp_dir: &Path, dest: &Path, data: &[u8], durable: bool) -> Result<()> {
    let (mut file, tmp) = create_temp(tmp_dir, "write")?;
    let res = (|| {
        file.write_all(data).at(&tmp)?;
        if durable {
            file.sync_all().at(&tmp)?;
        }
        drop(file);
        fs::rename(&tmp, dest).at(dest)?;
        if let Some(parent) = dest.parent().filter(|_| durable) {
            fsync_dir(parent)?;
        }
        Ok(())
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Moves a finished, fsynced temp file to `dest`. Store files published this
/// way are content-addressed, so replacing an existing file with the same
/// name replaces it with the same bytes.
pub fn publish(tmp: &Path, dest: &Path) -> Result<()> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).at(parent)?;
    fs::rename(tmp, dest).at(dest)?;
    fsync_dir(parent)
}

/// Crash-test hook: when `MOAT_FAILPOINT` names this point, the process
/// aborts here like a `kill -9` would (no destructors, no cleanup), so the
/// tests can prove the store survives a crash at exactly this step.
pub fn failpoint(name: &str) {
    if std::env::var_os("MOAT_FAILPOINT").is_some_and(|v| v == name) {
        std::process::abort();
    }
}
