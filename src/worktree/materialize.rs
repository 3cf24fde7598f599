//! Writing tree entries onto the filesystem, shared by `restore` and
//! `rollback`.
//!
//! Invariants: nothing here follows a symlink. Whatever is in the way of an
//! entry is removed with `lstat`/`unlink` semantics, files are opened with
//! `O_NOFOLLOW`, and every chunk is verified by the store before it is
//! written. A file's length must equal its manifest size. In atomic mode a
//! file or link is built under a sibling temp name and renamed over the
//! old one, so a crash leaves either the old or the new entry.

use std::ffi::OsStr;
use std::fs::{self, File, FileTimes};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, IoContext, Result};
use crate::format::id::ObjectId;
use crate::format::pack::ObjectKind;
use crate::format::statcache::FileStat;
use crate::format::tree::{Content, Entry};
use crate::store::Store;

/// Prefix of the sibling temp files of atomic writes; the walk skips it.
pub use crate::format::tree::TEMP_PREFIX;

/// Modes restored: permission bits and sticky, never set-uid/set-gid.
const MODE_MASK: u32 = 0o1777;

/// The temp sibling for `path`: one fixed name per entry, so a re-run after
/// a crash reuses (and so removes) a stale one.
fn temp_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.as_bytes()).unwrap_or_default();
    path.with_file_name(OsStr::from_bytes(&[TEMP_PREFIX, name].concat()))
}

/// Removes whatever is at `path` without following it.
pub fn clear(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).at(path),
        Ok(_) => fs::remove_file(path).at(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Makes `path` a real directory, replacing a file or symlink in the way.
pub fn ensure_dir(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            // The owner must be able to write into it until `set_dir_meta`.
            let mode = m.permissions().mode();
            if mode & 0o700 != 0o700 {
                fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o700)).at(path)?;
            }
            Ok(())
        }
        Ok(_) => {
            clear(path)?;
            fs::create_dir(path).at(path)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::create_dir(path).at(path),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Writes a file entry at `path`; returns the stat of the written file.
/// `held` is a cloned copy of the content (see `reuse`) to rename into
/// place instead of decompressing; if that fails, the content is written
/// from the store.
pub fn write_file(
    store: &Store,
    path: &Path,
    e: &Entry,
    chunks: &[ObjectId],
    atomic: bool,
    held: Option<&Path>,
) -> Result<FileStat> {
    if atomic {
        // A crashed run's temp for this path goes, whichever way it is written.
        clear(&temp_sibling(path))?;
    }
    if let Some(stat) = held.and_then(|h| place_held(h, path, e).ok()) {
        return Ok(stat);
    }
    let dest = if atomic {
        temp_sibling(path)
    } else {
        path.to_path_buf()
    };
    clear(&dest)?;
    let mut f = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&dest)
        .at(&dest)?;
    if let Err(err) = fill(store, &mut f, &dest, e, chunks) {
        drop(f);
        let _ = fs::remove_file(&dest);
        return Err(err);
    }
    f.set_permissions(fs::Permissions::from_mode(e.mode & MODE_MASK))
        .at(&dest)?;
    f.set_times(FileTimes::new().set_modified(to_system_time(e.mtime_ns)))
        .at(&dest)?;
    if !atomic {
        return Ok(FileStat::of(&f.metadata().at(&dest)?));
    }
    drop(f);
    replace_with(&dest, path)?;
    // rename(2) updates the ctime: stat the file where it now lives.
    Ok(FileStat::of(&fs::symlink_metadata(path).at(path)?))
}

/// Gives a held copy the entry's mode and mtime and renames it to `path`
/// (one atomic step, like the temp sibling of an atomic write).
fn place_held(held: &Path, path: &Path, e: &Entry) -> Result<FileStat> {
    let f = File::options()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(held)
        .at(held)?;
    let len = f.metadata().at(held)?.len();
    if len != e.size {
        return Err(Error::corrupt(
            held,
            "held copy",
            format!("{len} bytes, expected {}", e.size),
        ));
    }
    f.set_permissions(fs::Permissions::from_mode(e.mode & MODE_MASK))
        .at(held)?;
    f.set_times(FileTimes::new().set_modified(to_system_time(e.mtime_ns)))
        .at(held)?;
    drop(f);
    replace_with(held, path)?;
    Ok(FileStat::of(&fs::symlink_metadata(path).at(path)?))
}

fn fill(store: &Store, f: &mut File, dest: &Path, e: &Entry, chunks: &[ObjectId]) -> Result<()> {
    let mut written = 0u64;
    for c in chunks {
        let data = store.read_object(c, ObjectKind::Chunk)?;
        written += data.len() as u64;
        if written > e.size {
            break;
        }
        f.write_all(&data).at(dest)?;
    }
    if written != e.size {
        return Err(Error::corrupt(
            dest,
            "tree entry",
            format!("chunks hold {written} bytes but the manifest says {}", e.size),
        ));
    }
    Ok(())
}

/// Renames `tmp` over `path`; a directory in the way is removed first
/// (rename cannot replace a directory with a file).
fn replace_with(tmp: &Path, path: &Path) -> Result<()> {
    if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        fs::remove_dir(path).map_err(|e| {
            let _ = fs::remove_file(tmp);
            Error::io(path, e)
        })?;
    }
    fs::rename(tmp, path).at(path)
}

pub fn write_symlink(path: &Path, e: &Entry, atomic: bool) -> Result<()> {
    let Content::Symlink(target) = &e.content else {
        return Ok(());
    };
    let dest = if atomic {
        temp_sibling(path)
    } else {
        path.to_path_buf()
    };
    clear(&dest)?;
    std::os::unix::fs::symlink(OsStr::from_bytes(target), &dest).at(&dest)?;
    set_mtime_nofollow(&dest, e.mtime_ns)?;
    if atomic {
        replace_with(&dest, path)?;
    }
    Ok(())
}

/// Sets a directory's mode and mtime (after its contents are written).
pub fn set_dir_meta(path: &Path, e: &Entry) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(e.mode & MODE_MASK)).at(path)?;
    set_mtime_nofollow(path, e.mtime_ns)
}

pub fn set_mtime_nofollow(path: &Path, mtime_ns: i64) -> Result<()> {
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
