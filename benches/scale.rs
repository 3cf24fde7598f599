//! Scale benchmark: snapshots of 100k and 1M-file trees, with and without
//! `moat watch`, next to floors measured in the same run (single-thread
//! `find -printf '%s\n'`, a 2-thread lstat walk, `git status` with the
//! untracked cache, `tar | zstd -T0 -3`), with the peak RSS of every moat
//! command. Prints ratios, never asserts.
//!
//! Trees are real source files (the cargo registry's files up to 16 KiB,
//! else generated text) replicated into numbered folders under
//! `$SCALE_DIR` (default /var/tmp/moat-scale) and reused by later runs (a
//! tree is complete once its `.complete` marker exists).
//!
//! `cargo bench --bench scale`. Environment: SCALE_FILES (default
//! "100000,1000000"), SCALE_DIR, SCALE_GIT (default 1: measure git status),
//! SCALE_REPS (default 3) repetitions of the cheap measurements.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Rng, env_usize, human, median, table};

const MOAT: &str = env!("CARGO_BIN_EXE_moat");

/// Runs `cmd` to completion under GNU time (a child forked from this
/// big process would inherit its resident size in `ru_maxrss`); returns
/// (seconds, the command's peak RSS in bytes). Panics on failure.
fn measure(cmd: &mut Command) -> (f64, u64) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(out.path())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        timed.current_dir(d);
    }
    let start = Instant::now();
    let st = timed
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let secs = start.elapsed().as_secs_f64();
    assert!(st.success(), "{cmd:?} failed");
    let kb: u64 = fs::read_to_string(out.path())
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0);
    (secs, kb * 1024)
}

fn bash(script: &str) -> Command {
    let mut c = Command::new("bash");
    c.arg("-c").arg(format!("set -euo pipefail; {script}"));
    c
}

fn q(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

// ---------------------------------------------------------------- trees

/// The source files replicated into the trees: (relative path, bytes).
fn corpus() -> Vec<(PathBuf, Vec<u8>)> {
    if let Some(src) = common::registry_src() {
        let files: Vec<(PathBuf, Vec<u8>)> = common::read_tree(&src, None, 64 << 20)
            .into_iter()
            .filter(|(_, d)| d.len() <= 16 << 10)
            .filter_map(|(p, d)| Some((p.strip_prefix(&src).ok()?.to_path_buf(), d)))
            .collect();
        if files.len() >= 1000 {
            return files;
        }
    }
    let mut rng = Rng::new(7);
    (0..5000)
        .map(|i| {
            let len = rng.log_uniform(200, 16 << 10) as usize;
            (
                PathBuf::from(format!("m{}/s{}/f{i}.rs", i % 50, i % 7)),
                common::gen_text(&mut rng, len),
            )
        })
        .collect()
}

/// The tree of `n` files under `dir`, generated unless complete already.
fn tree(dir: &Path, n: usize, corpus: &[(PathBuf, Vec<u8>)]) -> (PathBuf, f64) {
    let root = dir.join(format!("tree-{n}"));
    if root.join(".complete").exists() {
        return (root, 0.0);
    }
    let start = Instant::now();
    let _ = fs::remove_dir_all(&root);
    let mut made = 0;
    let mut copy = 0;
    while made < n {
        for (rel, data) in corpus.iter().take(n - made) {
            let p = root.join(format!("copy{copy:04}")).join(rel);
            if let Some(d) = p.parent() {
                fs::create_dir_all(d).unwrap();
            }
            fs::write(&p, data).unwrap();
            made += 1;
        }
        copy += 1;
    }
    fs::write(root.join(".complete"), b"").unwrap();
    // The marker is not workspace content.
    fs::write(root.join(".ignore"), b".complete\n").unwrap();
    (root, start.elapsed().as_secs_f64())
}

/// Files to edit: spread over the tree's complete copies.
fn edit_targets(root: &Path, corpus: &[(PathBuf, Vec<u8>)], n: usize) -> Vec<PathBuf> {
    let mut rng = Rng::new(n as u64);
    let full = n / corpus.len();
    let (copies, per) = if full == 0 { (1, n) } else { (full, corpus.len()) };
    // A tree kept from an earlier run may hold another corpus (the
    // registry changed): only files that exist are edited.
    let mut out = Vec::new();
    for _ in 0..1_000_000 {
        if out.len() == 1000 {
            break;
        }
        let c = rng.below(copies as u64);
        let f = &corpus[rng.below(per as u64) as usize].0;
        let p = root.join(format!("copy{c:04}")).join(f);
        if p.is_file() {
            out.push(p);
        }
    }
    assert!(
        out.len() == 1000,
        "{}: too few corpus files in the tree; delete it to regenerate",
        root.display()
    );
    out
}

fn edit(files: &[PathBuf], k: usize, round: usize) {
    for f in files.iter().take(k) {
        let mut h = fs::OpenOptions::new().append(true).open(f).unwrap();
        writeln!(h, "// edit {round}").unwrap();
    }
}

// ---------------------------------------------------------------- floors

fn git_status(scale: &Path, root: &Path, n: usize) -> Option<f64> {
    let gd = scale.join(format!("git-{n}"));
    let g = format!(
        "GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1 git -c user.name=b -c user.email=b@b -c gc.auto=0 \
         -c core.untrackedCache=true -c core.fsmonitor=false --git-dir={} --work-tree={}",
        q(&gd),
        q(root)
    );
    if !gd.join("complete").exists() {
        let _ = fs::remove_dir_all(&gd);
        measure(&mut bash(&format!(
            "{g} init -q && {g} add -A && {g} commit -qm init"
        )));
        fs::write(gd.join("complete"), b"").ok()?;
    }
    measure(&mut bash(&format!(
        "{g} update-index --untracked-cache && {g} status --porcelain >/dev/null"
    )));
    let reps = env_usize("SCALE_REPS", 3);
    let status = format!("{g} status --porcelain >/dev/null");
    Some(median(
        &(0..reps)
            .map(|_| measure(&mut bash(&status)).0)
            .collect::<Vec<_>>(),
    ))
}

// ---------------------------------------------------------------- moat

struct Moat {
    store: PathBuf,
    home: PathBuf,
    ws: PathBuf,
}

impl Moat {
    fn cmd(&self) -> Command {
        let mut c = Command::new(MOAT);
        c.arg("--store")
            .arg(&self.store)
            .arg("--quiet")
            .env("MOAT_HOME", &self.home);
        c
    }

    fn snap(&self) -> (f64, u64) {
        measure(self.cmd().arg("snapshot").arg(&self.ws).arg("--allow-empty"))
    }

    fn snap_reps(&self, reps: usize) -> (f64, u64) {
        let runs: Vec<(f64, u64)> = (0..reps).map(|_| self.snap()).collect();
        let t: Vec<f64> = runs.iter().map(|r| r.0).collect();
        (median(&t), runs.iter().map(|r| r.1).max().unwrap_or(0))
    }
}

fn vm_hwm(pid: u32) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<u64>().ok())
        .map_or(0, |k| k * 1024)
}

