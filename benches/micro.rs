//! Micro benchmark: single-thread throughput of the building blocks of a
//! snapshot (FastCDC cut, blake3, zstd per chunk) on real Rust sources and on
//! random bytes.
//!
//! `cargo bench --bench micro`; MOAT_BENCH_MB (default 80) sets the input
//! size, MOAT_BENCH_REPS (default 3) the repetitions (the median is shown).

mod common;

use common::{Rng, env_usize, mb_s, table, time_median};
use moat::capture::chunker::{self, ChunkParams};
use moat::format::compress::{self, Compression};
use moat::format::config::{CHUNK_AVG, CHUNK_MAX, CHUNK_MIN};
use moat::format::id::ObjectId;

const PARAMS: ChunkParams = ChunkParams {
    min: CHUNK_MIN,
    avg: CHUNK_AVG,
    max: CHUNK_MAX,
};

/// One result cell per data set: MB/s and, for compression, the ratio.
struct Cell {
    mbs: f64,
    ratio: Option<f64>,
}

fn bench(data: &[u8], reps: usize) -> Vec<(String, Cell)> {
    let mut out = Vec::new();
    let n = data.len();

    let t = time_median(reps, || chunker::cut(data, PARAMS));
    let ranges = chunker::cut(data, PARAMS);
    out.push((
        format!(
            "fastcdc cut {}/{}/{} KiB",
            CHUNK_MIN >> 10,
            CHUNK_AVG >> 10,
            CHUNK_MAX >> 10
        ),
        Cell {
            mbs: mb_s(n, t),
            ratio: None,
        },
    ));

    let t = time_median(reps, || {
        data.chunks(64 << 10)
            .map(|p| blake3::hash(p).as_bytes()[0])
            .fold(0u8, |a, b| a ^ b)
    });
    out.push((
        "blake3, 64 KiB pieces".into(),
        Cell {
            mbs: mb_s(n, t),
            ratio: None,
        },
    ));

    let ids: Vec<ObjectId> = ranges.iter().map(|r| ObjectId::hash(&data[r.clone()])).collect();
    for level in [1, 3, 6] {
        // The store compresses each chunk on its own, so do the same.
        let encode_all = || -> Vec<(Compression, Vec<u8>)> {
            ranges
                .iter()
                .map(|r| compress::encode(&data[r.clone()], level))
                .collect()
        };
        let t = time_median(reps, encode_all);
        let stored = encode_all();
        let stored_len: usize = stored.iter().map(|(_, s)| s.len()).sum();
        out.push((
            format!("zstd L{level} compress (per chunk)"),
            Cell {
                mbs: mb_s(n, t),
                ratio: Some(n as f64 / stored_len as f64),
            },
        ));

        let t = time_median(reps, || {
            let mut total = 0usize;
            for ((c, s), r) in stored.iter().zip(&ranges) {
                total += match c {
                    Compression::Zstd => zstd::bulk::decompress(s, r.len()).expect("decompress").len(),
                    Compression::None => std::hint::black_box(s.to_vec()).len(),
                };
            }
            assert_eq!(total, n);
            total
        });
        out.push((
            format!("zstd L{level} decompress"),
            Cell {
                mbs: mb_s(n, t),
                ratio: None,
            },
        ));

        let t = time_median(reps, || {
            let mut total = 0usize;
            for (((c, s), r), id) in stored.iter().zip(&ranges).zip(&ids) {
                total += compress::decode(id, *c, r.len() as u32, s).expect("decode").len();
            }
            total
        });
        out.push((
            format!("zstd L{level} moat decode (+verify)"),
            Cell {
                mbs: mb_s(n, t),
                ratio: None,
            },
        ));
    }
    out
}

fn main() {
    let mb = env_usize("MOAT_BENCH_MB", 80);
    let reps = env_usize("MOAT_BENCH_REPS", 3).max(1);
    let (text, source) = common::source_text(mb << 20);
    let random = Rng::new(42).bytes(text.len());
    println!("moat micro benchmark: single thread, median of {reps} runs");
    println!("(a) source: {source}, {:.1} MB", text.len() as f64 / 1e6);
    println!("(b) random: {:.1} MB from xorshift64*", random.len() as f64 / 1e6);
    let nchunks = chunker::cut(&text, PARAMS).len();
    println!(
        "default chunk params cut (a) into {nchunks} chunks, avg {:.1} KiB (inputs are one \
         concatenated buffer)",
        text.len() as f64 / nchunks.max(1) as f64 / 1024.0
    );

    let a = bench(&text, reps);
    let b = bench(&random, reps);
    let ratio = |c: &Cell| c.ratio.map(|r| format!("{r:.2}")).unwrap_or_default();
    let rows: Vec<Vec<String>> = a
        .iter()
        .zip(&b)
        .map(|((name, ca), (_, cb))| {
            vec![
                name.clone(),
                format!("{:.0}", ca.mbs),
                ratio(ca),
                format!("{:.0}", cb.mbs),
                ratio(cb),
            ]
        })
        .collect();
    table(
        "Throughput (MB/s of uncompressed data) and compression ratio (raw/stored)",
        &["operation", "source MB/s", "ratio", "random MB/s", "ratio"],
        &rows,
    );
    small_pieces(&text, reps);
}

/// `moat::format::compress` makes a fresh zstd context per call. On small objects
/// (most source files are one chunk of a few KiB) that setup is a large part
/// of the cost, so compare it with a context reused across calls.
fn small_pieces(text: &[u8], reps: usize) {
    const LEVEL: i32 = moat::format::config::ZSTD_LEVEL;
    let mut rows = Vec::new();
    for piece in [4 << 10, 16 << 10, 64 << 10] {
        let pieces: Vec<&[u8]> = text.chunks(piece).collect();
        let n = text.len();
        let fresh = time_median(reps, || {
            pieces
                .iter()
                .map(|p| compress::encode(p, LEVEL).1.len())
                .sum::<usize>()
        });
        let mut cctx = zstd::bulk::Compressor::new(LEVEL).expect("cctx");
        let reused = time_median(reps, || {
            pieces
                .iter()
                .map(|p| cctx.compress(p).expect("compress").len())
                .sum::<usize>()
        });
        let stored: Vec<Vec<u8>> = pieces
            .iter()
            .map(|p| cctx.compress(p).expect("compress"))
            .collect();
        let d_fresh = time_median(reps, || {
            stored
                .iter()
                .map(|s| zstd::bulk::decompress(s, piece).expect("decompress").len())
                .sum::<usize>()
        });
        let mut dctx = zstd::bulk::Decompressor::new().expect("dctx");
        let d_reused = time_median(reps, || {
            stored
                .iter()
                .map(|s| dctx.decompress(s, piece).expect("decompress").len())
                .sum::<usize>()
        });
        rows.push(vec![
            format!("{} KiB", piece >> 10),
            format!("{:.0}", mb_s(n, fresh)),
            format!("{:.0}", mb_s(n, reused)),
            format!("{:.2}x", fresh / reused),
            format!("{:.0}", mb_s(n, d_fresh)),
            format!("{:.0}", mb_s(n, d_reused)),
            format!("{:.2}x", d_fresh / d_reused),
        ]);
    }
    table(
        &format!(
            "zstd L{LEVEL} on source text cut into equal pieces: fresh context per call (moat today) vs reused"
        ),
        &[
            "piece",
            "comp fresh",
            "comp reused",
            "speedup",
            "decomp fresh",
            "decomp reused",
            "speedup",
        ],
        &rows,
    );
}
