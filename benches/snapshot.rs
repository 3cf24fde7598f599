//! Macro benchmark: the real `moat` binary against git and tar+zstd on a
//! generated workspace.
//!
//! The workspace (and the store, git dir and tarball) live in a temp dir on
//! /tmp; restore targets go to /dev/shm so the restore measures the tool,
//! not the disk. Before every timed run the inputs are read once, untimed
//! (the VM pages out idle page cache), and after every run that writes to
//! disk `sync` is called, untimed, so one tool's writeback does not land in
//! the next tool's time. Tools alternate within each round (A B A B).
//!
//! `cargo bench --bench snapshot`. Environment:
//! MOAT_BENCH_FILES (default 50000) files in the workspace,
//! MOAT_BENCH_MB (default 500) workspace size,
//! MOAT_BENCH_ROUNDS (default 3) rounds of the cheap measurements,
//! MOAT_BENCH_INITIAL_ROUNDS (default 1) rounds of the initial snapshot,
//! MOAT_BENCH_KEEP (set) keeps the temp dir on /tmp for inspection.

mod common;

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::workspace::{generate, text};
use common::{Rng, env_usize, human, median, table};

const MOAT: &str = env!("CARGO_BIN_EXE_moat");
const CHANGED_FILES: usize = 10;

// ---------------------------------------------------------------- helpers

/// Reads every file under each path (or the file itself), untimed, so the
/// timed run starts from a warm page cache.
fn warm(paths: &[&Path]) {
    fn read(p: &Path, buf: &mut [u8]) {
        if let Ok(mut f) = fs::File::open(p) {
            while matches!(f.read(buf), Ok(n) if n > 0) {}
        }
    }
    for p in paths {
        if p.is_file() {
            read(p, &mut vec![0u8; 1 << 20]);
            continue;
        }
        ignore::WalkBuilder::new(p)
            .standard_filters(false)
            .threads(2)
            .build_parallel()
            .run(|| {
                let mut buf = vec![0u8; 1 << 20];
                Box::new(move |e| {
                    if let Ok(e) = e
                        && e.file_type().is_some_and(|t| t.is_file())
                    {
                        read(e.path(), &mut buf);
                    }
                    ignore::WalkState::Continue
                })
            });
    }
}

/// (apparent bytes, allocated bytes, files) under `p`.
fn du(p: &Path) -> (u64, u64, u64) {
    if let Ok(m) = fs::symlink_metadata(p)
        && m.is_file()
    {
        return (m.len(), m.blocks() * 512, 1);
    }
    let (mut a, mut b, mut n) = (0, 0, 0);
    for e in ignore::WalkBuilder::new(p)
        .standard_filters(false)
        .build()
        .flatten()
    {
        if let Ok(m) = fs::symlink_metadata(e.path())
            && m.is_file()
        {
            a += m.len();
            b += m.blocks() * 512;
            n += 1;
        }
    }
    (a, b, n)
}

/// Runs a command, returns seconds and stdout; panics with its stderr on
/// failure.
fn run(cmd: &mut Command) -> (f64, String) {
    let start = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let secs = start.elapsed().as_secs_f64();
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (secs, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sync() -> f64 {
    run(&mut Command::new("sync")).0
}

fn moat(store: &Path) -> Command {
    let mut c = Command::new(MOAT);
    c.arg("--store").arg(store).arg("--quiet");
    c
}

fn git(gd: &Path, ws: &Path) -> Command {
    let mut c = Command::new("git");
    c.env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.com",
            "-c",
            "gc.auto=0",
        ])
        .arg(format!("--git-dir={}", gd.display()))
        .arg(format!("--work-tree={}", ws.display()));
    c
}

fn bash(script: &str) -> Command {
    let mut c = Command::new("bash");
    c.arg("-c").arg(format!("set -euo pipefail; {script}"));
    c
}

