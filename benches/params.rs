//! Parameter benchmark: the measurement behind the store's default chunk
//! sizes (16/64/256 KiB) and zstd level (3).
//!
//! Every file of a real source tree (~/.cargo/registry/src, else generated
//! text) is chunked on its own, as `moat snapshot` does. For each parameter
//! set it reports chunk counts, sizes before and after zstd, and how many
//! new bytes an "agent edit" of the tree costs: 2% of the files over 64 KiB
//! plus 2% of all files get a few lines inserted in the middle, and every
//! chunk of the edited files not already in the original's chunk set is new.
//!
//! `cargo bench --bench params`; MOAT_BENCH_MB (default 120) caps the tree,
//! MOAT_BENCH_FILES (default 0 = no cap) caps the number of files.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use common::{Rng, env_usize, human, table};
use moat::capture::chunker::{self, ChunkParams};
use moat::format::config::{CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, ZSTD_LEVEL};
use rayon::prelude::*;

const KI: u32 = 1024;
/// Bytes per chunk reference in a tree and per index entry (src/index.rs).
const REF_BYTES: u64 = 32;
const INDEX_ENTRY_BYTES: u64 = 50;

fn params(min: u32, avg: u32, max: u32) -> ChunkParams {
    ChunkParams { min, avg, max }
}

fn label(p: ChunkParams) -> String {
    let f = |v: u32| {
        if v >= 1 << 20 {
            format!("{}M", v >> 20)
        } else {
            format!("{}K", v >> 10)
        }
    };
    format!("{}/{}/{}", f(p.min), f(p.avg), f(p.max))
}

type Key = [u8; 32];

/// Chunk ids (with raw length) of one file.
fn chunk_file(data: &[u8], p: ChunkParams) -> Vec<(Key, &[u8])> {
    chunker::cut(data, p)
        .into_iter()
        .map(|r| (*blake3::hash(&data[r.clone()]).as_bytes(), &data[r]))
        .collect()
}

fn zstd_len(raw: &[u8], level: i32) -> usize {
    moat::format::compress::encode(raw, level).1.len()
}

