//! The generated workspace of the snapshot benchmark: mostly small text
//! files, some medium ones, and a few large binaries, deterministic from
//! a seed.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use super::Rng;

#[derive(Clone, Copy)]
pub enum Kind {
    Text,
    Semi,
    Random,
}

pub struct Spec {
    rel: PathBuf,
    size: usize,
    kind: Kind,
    seed: u64,
}

pub struct Workspace {
    pub files: usize,
    pub dirs: usize,
    pub bytes: u64,
    pub small: Vec<PathBuf>,
    pub large: usize,
    pub medium: usize,
}

/// A slice of the corpus of about `len` bytes starting at a line boundary,
/// after a header line that makes every file unique.
pub fn text(corpus: &[u8], rng: &mut Rng, header: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(header.as_bytes());
    while out.len() < len {
        let want = len - out.len();
        let mut at = rng.below(corpus.len().saturating_sub(want).max(1) as u64) as usize;
        if let Some(i) = corpus[at..].iter().position(|&b| b == b'\n') {
            at += i + 1;
        }
        let end = (at + want).min(corpus.len());
        out.extend_from_slice(&corpus[at..end]);
    }
    out
}

/// Semi-compressible binary: random blocks, low-entropy blocks (4 bits of
/// entropy a byte) and zero runs, like object files and assets.
pub fn semi(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    for block in out.chunks_mut(4096) {
        match rng.below(10) {
            0..=3 => rng.fill(block),
            4 => {}
            _ => {
                for b in block.chunks_mut(16) {
                    let mut v = rng.next();
                    for x in b {
                        *x = b"\0\x01\x02\x03\x04\x08\x10\x20\x40\x80\xff\x48\x89\xe5\xc3\x0f"
                            [(v & 15) as usize];
                        v >>= 4;
                    }
                }
            }
        }
    }
    out
}

pub fn content(spec: &Spec, corpus: &[u8]) -> Vec<u8> {
    let mut rng = Rng::new(spec.seed);
    match spec.kind {
        Kind::Text => text(
            corpus,
            &mut rng,
            &format!("// {}\n", spec.rel.display()),
            spec.size,
        ),
        Kind::Semi => semi(&mut rng, spec.size),
        Kind::Random => rng.bytes(spec.size),
    }
}

/// Mostly small text files (1–20 KB, log-uniform) over ~files/20 leaf
/// directories, files/250 medium files (100 KB–1 MB), and large binaries
/// (10–40 MB, half random, half semi-compressible) filling the size budget.
pub fn generate(ws: &Path, n_files: usize, mb: usize, corpus: &[u8]) -> Workspace {
    let mut rng = Rng::new(1);
    let n_leaf = (n_files / 20).max(1);
    let top = (n_leaf as f64).sqrt().ceil() as usize;
    let leaf = |i: usize| PathBuf::from(format!("crate{:02}/src/mod{:03}", i / top, i % top));
    let mut specs = Vec::new();
    let n_med = (n_files / 250).max(1);
    let mut budget = (mb as u64) << 20;
    let mut small = Vec::new();
    let exts = ["rs", "rs", "rs", "rs", "rs", "rs", "md", "json", "toml", "ts"];
    // Leave room for a few large files within the budget.
    let n_small = n_files.saturating_sub(n_med + 10).max(1);
    for j in 0..n_small {
        let size = rng.log_uniform(1000, 20_000) as usize;
        let ext = exts[rng.below(exts.len() as u64) as usize];
        let rel = leaf(rng.below(n_leaf as u64) as usize).join(format!("f{j}.{ext}"));
        small.push(rel.clone());
        specs.push(Spec {
            rel,
            size,
            kind: Kind::Text,
            seed: rng.next(),
        });
    }
    for j in 0..n_med {
        let size = rng.log_uniform(100_000, 1_000_000) as usize;
        let (kind, name) = if j % 3 == 2 {
            (Kind::Semi, format!("lib{j}.a"))
        } else {
            (Kind::Text, format!("gen{j}.json"))
        };
        specs.push(Spec {
            rel: leaf(rng.below(n_leaf as u64) as usize).join(name),
            size,
            kind,
            seed: rng.next(),
        });
    }
    let used: u64 = specs.iter().map(|s| s.size as u64).sum();
    budget = budget.saturating_sub(used);
    // ~10 large files at the default size (fewer for small trees), each
    // 10–40 MB, sharing what is left of the budget.
    let n_large = (n_files / 5000)
        .clamp(1, 10)
        .max((budget as usize).div_ceil(40 << 20));
    let each = (budget / n_large as u64).clamp(10 << 20, 40 << 20);
    for j in 0..n_large {
        let size = (each as f64 * (0.8 + 0.4 * rng.unit())) as usize;
        specs.push(Spec {
            rel: PathBuf::from(format!("assets/blob{j}.bin")),
            size: size.clamp(10 << 20, 40 << 20),
            kind: if j % 2 == 0 { Kind::Random } else { Kind::Semi },
            seed: rng.next(),
        });
    }
    let mut dirs: Vec<PathBuf> = specs
        .iter()
        .filter_map(|s| s.rel.parent().map(Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs.dedup();
    for d in &dirs {
        fs::create_dir_all(ws.join(d)).expect("create dir");
    }
    let bytes = AtomicU64::new(0);
    specs.par_iter().for_each(|s| {
        let data = content(s, corpus);
        bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        fs::write(ws.join(&s.rel), data).expect("write file");
    });
    let mut all_dirs = std::collections::BTreeSet::new();
    for d in &dirs {
        for a in d.ancestors().filter(|a| !a.as_os_str().is_empty()) {
            all_dirs.insert(a.to_path_buf());
        }
    }
    Workspace {
        files: specs.len(),
        dirs: all_dirs.len(),
        bytes: bytes.into_inner(),
        small,
        large: n_large,
        medium: n_med,
    }
}
