//! Store writers under real faults. A full disk is a real tmpfs filled to
//! the last byte while moat is paused at a chosen write (`MOAT_FAILPOINT=
//! POINT:pause`); I/O errors and short writes come from the error-returning
//! failpoints (`POINT:eio`, `POINT:short`); a file-size limit (RLIMIT_FSIZE)
//! gives the kernel's own EFBIG. After every fault: the command failed with
//! an error naming the store and the cause, no temp file or unindexed pack
//! is left, every earlier snapshot restores byte for byte, `check
//! --read-data` passes, and (space freed) the next snapshot and `gc` work.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use common::tmpfs::Tmpfs;
use common::*;

/// A store with earlier snapshots whose restores are known, and a
/// workspace holding changes the next snapshot must store.
struct Scene {
    fs: Option<Tmpfs>,
    env: Env,
    ws: PathBuf,
    /// (snapshot id, listing of its restore) of every committed snapshot.
    earlier: Vec<(String, Vec<String>)>,
}

impl Scene {
    /// On its own tmpfs (None when tmpfs cannot be mounted: SKIPPED printed).
    fn on_tmpfs(test: &str) -> Option<Scene> {
        let fs = Tmpfs::mount(test, 32 << 20)?;
        let env = Env::with_store(&fs.join("store"));
        Some(Scene::build(Some(fs), env))
    }

    fn on_disk() -> Scene {
        Scene::build(None, Env::new())
    }

    fn build(fs: Option<Tmpfs>, env: Env) -> Scene {
        let ws = env.path("ws");
        rich_tree(&ws);
        let mut s = Scene {
            fs,
            env,
            ws,
            earlier: Vec::new(),
        };
        s.commit();
        write(&s.ws.join("src/lib.rs"), b"pub fn two() -> u32 { 2 }\n");
        write(&s.ws.join("data/one.bin"), &noise(600 << 10, 11));
        s.commit();
        // What the faulted snapshot must store: more than the 1 MiB a pack
        // writer buffers, so the disk is written mid-pack.
        write(&s.ws.join("data/two.bin"), &noise(3 << 19, 12));
        write(&s.ws.join("src/new.rs"), b"fn new() {}\n");
        s
    }

    /// Takes a snapshot and records how it must restore: as the
    /// workspace is now (a restore is byte-identical, mtimes included).
    fn commit(&mut self) -> String {
        let id = self.env.snapshot(&self.ws);
        self.earlier.push((id.clone(), listing(&self.ws)));
        id
    }

    fn snapshots(&self) -> usize {
        std::fs::read_dir(self.env.store().join("snapshots"))
            .expect("snapshots dir")
            .count()
    }

    /// Garbage for gc to rewrite: a snapshot storing two files in one
    /// pack, of which the next snapshot keeps one; the first is deleted,
    /// so that pack is under 75% live and its tree pack is dead (gc drops
    /// the dead pack, with one index write, before it rewrites).
    fn make_garbage(&mut self) {
        self.commit();
        let n = self.earlier.len();
        write(
            &self.ws.join(format!("data/keep-{n}.bin")),
            &noise(1 << 19, 13 + n as u64),
        );
        write(&self.ws.join("data/gone.bin"), &noise(1 << 20, 13));
        let doomed = self.env.snapshot(&self.ws);
        std::fs::remove_file(self.ws.join("data/gone.bin")).expect("rm");
        self.commit();
        self.env.ok(&["snapshots", "delete", &doomed]);
    }

    /// Everything every fault must leave true.
    fn assert_recovers(&mut self, what: &str, out: &Output, cause: &str) {
        let err = String::from_utf8_lossy(&out.stderr);
        let store = self.env.store();
        assert!(!out.status.success(), "{what}: should fail\n{}", show(out));
        assert!(!err.contains("panicked"), "{what}: {err}");
        assert!(
            err.contains(store.to_str().expect("utf8")) && err.contains(cause),
            "{what}: the error must name the store and '{cause}':\n{err}"
        );
        self.assert_store_intact(what);
        if let Some(fs) = &self.fs {
            fs.free();
        }
        let again = self.commit();
        self.env.ok(&["gc", "--all", "--min-age", "0s"]);
        self.env.ok(&["check", "--read-data"]);
        let out = self.env.path("after");
        self.env.restore(&again, &out);
        assert_same_tree(&self.ws, &out);
    }

