//! `moat log [PATH]`: the snapshots of a workspace in which PATH changed,
//! newest first — like `git log -- PATH`, with `-n`, `--since` and
//! `--until`. Each step diffs a snapshot with the one before it along PATH
//! only, skipping equal subtrees by id.
//!
//! Invariants: the walk goes from the newest snapshot back and stops as
//! soon as it has `max` entries or passes `since`, so the cost tracks what
//! is shown, not the workspace's whole history; the first snapshot shown
//! is still diffed against its real predecessor, even one outside the
//! time range.

use std::path::Path;

use crate::error::Result;
use crate::ops::diff::{self, Change, Trees};
use crate::store::{SnapshotRecord, Store};

pub struct LogEntry {
    pub record: SnapshotRecord,
    pub changes: Vec<Change>,
}

#[derive(Clone, Debug, Default)]
pub struct LogOptions {
    /// Only changes below this path (relative, `/`-separated); empty: all.
    pub path: Vec<u8>,
    /// At most this many entries (the newest).
    pub max: Option<usize>,
    /// Only snapshots taken at or after this time (ns since the epoch).
    pub since_ns: Option<i64>,
    /// Only snapshots taken at or before this time.
    pub until_ns: Option<i64>,
}

pub fn log(store: &Store, workspace: &Path, opts: &LogOptions) -> Result<Vec<LogEntry>> {
    let (all, _) = store.list_snapshots()?;
    let mine: Vec<SnapshotRecord> = all
        .into_iter()
        .filter(|r| r.snap.workspace_path() == workspace)
        .collect();
    let trees = Trees::new(store);
    let paths: Vec<Vec<u8>> = if crate::format::path::components(&opts.path).is_empty() {
        Vec::new()
    } else {
        vec![opts.path.clone()]
    };
    let mut out = Vec::new();
    // Oldest first, by time: walk back from the newest.
    for (i, r) in mine.iter().enumerate().rev() {
        if opts.max.is_some_and(|m| out.len() >= m) {
            break;
        }
        let t = r.snap.time_ns;
        if opts.since_ns.is_some_and(|s| t < s) {
            break;
        }
        if opts.until_ns.is_some_and(|u| t > u) {
            continue;
        }
        let prev = i.checked_sub(1).map(|p| mine[p].snap.root);
        let changes = diff::diff(&trees, prev.as_ref(), Some(&r.snap.root), &paths)?;
        if !changes.is_empty() {
            out.push(LogEntry {
                record: r.clone(),
                changes,
            });
        }
    }
    Ok(out)
}

/// A `--since`/`--until` value: a UTC date (`2024-05-01`, `2024-05-01
/// 12:30`, `2024-05-01T12:30:00Z`) or a duration ago (`30m`, `2h`, `7d`,
/// `2w`) from `now_ns`.
pub fn parse_when(s: &str, now_ns: i64) -> Result<i64, String> {
    if crate::util::date::looks_like_date(s) {
        return crate::util::date::parse_utc(s);
    }
    let ago = crate::ops::gc::retention::parse_duration(s)
        .map_err(|e| format!("{e}; or give a date like 2024-05-01"))?;
    Ok(now_ns.saturating_sub(ago))
}

#[cfg(test)]
mod tests {
    #[test]
    fn when_is_a_date_or_a_duration_ago() {
        let now = 1_704_067_200_000_000_000;
        assert_eq!(super::parse_when("2024-01-01", 0), Ok(now));
        assert_eq!(super::parse_when("1h", now), Ok(now - 3_600_000_000_000));
        for bad in ["-5d", "yesterday", "2024-02-30", "5 d"] {
            let e = super::parse_when(bad, now).unwrap_err();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }
}
