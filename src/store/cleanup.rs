//! Finding and removing what crashed moat processes leave behind: temp
//! files in the store's `tmp/` (partial packs, index files, snapshot and
//! cache writes, config creation) and staging directories of snapshots.
//!
//! Invariants: only names moat itself creates (`<pid>-<ns>-<n>.<ext>.tmp`,
//! and for directories only `<pid>-<ns>-<n>.stage.tmp`) are considered; a
//! staging directory whose process is still alive is never taken;
//! everything is examined through the backend's `stat` (`lstat` locally)
//! and symlinks are never followed or removed; an item is removed only if it is older than
//! the minimum age both when found and immediately before removal, so a
//! file a live writer touched since the scan survives. (moat creates nothing
//! in the system temp directory, and its lock is an flock(2) that dies with
//! its process, so there are no stale lock files to find.)

use std::path::PathBuf;

use crate::error::Result;
use crate::store::backend::{Backend, FileKind, Shape};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TempItem {
    /// Its name among the store's temp files.
    pub name: String,
    /// Where it is, for messages.
    pub path: PathBuf,
    pub size: u64,
    pub age_ns: i64,
    /// Newest of mtime and ctime when found: a change means it was touched.
    pub touched_ns: i64,
    /// What the file was: `pack`, `write` (index, snapshot or cache),
    /// `stage` (a staging directory), ...
    pub what: String,
}

/// The only kind of temp directory moat creates.
const STAGE: &str = "stage";

/// Whether the process that named a temp `<pid>-...` is still running.
fn owner_alive(name: &str) -> bool {
    let pid = name.split('-').next().and_then(|p| p.parse::<i32>().ok());
    pid.is_some_and(|p| p > 0 && nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok())
}

/// The extension part of a moat temp name, if `name` is one.
fn temp_kind(name: &str) -> Option<&str> {
    let stem = name.strip_suffix(".tmp")?;
    let (head, ext) = stem.split_once('.')?;
    let mut parts = head.split('-');
    let all_digits =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let ok = all_digits(parts.next()) && all_digits(parts.next()) && all_digits(parts.next());
    (ok && parts.next().is_none() && !ext.is_empty()).then_some(ext)
}