fn ms(s: f64) -> String {
    if s < 1.0 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

fn row(what: &str, t: f64, rss: u64, floor: f64, floor_name: &str) -> Vec<String> {
    vec![
        what.into(),
        ms(t),
        human(rss),
        format!("{:.2}× {floor_name}", t / floor),
    ]
}

fn bench_size(scale: &Path, n: usize, corpus: &[(PathBuf, Vec<u8>)]) {
    let (root, made) = tree(scale, n, corpus);
    println!(
        "\n== {n} files in {} (generated in {:.1} s)",
        root.display(),
        made
    );
    let reps = env_usize("SCALE_REPS", 3);
    // Warm the page cache once, untimed.
    measure(&mut bash(&format!(
        "find {} -printf '%s\\n' >/dev/null",
        q(&root)
    )));
    let find = median(
        &(0..reps)
            .map(|_| {
                measure(&mut bash(&format!(
                    "find {} -printf '%s\\n' >/dev/null",
                    q(&root)
                )))
                .0
            })
            .collect::<Vec<_>>(),
    );
    let walk2 = median(&(0..reps).map(|_| common::stat_walk(&root).0).collect::<Vec<_>>());
    let tar = measure(&mut bash(&format!(
        "cd {} && tar -cf - . | zstd -T0 -3 -q >/dev/null",
        q(&root)
    )))
    .0;
    let git = (std::env::var("SCALE_GIT").as_deref() != Ok("0"))
        .then(|| git_status(scale, &root, n))
        .flatten();
    let targets = edit_targets(&root, corpus, n);
    let mut rows = vec![
        vec![
            "find -printf '%s\\n' (1 thread)".into(),
            ms(find),
            String::new(),
            "floor".into(),
        ],
        vec![
            "lstat walk (2 threads)".into(),
            ms(walk2),
            String::new(),
            format!("{:.2}× find", walk2 / find),
        ],
        vec![
            "tar -cf - . | zstd -T0 -3".into(),
            ms(tar),
            String::new(),
            "floor (first)".into(),
        ],
    ];
    if let Some(g) = git {
        rows.push(vec![
            "git status (untracked cache)".into(),
            ms(g),
            String::new(),
            format!("{:.2}× find", g / find),
        ]);
    }
    for watched in [false, true] {
        let tag = if watched { "watched" } else { "walked" };
        let run = scale.join(format!("run-{n}-{tag}"));
        let _ = fs::remove_dir_all(&run);
        fs::create_dir_all(run.join("home")).unwrap();
        let m = Moat {
            store: run.join("store"),
            home: run.join("home"),
            ws: root.clone(),
        };
        let mut watcher = None;
        let mut watch_start = 0.0;
        if watched {
            let start = Instant::now();
            let mut child = m
                .cmd()
                .arg("watch")
                .arg(&root)
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            // Ready once it answers a status request (it binds its socket
            // first and answers only once every directory is watched).
            let ready = || {
                let out = m.cmd().args(["watch", "--status", "--json"]).output();
                out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("watched_dirs"))
            };
            while !ready() {
                // A watcher that cannot watch the tree (the inotify watch
                // limit) ends: say why and skip the watched rows.
                if let Ok(Some(status)) = child.try_wait() {
                    let mut why = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = std::io::Read::read_to_string(&mut e, &mut why);
                    }
                    println!("[watched] skipped: the watcher ended ({status}): {}", why.trim());
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if child.try_wait().is_ok_and(|s| s.is_some()) {
                continue;
            }
            if let Some(mut e) = child.stderr.take() {
                std::thread::spawn(move || std::io::copy(&mut e, &mut std::io::sink()));
            }
            watch_start = start.elapsed().as_secs_f64();
            watcher = Some(child);
        }
        let first = m.snap();
        rows.push(row(
            &format!("[{tag}] first snapshot"),
            first.0,
            first.1,
            tar,
            "tar|zstd",
        ));
        if watched {
            // The first snapshot had no token; this one walks once more and
            // establishes it.
            m.snap();
        }
        let nochange = m.snap_reps(reps);
        rows.push(row(
            &format!("[{tag}] no-change snapshot"),
            nochange.0,
            nochange.1,
            find,
            "find",
        ));
        let mut small = Vec::new();
        let mut big = Vec::new();
        for r in 0..reps {
            edit(&targets, 10, r);
            fs::write(root.join(format!("copy0000/new-{tag}-{r}.txt")), b"new\n").unwrap();
            small.push(m.snap());
            edit(&targets, 1000, r);
            big.push(m.snap());
        }
        let agg = |v: &[(f64, u64)]| {
            (
                median(&v.iter().map(|x| x.0).collect::<Vec<_>>()),
                v.iter().map(|x| x.1).max().unwrap_or(0),
            )
        };
        let (t, rss) = agg(&small);
        rows.push(row(
            &format!("[{tag}] 10 edits + 1 new file"),
            t,
            rss,
            find,
            "find",
        ));
        let (t, rss) = agg(&big);
        rows.push(row(&format!("[{tag}] 1,000 edits"), t, rss, find, "find"));
        if !watched {
            let d = measure(
                m.cmd()
                    .args(["diff", "latest~1", "latest", "--name-status"])
                    .current_dir(&root),
            );
            rows.push(row("diff of two snapshots", d.0, d.1, find, "find"));
        }
        if let Some(mut c) = watcher {
            let status = m.cmd().args(["watch", "--status", "--json"]).output().unwrap();
            let st: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
            let held = st[0]["memory_bytes"].as_u64().unwrap_or(0);
            let dirs = st[0]["watched_dirs"].as_u64().unwrap_or(0);
            rows.push(vec![
                "[watched] watcher: start, peak RSS, held".into(),
                ms(watch_start),
                human(vm_hwm(c.id())),
                format!(
                    "{dirs} dirs, {} held ({} per dir)",
                    human(held),
                    human(held.checked_div(dirs).unwrap_or(0))
                ),
            ]);
            let _ = m.cmd().args(["watch", "--stop"]).arg(&root).output();
            let _ = c.wait();
        }
        let _ = fs::remove_dir_all(&run);
    }
    table(
        &format!("{n} files, {} cores", num_cpus()),
        &["what", "time", "peak RSS", "ratio"],
        &rows,
    );
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn main() {
    let scale = PathBuf::from(std::env::var("SCALE_DIR").unwrap_or_else(|_| "/var/tmp/moat-scale".into()));
    fs::create_dir_all(&scale).unwrap();
    let sizes: Vec<usize> = std::env::var("SCALE_FILES")
        .unwrap_or_else(|_| "100000,1000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let corpus = corpus();
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "corpus: {} files; load average at start: {}",
        corpus.len(),
        load.trim()
    );
    for n in sizes {
        bench_size(&scale, n, &corpus);
    }
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("\nload average at end: {}", load.trim());
}
