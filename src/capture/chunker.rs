//! Content-defined chunking with FastCDC (v2020).
//!
//! Files are cut in memory when small and through a sliding window when
//! large, so memory stays bounded for a file of any size.
//!
//! Invariant: the windowed cut produces exactly the chunks a whole-file cut
//! would. A cut point depends only on the bytes from the chunk's start up to
//! `max` bytes on, so a chunk is taken from a window only when that much
//! lookahead is inside it (or the file has ended).

use std::io::{self, Read};
use std::ops::Range;

use fastcdc::v2020::FastCDC;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkParams {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

impl ChunkParams {
    pub fn from_config(c: &crate::format::config::StoreConfig) -> Self {
        ChunkParams {
            min: c.chunk_min,
            avg: c.chunk_avg,
            max: c.chunk_max,
        }
    }

    /// Window used for streaming: large enough that most of it yields
    /// chunks before the lookahead rule stops a pass.
    pub fn window(&self) -> usize {
        (self.max as usize * 16).max(4 << 20)
    }
}

/// Cuts a whole buffer; an empty buffer has no chunks.
pub fn cut(data: &[u8], p: ChunkParams) -> Vec<Range<usize>> {
    if data.is_empty() {
        return Vec::new();
    }
    FastCDC::new(data, p.min as usize, p.avg as usize, p.max as usize)
        .map(|c| c.offset..c.offset + c.length)
        .collect()
}

/// Streams `r` through the chunker and calls `each_batch` with the chunks
/// cut from each window, in order. Returns the number of bytes read.
pub fn stream<R: Read, E>(
    mut r: R,
    p: ChunkParams,
    window: usize,
    on_read_error: impl Fn(io::Error) -> E,
    mut each_batch: impl FnMut(&[&[u8]]) -> Result<(), E>,
) -> Result<u64, E> {
    let window = window.max(p.max as usize * 2);
    let mut buf = vec![0u8; window];
    let mut len = 0usize;
    let mut total = 0u64;
    let mut eof = false;
    while !eof || len > 0 {
        while !eof && len < window {
            match r.read(&mut buf[len..]) {
                Ok(0) => eof = true,
                Ok(n) => {
                    len += n;
                    total += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(on_read_error(e)),
            }
        }
        let mut batch: Vec<&[u8]> = Vec::new();
        let mut consumed = 0;
        for c in cut(&buf[..len], p) {
            if !eof && c.start + p.max as usize > len {
                break;
            }
            consumed = c.end;
            batch.push(&buf[c]);
        }
        each_batch(&batch)?;
        buf.copy_within(consumed..len, 0);
        len -= consumed;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::testing::noise;
    use proptest::prelude::*;

    const P: ChunkParams = ChunkParams {
        min: 256,
        avg: 1024,
        max: 4096,
    };

    fn streamed(d: &[u8], window: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        stream::<_, io::Error>(
            d,
            P,
            window,
            |e| e,
            |b| {
                out.extend(b.iter().map(|c| c.to_vec()));
                Ok(())
            },
        )
        .unwrap();
        out
    }

    proptest! {
        #[test]
        fn stream_equals_whole_cut(n in 0usize..60_000, seed in any::<u64>(), w in 8192usize..20_000) {
            let d = noise(n, seed);
            let whole: Vec<Vec<u8>> = cut(&d, P).into_iter().map(|r| d[r].to_vec()).collect();
            prop_assert_eq!(streamed(&d, w), whole);
        }
    }

    #[test]
    fn small_input_is_one_chunk() {
        assert_eq!(cut(&[7u8; 100], P), vec![0..100]);
        assert!(cut(&[], P).is_empty());
    }

    #[test]
    fn edit_keeps_most_chunks() {
        let a = noise(200_000, 9);
        let mut b = a.clone();
        b.splice(100_000..100_000, b"inserted".iter().copied());
        let ca: std::collections::HashSet<&[u8]> = cut(&a, P).into_iter().map(|r| &a[r]).collect();
        let cb: Vec<&[u8]> = cut(&b, P).into_iter().map(|r| &b[r]).collect();
        let new = cb.iter().filter(|c| !ca.contains(*c)).count();
        assert!(new <= 3, "{new} new chunks after a small insert");
    }
}
