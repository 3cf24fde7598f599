//! The scene of the fault tests: a store with earlier snapshots whose
//! restores are known, a workspace holding changes the next snapshot must
//! store, and what every fault must leave true.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Output, Stdio};

use crate::common::tmpfs::Tmpfs;
use crate::common::*;

/// The change a scene's next snapshot stores by default: more than the
/// 1 MiB a pack writer buffers, so a full disk is met mid-pack.
const BIG_CHANGE: usize = 3 << 19;

/// A store with earlier snapshots whose restores are known, and a
/// workspace holding changes the next snapshot must store.
pub struct Scene {
    pub fs: Option<Tmpfs>,
    pub env: Env,
    pub ws: PathBuf,
    /// (snapshot id, listing of its restore) of every committed snapshot.
    pub earlier: Vec<(String, Vec<String>)>,
}

impl Scene {
    /// On its own tmpfs (None when tmpfs cannot be mounted: SKIPPED printed).
    pub fn on_tmpfs(test: &str) -> Option<Scene> {
        let fs = Tmpfs::mount(test, 32 << 20)?;
        let env = Env::with_store(&fs.join("store"));
        Some(Scene::build(Some(fs), env, BIG_CHANGE))
    }

    pub fn on_disk() -> Scene {
        Scene::build(None, Env::new(), BIG_CHANGE)
    }

    /// On disk, with a change of a few chunks to store (for tests that run
    /// a scene per write the command makes).
    pub fn small() -> Scene {
        Scene::build(None, Env::new(), 160 << 10)
    }

    /// `change`: the size of the new file the next snapshot must store.
    fn build(fs: Option<Tmpfs>, env: Env, change: usize) -> Scene {
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
        // What the faulted snapshot must store.
        write(&s.ws.join("data/two.bin"), &noise(change, 12));
        write(&s.ws.join("src/new.rs"), b"fn new() {}\n");
        s
    }

    /// Takes a snapshot and records how it must restore: as the
    /// workspace is now (a restore is byte-identical, mtimes included).
    pub fn commit(&mut self) -> String {
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
    pub fn make_garbage(&mut self) {
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
    pub fn assert_recovers(&mut self, what: &str, out: &Output, cause: &str) {
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
    pub fn assert_committed_anyway(&mut self, what: &str, out: &Output, cause: &str) {
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
    pub fn assert_store_intact(&self, what: &str) {
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
pub fn run_paused(env: &Env, args: &[&str], point: &str, at_pause: impl FnOnce()) -> Output {
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

pub const ENOSPC: &str = "No space left on device";

/// Runs `case` for each of `cases` at once (each in its own store).
pub fn each<T: Sync>(cases: &[T], case: impl Fn(&T) + Sync) {
    std::thread::scope(|s| {
        for c in cases {
            s.spawn(|| case(c));
        }
    });
}
