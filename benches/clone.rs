//! The clone fast path on a copy-on-write filesystem (a loop-mounted XFS
//! with reflinks, set up here; `MOAT_BENCH_REFLINK_DIR` to use another):
//!
//! 1. How long a `moat run` command waits for its pre-run snapshot, on a
//!    50,000-file workspace with 1,000 changed files: staging (clone the
//!    changed files, ingest in the background) vs `--no-clone` (read and
//!    store everything first), against a run with no pre-run snapshot.
//! 2. Restoring a tree whose contents the workspace already holds under
//!    other names: clones vs decompressing, against `cp -r --reflink`.
//! 3. What checking a clone costs: restore reads every cloned file back and
//!    hashes it against the entry's chunk ids before renaming it into place
//!    (a stat cache is only a hint); that verification against
//!    decompressing the same content from the store, both in this process
//!    with warm caches.
//!
//! Prints medians and ratios; `cargo bench --bench clone`. Needs root and
//! xfsprogs for the loop mount; otherwise prints why and measures nothing.
//! Sizes: MOAT_BENCH_FILES, MOAT_BENCH_CHANGED, MOAT_BENCH_RESTORE_MB.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::{Rng, env_usize, human, median, moat, table};

const MOAT: &str = env!("CARGO_BIN_EXE_moat");
const REPS: usize = 3;

fn main() {
    let (dir, _mount) = match reflink_dir() {
        Ok(d) => d,
        Err(why) => {
            println!("SKIPPED the clone benchmark: {why}");
            return;
        }
    };
    // Source files as an agent edits them, then generated files of 128 KiB
    // (bundles, lockfiles, build output that is not ignored).
    pre_run_wait(&dir, "source-edits", |i| 2_000 + (i % 14_000));
    pre_run_wait(&dir, "generated-128k", |_| 128 << 10);
    restore_from_renamed(&dir);
}

/// Unmounts the loop filesystem when dropped.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        if let Some(base) = self.0.parent() {
            let _ = std::fs::remove_dir_all(base);
        }
    }
}

fn reflink_dir() -> Result<(PathBuf, Option<Mount>), String> {
    if let Some(d) = std::env::var_os("MOAT_BENCH_REFLINK_DIR") {
        return Ok((PathBuf::from(d), None));
    }
    if !nix::unistd::geteuid().is_root() {
        return Err("not root: cannot loop-mount XFS (set MOAT_BENCH_REFLINK_DIR)".into());
    }
    let base = std::env::temp_dir().join(format!("moat-bench-xfs-{}", std::process::id()));
    let (img, mnt) = (base.join("xfs.img"), base.join("mnt"));
    std::fs::create_dir_all(&mnt).map_err(|e| e.to_string())?;
    let f = std::fs::File::create(&img).map_err(|e| e.to_string())?;
    f.set_len(8 << 30).map_err(|e| e.to_string())?;
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    sh(
        "mkfs.xfs",
        &[os("-q"), os("-m"), os("reflink=1"), img.as_os_str()],
    )?;
    sh("mount", &[os("-o"), os("loop"), img.as_os_str(), mnt.as_os_str()])?;
    Ok((mnt.clone(), Some(Mount(mnt))))
}