    /// A fault saving the stat cache: the snapshot is committed before the
    /// cache (only a cache) is saved, so the command succeeds and warns,
    /// naming the store and the cause, and the snapshot restores.
    fn assert_committed_anyway(&mut self, what: &str, out: &Output, cause: &str) {
        assert!(out.status.success(), "{what}: {}", show(out));
        let err = String::from_utf8_lossy(&out.stderr);
        let store = self.env.store();
        assert!(
            err.contains("stat cache") && err.contains(store.to_str().expect("utf8")) && err.contains(cause),
            "{what}: {err}"
        );
        let id = last_line(&String::from_utf8_lossy(&out.stdout));
        self.earlier.push((id, listing(&self.ws)));
        self.assert_store_intact(what);
    }

    /// No temp file, no unindexed pack, no new snapshot; every committed
    /// snapshot restores as it did; `check --read-data` passes.
    fn assert_store_intact(&self, what: &str) {
        let tmp: Vec<_> = std::fs::read_dir(self.env.store().join("tmp"))
            .expect("tmp dir")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(tmp.is_empty(), "{what}: temp files left: {tmp:?}");
        assert_eq!(self.snapshots(), self.earlier.len(), "{what}: snapshot count");
        for (k, (id, want)) in self.earlier.iter().enumerate() {
            let out = self
                .env
                .path(&format!("check-{what}-{k}").replace(['/', ':', ' '], "_"));
            self.env.restore(id, &out);
            assert_eq!(&listing(&out), want, "{what}: snapshot {id} restores differently");
            std::fs::remove_dir_all(&out).expect("rm restore");
        }
        let out = self
            .env
            .cmd()
            .args(["check", "--read-data"])
            .output()
            .expect("run");
        assert!(out.status.success(), "{what}: check fails:\n{}", show(&out));
        let notes = String::from_utf8_lossy(&out.stderr);
        assert!(!notes.contains("not indexed"), "{what}: a pack was left: {notes}");
    }
}

/// Runs moat with `MOAT_FAILPOINT=<point>:pause`, calls `at_pause` while it
/// waits at that point, then lets it go on.
fn run_paused(env: &Env, args: &[&str], point: &str, at_pause: impl FnOnce()) -> Output {
    let mut child = env
        .cmd()
        .args(args)
        .env(
            "MOAT_FAILPOINT",
            match point.split_once('@') {
                Some((name, n)) => format!("{name}:pause@{n}"),
                None => format!("{point}:pause"),
            },
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn moat");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = stderr.read_line(&mut line).expect("read stderr");
        assert!(n > 0, "moat {args:?} never reached failpoint {point}:\n{seen}");
        seen.push_str(&line);
        if line.contains("failpoint") && line.contains("paused") {
            break;
        }
    }
    at_pause();
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"\n").expect("resume moat");
    drop(stdin);
    stderr.read_to_string(&mut seen).expect("read stderr");
    let mut out = child.wait_with_output().expect("wait");
    out.stderr = seen.into_bytes();
    out
}

const ENOSPC: &str = "No space left on device";

/// Runs `case` for each of `cases` at once (each in its own store).
fn each<T: Sync>(cases: &[T], case: impl Fn(&T) + Sync) {
    std::thread::scope(|s| {
        for c in cases {
            s.spawn(|| case(c));
        }
    });
}

#[test]
fn a_full_disk_at_each_phase_of_a_snapshot() {
    each(
        &["pack-write", "pack-write@3", "index-write", "snapshot-write"],
        |point| {
            let Some(mut s) = Scene::on_tmpfs("a_full_disk_at_each_phase_of_a_snapshot") else {
                return;
            };
            let fs = s.fs.as_ref().expect("tmpfs");
            let ws = s.ws.to_str().expect("utf8").to_string();
            let out = run_paused(&s.env, &["snapshot", &ws], point, || fs.fill());
            s.assert_recovers(&format!("ENOSPC at {point}"), &out, ENOSPC);
        },
    );
}

#[test]
fn a_full_disk_when_saving_the_stat_cache_keeps_the_snapshot() {
    let Some(mut s) = Scene::on_tmpfs("a_full_disk_when_saving_the_stat_cache") else {
        return;
    };
    let fs = s.fs.as_ref().expect("tmpfs");
    let ws = s.ws.to_str().expect("utf8").to_string();
    let out = run_paused(&s.env, &["snapshot", &ws], "cache-write", || fs.fill());
    s.assert_committed_anyway("ENOSPC at cache-write", &out, ENOSPC);
    s.fs.as_ref().expect("tmpfs").free();
    s.env.ok(&["gc", "--all", "--min-age", "0s"]);
    s.commit();
}

