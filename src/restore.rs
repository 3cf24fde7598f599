//! `moat restore`: write a snapshot (or one path of it) into a directory.
//!
//! Invariants: names come only from trees that passed `Tree::decode`, so
//! every name is one plain path component. Each directory is checked with
//! `lstat` (a symlink already in the target is replaced, never followed)
//! before anything is created below it, files are created with
//! `O_CREAT|O_EXCL|O_NOFOLLOW`, and every chunk is verified before it is
//! written. A file's length must equal its manifest size.

use std::ffi::OsStr;
use std::fs::{self, File, FileTimes};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::id::ObjectId;
use crate::pack::ObjectKind;
use crate::progress::Progress;
use crate::snapshot::Snapshot;
use crate::statcache::{CachedFile, FileStat, StatCache};
use crate::store::Store;
use crate::tree::{Content, Entry};

#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Restore into a non-empty directory, replacing what is in the way.
    pub force: bool,
    /// Restore only this path (relative, `/`-separated) of the snapshot.
    pub subpath: Option<Vec<u8>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
}

struct FileJob {
    path: PathBuf,
    rel: Vec<u8>,
    chunks: Vec<ObjectId>,
    entry: Entry,
}

/// What to write, gathered from the trees before anything is written.
#[derive(Default)]
struct Plan {
    /// Pre-order, so a parent comes before its children.
    dirs: Vec<(PathBuf, Vec<u8>, Entry)>,
    files: Vec<FileJob>,
    links: Vec<(PathBuf, Entry)>,
}

pub fn restore(
    store: &Store,
    snap: &Snapshot,
    target: &Path,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    let start_ns = fsutil::now_ns();
    if let Some(p) = &opts.subpath {
        // A path that is not in the snapshot fails before the target is touched.
        crate::inspect::lookup(store, &snap.root, p)?;
    }
    prepare_target(target, opts.force)?;
    let target = fs::canonicalize(target).at(target)?;
    let plan = plan(store, &snap.root, &target, opts.subpath.as_deref())?;
    for (path, _, _) in &plan.dirs {
        ensure_dir(path)?;
    }
    let bytes: u64 = plan.files.iter().map(|j| j.entry.size).sum();
    progress.start("restoring", bytes);
    let cached: Vec<(Vec<u8>, CachedFile)> = plan
        .files
        .par_iter()
        .map(|job| {
            let stat = write_file(store, job)?;
            progress.inc(job.entry.size);
            Ok((
                job.rel.clone(),
                CachedFile {
                    stat,
                    chunks: job.chunks.clone(),
                },
            ))
        })
        .collect::<Result<_>>()?;
    for (path, e) in &plan.links {
        write_symlink(path, e)?;
    }
    for (path, _, e) in plan.dirs.iter().rev() {
        fs::set_permissions(path, fs::Permissions::from_mode(e.mode & 0o1777)).at(path)?;
        set_mtime_nofollow(path, e.mtime_ns)?;
    }
    progress.finish();
    // A restored tree is a workspace the stat cache already knows, so the
    // next snapshot of it reads nothing.
    if opts.subpath.is_none() {
        let bytes = StatCache::encode(start_ns, cached);
        let _ = fsutil::atomic_write(
            &store.tmp_dir(),
            &StatCache::path_for(store.root(), &target),
            &bytes,
            false,
        );
    }
    Ok(RestoreReport {
        files: plan.files.len() as u64,
        dirs: plan.dirs.len() as u64,
        symlinks: plan.links.len() as u64,
        bytes,
    })
}

