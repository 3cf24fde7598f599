//! Reading one file into stored chunks, from the workspace (checked against
//! concurrent writes) or from a private staged copy.
//!
//! Invariants: a workspace file is stored only if its stat before and after
//! reading agree, so a file written during the read is re-read, never
//! stored torn. Only a workspace read error skips a file; a store write
//! error (full disk, EIO) fails the capture.

use std::fs::File;
use std::path::Path;

use rayon::prelude::*;

use crate::capture::chunker::{self, ChunkParams};
use crate::error::{Error, IoContext, Result};
use crate::format::id::ObjectId;
use crate::format::statcache::FileStat;
use crate::store::writer::ObjectWriter;

use super::stage::Copy;

/// Read attempts before a file that keeps changing is skipped.
const READ_TRIES: u32 = 3;
/// Files up to this size are read whole; larger ones stream through a window.
const WHOLE_READ_MAX: u64 = 8 << 20;

pub enum FileResult {
    Stored(Vec<ObjectId>, FileStat),
    Skipped(String),
}

/// Reads, chunks and stores one workspace file; retried when it changes
/// underneath.
pub fn read_file(path: &Path, params: ChunkParams, writer: &ObjectWriter) -> Result<FileResult> {
    for _ in 0..READ_TRIES {
        let file = match open(path) {
            Ok(f) => f,
            Err(e) => return Ok(FileResult::Skipped(format!("skipped {}: {e}", path.display()))),
        };
        let before = FileStat::of(&file.metadata().at(path)?);
        let (chunks, len) = match chunk_file(&file, path, before.size, params, writer) {
            Ok(r) => r,
            // Reading the workspace failed: skip the file. A store write
            // error is `Error::StoreWrite`, and fails the whole capture.
            Err(Error::Io { source, .. }) => {
                return Ok(FileResult::Skipped(format!(
                    "skipped {}: {source}",
                    path.display()
                )));
            }
            Err(e) => return Err(e),
        };
        let after = FileStat::of(&file.metadata().at(path)?);
        if after == before && len == before.size {
            return Ok(FileResult::Stored(chunks, before));
        }
    }
    Ok(FileResult::Skipped(
        Error::Unstable {
            path: path.to_path_buf(),
            tries: READ_TRIES,
        }
        .to_string(),
    ))
}

/// Stores a staged copy of a workspace file whose stat was `ws_stat` when
/// it was copied. Nobody else writes the copy, so one read suffices.
pub fn read_staged(
    copy: &Copy,
    ws_stat: FileStat,
    params: ChunkParams,
    writer: &ObjectWriter,
) -> Result<FileResult> {
    let (chunks, len, path) = match copy {
        Copy::Memory(data) => (
            chunk_bytes(data, params, writer)?,
            data.len() as u64,
            Path::new(""),
        ),
        Copy::Cloned(path) => {
            let file = open(path).at(path)?;
            let (chunks, len) = chunk_file(&file, path, ws_stat.size, params, writer)?;
            (chunks, len, path.as_path())
        }
    };
    if len != ws_stat.size {
        return Err(Error::corrupt(
            path,
            "staged copy",
            format!("holds {len} bytes but the workspace file had {}", ws_stat.size),
        ));
    }
    Ok(FileResult::Stored(chunks, ws_stat))
}

fn chunk_bytes(data: &[u8], params: ChunkParams, writer: &ObjectWriter) -> Result<Vec<ObjectId>> {
    let ranges = chunker::cut(data, params);
    if ranges.len() > 4 {
        ranges
            .into_par_iter()
            .map(|r| writer.put_chunk(&data[r]))
            .collect()
    } else {
        ranges.into_iter().map(|r| writer.put_chunk(&data[r])).collect()
    }
}

/// A regular file, never through a symlink, never waiting on a FIFO
/// swapped in since the walk.
fn open(path: &Path) -> std::io::Result<File> {
    crate::util::fs::open_regular(path, false).map(|(f, _)| f)
}

fn chunk_file(
    mut file: &File,
    path: &Path,
    size: u64,
    params: ChunkParams,
    writer: &ObjectWriter,
) -> Result<(Vec<ObjectId>, u64)> {
    use std::io::Read;
    if size <= WHOLE_READ_MAX {
        let mut data = Vec::with_capacity(size as usize + 1);
        file.read_to_end(&mut data).at(path)?;
        return Ok((chunk_bytes(&data, params, writer)?, data.len() as u64));
    }
    let mut ids = Vec::new();
    let on_err = |e| Error::io(path, e);
    let len = chunker::stream(file, params, params.window(), on_err, |batch| {
        let got: Vec<ObjectId> = batch
            .par_iter()
            .map(|c| writer.put_chunk(c))
            .collect::<Result<_>>()?;
        ids.extend(got);
        Ok(())
    })?;
    Ok((ids, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::util::testing::{mkfifo, within};

    #[test]
    fn a_fifo_in_place_of_a_file_is_skipped_not_waited_on() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("f");
        mkfifo(&fifo);
        let root = d.path().join("store");
        let skipped = within(20, move || {
            let store = Store::open_or_create(&root).unwrap();
            let writer = ObjectWriter::new(&store).unwrap();
            let r = read_file(&fifo, ChunkParams::from_config(&store.config), &writer).unwrap();
            writer.abandon();
            matches!(r, FileResult::Skipped(w) if w.contains("not a regular file"))
        });
        assert!(skipped);
    }
}