#[test]
fn a_full_disk_while_gc_rewrites() {
    each(&["pack-write", "index-write", "index-write@2"], |point| {
        let Some(mut s) = Scene::on_tmpfs("a_full_disk_while_gc_rewrites") else {
            return;
        };
        s.make_garbage();
        let fs = s.fs.as_ref().expect("tmpfs");
        let out = run_paused(&s.env, &["gc", "--all", "--min-age", "0s"], point, || fs.fill());
        s.assert_recovers(&format!("gc: ENOSPC at {point}"), &out, ENOSPC);
    });
}

/// A snapshot too big for the disk fails, cleans up after itself, and the
/// next one works once there is room, with no `system clean-temp`.
#[test]
fn a_snapshot_bigger_than_the_disk_leaves_nothing_behind() {
    let Some(mut s) = Scene::on_tmpfs("a_snapshot_bigger_than_the_disk") else {
        return;
    };
    let fs = s.fs.as_ref().expect("tmpfs");
    let free = fs.free_bytes() as usize;
    write(&s.ws.join("data/huge.bin"), &noise(free + (1 << 20), 14));
    let out = s
        .env
        .cmd()
        .args(["snapshot", s.ws.to_str().expect("utf8")])
        .output()
        .expect("run");
    s.assert_store_intact("ENOSPC: workspace bigger than the disk");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(ENOSPC), "{}", show(&out));
    std::fs::remove_file(s.ws.join("data/huge.bin")).expect("rm");
    s.assert_recovers("ENOSPC: workspace bigger than the disk", &out, ENOSPC);
}

/// gc in a store whose disk is full: it frees what it can without writing
/// (packs of deleted snapshots that only they used), and where it must
/// write first it says how much room it needs: as an error when its index
/// does not fit, as a note when only a rewrite does not.
#[test]
fn gc_in_a_full_store() {
    let Some(mut s) = Scene::on_tmpfs("gc_in_a_full_store") else {
        return;
    };
    // Garbage that needs no rewrite: a whole session's packs.
    write(&s.ws.join("data/session.bin"), &noise(4 << 20, 15));
    let doomed = s.env.snapshot(&s.ws);
    std::fs::remove_file(s.ws.join("data/session.bin")).expect("rm");
    s.env.ok(&["snapshots", "delete", &doomed]);
    let fs = s.fs.as_ref().expect("tmpfs");
    fs.fill();
    s.env.ok(&["gc", "--all", "--min-age", "0s"]);
    assert!(fs.free_bytes() >= 4 << 20, "gc freed the session's packs");
    s.assert_store_intact("gc in a full store");
    // Garbage that needs a new index first (a pack still partly live, a
    // dead one listed beside it). The stat caches of the checks' restores
    // go first, so nothing is left to free without writing.
    fs.free();
    s.env.ok(&["gc", "--all", "--min-age", "0s"]);
    s.make_garbage();
    let fs = s.fs.as_ref().expect("tmpfs");
    let gc = |s: &Scene| {
        let out = s
            .env
            .cmd()
            .args(["gc", "--all", "--min-age", "0s"])
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out, err)
    };
    fs.fill();
    let (out, err) = gc(&s);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        err.contains("needs") && err.contains("bytes free") && err.contains("index"),
        "{err}"
    );
    s.assert_store_intact("gc in a full store, new index needed");
    // Room for the index, not for the rewrite: the dead pack goes, the
    // rewrite waits with a note saying how much room it needs.
    fs.free();
    fs.fill_leaving(64 << 10);
    let (out, err) = gc(&s);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        err.contains("not rewritten") && err.contains("bytes free"),
        "{err}"
    );
    s.assert_store_intact("gc in a full store, rewrite skipped");
    fs.free();
    let out = s.env.ok(&["gc", "--all", "--min-age", "0s"]);
    assert!(out.contains("1 repacked"), "{out}");
    s.assert_store_intact("gc after space was freed");
}

/// Error-returning failpoints in every store writer: an I/O error, and a
/// write that stores half its bytes and then fails.
#[test]
fn io_errors_and_short_writes_in_every_store_writer() {
    let cases = [
        ("snapshot", "pack-write:eio", "Input/output error"),
        ("snapshot", "pack-write:eio@4", "Input/output error"),
        ("snapshot", "pack-write:short@2", "short write"),
        ("snapshot", "index-write:eio", "Input/output error"),
        ("snapshot", "index-write:short", "short write"),
        ("snapshot", "snapshot-write:eio", "Input/output error"),
        ("snapshot", "snapshot-write:short", "short write"),
        ("gc", "pack-write:eio", "Input/output error"),
        ("gc", "pack-write:short@2", "short write"),
        ("gc", "index-write:short", "short write"),
        ("gc", "index-write:eio@2", "Input/output error"),
    ];
    each(&cases, |&(cmd, point, cause)| {
        let mut s = Scene::on_disk();
        let mut args = vec![cmd.to_string()];
        if cmd == "gc" {
            s.make_garbage();
            args.extend(["--all", "--min-age", "0s"].map(String::from));
        } else {
            args.push(s.ws.to_str().expect("utf8").into());
        }
        let out = s
            .env
            .cmd()
            .args(&args)
            .env("MOAT_FAILPOINT", point)
            .output()
            .expect("run moat");
        s.assert_recovers(&format!("{cmd} with {point}"), &out, cause);
    });
}