fn sh(cmd: &str, args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e} (install xfsprogs)"))?;
    if !out.status.success() {
        return Err(format!("{cmd} failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}

fn source_like(rng: &mut Rng, len: usize) -> Vec<u8> {
    common::gen_text(rng, len)
}

fn file_path(ws: &Path, i: usize) -> PathBuf {
    ws.join(format!("d{:03}/s{:02}/f{i}.rs", i % 500, (i / 500) % 40))
}

/// 1. The wait before CMD starts, for changed files of `changed_len` bytes.
fn pre_run_wait(dir: &Path, profile: &str, changed_len: fn(usize) -> usize) {
    let files = env_usize("MOAT_BENCH_FILES", 50_000);
    let changed = env_usize("MOAT_BENCH_CHANGED", 1_000);
    let (ws, store, home) = (
        dir.join(profile),
        dir.join(format!("{profile}.store")),
        dir.join("home"),
    );
    let mut rng = Rng::new(1);
    let mut total = 0;
    for i in 0..files {
        let p = file_path(&ws, i);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let len = 2_000 + rng.below(14_000) as usize;
        let body = source_like(&mut rng, len);
        total += body.len();
        std::fs::write(p, body).unwrap();
    }
    moat(&store, &["snapshot", ws.to_str().unwrap()]);
    let marker = dir.join("cmd-started");
    let no_pre = dir.join("no-pre-run.yaml");
    std::fs::write(&no_pre, "snapshots:\n  triggers:\n    disable_pre_run: true\n").unwrap();
    let modes: [(&str, Vec<&str>); 3] = [
        ("staging: copies in memory or cloned, ingested behind CMD", vec![]),
        ("--no-clone: read and compressed before CMD", vec!["--no-clone"]),
        (
            "no pre-run snapshot (the floor)",
            vec!["--config", no_pre.to_str().unwrap()],
        ),
    ];
    let mut waits: Vec<Vec<f64>> = vec![Vec::new(); modes.len() + 1];
    let mut change = |rep: usize, m: usize| {
        let mut bytes = 0;
        for k in 0..changed {
            let i = (k * 7919 + rep * 31 + m * 17) % files;
            let body = source_like(&mut rng, changed_len(i));
            bytes += body.len();
            std::fs::write(file_path(&ws, i), body).unwrap();
        }
        sync();
        bytes
    };
    let mut changed_bytes = 0;
    for rep in 0..REPS {
        for (m, (_, extra)) in modes.iter().enumerate() {
            changed_bytes = change(rep, m);
            let script = format!("date +%s%N > {}", marker.display());
            let t0 = now_ns();
            let out = Command::new(MOAT)
                .arg("--store")
                .arg(&store)
                .env("MOAT_HOME", &home)
                .args(["run", "--workspace", ws.to_str().unwrap()])
                .args(extra)
                .args(["--", "sh", "-c", &script])
                .output()
                .expect("moat run");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let started: i64 = std::fs::read_to_string(&marker).unwrap().trim().parse().unwrap();
            waits[m].push((started - t0) as f64 / 1e9);
        }
        // Before staging existed, CMD waited for a whole snapshot.
        change(rep, modes.len());
        let t = Instant::now();
        moat(&store, &["snapshot", "--no-clone", ws.to_str().unwrap()]);
        waits[modes.len()].push(t.elapsed().as_secs_f64());
    }
    let floor = median(&waits[2]);
    let whole = median(&waits[3]) + floor;
    let mut rows: Vec<Vec<String>> = modes
        .iter()
        .zip(&waits)
        .map(|((name, _), w)| {
            let med = median(w);
            vec![
                name.to_string(),
                format!("{:.1} ms", med * 1e3),
                format!("{:.2}", med / whole),
            ]
        })
        .collect();
    rows.push(vec![
        "whole snapshot before CMD (floor + `moat snapshot --no-clone`)".into(),
        format!("{:.1} ms", whole * 1e3),
        "1.00".into(),
    ]);
    table(
        &format!(
            "moat run, wait before CMD starts: {files} files ({}), {changed} changed ({}) [{profile}; median of {REPS}]",
            human(total as u64),
            human(changed_bytes as u64)
        ),
        &["pre-run snapshot", "wait", "vs whole"],
        &rows,
    );
    println!(
        "ratio staging / --no-clone: {:.2}; staging / whole snapshot first: {:.2}\n",
        median(&waits[0]) / median(&waits[1]),
        median(&waits[0]) / whole
    );
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// 2. Restore when the workspace already holds every content, renamed.
fn restore_from_renamed(dir: &Path) {
    let mb = env_usize("MOAT_BENCH_RESTORE_MB", 512);
    let (ws, store) = (dir.join("ws2"), dir.join("store2"));
    let mut rng = Rng::new(2);
    let n = mb * 4;
    for i in 0..n {
        let p = ws.join(format!("m{:02}/f{i}", i % 50));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, source_like(&mut rng, 256 << 10)).unwrap();
    }
    let snap = moat(&store, &["snapshot", ws.to_str().unwrap()]);
    // Every file moves to a new name; the next snapshot records where.
    for i in 0..n {
        let p = ws.join(format!("m{:02}/f{i}", i % 50));
        std::fs::rename(&p, p.with_extension("moved")).unwrap();
    }
    let moved = moat(&store, &["snapshot", ws.to_str().unwrap()]);
    verify_cost(&store, &ws, &moved);
    let out = dir.join("out");
    let run = |extra: &[&str]| -> f64 {
        let mut t = Vec::new();
        for _ in 0..REPS {
            let _ = std::fs::remove_dir_all(&out);
            sync();
            let s = Instant::now();
            let mut args = vec!["restore", &snap, "--to", out.to_str().unwrap()];
            args.extend(extra);
            moat(&store, &args);
            t.push(s.elapsed().as_secs_f64());
        }
        median(&t)
    };
    let clone = run(&[]);
    let plain = run(&["--no-clone"]);
    let mut t = Vec::new();
    for _ in 0..REPS {
        let _ = std::fs::remove_dir_all(&out);
        sync();
        let s = Instant::now();
        let st = Command::new("cp")
            .args(["-r", "--reflink=always"])
            .arg(&ws)
            .arg(&out)
            .status()
            .unwrap();
        assert!(st.success());
        t.push(s.elapsed().as_secs_f64());
    }
    let cp = median(&t);
    let rows = vec![
        vec![
            "moat restore (clones)".into(),
            format!("{:.3} s", clone),
            format!("{:.2}", clone / plain),
        ],
        vec![
            "moat restore --no-clone (decompress)".into(),
            format!("{:.3} s", plain),
            "1.00".into(),
        ],
        vec![
            "cp -r --reflink=always (floor)".into(),
            format!("{:.3} s", cp),
            format!("{:.2}", cp / plain),
        ],
    ];
    table(
        &format!(
            "restore of {n} files, {} MiB, all present in the workspace under other names (median of {REPS})",
            n / 4
        ),
        &["", "time", "vs decompress"],
        &rows,
    );
}

/// Part 3: verifying held clones (read back, hashed per chunk) vs
/// decompressing the same chunks, over every file of snapshot `id` of `ws`.
fn verify_cost(store_dir: &Path, ws: &Path, id: &str) {
    use moat::format::pack::ObjectKind;
    use moat::format::tree::Content;
    let store = moat::Store::open(store_dir).unwrap();
    let snap = moat::ops::resolve::snapshot(&store, id, None).unwrap();
    let mut files = Vec::new();
    moat::ops::inspect::list(&store, &snap.snap.root, b"", |l| {
        if let Content::File(c) = l.entry.content {
            files.push((ws.join(std::ffi::OsStr::from_bytes(&l.path)), c, l.entry.size));
        }
        Ok(())
    })
    .unwrap();
    let bytes: u64 = files.iter().map(|f| f.2).sum();
    let verify = || {
        for (p, c, _) in &files {
            assert!(moat::worktree::reuse::holds(&store, p, c).unwrap());
        }
    };
    let decompress = || {
        for (_, c, _) in &files {
            for id in c {
                std::hint::black_box(store.read_object(id, ObjectKind::Chunk).unwrap());
            }
        }
    };
    // Warm the page cache and the store's maps, untimed, A B A B.
    verify();
    decompress();
    let mut tv = Vec::new();
    let mut td = Vec::new();
    for _ in 0..REPS {
        let s = Instant::now();
        verify();
        tv.push(s.elapsed().as_secs_f64());
        let s = Instant::now();
        decompress();
        td.push(s.elapsed().as_secs_f64());
    }
    let (v, d) = (median(&tv), median(&td));
    table(
        &format!(
            "checking held clones: {} files, {} (median of {REPS}, one thread, warm)",
            files.len(),
            human(bytes)
        ),
        &["", "time", "MB/s", "vs decompress"],
        &[
            vec![
                "verify a clone (read back + blake3 per chunk)".into(),
                format!("{:.3} s", v),
                format!("{:.0}", common::mb_s(bytes as usize, v)),
                format!("{:.2}", v / d),
            ],
            vec![
                "decompress the same chunks from the store".into(),
                format!("{:.3} s", d),
                format!("{:.0}", common::mb_s(bytes as usize, d)),
                "1.00".into(),
            ],
        ],
    );
    println!("ratio verification / decompression: {:.2}\n", v / d);
}

fn sync() {
    let _ = Command::new("sync").status();
}
