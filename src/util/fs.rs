//! File primitives. Crash-safe writing: write a uniquely named temp file,
//! fsync it, rename it into place, fsync the directory. Safe reading of
//! files others control: open only regular files, never blocking on a
//! FIFO, and read at most a bound.
//!
//! Invariants: a reader never sees a partly written file, and a failed
//! write leaves no temp file behind. Temp names carry the writer's pid, so
//! two processes never share one, and stale temps of dead writers can be
//! recognised by `gc`. Every write goes through a named failpoint
//! (`util::fault`), so the tests can fail it. `open_regular` checks the
//! type on the open descriptor, so a file swapped in after an earlier
//! `lstat` is never read in its place.

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

/// The name of a file type, for error messages ("FIFO", "symlink", ...).
pub fn type_name(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_file() {
        "regular file"
    } else if t.is_dir() {
        "directory"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

fn not_regular(ft: std::fs::FileType) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("a {}, not a regular file", type_name(ft)),
    )
}

/// Opens a file for reading only if it is a regular file, checked on the
/// open descriptor (`fstat`), so nothing swapped in after an earlier
/// `lstat` is read in its place. The open itself never blocks (a FIFO
/// opened without `O_NONBLOCK` waits for a writer forever) and, unless
/// `follow`, never goes through a symlink. The file is returned in
/// blocking mode, with its metadata.
pub fn open_regular(path: &Path, follow: bool) -> std::io::Result<(File, std::fs::Metadata)> {
    use std::os::fd::AsRawFd;
    // Following a link, its target's type is checked before the open too:
    // opening some devices has effects of its own.
    if follow {
        let m = fs::metadata(path)?;
        if !m.is_file() {
            return Err(not_regular(m.file_type()));
        }
    }
    let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | nofollow)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            // What O_NOFOLLOW says of a symlink.
            Some(libc::ELOOP) if !follow => {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "a symlink, not a regular file")
            }
            _ => e,
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(meta.file_type()));
    }
    // SAFETY: F_GETFL/F_SETFL on a descriptor we own.
    unsafe {
        let fd = file.as_raw_fd();
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
    }
    Ok((file, meta))
}

/// Reads `r` to its end, or returns `None` as soon as it yields more than
/// `limit` bytes: an endless or huge file costs at most `limit` + 1 bytes.
pub fn read_at_most(r: impl std::io::Read, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut data = Vec::new();
    r.take(limit.saturating_add(1)).read_to_end(&mut data)?;
    Ok((data.len() as u64 <= limit).then_some(data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::testing::{mkfifo, within};

    #[test]
    fn only_regular_files_are_opened_and_nothing_blocks() {
        let d = tempfile::tempdir().unwrap();
        let (file, fifo, link) = (d.path().join("f"), d.path().join("p"), d.path().join("l"));
        fs::write(&file, b"data").unwrap();
        mkfifo(&fifo);
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let errs = within(20, move || {
            let (mut f, m) = open_regular(&file, false).unwrap();
            assert_eq!(
                (read_at_most(&mut f, 4).unwrap(), m.len()),
                (Some(b"data".to_vec()), 4)
            );
            assert!(open_regular(&link, true).is_ok());
            [
                open_regular(&fifo, false),
                open_regular(&link, false),
                open_regular(file.parent().unwrap(), true),
                open_regular(Path::new("/dev/zero"), true),
            ]
            .map(|r| r.map(drop).unwrap_err().to_string())
        });
        for (e, what) in errs
            .iter()
            .zip(["a FIFO", "a symlink", "a directory", "a character device"])
        {
            assert_eq!(*e, format!("{what}, not a regular file"));
        }
        assert_eq!(read_at_most(&b"12345"[..], 4).unwrap(), None);
        assert_eq!(
            read_at_most(std::fs::File::open("/dev/zero").unwrap(), 1 << 20).unwrap(),
            None
        );
    }
}
