//! The clocks: the system clock, and a filesystem's clock (the mtime a file
//! written there now gets), which the stat cache's racy rule must use.
//!
//! Timestamps are i64 nanoseconds since the epoch, which hold 1677-09-21 to
//! 2262-04-11; a filesystem time outside that range has no such value, so
//! every conversion from `(seconds, nanoseconds)` is checked.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

#[cfg(target_os = "linux")]
#[path = "clock_linux.rs"]
mod platform;
#[cfg(not(target_os = "linux"))]
#[path = "clock_other.rs"]
mod platform;

const NS: i128 = 1_000_000_000;

/// The system clock; 0 before the epoch, saturated after 2262.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `secs` + `nsec` (as `stat` gives them) in nanoseconds since the epoch,
/// or `None` when that is outside what an i64 holds.
pub fn timestamp_ns(secs: i64, nsec: i64) -> Option<i64> {
    i64::try_from(i128::from(secs) * NS + i128::from(nsec)).ok()
}

/// `timestamp_ns`, clamped to the ends of the range: for comparisons only
/// (two times beyond an end compare equal), never for a time to restore.
pub fn timestamp_ns_clamped(secs: i64, nsec: i64) -> i64 {
    timestamp_ns(secs, nsec).unwrap_or(if secs < 0 { i64::MIN } else { i64::MAX })
}

/// The clock of the filesystem `dir` is on, now: the mtime of a file
/// created there. File timestamps come from that filesystem's clock (the
/// kernel's coarse clock, a file server's clock, a granularity of up to
/// seconds), which can lag the system clock, so a file written just after
/// `now_ns()` can carry an earlier mtime. The stat cache's racy rule
/// compares a workspace's mtimes against this instead, taken in that
/// workspace: a file written in the same tick as a scan starts counts as
/// racy.
///
/// The probe leaves nothing behind: an unnamed `O_TMPFILE` on Linux, else
/// a `.moat-tmp-…` file removed at once (walks skip that prefix). Without
/// a writable `dir`, the system clock less one second.
pub fn fs_clock_ns(dir: &Path) -> i64 {
    probe(dir).unwrap_or_else(|| now_ns().saturating_sub(1_000_000_000))
}

fn probe(dir: &Path) -> Option<i64> {
    let meta = match platform::unnamed_file(dir) {
        Ok(f) => f.metadata().ok()?,
        Err(_) => {
            let name = [super::WORKSPACE_TEMP_PREFIX, super::temp_name("clock").as_bytes()].concat();
            let path = dir.join(std::ffi::OsStr::from_bytes(&name));
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .ok()?;
            let meta = f.metadata();
            let _ = std::fs::remove_file(&path);
            meta.ok()?
        }
    };
    timestamp_ns(meta.mtime(), meta.mtime_nsec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_hold_exactly_the_i64_range() {
        assert_eq!(timestamp_ns(0, 0), Some(0));
        assert_eq!(timestamp_ns(-1, 999_999_999), Some(-1));
        assert_eq!(timestamp_ns(9_223_372_036, 854_775_807), Some(i64::MAX));
        assert_eq!(timestamp_ns(9_223_372_036, 854_775_808), None);
        assert_eq!(timestamp_ns(-9_223_372_037, 145_224_192), Some(i64::MIN));
        assert_eq!(timestamp_ns(-9_223_372_037, 145_224_191), None);
        assert_eq!(timestamp_ns(i64::MAX, 0), None);
        assert_eq!(timestamp_ns(i64::MIN, 0), None);
        assert_eq!(timestamp_ns_clamped(i64::MIN, 0), i64::MIN);
        assert_eq!(timestamp_ns_clamped(10_000_000_000, 5), i64::MAX);
        assert_eq!(timestamp_ns_clamped(1, 5), 1_000_000_005);
    }

    #[test]
    fn the_probe_leaves_nothing_behind() {
        let d = tempfile::tempdir().unwrap();
        let before = now_ns();
        let t = fs_clock_ns(d.path());
        // The filesystem clock lags the system clock by at most a tick.
        assert!((before - 1_000_000_000..=now_ns()).contains(&t), "{before} {t}");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
        // Unwritable: the fallback, still in the past.
        let gone = d.path().join("missing");
        assert!(fs_clock_ns(&gone) <= now_ns() - 1_000_000_000);
    }
}
