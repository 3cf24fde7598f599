//! Staging: before a snapshot chunks or compresses anything, take a private
//! point-in-time copy of every file it must read. Small files are read into
//! memory (a read costs less than a clone); larger ones are cloned into a
//! directory in the store, which takes microseconds on a copy-on-write
//! filesystem whatever the size. The snapshot is then the workspace as it
//! was at staging time, however long ingestion takes and whatever the
//! workspace does meanwhile.
//!
//! Invariants: a copy is kept only if the workspace file's stat was the
//! same before and after copying it, so the copy holds exactly the content
//! that stat describes. A file that cannot be copied this way (no clone
//! support, another filesystem, over the memory budget, changing) is left
//! to the caller to read directly. The staging dir is a scratch dir the
//! store gives (`store::scratch`: on the store's filesystem, removed when
//! the capture ends, a crashed capture's removed by `gc`/`system
//! clean-temp`); a store with no local scratch space stages in memory only.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rayon::prelude::*;

use crate::error::Result;
use crate::format::statcache::FileStat;
use crate::store::Store;
use crate::store::scratch::ScratchDir;
use crate::worktree::clone::{Cloner, Outcome};
use crate::worktree::walk::Node;

/// Attempts before a file that keeps changing is left to a direct read.
const TRIES: u32 = 3;
/// Files up to this size are staged in memory rather than cloned.
const SMALL: u64 = 64 << 10;
/// Memory staging stops at this many bytes; the rest is cloned.
const MEMORY_BUDGET: u64 = 128 << 20;

/// What staging did, for `--verbose` and the capture report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StagingReport {
    /// The clone call used (`FICLONE`, `clonefile`, `none`).
    pub cloner: &'static str,
    pub cloned_files: u64,
    pub cloned_bytes: u64,
    pub memory_files: u64,
    pub memory_bytes: u64,
    /// Files read straight from the workspace instead.
    pub direct_files: u64,
    /// Why files were read directly, when they were.
    pub fallback: Option<String>,
    /// Time spent walking and staging (what a waiting caller waits for).
    pub stage_ns: u64,
}

/// A private copy of a workspace file.
pub enum Copy {
    Cloned(PathBuf),
    Memory(Vec<u8>),
}

/// The private staging directory (a store scratch dir): removed with
/// everything in it on drop.
pub struct StageDir(ScratchDir);

impl StageDir {
    /// A new staging dir, or `None` when the store has no local scratch
    /// space to clone into.
    pub fn create(store: &Store) -> Result<Option<Self>> {
        Ok(store.scratch_dir("stage")?.map(StageDir))
    }

    /// The staged copy of the `k`-th file to read.
    pub fn file(&self, k: usize) -> PathBuf {
        self.0.path().join(k.to_string())
    }
}

enum One {
    Copied(Copy, FileStat),
    Unsupported(String),
    /// Read it directly (vanished, unreadable, not regular, or changing).
    Direct(Option<String>),
}

/// The staged files, by position in the `to_read` list given to `stage_files`.
pub struct Staging {
    pub dir: Option<StageDir>,
    pub copies: Vec<Option<(Copy, FileStat)>>,
    pub report: StagingReport,
}

/// Stages the files `to_read` (indexes into `nodes`) of workspace `ws`;
/// with no cloner (`--no-clone`), nothing: every file is read directly.
pub fn stage_files(
    store: &Store,
    ws: &Path,
    nodes: &[Node],
    to_read: &[usize],
    cloner: Option<&dyn Cloner>,
) -> Result<Staging> {
    let started = Instant::now();
    let Some(cloner) = cloner else {
        let report = StagingReport {
            cloner: "none",
            direct_files: to_read.len() as u64,
            fallback: Some("staging turned off (--no-clone)".into()),
            ..StagingReport::default()
        };
        let copies = to_read.iter().map(|_| None).collect();
        return Ok(Staging {
            dir: None,
            copies,
            report,
        });
    };
    let src = |k: usize| ws.join(OsStr::from_bytes(&nodes[to_read[k]].rel));
    let budget = AtomicU64::new(MEMORY_BUDGET);
    let mut outcomes: Vec<Option<One>> = (0..to_read.len())
        .into_par_iter()
        .map(|k| {
            let size = nodes[to_read[k]].stat.size;
            let fits = size <= SMALL
                && budget
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(size))
                    .is_ok();
            fits.then(|| read_one(&src(k)))
        })
        .collect();
    let to_clone: Vec<usize> = (0..to_read.len()).filter(|&k| outcomes[k].is_none()).collect();
    let mut dir = None;
    let mut why = None;
    let stage_dir = match to_clone.is_empty() {
        true => None,
        false => Some(StageDir::create(store)?),
    };
    match (to_clone.first(), stage_dir) {
        (Some(_), Some(None)) => {
            why = Some("the store has no local directory to clone into; reading directly".into())
        }
        (Some(&first), Some(Some(d))) => {
            // One probe first: on a filesystem without clones nothing more is tried.
            let probe = clone_one(cloner, &src(first), &d.file(first));
            if let One::Unsupported(w) = &probe {
                why = Some(format!("cannot clone into the store ({w}); reading directly"));
            } else {
                let rest: Vec<(usize, One)> = to_clone[1..]
                    .par_iter()
                    .map(|&k| (k, clone_one(cloner, &src(k), &d.file(k))))
                    .collect();
                for (k, one) in std::iter::once((first, probe)).chain(rest) {
                    outcomes[k] = Some(one);
                }
                dir = Some(d);
            }
        }
        _ => {}
    }
    let mut report = StagingReport {
        cloner: cloner.name(),
        ..StagingReport::default()
    };
    let copies = outcomes
        .into_iter()
        .map(|one| match one.unwrap_or(One::Direct(None)) {
            One::Copied(copy, st) => {
                let (files, bytes) = match copy {
                    Copy::Cloned(_) => (&mut report.cloned_files, &mut report.cloned_bytes),
                    Copy::Memory(_) => (&mut report.memory_files, &mut report.memory_bytes),
                };
                *files += 1;
                *bytes += st.size;
                Some((copy, st))
            }
            One::Unsupported(w) | One::Direct(Some(w)) => {
                report.direct_files += 1;
                why.get_or_insert(w);
                None
            }
            One::Direct(None) => {
                report.direct_files += 1;
                None
            }
        })
        .collect();
    report.fallback = why;
    report.stage_ns = started.elapsed().as_nanos() as u64;
    Ok(Staging { dir, copies, report })
}

