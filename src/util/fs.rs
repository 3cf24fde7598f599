//! Crash-safe file writing: write a uniquely named temp file, fsync it,
//! rename it into place, fsync the directory.
//!
//! Invariant: a reader never sees a partly written store file. Temp names
//! carry the writer's pid, so two processes never share one, and stale temps
//! of dead writers can be recognised by `gc`.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use crate::util::temp_name;

/// Creates a new temp file in `dir` (exclusive create, never follows links).
pub fn create_temp(dir: &Path, ext: &str) -> Result<(File, PathBuf)> {
    let path = dir.join(temp_name(ext));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .at(&path)?;
    Ok((file, path))
}

pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Writes `data` to `dest` atomically. With `durable`, the data and the
/// rename are fsynced before returning.
pub fn atomic_write(tmp_dir: &Path, dest: &Path, data: &[u8], durable: bool) -> Result<()> {
    let (mut file, tmp) = create_temp(tmp_dir, "write")?;
    let res = (|| {
        file.write_all(data).at(&tmp)?;
        if durable {
            file.sync_all().at(&tmp)?;
        }
        drop(file);
        fs::rename(&tmp, dest).at(dest)?;
        if let Some(parent) = dest.parent().filter(|_| durable) {
            fsync_dir(parent)?;
        }
        Ok(())
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Moves a finished, fsynced temp file to `dest`. Store files published this
/// way are content-addressed, so replacing an existing file with the same
/// name replaces it with the same bytes.
pub fn publish(tmp: &Path, dest: &Path) -> Result<()> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).at(parent)?;
    fs::rename(tmp, dest).at(dest)?;
    fsync_dir(parent)
}
