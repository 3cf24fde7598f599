//! The local backend's file primitives: every open, read, map, write,
//! publish and delete of a file in a local store goes through here.
//!
//! Invariants: a store file is opened with `O_NOFOLLOW|O_NONBLOCK` and its
//! type checked with `fstat` on the open descriptor, so a symlink or a
//! FIFO planted in the store is a clear error, never followed and never
//! waited on. The store's layout directories, `lock` and `config` are
//! never symlinks (`check_layout`), so nothing is written outside the
//! store. Write failures are `Error::StoreWrite` (fatal to a capture,
//! unlike a workspace read error) and leave no temp file behind.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::FileKind;
use crate::error::{Error, IoContext, Result};
use crate::util::{fault, fs as fsutil};

/// Checks, on the open descriptor, that `f` is a regular file.
fn regular(f: File, path: &Path) -> Result<File> {
    let t = f.metadata().at(path)?.file_type();
    if t.is_file() {
        Ok(f)
    } else {
        Err(Error::NotRegular {
            path: path.to_path_buf(),
            found: fsutil::type_name(t),
        })
    }
}

/// A symlink in the last component fails with ELOOP under `O_NOFOLLOW`.
fn open_error(path: &Path, e: io::Error) -> Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        Error::NotRegular {
            path: path.to_path_buf(),
            found: "symlink",
        }
    } else {
        Error::io(path, e)
    }
}

/// Opens an existing store file for reading.
pub fn open(path: &Path) -> Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| open_error(path, e))?;
    regular(f, path)
}

/// Reads a whole store file.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    let mut f = open(path)?;
    let len = f.metadata().at(path)?.len();
    let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0).saturating_add(1));
    f.read_to_end(&mut data).at(path)?;
    Ok(data)
}

/// Whether a store file exists (`lstat`): Ok(false) when absent, an
/// error when something other than a regular file sits there.
pub fn exists(path: &Path) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => Ok(true),
        Ok(m) => Err(Error::NotRegular {
            path: path.to_path_buf(),
            found: fsutil::type_name(m.file_type()),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Reads a store file that may be absent (`None`).
pub fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>> {
    match read(path) {
        Ok(d) => Ok(Some(d)),
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Maps a published (immutable) store file.
pub fn map(path: &Path) -> Result<memmap2::Mmap> {
    let f = open(path)?;
    // SAFETY: published store files are never modified; moat never writes
    // to one (new content gets a new name).
    unsafe { memmap2::Mmap::map(&f) }.at(path)
}

/// Opens (creating it if absent) the lock file, read-write where the store
/// allows it, else read-only (flock needs no write access).
pub fn open_lock(path: &Path) -> Result<File> {
    let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK;
    let rw = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(flags)
        .open(path);
    let f = match rw {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            OpenOptions::new().read(true).custom_flags(flags).open(path)
        }
        other => other,
    };
    regular(f.map_err(|e| open_error(path, e))?, path)
}

/// A new temp file in the store's `tmp/`.
pub fn create_temp(tmp_dir: &Path, ext: &str) -> Result<(File, PathBuf)> {
    fsutil::create_temp(tmp_dir, ext).map_err(|e| Error::store_write(tmp_dir, e))
}

/// Appends `data` to a store file being written.
pub fn write(kind: FileKind, f: &mut impl io::Write, path: &Path, data: &[u8]) -> Result<()> {
    fault::write_all(kind.write_point(), f, data).map_err(|e| Error::store_write(path, e))
}

/// Writes a whole store file atomically: temp file in `tmp_dir`, fsync
/// (when `kind` is durable), rename into place, fsync of the directory.
pub fn write_atomic(tmp_dir: &Path, kind: FileKind, dest: &Path, data: &[u8]) -> Result<()> {
    let (mut f, tmp) = create_temp(tmp_dir, kind.temp_ext())?;
    let res = write(kind, &mut f, &tmp, data)
        .and_then(|()| match kind.durable() {
            true => f.sync_all().map_err(|e| Error::store_write(&tmp, e)),
            false => Ok(()),
        })
        .and_then(|()| {
            drop(f);
            publish(&tmp, dest, kind.durable())
        });
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Moves a finished (and, when `durable`, fsynced) temp file to `dest`,
/// creating its fan-out directory (never through a symlink), then fsyncs
/// the directory when `durable`. Content-addressed files published this
/// way replace a file of the same name with the same bytes.
pub fn publish(tmp: &Path, dest: &Path, durable: bool) -> Result<()> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    match fs::create_dir(parent) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(Error::store_write(parent, e)),
        _ => {}
    }
    real_dir(parent)?;
    fs::rename(tmp, dest).map_err(|e| Error::store_write(dest, e))?;
    match durable {
        true => fsync_dir(parent),
        false => Ok(()),
    }
}

/// fsyncs a store directory.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    fsutil::fsync_dir(dir).map_err(|e| Error::store_write(dir, e))
}

/// Removes a store file; an absent one is fine. Returns whether it existed.
pub fn remove(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// `path` is a directory and not a symlink.
pub fn real_dir(path: &Path) -> Result<()> {
    let m = fs::symlink_metadata(path).at(path)?;
    if m.file_type().is_dir() {
        return Ok(());
    }
    let detail = if m.file_type().is_symlink() {
        "is a symlink, not a directory".to_string()
    } else {
        format!("is a {}, not a directory", fsutil::type_name(m.file_type()))
    };
    Err(Error::UnsafeStore {
        path: path.to_path_buf(),
        detail,
    })
}

/// Refuses a store whose layout directories (`dirs`) or the files `files`
/// (lock, config) are symlinks or of the wrong type. Absent ones are fine
/// (created on first use).
pub fn check_layout(root: &Path, dirs: &[&str], files: &[&str]) -> Result<()> {
    for d in dirs {
        let p = root.join(d);
        match fs::symlink_metadata(&p) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&p, e)),
            Ok(_) => real_dir(&p)?,
        }
    }
    for f in files {
        let p = root.join(f);
        match fs::symlink_metadata(&p) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&p, e)),
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Error::UnsafeStore {
                    path: p,
                    detail: "is a symlink".into(),
                });
            }
            Ok(m) if !m.file_type().is_file() => {
                return Err(Error::NotRegular {
                    path: p,
                    found: fsutil::type_name(m.file_type()),
                });
            }
            Ok(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_files_and_symlinks_are_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        assert!(matches!(
            read(&fifo),
            Err(Error::NotRegular { found: "FIFO", .. })
        ));
        assert!(matches!(
            open_lock(&fifo),
            Err(Error::NotRegular { found: "FIFO", .. })
        ));
        let target = d.path().join("target");
        fs::write(&target, b"x").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            read(&link),
            Err(Error::NotRegular { found: "symlink", .. })
        ));
        assert_eq!(read(&target).unwrap(), b"x");
        assert_eq!(read_if_exists(&d.path().join("absent")).unwrap(), None);
        std::os::unix::fs::symlink(d.path(), d.path().join("dirlink")).unwrap();
        let err = check_layout(d.path(), &["dirlink"], &[]).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert!(check_layout(d.path(), &["absent"], &["link"]).is_err());
        assert!(check_layout(d.path(), &[], &["fifo"]).is_err());
        assert!(check_layout(d.path(), &["absent"], &["target"]).is_ok());
    }
}
