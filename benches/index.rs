//! The index at scale: peak RSS and time of `ls`, `restore` and `diff` of a
//! small snapshot, and of a no-change snapshot of a big workspace, on a
//! store of over a million objects that many sessions have written to,
//! for this build and, beside it, a baseline binary (an older moat), with
//! the ratios (this build / baseline).
//!
//! Setup (untimed): a workspace of MOAT_BENCH_INDEX_FILES (default
//! 1,000,000) small files of distinct content, one object each, is
//! snapshotted into one store per binary; then MOAT_BENCH_SESSIONS
//! (default 100) snapshots of a small workspace, one edit each, publish
//! one index file each. Each binary gets its own store (an older moat
//! cannot read a newer index format). Everything lives on /dev/shm, so
//! the disk is not measured. Timed ops alternate between the binaries
//! (A B A B), MOAT_BENCH_ROUNDS (default 3) rounds; medians are shown.
//! Peak RSS is the child's `ru_maxrss`, CPU time its user + system time
//! (wait4): on a shared machine CPU time is the steadier figure.
//!
//! `MOAT_BENCH_BASE=/path/to/old/moat cargo bench --bench index`; without
//! MOAT_BENCH_BASE only this build is measured.

mod common;

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::{env_usize, human, last_line, median, table};
use rayon::prelude::*;

const MOAT: &str = env!("CARGO_BIN_EXE_moat");

/// A run's wall time and CPU time (user + system, s) and peak RSS (bytes).
/// CPU time is the steadier figure on a shared machine.
struct Cost {
    secs: f64,
    cpu: f64,
    rss: u64,
}

/// Runs `cmd` to completion, its output discarded, measuring it.
// The child is reaped by wait4 (std's wait reports no rusage).
#[allow(clippy::zombie_processes)]
fn measure(cmd: &mut Command) -> Cost {
    let started = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data the kernel fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, which std has not reaped.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    let status = std::process::ExitStatus::from_raw(status);
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        panic!("{cmd:?} failed ({status}): {err}");
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Cost {
        secs,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        rss: usage.ru_maxrss as u64 * 1024,
    }
}

fn moat(bin: &str, store: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.arg("--quiet").arg("--store").arg(store).args(args);
    c.env_remove("MOAT_STORE")
        .env("MOAT_HOME", store.with_extension("home"));
    c
}

