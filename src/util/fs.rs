//! Crash-safe file writing: write a uniquely named temp file, fsync it,
//! rename it into place, fsync the directory.
//!
//! Invariant: a reader never sees a partly written file, and a failed
//! write leaves no temp file behind. Temp names carry the writer's pid, so
//! two processes never share one, and stale temps of dead writers can be
//! recognised by `gc`. Every write goes through a named failpoint
//! (`util::fault`), so the tests can fail it.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::util::{fault, temp_name};

/// How a caller turns an I/O failure on a path into its error.
pub type ErrorAt = fn(PathBuf, io::Error) -> Error;

/// Creates a new temp file in `dir` (exclusive create, never follows links).
pub fn create_temp(dir: &Path, ext: &str) -> io::Result<(File, PathBuf)> {
    let path = dir.join(temp_name(ext));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)?;
    Ok((file, path))
}

/// fsyncs a directory (opened without following a symlink).
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(dir)
        .and_then(|d| d.sync_all())
}

/// Writes `data` to `dest` atomically. With `durable`, the data and the
/// rename are fsynced before returning.
pub fn atomic_write(tmp_dir: &Path, dest: &Path, data: &[u8], durable: bool) -> Result<()> {
    atomic_write_as(tmp_dir, dest, data, durable, "", Error::io)
}

/// `atomic_write` whose writes pass failpoint `point` and whose failures
/// become `err(path, cause)`.
pub fn atomic_write_as(
    tmp_dir: &Path,
    dest: &Path,
    data: &[u8],
    durable: bool,
    point: &str,
    err: ErrorAt,
) -> Result<()> {
    let (mut file, tmp) = create_temp(tmp_dir, "write").map_err(|e| err(tmp_dir.to_path_buf(), e))?;
    let res = (|| {
        fault::write_all(point, &mut file, data).map_err(|e| err(tmp.clone(), e))?;
        if durable {
            file.sync_all().map_err(|e| err(tmp.clone(), e))?;
        }
        drop(file);
        fs::rename(&tmp, dest).map_err(|e| err(dest.to_path_buf(), e))?;
        if let Some(parent) = dest.parent().filter(|_| durable) {
            fsync_dir(parent).map_err(|e| err(parent.to_path_buf(), e))?;
        }
        Ok(())
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}