/// Orphaned temp files in the store older than `min_age_ns` as of `now`.
pub fn find(backend: &dyn Backend, min_age_ns: i64, now: i64) -> Result<Vec<TempItem>> {
    let mut out = Vec::new();
    for name in backend.list(FileKind::Tmp)? {
        let Some(what) = temp_kind(&name) else {
            continue;
        };
        let Ok(Some(meta)) = backend.stat(FileKind::Tmp, &name) else {
            continue;
        };
        let age_ns = now.saturating_sub(meta.touched_ns);
        let is_stage = meta.shape == Shape::Dir && what == STAGE;
        if is_stage && owner_alive(&name) {
            continue;
        }
        if (meta.shape == Shape::File || is_stage) && age_ns >= min_age_ns {
            out.push(TempItem {
                path: backend.describe(FileKind::Tmp, &name),
                what: what.to_string(),
                name,
                size: meta.len,
                age_ns,
                touched_ns: meta.touched_ns,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Removes `items`, re-checking each one right before: it must still be a
/// regular file (a directory for staging), untouched since the scan, and
/// older than the minimum age as of `now`.
/// Returns the removed items and, for each one skipped, why.
pub fn remove(
    backend: &dyn Backend,
    items: Vec<TempItem>,
    min_age_ns: i64,
    now: i64,
) -> (Vec<TempItem>, Vec<(TempItem, String)>) {
    let (mut removed, mut skipped) = (Vec::new(), Vec::new());
    for item in items {
        let want = if item.what == STAGE {
            Shape::Dir
        } else {
            Shape::File
        };
        match backend.stat(FileKind::Tmp, &item.name) {
            Ok(None) => skipped.push((item, "already gone".into())),
            Err(e) => skipped.push((item, e.to_string())),
            Ok(Some(m)) if m.shape != want => skipped.push((item, "no longer what it was when found".into())),
            Ok(Some(m))
                if m.touched_ns != item.touched_ns || now.saturating_sub(m.touched_ns) < min_age_ns =>
            {
                skipped.push((item, "touched since the scan".into()))
            }
            Ok(Some(_)) => match backend.remove(FileKind::Tmp, &item.name) {
                Ok(_) => removed.push(item),
                Err(e) => skipped.push((item, e.to_string())),
            },
        }
    }
    (removed, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backend::local::LocalBackend;
    use std::fs;
    use std::path::Path;

    fn backend(root: &Path) -> LocalBackend {
        LocalBackend::create(root).unwrap()
    }

    const HOUR: i64 = 3600 * 1_000_000_000;

    fn store_with_temps() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let tmp = d.path().join("tmp");
        fs::create_dir_all(&tmp).unwrap();
        fs::write(tmp.join("11-22-0.pack.tmp"), b"partial pack").unwrap();
        fs::write(tmp.join("11-22-1.write.tmp"), b"partial index").unwrap();
        fs::write(tmp.join("notes.txt"), b"not ours").unwrap();
        let outside = d.path().join("outside-target");
        fs::write(&outside, b"must survive").unwrap();
        std::os::unix::fs::symlink(&outside, tmp.join("11-22-2.pack.tmp")).unwrap();
        (d, outside)
    }

    #[test]
    fn young_items_survive_and_old_ones_go() {
        let (d, outside) = store_with_temps();
        assert!(
            find(&backend(d.path()), HOUR, crate::util::now_ns())
                .unwrap()
                .is_empty(),
            "fresh files are younger than 1h"
        );
        let later = crate::util::now_ns() + 2 * HOUR;
        let items = find(&backend(d.path()), HOUR, later).unwrap();
        let names: Vec<String> = items
            .iter()
            .map(|i| i.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["11-22-0.pack.tmp", "11-22-1.write.tmp"],
            "symlinks and foreign names are skipped"
        );
        let (removed, skipped) = remove(&backend(d.path()), items, HOUR, later);
        assert_eq!((removed.len(), skipped.len()), (2, 0));
        assert!(d.path().join("tmp/notes.txt").exists());
        assert!(fs::symlink_metadata(d.path().join("tmp/11-22-2.pack.tmp")).is_ok());
        assert_eq!(fs::read(outside).unwrap(), b"must survive");
    }

    #[test]
    fn an_item_touched_after_the_scan_survives() {
        let (d, _) = store_with_temps();
        let later = crate::util::now_ns() + 2 * HOUR;
        let items = find(&backend(d.path()), HOUR, later).unwrap();
        // A live writer touches the pack between scan and removal (an
        // explicit new mtime, so the test does not depend on clock ticks).
        let p = d.path().join("tmp/11-22-0.pack.tmp");
        let f = fs::OpenOptions::new().append(true).open(&p).unwrap();
        let t = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
        f.set_times(fs::FileTimes::new().set_modified(t)).unwrap();
        let (removed, skipped) = remove(&backend(d.path()), items, HOUR, later);
        assert_eq!(removed.len(), 1);
        assert_eq!(skipped.len(), 1);
        assert!(p.exists());
    }

    #[test]
    fn orphaned_staging_dirs_go_but_live_ones_stay() {
        let d = tempfile::tempdir().unwrap();
        let tmp = d.path().join("tmp");
        // pid 999999999 is above any pid_max: its process is dead.
        let dead = tmp.join("999999999-22-0.stage.tmp");
        let live = tmp.join(format!("{}-22-1.stage.tmp", std::process::id()));
        let not_stage = tmp.join("999999999-22-2.pack.tmp");
        for dir in [&dead, &live, &not_stage] {
            fs::create_dir_all(dir).unwrap();
            fs::write(dir.join("0"), b"staged copy").unwrap();
        }
        let outside = d.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, dead.join("1")).unwrap();
        let later = crate::util::now_ns() + 2 * HOUR;
        let items = find(&backend(d.path()), HOUR, later).unwrap();
        assert_eq!(items.len(), 1, "{items:?}");
        assert_eq!((items[0].path.clone(), items[0].size), (dead.clone(), 11));
        let (removed, skipped) = remove(&backend(d.path()), items, HOUR, later);
        assert_eq!((removed.len(), skipped.len()), (1, 0));
        assert!(!dead.exists());
        assert!(live.join("0").exists() && not_stage.join("0").exists());
        assert!(
            outside.join("keep").exists(),
            "a symlink inside is removed, never followed"
        );
    }

    #[test]
    fn only_moat_temp_names() {
        assert_eq!(temp_kind("123-456-7.pack.tmp"), Some("pack"));
        assert_eq!(temp_kind("1-2-3.write.tmp"), Some("write"));
        for bad in [
            "x-1-2.pack.tmp",
            "1-2.pack.tmp",
            "1-2-3-4.pack.tmp",
            "1-2-3.tmp",
            "1-2-3.pack",
            "notes.txt",
        ] {
            assert_eq!(temp_kind(bad), None, "{bad}");
        }
    }
}
