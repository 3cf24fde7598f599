//! Diff and rollback on a large workspace, at O(changes).
//!
//! Builds a 100,000-file workspace on tmpfs (MOAT_BENCH_FILES to change it),
//! snapshots it, changes 10 files, snapshots again, then measures:
//! - `diff` of the two snapshots, in-process (library) and as a command;
//! - `moat rollback` of the 10 changes (including its safety snapshot)
//!   against a full `moat restore` of the same snapshot into tmpfs.
//!
//! Prints medians and ratios; run with `cargo bench --bench rollback`.

mod common;

use std::path::{Path, PathBuf};

use common::moat;
use std::time::{Duration, Instant};

fn timed<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t = Instant::now();
    let r = f();
    (t.elapsed(), r)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn generate(ws: &Path, files: usize) {
    for i in 0..files {
        let dir = ws.join(format!("d{:03}/s{:02}", i % 500, (i / 500) % 40));
        if i < 20_000 {
            std::fs::create_dir_all(&dir).expect("mkdir");
        }
        std::fs::create_dir_all(&dir).ok();
        let body = format!(
            "// file {i}\n{}",
            "let x = compute(a, b, c);\n".repeat(20 + i % 40)
        );
        std::fs::write(dir.join(format!("f{i}.rs")), body).expect("write");
    }
}

fn change(ws: &Path, files: usize, round: usize) -> Vec<PathBuf> {
    (0..10)
        .map(|k| {
            let i = (k * 7919 + round * 13) % files;
            let p = ws.join(format!("d{:03}/s{:02}/f{i}.rs", i % 500, (i / 500) % 40));
            std::fs::write(&p, format!("// changed in round {round}\n")).expect("edit");
            p
        })
        .collect()
}

fn main() {
    let files: usize = std::env::var("MOAT_BENCH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let base = PathBuf::from(if Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    })
    .join(format!("moat-bench-rollback-{}", std::process::id()));
    let (ws, store) = (base.join("ws"), base.join("store"));
    std::fs::create_dir_all(&ws).expect("mkdir");
    println!("generating {files} files in {} ...", ws.display());
    generate(&ws, files);
    let ws_s = ws.to_str().expect("utf8");
    let (t_first, a) = timed(|| moat(&store, &["snapshot", ws_s]));
    change(&ws, files, 0);
    let b = moat(&store, &["snapshot", ws_s]);

    // diff of two snapshots, in the library (store already open).
    let st = moat::Store::open(&store).expect("open store");
    let ra = moat::ops::resolve::snapshot(&st, &a, None).expect("a");
    let rb = moat::ops::resolve::snapshot(&st, &b, None).expect("b");
    let trees = moat::ops::diff::Trees::new(&st);
    let mut lib = Vec::new();
    let mut n = 0;
    for _ in 0..7 {
        let (t, ch) = timed(|| {
            moat::ops::diff::diff(&trees, Some(&ra.snap.root), Some(&rb.snap.root), &[]).expect("diff")
        });
        n = ch.len();
        lib.push(t);
    }
    let cmd: Vec<Duration> = (0..5)
        .map(|_| timed(|| moat(&store, &["diff", &a, &b])).0)
        .collect();

    let mut rollback = Vec::new();
    let mut restore = Vec::new();
    for round in 1..=3 {
        change(&ws, files, round);
        let (t, _) = timed(|| moat(&store, &["rollback", &a, ws_s]));
        rollback.push(t);
        let target = base.join(format!("restore{round}"));
        let (t, _) = timed(|| moat(&store, &["restore", &a, "--to", target.to_str().expect("utf8")]));
        restore.push(t);
        std::fs::remove_dir_all(&target).ok();
    }
    let (lib, cmd, rb_t, rs_t) = (median(lib), median(cmd), median(rollback), median(restore));
    println!(
        "\nworkspace: {files} files; first snapshot {:.2}s",
        t_first.as_secs_f64()
    );
    println!("{:<44} {:>10}", "operation", "median");
    println!(
        "{:<44} {:>8.2}ms  ({n} changes; target < 50 ms)",
        "diff A B, library",
        lib.as_secs_f64() * 1e3
    );
    println!(
        "{:<44} {:>8.2}ms",
        "moat diff A B, whole command",
        cmd.as_secs_f64() * 1e3
    );
    println!(
        "{:<44} {:>8.2}ms",
        "moat rollback (10 files, with safety snap)",
        rb_t.as_secs_f64() * 1e3
    );
    println!(
        "{:<44} {:>8.2}ms",
        "moat restore (full tree, tmpfs)",
        rs_t.as_secs_f64() * 1e3
    );
    println!(
        "ratio rollback / full restore: {:.3}",
        rb_t.as_secs_f64() / rs_t.as_secs_f64()
    );
    println!(
        "diff target (< 50 ms): {}",
        if lib.as_millis() < 50 { "PASS" } else { "MISS" }
    );
    std::fs::remove_dir_all(&base).ok();
}