/// Opens a workspace file and its stat, if it is (still) a regular file.
fn open(src: &Path) -> Option<(std::fs::File, FileStat)> {
    let (file, meta) = crate::util::fs::open_regular(src, false).ok()?;
    Some((file, FileStat::of(&meta)))
}

fn unchanged(file: &std::fs::File, before: &FileStat) -> bool {
    file.metadata().is_ok_and(|m| FileStat::of(&m) == *before)
}

fn read_one(src: &Path) -> One {
    for _ in 0..TRIES {
        let Some((mut file, before)) = open(src) else {
            return One::Direct(None);
        };
        let mut data = Vec::with_capacity(before.size as usize + 1);
        if file.read_to_end(&mut data).is_err() {
            return One::Direct(None);
        }
        if data.len() as u64 == before.size && unchanged(&file, &before) {
            return One::Copied(Copy::Memory(data), before);
        }
    }
    One::Direct(None)
}

fn clone_one(cloner: &dyn Cloner, src: &Path, dst: &Path) -> One {
    for _ in 0..TRIES {
        let Some((file, before)) = open(src) else {
            return One::Direct(None);
        };
        match cloner.clone_open(&file, dst) {
            Ok(Outcome::Cloned) => {}
            Ok(Outcome::Unsupported(why)) => return One::Unsupported(why),
            Err(e) => return One::Direct(Some(format!("could not stage {}: {e}", src.display()))),
        }
        // Equal stats can hide a rewrite within one timestamp tick, but not
        // a clone of another length: the clone must hold the stat's size.
        let same_len = std::fs::symlink_metadata(dst).is_ok_and(|m| m.len() == before.size);
        if same_len && unchanged(&file, &before) {
            return One::Copied(Copy::Cloned(dst.to_path_buf()), before);
        }
        let _ = std::fs::remove_file(dst);
    }
    One::Direct(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::testing::{mkfifo, within};

    /// A FIFO swapped in for a file between the walk's lstat and staging's
    /// open is left to the direct read (which skips it), never waited on.
    #[test]
    fn a_fifo_swapped_in_after_the_walk_is_not_waited_on() {
        let d = tempfile::tempdir().unwrap();
        let ws = d.path().join("ws");
        std::fs::create_dir(&ws).unwrap();
        std::fs::write(ws.join("small"), b"data").unwrap();
        std::fs::write(ws.join("large"), vec![1u8; 200_000]).unwrap();
        let ws = crate::worktree::workspace_root(&ws).unwrap();
        let (nodes, _) = crate::worktree::walk::walk(&ws, &Default::default()).unwrap();
        assert_eq!(nodes.len(), 2);
        for n in ["small", "large"] {
            std::fs::remove_file(ws.join(n)).unwrap();
            mkfifo(&ws.join(n));
        }
        let store = Store::open_or_create(&d.path().join("store")).unwrap();
        let staged = within(20, move || {
            let s = stage_files(
                &store,
                &ws,
                &nodes,
                &[0, 1],
                Some(crate::worktree::clone::cloner(true)),
            )
            .unwrap();
            s.copies.iter().filter(|c| c.is_some()).count()
        });
        assert_eq!(staged, 0);
    }
}
