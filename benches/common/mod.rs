//! Helpers shared by the bench programs (not a bench target itself: cargo
//! only discovers `benches/*.rs` and `benches/*/main.rs`).
#![allow(dead_code)]

pub mod workspace;

use std::path::{Path, PathBuf};
use std::time::Instant;

/// xorshift64*: fast, deterministic, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next() >> 32) * n) >> 32
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Log-uniform in `[lo, hi)`.
    pub fn log_uniform(&mut self, lo: u64, hi: u64) -> u64 {
        let (l, h) = ((lo as f64).ln(), (hi as f64).ln());
        (l + (h - l) * self.unit()).exp() as u64
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut it = buf.chunks_exact_mut(8);
        for c in &mut it {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = it.into_remainder();
        let v = self.next().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&v[..n]);
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.fill(&mut v);
        v
    }
}

pub fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Median seconds of `reps` runs of `f`; the closure's result is kept
/// alive through `black_box` so the work is not optimised away.
pub fn time_median<T>(reps: usize, mut f: impl FnMut() -> T) -> f64 {
    let mut t = Vec::with_capacity(reps);
    for _ in 0..reps {
        let s = Instant::now();
        std::hint::black_box(f());
        t.push(s.elapsed().as_secs_f64());
    }
    median(&t)
}

pub fn mb_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

/// Prints an aligned table: first column left-aligned, the rest right.
pub fn table(title: &str, header: &[&str], rows: &[Vec<String>]) {
    let n = header.len();
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i] - c.chars().count();
            if i == 0 {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str("  ");
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            }
        }
        println!("{}", s.trim_end());
    };
    println!("\n{title}");
    line(header.iter().map(|h| h.to_string()).collect());
    line(w.iter().map(|&k| "-".repeat(k)).collect());
    for r in rows {
        line(r.clone());
    }
}

pub fn registry_src() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let p = Path::new(&home).join(".cargo/registry/src");
    p.is_dir().then_some(p)
}

/// Regular files under `root` in a stable order, optionally only those with
/// extension `ext`, stopping once `max_bytes` have been collected.
pub fn read_tree(root: &Path, ext: Option<&str>, max_bytes: usize) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut total = 0usize;
    let walk = ignore::WalkBuilder::new(root)
        .standard_filters(false)
        .follow_links(false)
        .sort_by_file_name(|a, b| a.cmp(b))
        .build();
    for ent in walk.flatten() {
        if !ent.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        if let Some(e) = ext
            && ent.path().extension().and_then(|x| x.to_str()) != Some(e)
        {
            continue;
        }
        let Ok(data) = std::fs::read(ent.path()) else {
            continue;
        };
        total += data.len();
        out.push((ent.path().to_path_buf(), data));
        if total >= max_bytes {
            break;
        }
    }
    out
}

const WORDS: &[&str] = &[
    "fn", "let", "mut", "self", "impl", "struct", "enum", "match", "return", "Some", "None", "Ok", "Err",
    "pub", "use", "crate", "mod", "where", "for", "in", "if", "else", "while", "loop", "break", "u64",
    "usize", "String", "Vec", "Option", "Result", "Path", "buf", "len", "data", "index", "value", "key",
    "map", "iter", "collect", "into", "from", "as_ref", "unwrap", "clone", "config", "store", "chunk",
    "tree", "entry", "error", "writer", "reader", "offset", "size", "hash", "id", "node", "parent",
];

/// Rust-looking text with realistic line lengths and repetition, used when
/// the cargo registry is not there.
pub fn gen_text(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 128);
    let mut depth = 0usize;
    while out.len() < len {
        match rng.below(10) {
            0 if depth < 4 => {
                out.extend(b"    ".repeat(depth));
                out.extend(b"fn ");
                out.extend(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
                out.extend(format!("_{}(x: usize) -> Result<()> {{\n", rng.below(1000)).as_bytes());
                depth += 1;
            }
            1 if depth > 0 => {
                depth -= 1;
                out.extend(b"    ".repeat(depth));
                out.extend(b"}\n");
            }
            2 => out.push(b'\n'),
            _ => {
                out.extend(b"    ".repeat(depth + 1));
                for i in 0..3 + rng.below(9) {
                    if i > 0 {
                        out.push(b' ');
                    }
                    out.extend(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
                    if rng.below(6) == 0 {
                        out.extend(format!("{}", rng.below(100_000)).as_bytes());
                    }
                }
                out.extend(b";\n");
            }
        }
    }
    out.truncate(len);
    out
}

/// Rust sources from the cargo registry concatenated up to `max_bytes`, or
/// generated text when the registry is missing. Returns the text and where
/// it came from.
pub fn source_text(max_bytes: usize) -> (Vec<u8>, String) {
    if let Some(root) = registry_src() {
        let files = read_tree(&root, Some("rs"), max_bytes);
        let mut v = Vec::with_capacity(max_bytes + (1 << 20));
        for (_, d) in &files {
            v.extend_from_slice(d);
        }
        if v.len() >= max_bytes / 4 {
            v.truncate(max_bytes);
            let src = format!("{} .rs files from {}", files.len(), root.display());
            return (v, src);
        }
    }
    (
        gen_text(&mut Rng::new(7), max_bytes),
        "generated text (no cargo registry)".into(),
    )
}

/// Runs `moat --store STORE --quiet ARGS...`, panicking with its stderr on
/// failure; returns the last line of its stdout (an id, for `snapshot`).
pub fn moat(store: &Path, args: &[&str]) -> String {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_moat"));
    c.arg("--store").arg(store).arg("--quiet").args(args);
    last_line(c)
}

/// Runs `cmd`, panicking with its stderr on failure; returns the last
/// line of its stdout.
pub fn last_line(mut cmd: std::process::Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

/// The floor for a no-change snapshot: a 2-thread parallel walk doing
/// lstat on every entry. Returns (seconds, entries).
pub fn stat_walk(root: &Path) -> (f64, u64) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let n = AtomicU64::new(0);
    let start = Instant::now();
    ignore::WalkBuilder::new(root)
        .standard_filters(false)
        .threads(2)
        .build_parallel()
        .run(|| {
            let n = &n;
            Box::new(move |e| {
                if let Ok(e) = e
                    && std::fs::symlink_metadata(e.path()).is_ok()
                {
                    n.fetch_add(1, Ordering::Relaxed);
                }
                ignore::WalkState::Continue
            })
        });
    (start.elapsed().as_secs_f64(), n.into_inner())
}