#[test]
fn an_io_error_saving_the_stat_cache_keeps_the_snapshot() {
    each(
        &[
            ("cache-write:eio", "Input/output error"),
            ("cache-write:short", "short write"),
        ],
        |&(point, cause)| {
            let mut s = Scene::on_disk();
            let out = s
                .env
                .cmd()
                .args(["snapshot", s.ws.to_str().expect("utf8")])
                .env("MOAT_FAILPOINT", point)
                .output()
                .expect("run moat");
            s.assert_committed_anyway(point, &out, cause);
        },
    );
}

/// Chunks of `data` as the store cuts them.
fn chunks(data: &[u8]) -> Vec<std::ops::Range<usize>> {
    let cfg = moat::format::config::StoreConfig::new_default();
    moat::capture::chunker::cut(data, moat::capture::chunker::ChunkParams::from_config(&cfg))
}

/// Item 1: a store write error (here the kernel's EFBIG from RLIMIT_FSIZE,
/// which fails only the pack holding the largest chunk) used to be reported
/// as "skipped FILE" while the capture went on, and another file holding
/// the same chunk then referenced it: the committed snapshot named a chunk
/// in no pack. Now the capture fails and commits nothing.
#[test]
fn a_store_write_error_fails_the_capture_and_commits_nothing() {
    let mut s = Scene::on_disk();
    // One pack per chunk, so each pack is about one chunk long.
    let store = moat::Store::open_or_create(&s.env.store()).expect("store");
    let cfg = moat::format::config::StoreConfig {
        pack_target: 16 << 10,
        ..store.config.clone()
    };
    std::fs::write(s.env.store().join("config"), cfg.encode()).expect("config");
    let data = noise(2 << 20, 21);
    let mut sizes: Vec<usize> = chunks(&data).iter().map(|r| r.len()).collect();
    sizes.sort_unstable();
    let (second, largest) = (sizes[sizes.len() - 2], sizes[sizes.len() - 1]);
    assert!(
        largest > second + 1024,
        "need one chunk clearly larger: {sizes:?}"
    );
    let big = chunks(&data)
        .into_iter()
        .find(|r| r.len() == largest)
        .expect("largest");
    write(&s.ws.join("data/all.bin"), &data);
    write(&s.ws.join("data/copy-of-one-chunk.bin"), &data[big]);
    // Every pack but the one holding the largest chunk fits.
    let limit = (second + largest) as u64 / 2 + 200;
    let mut cmd: Command = s.env.cmd();
    cmd.args(["snapshot", "--no-clone", s.ws.to_str().expect("utf8")]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run moat");
    s.assert_recovers("EFBIG while storing chunks", &out, "File too large");
}

/// Reading a workspace file that cannot be read stays a skipped file: the
/// snapshot is taken without it. (moat runs without CAP_DAC_OVERRIDE and
/// CAP_DAC_READ_SEARCH, so a mode-000 file is unreadable even for root.)
#[test]
fn an_unreadable_workspace_file_is_still_skipped() {
    let s = Scene::on_disk();
    let p = s.ws.join("secret.txt");
    write(&p, b"no");
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o000)).expect("chmod");
    if std::fs::File::open(&p).is_ok() && !nix::unistd::geteuid().is_root() {
        panic!("a mode-000 file opened without privileges");
    }
    let mut cmd = s.env.cmd();
    cmd.args(["snapshot", "--no-clone", s.ws.to_str().expect("utf8")]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            // Dropped from the bounding set, so exec does not grant them back.
            for cap in [1, 2] {
                if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && nix::unistd::geteuid().is_root() {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED an_unreadable_workspace_file_is_still_skipped: cannot drop CAP_DAC_OVERRIDE: {e}"
            );
            return;
        }
    };
    assert!(out.status.success(), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("secret.txt"), "the skipped file is named: {err}");
    let id = last_line(&String::from_utf8_lossy(&out.stdout));
    let files = s.env.ok(&["ls", &id]);
    assert!(
        !files.contains("secret.txt") && files.contains("two.bin"),
        "{files}"
    );
}
