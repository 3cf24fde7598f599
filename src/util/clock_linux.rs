//! Linux: an unnamed file (`O_TMPFILE`), which never appears in its
//! directory and vanishes when closed, even if moat is killed.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// An unnamed temp file on `dir`'s filesystem; fails where the filesystem
/// does not support it (then the caller uses a named one).
pub fn unnamed_file(dir: &Path) -> io::Result<File> {
    File::options()
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
        .open(dir)
}