fn prepare_target(target: &Path, force: bool) -> Result<()> {
    match fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => {
            let nonempty = fs::read_dir(target).at(target)?.next().is_some();
            if nonempty && !force {
                return Err(Error::TargetNotEmpty(target.to_path_buf()));
            }
            Ok(())
        }
        Ok(_) => Err(Error::NotADirectory(target.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::create_dir_all(target).at(target),
        Err(e) => Err(Error::io(target, e)),
    }
}

fn plan(store: &Store, root: &ObjectId, target: &Path, subpath: Option<&[u8]>) -> Result<Plan> {
    let mut plan = Plan::default();
    let want = crate::inspect::components(subpath.unwrap_or_default());
    plan_tree(store, root, target, b"", &want, &mut plan)?;
    Ok(plan)
}

/// Adds tree `id` (at `dir`, relative `rel`) to the plan. `want` limits the
/// walk to one path: its first component is the only entry taken here.
fn plan_tree(
    store: &Store,
    id: &ObjectId,
    dir: &Path,
    rel: &[u8],
    want: &[&[u8]],
    plan: &mut Plan,
) -> Result<()> {
    let tree = store.read_tree(id)?;
    for e in tree.entries {
        if want.first().is_some_and(|first| e.name.as_slice() != *first) {
            continue;
        }
        let path = dir.join(OsStr::from_bytes(&e.name));
        let erel = if rel.is_empty() {
            e.name.clone()
        } else {
            [rel, b"/", &e.name].concat()
        };
        let rest = want.get(1..).unwrap_or_default();
        match &e.content {
            Content::Dir(sub) => {
                let sub = *sub;
                plan.dirs.push((path.clone(), erel.clone(), e));
                plan_tree(store, &sub, &path, &erel, rest, plan)?;
            }
            Content::File(chunks) if rest.is_empty() => plan.files.push(FileJob {
                path,
                rel: erel,
                chunks: chunks.clone(),
                entry: e,
            }),
            Content::Symlink(_) if rest.is_empty() => plan.links.push((path, e)),
            _ => {}
        }
    }
    Ok(())
}

/// Removes whatever is at `path` without following it.
fn clear(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).at(path),
        Ok(_) => fs::remove_file(path).at(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Makes `path` a real directory, replacing a file or symlink in the way.
fn ensure_dir(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            // Owner must be able to write into it until the final chmod.
            let mode = m.permissions().mode() | 0o700;
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).at(path)
        }
        Ok(_) => {
            clear(path)?;
            fs::create_dir(path).at(path)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::create_dir(path).at(path),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn write_file(store: &Store, job: &FileJob) -> Result<FileStat> {
    let (path, e) = (job.path.as_path(), &job.entry);
    clear(path)?;
    let mut f = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .at(path)?;
    let mut written = 0u64;
    for c in &job.chunks {
        let data = store.read_object(c, ObjectKind::Chunk)?;
        written += data.len() as u64;
        if written > e.size {
            break;
        }
        f.write_all(&data).at(path)?;
    }
    if written != e.size {
        drop(f);
        let _ = fs::remove_file(path);
        return Err(Error::corrupt(
            path,
            "tree entry",
            format!("chunks hold {written} bytes but the manifest says {}", e.size),
        ));
    }
    f.set_permissions(fs::Permissions::from_mode(e.mode & 0o1777))
        .at(path)?;
    f.set_times(FileTimes::new().set_modified(to_system_time(e.mtime_ns)))
        .at(path)?;
    Ok(FileStat::of(&f.metadata().at(path)?))
}

fn write_symlink(path: &Path, e: &Entry) -> Result<()> {
    let Content::Symlink(target) = &e.content else {
        return Ok(());
    };
    clear(path)?;
    std::os::unix::fs::symlink(OsStr::from_bytes(target), path).at(path)?;
    set_mtime_nofollow(path, e.mtime_ns)
}

fn set_mtime_nofollow(path: &Path, mtime_ns: i64) -> Result<()> {
    use nix::sys::stat::{UtimensatFlags, utimensat};
    use nix::sys::time::TimeSpec;
    let ts = TimeSpec::new(
        mtime_ns.div_euclid(1_000_000_000),
        mtime_ns.rem_euclid(1_000_000_000),
    );
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &TimeSpec::UTIME_OMIT,
        &ts,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| Error::io(path, e.into()))
}

fn to_system_time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}
