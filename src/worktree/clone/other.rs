//! Systems without a supported clone call: every clone is `Unsupported`.

use std::fs::File;
use std::io;
use std::path::Path;

use super::Outcome;

pub const NAME: &str = "none";

pub fn clone_open(_src: &File, _dst: &Path) -> io::Result<Outcome> {
    Ok(Outcome::Unsupported("this OS has no file clone call".into()))
}

pub fn clone_dir(_src: &Path, _dst: &Path) -> io::Result<Outcome> {
    Ok(Outcome::Unsupported("this OS has no directory clone call".into()))
}

pub fn copy_range(_src: &File, _dst: &File, _len: u64) -> io::Result<bool> {
    Ok(false)
}

/// No single-call beneath-only open here: the caller walks the components.
pub fn open_beneath(_root: &File, _rel: &[u8]) -> Option<io::Result<File>> {
    None
}
