#![no_main]

//! The windowed chunker must cut exactly the chunks a whole-buffer cut
//! does, for any window of at least 2 * max.

use libfuzzer_sys::fuzz_target;
use moat::capture::chunker::{self, ChunkParams};

const P: ChunkParams = ChunkParams {
    min: 64,
    avg: 256,
    max: 1024,
};

fuzz_target!(|input: &[u8]| {
    let Some((w, data)) = input.split_first_chunk::<2>() else {
        return;
    };
    let window = 2 * P.max as usize + (u16::from_le_bytes(*w) as usize % 8192);

    let whole: Vec<&[u8]> = chunker::cut(data, P).into_iter().map(|r| &data[r]).collect();

    let mut streamed: Vec<Vec<u8>> = Vec::new();
    let total = chunker::stream::<_, std::io::Error>(
        data,
        P,
        window,
        |e| e,
        |batch| {
            streamed.extend(batch.iter().map(|c| c.to_vec()));
            Ok(())
        },
    )
    .expect("reading a slice cannot fail");

    assert_eq!(total, data.len() as u64);
    assert_eq!(
        streamed.len(),
        whole.len(),
        "chunk count differs (window {window})"
    );
    for (i, (s, w)) in streamed.iter().zip(&whole).enumerate() {
        assert!(s.as_slice() == *w, "chunk {i} differs (window {window})");
    }
});
