//! macOS: `fclonefileat(2)`/`clonefile(2)` on APFS. Compiled only on
//! macOS; untested on the Linux CI.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{Outcome, is_unsupported};

pub const NAME: &str = "clonefile";

/// `<sys/clonefile.h>`: do not follow a symlink at the source.
const CLONE_NOFOLLOW: u32 = 0x0001;

fn c_path(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn outcome(r: libc::c_int, what: &str) -> io::Result<Outcome> {
    if r == 0 {
        return Ok(Outcome::Cloned);
    }
    let e = io::Error::last_os_error();
    if is_unsupported(&e) {
        Ok(Outcome::Unsupported(format!("{what}: {e}")))
    } else {
        Err(e)
    }
}

pub fn clone_open(src: &File, dst: &Path) -> io::Result<Outcome> {
    let dst = c_path(dst)?;
    // SAFETY: the descriptor is open and `dst` is a valid C string.
    let r = unsafe { libc::fclonefileat(src.as_raw_fd(), libc::AT_FDCWD, dst.as_ptr(), CLONE_NOFOLLOW) };
    outcome(r, "fclonefileat")
}

pub fn clone_dir(src: &Path, dst: &Path) -> io::Result<Outcome> {
    let (s, d) = (c_path(src)?, c_path(dst)?);
    // SAFETY: both are valid C strings.
    let r = unsafe { libc::clonefile(s.as_ptr(), d.as_ptr(), CLONE_NOFOLLOW) };
    outcome(r, "clonefile")
}

/// macOS has no `copy_file_range`; the caller copies buffered.
pub fn copy_range(_src: &File, _dst: &File, _len: u64) -> io::Result<bool> {
    Ok(false)
}

/// No single-call beneath-only open here: the caller walks the components.
pub fn open_beneath(_root: &File, _rel: &[u8]) -> Option<io::Result<File>> {
    None
}