/// Inserts a few lines at the line boundary nearest the middle.
fn edit(data: &[u8], n: usize) -> Vec<u8> {
    let mid = data.len() / 2;
    let at = data[mid..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(mid, |i| mid + i + 1);
    let ins = format!(
        "    // agent edit #{n}: handle the empty case first\n    if input.is_empty() {{\n        \
         return Ok(Vec::new());\n    }}\n"
    );
    let mut out = Vec::with_capacity(data.len() + ins.len());
    out.extend_from_slice(&data[..at]);
    out.extend_from_slice(ins.as_bytes());
    out.extend_from_slice(&data[at..]);
    out
}

struct Row {
    p: ChunkParams,
    refs: usize,
    unique: usize,
    unique_raw: u64,
    unique_stored: u64,
    cut_secs: f64,
    new_chunks: usize,
    new_raw: u64,
    new_stored: u64,
    new_big_stored: u64,
}

fn main() {
    let max_mb = env_usize("MOAT_BENCH_MB", 120);
    let max_files = env_usize("MOAT_BENCH_FILES", 0);
    let (mut files, mut source): (Vec<Vec<u8>>, String) = match common::registry_src() {
        Some(root) => {
            let f: Vec<Vec<u8>> = common::read_tree(&root, None, max_mb << 20)
                .into_iter()
                .map(|(_, d)| d)
                .collect();
            let s = format!("{} (all files)", root.display());
            (f, s)
        }
        None => (Vec::new(), String::new()),
    };
    if files.len() < 100 {
        // Fallback: a generated tree of mostly small "source" files.
        let mut rng = Rng::new(11);
        let n = if max_files > 0 { max_files } else { 8000 };
        files = (0..n)
            .map(|_| {
                let len = rng.log_uniform(300, 200_000) as usize;
                common::gen_text(&mut rng, len)
            })
            .collect();
        // keep a few large files, as real trees have
        files.extend((0..20).map(|_| common::gen_text(&mut rng, 2 << 20)));
        source = "generated tree (cargo registry missing)".into();
    }
    if max_files > 0 {
        files.truncate(max_files);
    }
    let total: u64 = files.iter().map(|f| f.len() as u64).sum();
    let big: Vec<usize> = (0..files.len()).filter(|&i| files[i].len() > 64 << 10).collect();
    let small16 = files.iter().filter(|f| f.len() < 16 << 10).count();
    println!("moat params benchmark: source {source}");
    println!(
        "{} files, {}; {} files < 16 KiB ({:.0}%), {} files > 64 KiB",
        files.len(),
        human(total),
        small16,
        100.0 * small16 as f64 / files.len() as f64,
        big.len()
    );

    // The edit: 2% of the big files plus 2% of all files.
    let mut rng = Rng::new(2024);
    let mut edited: HashSet<usize> = HashSet::new();
    let pick = |pool: &[usize], rng: &mut Rng, set: &mut HashSet<usize>| {
        let want = (pool.len() as f64 * 0.02).ceil() as usize;
        let target = set.len() + want;
        while set.len() < target.min(set.len() + pool.len()) {
            set.insert(pool[rng.below(pool.len() as u64) as usize]);
        }
    };
    pick(&big, &mut rng, &mut edited);
    let all: Vec<usize> = (0..files.len()).collect();
    pick(&all, &mut rng, &mut edited);
    let mut edited: Vec<usize> = edited.into_iter().collect();
    edited.sort_unstable();
    let edits: Vec<Vec<u8>> = edited.iter().map(|&i| edit(&files[i], i)).collect();
    let inserted: u64 = edited
        .iter()
        .zip(&edits)
        .map(|(&i, e)| (e.len() - files[i].len()) as u64)
        .sum();
    let edited_bytes: u64 = edited.iter().map(|&i| files[i].len() as u64).sum();
    println!(
        "edit: {} files ({} of them > 64 KiB, {} in all) get {} inserted bytes in total",
        edited.len(),
        edited.iter().filter(|&&i| files[i].len() > 64 << 10).count(),
        human(edited_bytes),
        inserted
    );

    let default = params(CHUNK_MIN, CHUNK_AVG, CHUNK_MAX);
    let sets = [
        params(4 * KI, 16 * KI, 64 * KI),
        default,
        params(64 * KI, 256 * KI, 1024 * KI),
        params(256 * KI, 1024 * KI, 4096 * KI),
    ];
    let mut rows = Vec::new();
    for &p in &sets {
        let start = Instant::now();
        let chunked: Vec<Vec<(Key, &[u8])>> = files.iter().map(|f| chunk_file(f, p)).collect();
        let cut_secs = start.elapsed().as_secs_f64();
        let refs: usize = chunked.iter().map(Vec::len).sum();
        let mut set: HashMap<Key, &[u8]> = HashMap::new();
        for c in chunked.iter().flatten() {
            set.entry(c.0).or_insert(c.1);
        }
        let unique_raw: u64 = set.values().map(|c| c.len() as u64).sum();
        let uniq: Vec<&[u8]> = set.values().copied().collect();
        let unique_stored: u64 = uniq.par_iter().map(|c| zstd_len(c, ZSTD_LEVEL) as u64).sum();

        let mut new: HashMap<Key, &[u8]> = HashMap::new();
        let mut new_big: HashMap<Key, &[u8]> = HashMap::new();
        for (e, &i) in edits.iter().zip(&edited) {
            for (k, c) in chunk_file(e, p) {
                if !set.contains_key(&k) {
                    new.insert(k, c);
                    if files[i].len() > 64 << 10 {
                        new_big.insert(k, c);
                    }
                }
            }
        }
        let new_big_stored: u64 = new_big.values().map(|c| zstd_len(c, ZSTD_LEVEL) as u64).sum();
        let new_chunks: Vec<&[u8]> = new.values().copied().collect();
        rows.push(Row {
            p,
            refs,
            unique: set.len(),
            unique_raw,
            unique_stored,
            cut_secs,
            new_chunks: new_chunks.len(),
            new_raw: new_chunks.iter().map(|c| c.len() as u64).sum(),
            new_stored: new_chunks
                .par_iter()
                .map(|c| zstd_len(c, ZSTD_LEVEL) as u64)
                .sum(),
            new_big_stored,
        });
    }

    let trows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let meta = r.refs as u64 * REF_BYTES + r.unique as u64 * INDEX_ENTRY_BYTES;
            vec![
                format!("{}{}", label(r.p), if r.p == default { " *" } else { "" }),
                r.refs.to_string(),
                r.unique.to_string(),
                format!("{:.1} KiB", r.unique_raw as f64 / r.unique as f64 / 1024.0),
                format!("{:.1} KiB", r.unique_stored as f64 / r.unique as f64 / 1024.0),
                human(r.unique_stored),
                format!("{:.2}", r.unique_raw as f64 / r.unique_stored as f64),
                human(meta),
                format!("{:.0}", total as f64 / 1e6 / r.cut_secs),
                r.new_chunks.to_string(),
                human(r.new_raw),
                human(r.new_stored),
                human(r.new_big_stored),
                format!("{:.0}x", r.new_stored as f64 / inserted as f64),
            ]
        })
        .collect();
    table(
        &format!(
            "Chunk parameters (min/avg/max), each file chunked separately; stored = zstd {ZSTD_LEVEL} \
             per chunk; * = default"
        ),
        &[
            "params",
            "chunk refs",
            "unique",
            "avg raw",
            "avg stored",
            "stored total",
            "ratio",
            "meta est.",
            "cut MB/s",
            "edit: new chunks",
            "new raw",
            "new stored",
            "of it >64K files",
            "new/inserted",
        ],
        &trows,
    );
    println!(
        "meta est. = {REF_BYTES} B per chunk reference in trees + {INDEX_ENTRY_BYTES} B per index \
         entry; new/inserted = new stored bytes per inserted byte ({inserted} B inserted)"
    );

    // zstd level, default chunk params, one thread.
    let mut uniq: HashMap<Key, &[u8]> = HashMap::new();
    for f in &files {
        for (k, c) in chunk_file(f, default) {
            uniq.insert(k, c);
        }
    }
    let chunks: Vec<&[u8]> = uniq.values().copied().collect();
    let raw: u64 = chunks.iter().map(|c| c.len() as u64).sum();
    let mut lrows = Vec::new();
    let mut by_level = Vec::new();
    for level in [1, 3, 6] {
        let start = Instant::now();
        let stored: u64 = chunks.iter().map(|c| zstd_len(c, level) as u64).sum();
        let secs = start.elapsed().as_secs_f64();
        by_level.push((level, stored, secs));
        lrows.push(vec![
            format!("{level}{}", if level == ZSTD_LEVEL { " *" } else { "" }),
            human(stored),
            format!("{:.2}", raw as f64 / stored as f64),
            format!("{secs:.2} s"),
            format!("{:.0}", raw as f64 / 1e6 / secs),
        ]);
    }
    table(
        &format!(
            "zstd level, {} unique chunks ({}) at {}, one thread",
            chunks.len(),
            human(raw),
            label(default)
        ),
        &["level", "stored", "ratio", "time", "MB/s"],
        &lrows,
    );

    // One-line conclusion drawn from the numbers above.
    let get = |p: ChunkParams| rows.iter().find(|r| r.p == p).expect("row");
    let (small, def, mid, big) = (get(sets[0]), get(sets[1]), get(sets[2]), get(sets[3]));
    let (l1, l3, l6) = (by_level[0], by_level[1], by_level[2]);
    let pct = |a: u64, b: u64| 100.0 * (1.0 - a as f64 / b as f64);
    println!(
        "\nConclusion: with {:.0}% of files under 16 KiB, {} needs {:.0}% less \
         new stored data per edit than {} and {:.0}% less than {} (restic-like); {} would save another \
         {:.0}% of edit bytes for {:.0}% more chunk refs and a {:+.1}% stored total; zstd 3 stores {:.1}% \
         less than level 1 at {:.2}x its time, while level 6 saves {:.1}% more at {:.1}x the time of \
         level 3.",
        100.0 * small16 as f64 / files.len() as f64,
        label(def.p),
        pct(def.new_stored, mid.new_stored),
        label(mid.p),
        pct(def.new_stored, big.new_stored),
        label(big.p),
        label(small.p),
        pct(small.new_stored, def.new_stored),
        100.0 * (small.refs as f64 / def.refs as f64 - 1.0),
        100.0 * (small.unique_stored as f64 / def.unique_stored as f64 - 1.0),
        pct(l3.1, l1.1),
        l3.2 / l1.2,
        pct(l6.1, l3.1),
        l6.2 / l3.2,
    );
}