/// `n` files in 1000 directories, each a few dozen distinct bytes.
fn generate(ws: &Path, n: usize) {
    let dirs = 1000.min(n.max(1));
    (0..dirs).into_par_iter().for_each(|d| {
        let dir = ws.join(format!("d{d:04}"));
        fs::create_dir_all(&dir).expect("mkdir");
        for i in (d..n).step_by(dirs) {
            let body = format!("file {i}: {:x}\n", (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            fs::write(dir.join(format!("f{i}")), body).expect("write");
        }
    });
}

fn count(dir: &Path) -> usize {
    fs::read_dir(dir).map(|r| r.count()).unwrap_or(0)
}

struct Binary {
    name: &'static str,
    path: String,
    store: PathBuf,
    /// The last two snapshots of the small workspace.
    small: (String, String),
}

fn main() {
    let files = env_usize("MOAT_BENCH_INDEX_FILES", 1_000_000);
    let sessions = env_usize("MOAT_BENCH_SESSIONS", 100).max(2);
    let rounds = env_usize("MOAT_BENCH_ROUNDS", 3).max(1);
    let base = tempfile::Builder::new()
        .prefix("moat-bench-index")
        .tempdir_in("/dev/shm")
        .expect("tempdir on /dev/shm");
    let dir = base.path();
    let (big, small) = (dir.join("big"), dir.join("small"));
    let t = Instant::now();
    generate(&big, files);
    for i in 0..50 {
        let p = small.join(format!("s{i}.txt"));
        fs::create_dir_all(small.clone()).expect("mkdir");
        fs::write(p, format!("small {i}\n")).expect("write");
    }
    println!("generated {files} files in {:.1} s", t.elapsed().as_secs_f64());

    let mut bins = Vec::new();
    if let Ok(p) = std::env::var("MOAT_BENCH_BASE") {
        bins.push(("baseline", p));
    }
    bins.push(("this build", MOAT.to_string()));
    let mut bins: Vec<Binary> = bins
        .into_iter()
        .enumerate()
        .map(|(k, (name, path))| {
            let store = dir.join(format!("store{k}"));
            let c = measure(&mut moat(
                &path,
                &store,
                &["snapshot", big.to_str().expect("utf8")],
            ));
            println!(
                "{name}: first snapshot of {files} files {:.1} s, peak RSS {}",
                c.secs,
                human(c.rss)
            );
            Binary {
                name,
                path,
                store,
                small: (String::new(), String::new()),
            }
        })
        .collect();
    for s in 0..sessions {
        fs::write(small.join(format!("s{}.txt", s % 50)), format!("edit {s}\n")).expect("write");
        for b in &mut bins {
            let id = last_line(moat(
                &b.path,
                &b.store,
                &["snapshot", small.to_str().expect("utf8")],
            ));
            b.small = (std::mem::take(&mut b.small.1), id);
        }
    }
    for b in &bins {
        println!(
            "{}: {} index files after {} sessions",
            b.name,
            count(&b.store.join("index")),
            sessions + 1
        );
    }

    let target = dir.join("target");
    type Op = (&'static str, fn(&Binary, &Path, &Path) -> Command);
    let ops: [Op; 4] = [
        ("ls (small snapshot)", |b, _, _| {
            moat(&b.path, &b.store, &["ls", &b.small.1])
        }),
        ("restore (small snapshot)", |b, _, t| {
            moat(
                &b.path,
                &b.store,
                &["restore", &b.small.1, "--to", t.to_str().expect("utf8")],
            )
        }),
        ("diff (two small snapshots)", |b, _, _| {
            moat(&b.path, &b.store, &["diff", &b.small.0, &b.small.1])
        }),
        ("no-change snapshot (big)", |b, big, _| {
            moat(&b.path, &b.store, &["snapshot", big.to_str().expect("utf8")])
        }),
    ];
    let mut rows = Vec::new();
    for (name, op) in ops {
        let mut costs: Vec<Vec<Cost>> = bins.iter().map(|_| Vec::new()).collect();
        for _ in 0..rounds {
            for (k, b) in bins.iter().enumerate() {
                let _ = fs::remove_dir_all(&target);
                costs[k].push(measure(&mut op(b, &big, &target)));
            }
        }
        let med = |f: fn(&Cost) -> f64| -> Vec<f64> {
            costs
                .iter()
                .map(|c| median(&c.iter().map(f).collect::<Vec<_>>()))
                .collect()
        };
        let (secs, cpu, rss) = (med(|c| c.secs), med(|c| c.cpu), med(|c| c.rss as f64));
        let mut row = vec![name.to_string()];
        for k in 0..bins.len() {
            row.push(format!("{:.3} s", secs[k]));
            row.push(format!("{:.3} s", cpu[k]));
            row.push(human(rss[k] as u64));
        }
        if bins.len() == 2 {
            for v in [&secs, &cpu, &rss] {
                row.push(format!("{:.2}", v[1] / v[0]));
            }
        }
        rows.push(row);
    }
    let mut header = vec!["operation".to_string()];
    for b in &bins {
        header.push(format!("{} wall", b.name));
        header.push(format!("{} cpu", b.name));
        header.push(format!("{} peak RSS", b.name));
    }
    if bins.len() == 2 {
        for r in ["wall", "cpu", "RSS"] {
            header.push(format!("{r} ratio"));
        }
    }
    let header: Vec<&str> = header.iter().map(|s| s.as_str()).collect();
    table(
        &format!(
            "{files} objects, {} sessions, median of {rounds} (ratio = this build / baseline)",
            sessions + 1
        ),
        &header,
        &rows,
    );
}
