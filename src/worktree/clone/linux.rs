//! Linux: `ioctl(FICLONE)` (btrfs, XFS with reflink, bcachefs) and
//! `copy_file_range` as the in-kernel copy.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::{Outcome, is_unsupported};

pub const NAME: &str = "FICLONE";

pub fn clone_open(src: &File, dst: &Path) -> io::Result<Outcome> {
    let to = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dst)?;
    // SAFETY: both descriptors are open for the duration of the call.
    let r = unsafe { libc::ioctl(to.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) };
    if r == 0 {
        return Ok(Outcome::Cloned);
    }
    let e = io::Error::last_os_error();
    drop(to);
    let _ = std::fs::remove_file(dst);
    if is_unsupported(&e) {
        Ok(Outcome::Unsupported(format!("FICLONE: {e}")))
    } else {
        Err(e)
    }
}

pub fn clone_dir(_src: &Path, _dst: &Path) -> io::Result<Outcome> {
    Ok(Outcome::Unsupported("Linux has no directory clone".into()))
}

/// Copies `len` bytes in the kernel; `false` (nothing written) when the
/// filesystem pair does not support it.
pub fn copy_range(src: &File, dst: &File, len: u64) -> io::Result<bool> {
    let mut left = len;
    let mut first = true;
    while left > 0 {
        let want = left.min(1 << 30) as usize;
        // SAFETY: null offsets use and advance the descriptors' positions.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                std::ptr::null_mut(),
                dst.as_raw_fd(),
                std::ptr::null_mut(),
                want,
                0,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if first && is_unsupported(&e) {
                return Ok(false);
            }
            return Err(e);
        }
        if n == 0 {
            // The source shrank under us.
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "source file shrank during the copy",
            ));
        }
        first = false;
        left -= n as u64;
    }
    Ok(true)
}
