//! `moat mount` against `moat restore`: the time to read every file of a
//! snapshot through a fresh mount (`cat` of each file into /dev/null) and
//! the time of a full `moat restore` of the same snapshot into tmpfs
//! (/dev/shm), run alternately (A B A B ...), medians and their ratio.
//! Also the time from `moat mount` to a ready mount point, and a second
//! read through the same mount (the kernel's page cache: `KEEP_CACHE`).
//!
//! The workspace (MOAT_BENCH_FILES files, default 2000, sizes log-uniform
//! from 1 KiB to 2 MiB, text and random mixed) lives in the system temp
//! dir; the store is read once untimed before each run, so both sides
//! read it from the page cache. Needs FUSE (root or fusermount3); without
//! it the bench says so and measures only the restore.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use common::{Rng, env_usize, gen_text, human, median, moat, table};

const MOAT: &str = env!("CARGO_BIN_EXE_moat");

fn generate(ws: &Path, files: usize) -> u64 {
    let mut rng = Rng::new(7);
    let mut total = 0;
    for i in 0..files {
        let dir = ws.join(format!("d{:02}/e{:02}", i % 40, (i / 40) % 10));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let len = rng.log_uniform(1 << 10, 2 << 20) as usize;
        let body = if i % 4 == 0 {
            rng.bytes(len)
        } else {
            gen_text(&mut rng, len)
        };
        total += body.len() as u64;
        std::fs::write(dir.join(format!("f{i}.dat")), body).expect("write");
    }
    total
}

/// Reads every file below `dir` (as `cat` would) and returns the bytes.
fn read_all(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let t = e.file_type().expect("type");
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                let mut f = std::fs::File::open(e.path()).expect("open");
                total += std::io::copy(&mut f, &mut std::io::sink()).expect("read");
            }
        }
    }
    total
}

struct Mount {
    child: Child,
    dir: PathBuf,
}

impl Drop for Mount {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
        let _ = Command::new("umount").arg("-l").arg(&self.dir).output();
    }
}

/// `moat mount ID DIR`, ready; None (and why) when it cannot mount.
fn mount(store: &Path, id: &str, dir: &Path) -> Result<Mount, String> {
    std::fs::create_dir_all(dir).expect("mkdir");
    let mut child = Command::new(MOAT)
        .arg("--store")
        .arg(store)
        .args(["mount", id])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn moat mount");
    let out = child.stdout.take().expect("stdout");
    for line in BufReader::new(out).lines() {
        if line.is_ok_and(|l| l.starts_with("mounted")) {
            return Ok(Mount {
                child,
                dir: dir.to_path_buf(),
            });
        }
    }
    let out = child.wait_with_output().expect("wait");
    Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
}

fn warm(store: &Path) {
    read_all(store);
}

fn main() {
    let files = env_usize("MOAT_BENCH_FILES", 2000);
    let reps = env_usize("MOAT_BENCH_REPS", 5);
    let base = std::env::temp_dir().join(format!("moat-bench-mount-{}", std::process::id()));
    let (ws, store, mnt) = (base.join("ws"), base.join("store"), base.join("mnt"));
    let shm = PathBuf::from("/dev/shm").join(format!("moat-bench-mount-{}", std::process::id()));
    let bytes = generate(&ws, files);
    let id = moat(&store, &["snapshot", ws.to_str().expect("utf8")]);
    println!("{files} files, {} in the snapshot", human(bytes));

    let (mut restore, mut cold, mut again, mut ready) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut no_fuse = None;
    for _ in 0..reps {
        let _ = std::fs::remove_dir_all(&shm);
        warm(&store);
        let t = Instant::now();
        moat(
            &store,
            &["restore", &id, "--no-clone", "--to", shm.to_str().expect("utf8")],
        );
        restore.push(t.elapsed().as_secs_f64());
        let _ = std::fs::remove_dir_all(&shm);
        if no_fuse.is_some() {
            continue;
        }
        warm(&store);
        let t = Instant::now();
        let m = match mount(&store, &id, &mnt) {
            Ok(m) => m,
            Err(why) => {
                no_fuse = Some(why);
                continue;
            }
        };
        ready.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        assert_eq!(read_all(&m.dir), bytes, "the mount holds every byte");
        cold.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        read_all(&m.dir);
        again.push(t.elapsed().as_secs_f64());
        drop(m);
    }
    let _ = std::fs::remove_dir_all(&base);
    let mb = |s: f64| format!("{:.0} MB/s", bytes as f64 / s / 1e6);
    let mut rows = vec![vec![
        "moat restore --no-clone to tmpfs".into(),
        format!("{:.3} s", median(&restore)),
        mb(median(&restore)),
        "1.00".into(),
    ]];
    match no_fuse {
        Some(why) => println!("mount: SKIPPED: {why}"),
        None => {
            let r = median(&restore);
            rows.push(vec![
                "moat mount, ready".into(),
                format!("{:.3} s", median(&ready)),
                String::new(),
                String::new(),
            ]);
            for (what, v) in [
                ("cat of every file, fresh mount", &cold),
                ("the same again (page cache)", &again),
            ] {
                let m = median(v);
                rows.push(vec![
                    what.into(),
                    format!("{m:.3} s"),
                    mb(m),
                    format!("{:.2}", m / r),
                ]);
            }
        }
    }
    table(
        &format!("reading a snapshot, median of {reps}"),
        &["what", "time", "throughput", "vs restore"],
        &rows,
    );
}
