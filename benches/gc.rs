//! gc on a store filled by 100 snapshots of a changing tree: time and space
//! reclaimed when keeping the last 10, beside `restic forget --keep-last 10
//! --prune` on the same states when restic is installed.
//!
//! MOAT_BENCH_FILES (default 3000) and MOAT_BENCH_SNAPSHOTS (default 100).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

const MOAT: &str = env!("CARGO_BIN_EXE_moat");

fn du(p: &Path) -> u64 {
    let mut t = 0;
    for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
        let m = e.metadata().expect("meta");
        t += if m.is_dir() { du(&e.path()) } else { m.len() };
    }
    t
}

fn run(cmd: &mut Command) -> f64 {
    let t = Instant::now();
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed().as_secs_f64()
}

fn body(i: usize, round: usize) -> Vec<u8> {
    let mut x = (i as u64 + 1) * 0x9E37_79B9 + round as u64;
    let n = 2_000 + (i % 50) * 400;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b"abcdefghij klmnop\n"[(x % 18) as usize]
        })
        .collect()
}

fn main() {
    // restic needs a password; this is a throwaway benchmark repository.
    // SAFETY: set before any thread is started.
    unsafe { std::env::set_var("RESTIC_PASSWORD", "moat-bench") };
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (files, snaps) = (env("MOAT_BENCH_FILES", 3000), env("MOAT_BENCH_SNAPSHOTS", 100));
    let base = std::env::temp_dir().join(format!("moat-bench-gc-{}", std::process::id()));
    let (ws, store, restic_repo) = (base.join("ws"), base.join("store"), base.join("restic"));
    let restic = Command::new("restic")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if restic {
        run(Command::new("restic")
            .args(["init", "-q", "-r"])
            .arg(&restic_repo));
    } else {
        println!("restic is not installed: skipping the restic comparison");
    }
    for i in 0..files {
        let p = ws.join(format!("d{}/f{i}.txt", i % 60));
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, body(i, 0)).expect("write");
    }
    let (mut t_moat, mut t_restic) = (0.0, 0.0);
    for round in 1..=snaps {
        // Each round rewrites 3% of the files, as an agent's edits would.
        for k in 0..files * 3 / 100 {
            let i = (k * 7919 + round * 104_729) % files;
            std::fs::write(ws.join(format!("d{}/f{i}.txt", i % 60)), body(i, round)).expect("edit");
        }
        t_moat += run(Command::new(MOAT)
            .arg("--store")
            .arg(&store)
            .args(["-q", "snapshot"])
            .arg(&ws));
        if restic {
            t_restic += run(Command::new("restic")
                .args(["-q", "-r"])
                .arg(&restic_repo)
                .arg("backup")
                .arg(&ws));
        }
    }
    let before = du(&store);
    let t_gc = run(Command::new(MOAT).arg("--store").arg(&store).args([
        "-q",
        "gc",
        "--all",
        "--keep-last",
        "10",
        "--delete-initial",
    ]));
    let after = du(&store);
    println!("\n{snaps} snapshots of {files} files, 3% changed per snapshot");
    println!(
        "{:<34} {:>12} {:>12} {:>12}",
        "", "snapshots s", "gc s", "store MB"
    );
    println!(
        "{:<34} {:>12.2} {:>12.3} {:>6.1} -> {:.1} (freed {:.0}%)",
        "moat gc --keep-last 10",
        t_moat,
        t_gc,
        before as f64 / 1e6,
        after as f64 / 1e6,
        100.0 * (before - after) as f64 / before as f64
    );
    if restic {
        let rb = du(&restic_repo);
        let t = run(Command::new("restic").args(["-q", "-r"]).arg(&restic_repo).args([
            "forget",
            "--keep-last",
            "10",
            "--prune",
        ]));
        let ra = du(&restic_repo);
        println!(
            "{:<34} {:>12.2} {:>12.3} {:>6.1} -> {:.1}",
            "restic forget --keep-last 10 --prune",
            t_restic,
            t,
            rb as f64 / 1e6,
            ra as f64 / 1e6
        );
        println!("gc time ratio moat/restic: {:.3}", t_gc / t);
    }
    let check = run(Command::new(MOAT)
        .arg("--store")
        .arg(&store)
        .args(["-q", "check", "--read-data"]));
    println!("check --read-data after gc: {check:.2}s, passed");
    std::fs::remove_dir_all(&base).ok();
}