fn q(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

fn snapshot_count(store: &Path) -> u64 {
    du(&store.join("snapshots")).2
}

fn secs(v: &[f64]) -> String {
    v.iter().map(|t| format!("{t:.3}")).collect::<Vec<_>>().join(" ")
}

fn rmdir(p: &Path) {
    if p.exists() {
        fs::remove_dir_all(p).unwrap_or_else(|e| panic!("rm {}: {e}", p.display()));
    }
}

// ---------------------------------------------------------------- main

fn main() {
    let n_files = env_usize("MOAT_BENCH_FILES", 50_000);
    let mb = env_usize("MOAT_BENCH_MB", 500);
    let rounds = env_usize("MOAT_BENCH_ROUNDS", 3).max(1);
    let init_rounds = env_usize("MOAT_BENCH_INITIAL_ROUNDS", 1).max(1);
    for tool in ["git", "tar", "zstd", "bash", "sync"] {
        if Command::new(tool).arg("--version").output().is_err() {
            panic!("{tool} is needed for this benchmark");
        }
    }
    let base = tempfile::Builder::new()
        .prefix("moat-bench-")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let shm = tempfile::Builder::new()
        .prefix("moat-bench-")
        .tempdir_in("/dev/shm")
        .expect("shm dir");
    let ws = base.path().join("ws");
    fs::create_dir(&ws).expect("mkdir ws");

    let (corpus, source) = common::source_text(48 << 20);
    let t = Instant::now();
    let w = generate(&ws, n_files, mb, &corpus);
    let gen_secs = t.elapsed().as_secs_f64();
    let sync_secs = sync();
    println!("moat snapshot benchmark ({MOAT})");
    println!(
        "workspace {}: {} files ({} small text, {} medium, {} large binary), {} dirs, {}; text from {}",
        ws.display(),
        w.files,
        w.small.len(),
        w.medium,
        w.large,
        w.dirs,
        human(w.bytes),
        source
    );
    println!(
        "generated in {gen_secs:.1} s + sync {sync_secs:.1} s; rounds: {init_rounds} initial, {rounds} others"
    );

    // ---- initial snapshot: moat vs git vs tar+zstd, fresh each round.
    let store = base.path().join("store");
    let gd = base.path().join("git");
    let tarball = base.path().join("out.tar.zst");
    let (mut t_moat, mut t_git, mut t_tar) = (Vec::new(), Vec::new(), Vec::new());
    let (mut s_moat, mut s_git, mut s_tar) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..init_rounds {
        rmdir(&store);
        warm(&[&ws]);
        t_moat.push(run(moat(&store).arg("snapshot").arg(&ws)).0);
        s_moat.push(sync());

        rmdir(&gd);
        run(git(&gd, &ws).args(["init", "-q"]));
        warm(&[&ws]);
        let a = run(git(&gd, &ws).args(["add", "-A"])).0;
        let c = run(git(&gd, &ws).args(["commit", "-q", "-m", "initial"])).0;
        t_git.push(a + c);
        s_git.push(sync());

        let _ = fs::remove_file(&tarball);
        warm(&[&ws]);
        let script = format!("tar -cf - -C {} . | zstd -q -T0 -3 > {}", q(&ws), q(&tarball));
        t_tar.push(run(&mut bash(&script)).0);
        s_tar.push(sync());
        println!(
            "initial round {}: moat {:.2} s, git {:.2} s, tar+zstd {:.2} s",
            r + 1,
            t_moat[r],
            t_git[r],
            t_tar[r]
        );
    }
    let (m_moat, m_git, m_tar) = (median(&t_moat), median(&t_git), median(&t_tar));
    let durable = |t: &[f64], s: &[f64]| median(&t.iter().zip(s).map(|(a, b)| a + b).collect::<Vec<_>>());
    table(
        "Initial snapshot (seconds; 'then sync' adds the untimed sync that follows)",
        &["tool", "runs", "median", "then sync", "vs moat"],
        &[
            vec![
                "moat snapshot".into(),
                secs(&t_moat),
                format!("{m_moat:.2}"),
                format!("{:.2}", durable(&t_moat, &s_moat)),
                "1.00".into(),
            ],
            vec![
                "git add -A && git commit".into(),
                secs(&t_git),
                format!("{m_git:.2}"),
                format!("{:.2}", durable(&t_git, &s_git)),
                format!("{:.2}", m_git / m_moat),
            ],
            vec![
                "tar | zstd -T0 -3".into(),
                secs(&t_tar),
                format!("{m_tar:.2}"),
                format!("{:.2}", durable(&t_tar, &s_tar)),
                format!("{:.2}", m_tar / m_moat),
            ],
        ],
    );
    println!(
        "ratio moat/git = {:.3} (target <= 0.5), moat/tar = {:.2}",
        m_moat / m_git,
        m_moat / m_tar
    );

    // ---- no-change snapshot and 10 changed files, interleaved per round.
    let (mut nc, mut walk, mut gst, mut changed) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut walk_entries = 0;
    let mut growth = Vec::new();
    let mut rng = Rng::new(99);
    let mut notes = Vec::new();
    for r in 0..rounds {
        let before = snapshot_count(&store);
        warm(&[&ws, &store]);
        nc.push(run(moat(&store).arg("snapshot").arg(&ws)).0);
        if snapshot_count(&store) != before {
            notes.push(format!(
                "round {}: the no-change snapshot wrote a snapshot",
                r + 1
            ));
        }

        warm(&[&ws]);
        let (t, n) = common::stat_walk(&ws);
        walk.push(t);
        walk_entries = n;

        warm(&[&ws, &gd]);
        let (t, out) = run(git(&gd, &ws).args(["status", "--porcelain"]));
        gst.push(t);
        if !out.trim().is_empty() {
            notes.push(format!(
                "round {}: git status was not clean: {} lines",
                r + 1,
                out.lines().count()
            ));
        }

        for k in 0..CHANGED_FILES {
            let rel = &w.small[rng.below(w.small.len() as u64) as usize];
            let size = rng.log_uniform(1000, 20_000) as usize;
            let data = text(
                &corpus,
                &mut rng,
                &format!("// rewritten in round {r}, file {k}\n"),
                size,
            );
            fs::write(ws.join(rel), data).expect("rewrite file");
        }
        let size_before = du(&store).0;
        warm(&[&ws, &store]);
        changed.push(run(moat(&store).arg("snapshot").arg(&ws)).0);
        sync();
        growth.push(du(&store).0 - size_before);
        if snapshot_count(&store) != before + 1 {
            notes.push(format!(
                "round {}: the changed snapshot did not write one snapshot",
                r + 1
            ));
        }
        // Keep git clean so its next status is a no-change status too.
        run(git(&gd, &ws).args(["add", "-A"]));
        run(git(&gd, &ws).args(["commit", "-q", "-m", "change"]));
        sync();
    }
    let (m_nc, m_walk, m_gst, m_ch) = (median(&nc), median(&walk), median(&gst), median(&changed));
    table(
        "No-change snapshot and 10 changed files (seconds)",
        &["measurement", "runs", "median", "vs stat walk"],
        &[
            vec![
                "moat snapshot, no change".into(),
                secs(&nc),
                format!("{m_nc:.3}"),
                format!("{:.2}", m_nc / m_walk),
            ],
            vec![
                format!("stat walk (ignore, 2 threads, {walk_entries} entries)"),
                secs(&walk),
                format!("{m_walk:.3}"),
                "1.00".into(),
            ],
            vec![
                "git status --porcelain".into(),
                secs(&gst),
                format!("{m_gst:.3}"),
                format!("{:.2}", m_gst / m_walk),
            ],
            vec![
                format!("moat snapshot, {CHANGED_FILES} files changed"),
                secs(&changed),
                format!("{m_ch:.3}"),
                format!("{:.2}", m_ch / m_walk),
            ],
        ],
    );
    println!(
        "ratio moat no-change/stat walk = {:.2} (target <= 1.5); 10 changed/no-change = {:.2} (target <= 2); \
         store growth per 10-file snapshot: {}",
        m_nc / m_walk,
        m_ch / m_nc,
        growth.iter().map(|g| human(*g)).collect::<Vec<_>>().join(", ")
    );
    for n in &notes {
        println!("note: {n}");
    }

    // ---- full restore into tmpfs.
    let (mut rm, mut rt) = (Vec::new(), Vec::new());
    let mut verified = String::new();
    for r in 0..rounds {
        let target = shm.path().join(format!("moat{r}"));
        warm(&[&store]);
        rm.push(
            run(moat(&store)
                .current_dir(&ws)
                .args(["restore", "latest", "--to"])
                .arg(&target))
            .0,
        );
        if r == 0 {
            let (got, want) = (du(&target), du(&ws));
            verified = format!(
                "moat restored {} files / {} (workspace: {} / {})",
                got.2,
                human(got.0),
                want.2,
                human(want.0)
            );
        }
        rmdir(&target);

        let target = shm.path().join(format!("tar{r}"));
        fs::create_dir(&target).expect("mkdir");
        warm(&[&tarball]);
        let script = format!("zstd -d -q -c {} | tar -xf - -C {}", q(&tarball), q(&target));
        rt.push(run(&mut bash(&script)).0);
        rmdir(&target);
    }
    let (m_rm, m_rt) = (median(&rm), median(&rt));
    table(
        "Full restore into /dev/shm (seconds)",
        &["tool", "runs", "median", "vs tar"],
        &[
            vec![
                "moat restore latest".into(),
                secs(&rm),
                format!("{m_rm:.3}"),
                format!("{:.2}", m_rm / m_rt),
            ],
            vec![
                "zstd -d | tar -x".into(),
                secs(&rt),
                format!("{m_rt:.3}"),
                "1.00".into(),
            ],
        ],
    );
    println!("{verified}");

    // ---- sizes.
    // Stat caches (one per workspace, and one per restore target, kept after
    // the target is gone) are counted apart from the data.
    let (all, cache) = (du(&store), du(&store.join("cache")));
    let s_store = (all.0 - cache.0, all.1 - cache.1, all.2 - cache.2);
    let g_store = du(&gd.join("objects"));
    let t_size = du(&tarball);
    let row = |name: &str, d: (u64, u64, u64), note: &str| {
        vec![
            name.to_string(),
            human(d.0),
            human(d.1),
            d.2.to_string(),
            format!("{:.2}", w.bytes as f64 / d.0 as f64),
            note.to_string(),
        ]
    };
    table(
        "Sizes (after the initial snapshot and the changed rounds)",
        &["what", "bytes", "on disk", "files", "ws/bytes", "holds"],
        &[
            row("workspace", du(&ws), "the tree"),
            row(
                "moat store w/o cache/",
                s_store,
                &format!("{} snapshots", 1 + rounds),
            ),
            row("moat store cache/", cache, "stat caches"),
            row("git objects (loose)", g_store, &format!("{} commits", 1 + rounds)),
            row("tar.zst", t_size, "initial tree only"),
        ],
    );

    // ---- summary.
    let pass = |ok: bool| if ok { "PASS" } else { "MISS" }.to_string();
    let r_init = m_moat / m_git;
    let r_nc = m_nc / m_walk;
    let r_ch = m_ch / m_nc;
    let r_rs = m_rm / m_rt;
    table(
        "Summary",
        &["target", "measured", "goal", "result"],
        &[
            vec![
                "initial snapshot: moat / git".into(),
                format!("{r_init:.3}"),
                "<= 0.5".into(),
                pass(r_init <= 0.5),
            ],
            vec![
                "initial snapshot: moat / tar+zstd".into(),
                format!("{:.2}", m_moat / m_tar),
                "-".into(),
                "info".into(),
            ],
            vec![
                "no-change snapshot: moat / stat walk".into(),
                format!("{r_nc:.2}"),
                "<= 1.5".into(),
                pass(r_nc <= 1.5),
            ],
            vec![
                "10 changed files / no-change".into(),
                format!("{r_ch:.2}"),
                "<= 2".into(),
                pass(r_ch <= 2.0),
            ],
            vec![
                "restore to tmpfs: moat / tar+zstd".into(),
                format!("{r_rs:.2}"),
                "<= 1.0".into(),
                pass(r_rs <= 1.0),
            ],
            vec![
                "store size (w/o cache/) / tar.zst".into(),
                format!("{:.2}", s_store.0 as f64 / t_size.0 as f64),
                "-".into(),
                "info".into(),
            ],
        ],
    );

    rmdir(shm.path());
    drop(shm);
    if std::env::var_os("MOAT_BENCH_KEEP").is_some() {
        println!("kept {} (MOAT_BENCH_KEEP)", base.keep().display());
    }
}
