//! Linux: `ioctl(FICLONE)` (btrfs, XFS with reflink, bcachefs) and
//! `copy_file_range` as the in-kernel copy.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
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

/// `openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS)` of `rel` below `root`;
/// None when the kernel (or a seccomp filter) lacks the call, so the
/// caller walks the components instead.
pub fn open_beneath(root: &File, rel: &[u8]) -> Option<io::Result<File>> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    let path = std::ffi::OsStr::from_bytes(rel);
    match openat2(root, path, how) {
        Ok(fd) => Some(Ok(File::from(fd))),
        Err(nix::errno::Errno::ENOSYS | nix::errno::Errno::EPERM) => None,
        Err(e) => Some(Err(e.into())),
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
