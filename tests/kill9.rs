//! `kill -9` at random instants of `snapshot`, `gc`, `restore` and
//! `rollback` on a generated tree of a few thousand files (some large).
//!
//! The kill instants are drawn from a seeded RNG over each command's
//! duration (measured uninterrupted, then as last seen when a trial ended
//! before its kill), so which fractions of the run are tried is fixed;
//! where they land in the work varies with the machine, and every
//! assertion holds wherever they land. Trials go on until `KILLS` kills
//! have landed while the command still ran (at most `MAX_TRIALS` trials:
//! a machine where kills keep missing fails the test rather than passing
//! with fewer):
//! - the store passes `check` after every kill and `check --read-data` at
//!   the end, and every snapshot a command reported written restores byte
//!   for byte;
//! - a killed restore, run again with `--force`, gives exactly the snapshot;
//! - a killed rollback, run again, leaves exactly the target (no temp
//!   entry, every mtime right: the next snapshot has the target's root), and
//!   the undo of a killed rollback (its safety snapshot) exactly the old state.
//!
//! Each test prints, past the harness's capture, how many trials it made,
//! how many kills landed while the command still ran and how many left a
//! partial state behind.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Kills that must land while the command runs, per command.
const KILLS: usize = 50;
/// Trials after which a test gives up on landing `KILLS` kills.
const MAX_TRIALS: usize = 3 * KILLS;
/// Files in each test's tree (every 150th large).
const FILES: usize = 3000;

/// A test environment in memory when `/dev/shm` has room (fsync is then
/// free, so the trials measure moat, not the disk), else in the temp dir.
fn env() -> Env {
    let shm = Path::new("/dev/shm");
    let roomy = nix::sys::statvfs::statvfs(shm)
        .is_ok_and(|s| s.blocks_available() as u128 * s.fragment_size() as u128 > (2 << 30));
    if roomy { Env::new_in(shm) } else { Env::new() }
}

/// A seeded xorshift generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A tree of `files` files in nested directories: mostly small text, every
/// 150th file between 256 KiB and 1 MiB of noise.
fn generate(root: &Path, files: usize, rng: &mut Rng) {
    for i in 0..files {
        let dir = format!("d{}/s{}", i % 23, i % 7);
        let path = root.join(dir).join(format!("f{i}.txt"));
        if i.is_multiple_of(150) {
            let n = 256 * 1024 + rng.below(768 * 1024) as usize;
            write(&path.with_extension("bin"), &noise(n, rng.next()));
        } else {
            let n = 50 + rng.below(3000) as usize;
            write(
                &path,
                &noise(n, rng.next()).escape_ascii().to_string().into_bytes()[..n],
            );
        }
    }
    backdate(root);
}

/// Rewrites `n` random files of the tree and one large file.
fn churn(root: &Path, files: usize, n: usize, rng: &mut Rng) {
    for _ in 0..n {
        let i = rng.below(files as u64) as usize;
        if i.is_multiple_of(150) {
            continue;
        }
        let path = root.join(format!("d{}/s{}/f{i}.txt", i % 23, i % 7));
        write(&path, format!("rewritten {}\n", rng.next()).as_bytes());
    }
    write(&root.join("big/churn.bin"), &noise(1 << 20, rng.next()));
    backdate(root);
}

/// Runs `cmd` and kills it `after` its start, or `after` it printed a line
/// starting with `marker` on stderr, unless it finished first; returns
/// whether it was killed, and its output (up to the kill).
fn run_and_kill(mut cmd: Command, after: Duration, marker: Option<&str>) -> (bool, Output) {
    use std::io::{BufRead, Read};
    let mut child: Child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn moat");
    let (seen_tx, seen) = std::sync::mpsc::channel();
    let mut start = marker.is_none().then(Instant::now);
    let marker = marker.map(str::to_string);
    let stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        for line in std::io::BufReader::new(stderr).split(b'\n').map_while(|l| l.ok()) {
            if marker.as_ref().is_some_and(|m| line.starts_with(m.as_bytes())) {
                let _ = seen_tx.send(());
            }
            text.extend_from_slice(&line);
            text.push(b'\n');
        }
        text
    });
    let killed = loop {
        if child.try_wait().expect("try_wait").is_some() {
            break false;
        }
        if start.is_none() && seen.try_recv().is_ok() {
            start = Some(Instant::now());
        }
        if start.is_some_and(|s| s.elapsed() >= after) {
            child.kill().expect("SIGKILL");
            break true;
        }
        std::thread::sleep(Duration::from_micros(500));
    };
    let status = child.wait().expect("wait");
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_end(&mut stdout)
        .expect("read stdout");
    let stderr = reader.join().expect("stderr reader");
    // It may have exited on its own between the check and the kill.
    (
        killed && status.code().is_none(),
        Output {
            status,
            stdout,
            stderr,
        },
    )
}

/// How long `cmd` takes, uninterrupted.
fn measure(cmd: Command) -> Duration {
    let start = Instant::now();
    let (killed, out) = run_and_kill(cmd, Duration::from_secs(600), None);
    assert!(!killed && out.status.success(), "{}", show(&out));
    start.elapsed()
}

/// The kill trials of one command.
struct Trials {
    what: &'static str,
    rng: Rng,
    /// How long the command runs when nothing kills it, as last seen:
    /// kill instants are drawn from [0, took).
    took: Duration,
    tried: usize,
    /// Kills that landed while the command still ran.
    landed: usize,
    /// Trials that left a partial state behind (counted by the test: for
    /// a store writer, a temp file that was not there before).
    partial: usize,
}

impl Trials {
    fn new(what: &'static str, seed: u64, took: Duration) -> Self {
        Trials {
            what,
            rng: Rng(seed),
            took: took.max(Duration::from_millis(1)),
            tried: 0,
            landed: 0,
            partial: 0,
        }
    }

    /// Whether another trial is needed: until `KILLS` kills landed, and
    /// failing the test once `MAX_TRIALS` trials landed fewer.
    fn more(&self) -> bool {
        assert!(
            self.landed >= KILLS || self.tried < MAX_TRIALS,
            "kill -9 {}: only {} of {} kills landed while it ran (need {KILLS})",
            self.what,
            self.landed,
            self.tried
        );
        self.landed < KILLS
    }

    /// Runs `cmd` and kills it at a random instant of its run (unless it
    /// finished first: its duration is then the new estimate).
    fn run(&mut self, cmd: Command) -> (bool, Output) {
        let at = Duration::from_micros(self.rng.below(self.took.as_micros() as u64));
        let start = Instant::now();
        let (killed, out) = run_and_kill(cmd, at, None);
        if !killed {
            self.took = start.elapsed().max(Duration::from_millis(1));
        }
        self.count(killed, out)
    }

    /// Runs `cmd` and kills it at a random instant in the first `1/div` of
    /// its run after it printed a line starting with `marker`.
    fn run_after(&mut self, cmd: Command, marker: &str, div: u32) -> (bool, Output) {
        let at = Duration::from_micros(self.rng.below((self.took / div).as_micros() as u64));
        let (killed, out) = run_and_kill(cmd, at, Some(marker));
        self.count(killed, out)
    }

    fn count(&mut self, killed: bool, out: Output) -> (bool, Output) {
        self.tried += 1;
        self.landed += killed as usize;
        (killed, out)
    }

    /// Prints the counts past the harness's capture.
    fn report(&self, note: &str) {
        assert!(self.landed >= KILLS, "{} kills landed", self.landed);
        let _ = writeln!(
            std::io::stderr(),
            "kill -9 {}: {} kills, {} while it ran, {} left a partial state; {note}",
            self.what,
            self.tried,
            self.landed,
            self.partial
        );
    }
}

/// The entries of the store's tmp dir: leftovers of killed writers (a
/// partial state) until a later command clears them.
fn store_temps(env: &Env) -> std::collections::HashSet<std::ffi::OsString> {
    std::fs::read_dir(env.store().join("tmp"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .collect()
}

/// How many entries are below `root` (a cheap `listing(root).len()`).
fn entries(root: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            n += 1;
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    n
}

fn check(env: &Env, read_data: bool) {
    let mut args = vec!["check"];
    if read_data {
        args.push("--read-data");
    }
    env.ok(&args);
}

#[test]
fn kill_9_snapshot() {
    let env = env();
    let ws = env.path("ws");
    let mut rng = Rng(0x5eed_0001);
    let files = FILES;
    generate(&ws, files, &mut rng);
    env.snapshot(&ws);
    churn(&ws, files, 200, &mut rng);
    let mut cmd = env.cmd();
    cmd.args(["snapshot", ws.to_str().unwrap()]);
    let mut t = Trials::new("snapshot", 0x5eed_1001, measure(cmd));
    let mut written = Vec::new();
    while t.more() {
        churn(&ws, files, 200, &mut rng);
        let mut cmd = env.cmd();
        cmd.args(["snapshot", ws.to_str().unwrap()]);
        let temps = store_temps(&env);
        let (k, out) = t.run(cmd);
        if !k {
            // The workspace has not changed since the snapshot was taken.
            assert!(out.status.success(), "{}", show(&out));
            written.push((last_line(&String::from_utf8_lossy(&out.stdout)), listing(&ws)));
        }
        t.partial += !store_temps(&env).is_subset(&temps) as usize;
        check(&env, false);
    }
    check(&env, true);
    for (id, state) in &written {
        env.assert_restores(id, state);
    }
    t.report(&format!("{} reported written, all restore", written.len()));
}

#[test]
fn kill_9_gc() {
    let env = env();
    let ws = env.path("ws");
    let mut rng = Rng(0x5eed_0002);
    let files = FILES;
    generate(&ws, files, &mut rng);
    let mut kept = Vec::new();
    let mut doomed = Vec::new();
    for _ in 0..4 {
        churn(&ws, files, 100, &mut rng);
        doomed.push(env.snapshot(&ws));
    }
    let mut cmd = env.cmd();
    cmd.args(["gc", "--all", "--min-age", "0s"]);
    let mut t = Trials::new("gc", 0x5eed_1002, measure(cmd));
    while t.more() {
        let i = t.tried;
        // Each round leaves garbage: a snapshot deleted, new data written.
        churn(&ws, files, 100, &mut rng);
        let id = env.snapshot(&ws);
        if i.is_multiple_of(2) {
            kept.push((id, listing(&ws)));
        } else {
            doomed.push(id);
        }
        if let Some(old) = doomed.pop() {
            env.ok(&["snapshots", "delete", &old]);
        }
        let mut cmd = env.cmd();
        cmd.args(["gc", "--all", "--min-age", "0s"]);
        let temps = store_temps(&env);
        let (k, out) = t.run(cmd);
        assert!(k || out.status.success(), "{}", show(&out));
        t.partial += !store_temps(&env).is_subset(&temps) as usize;
        check(&env, false);
    }
    env.ok(&["gc", "--all", "--min-age", "0s"]);
    check(&env, true);
    for (id, state) in &kept {
        env.assert_restores(id, state);
    }
    t.report(&format!("{} kept snapshots all restore", kept.len()));
}

#[test]
fn kill_9_restore() {
    let env = env();
    let ws = env.path("ws");
    let mut rng = Rng(0x5eed_0003);
    generate(&ws, FILES, &mut rng);
    let id = env.snapshot(&ws);
    let want = {
        let reference = env.path("reference");
        env.restore(&id, &reference);
        listing(&reference)
    };
    let target = env.path("target");
    let restore_to = |extra: &[&str]| {
        let mut c = env.cmd();
        c.args(["restore", &id, "--to", target.to_str().unwrap()])
            .args(extra);
        c
    };
    let mut t = Trials::new("restore", 0x5eed_1003, measure(restore_to(&[])));
    while t.more() {
        std::fs::remove_dir_all(&target).unwrap();
        t.run(restore_to(&[]));
        t.partial += (target.exists() && entries(&target) != want.len()) as usize;
        let out = restore_to(&["--force"]).output().unwrap();
        assert!(out.status.success(), "{}", show(&out));
        assert_eq!(listing(&target), want, "a re-run restore is not the snapshot");
    }
    check(&env, true);
    t.report("every re-run restore equals the snapshot");
}

/// The old state of the rollback trials: B, with renames, edits, a deleted
/// subtree, a new one, a file that became a dir and a dir that became a
/// file, and mode changes.
fn diverge(ws: &Path, rng: &mut Rng) {
    std::fs::remove_dir_all(ws.join("d3")).unwrap();
    for i in 0..40 {
        let p = ws.join(format!("d5/s{}/f{}.txt", (5 + 23 * i) % 7, 5 + 23 * i));
        if p.exists() {
            std::fs::rename(&p, ws.join(format!("d6/renamed-{i}.txt"))).unwrap();
        }
    }
    for i in 0..300 {
        write(
            &ws.join(format!("new/n{}/x{i}.txt", i % 9)),
            format!("new {i}\n").as_bytes(),
        );
    }
    churn(ws, FILES, 300, rng);
    std::fs::remove_dir_all(ws.join("d7/s0")).unwrap();
    write(&ws.join("d7/s0"), b"a dir became a file\n");
    let f = ws.join("d8/s1/f8.txt");
    if f.exists() {
        std::fs::remove_file(&f).unwrap();
    }
    write(&f.join("inner.txt"), b"a file became a dir\n");
    std::fs::set_permissions(ws.join("d9/s2/f9.txt"), std::fs::Permissions::from_mode(0o755)).unwrap();
    backdate(ws);
}

#[test]
fn kill_9_rollback() {
    let env = env();
    let ws = env.path("ws");
    let mut rng = Rng(0x5eed_0004);
    generate(&ws, FILES, &mut rng);
    let target = env.snapshot(&ws);
    let want_target = listing(&ws);
    diverge(&ws, &mut rng);
    let old = env.snapshot(&ws);
    let want_old = listing(&ws);
    let root = |id: &str| {
        let v: serde_json::Value = serde_json::from_str(&env.ok(&["show", id, "--json"])).unwrap();
        v["root"].as_str().unwrap().to_string()
    };
    let (target_root, old_root) = (root(&target), root(&old));
    let rollback = |id: &str| {
        let mut c = env.cmd();
        c.args(["rollback", id, ws.to_str().unwrap()]);
        c
    };
    let mut t = Trials::new("rollback", 0x5eed_1004, measure(rollback(&target)));
    env.ok(&["rollback", &old, ws.to_str().unwrap()]);
    let mut undone = 0;
    while t.more() {
        let i = t.tried;
        assert_eq!(
            listing(&ws),
            want_old,
            "trial {i} does not start from the old state"
        );
        // Half the kills fall anywhere in the run (mostly in the safety
        // snapshot, which is most of it), half once it starts changing the
        // workspace (after it names the safety snapshot).
        let (k, out) = if i.is_multiple_of(2) {
            t.run(rollback(&target))
        } else {
            t.run_after(rollback(&target), "safety snapshot ", 2)
        };
        let now = listing(&ws);
        t.partial += (now != want_old && now != want_target) as usize;
        // The safety snapshot is named before anything changes; undo with
        // it on odd trials when it was, else run the rollback again.
        assert!(k || out.status.success(), "{}", show(&out));
        let safety = String::from_utf8_lossy(&out.stderr).lines().find_map(|l| {
            l.strip_prefix("safety snapshot ")
                .and_then(|s| s.get(..64))
                .map(str::to_string)
        });
        let (again, want, want_root) = match (i % 4, safety) {
            (1 | 2, Some(s)) => (s, &want_old, &old_root),
            _ => (target.clone(), &want_target, &target_root),
        };
        env.ok(&["rollback", &again, ws.to_str().unwrap()]);
        assert_eq!(&listing(&ws), want, "trial {i}: a re-run rollback left a mixture");
        let snap = env.snapshot_json(&ws, &["--allow-empty"]);
        assert_eq!(
            snap["root"].as_str().unwrap(),
            want_root,
            "trial {i}: root differs"
        );
        undone += (want_root == &old_root) as usize;
        if want_root == &target_root {
            env.ok(&["rollback", &old, ws.to_str().unwrap()]);
        }
    }
    check(&env, true);
    t.report(&format!(
        "every re-run gives the target or (after {undone} undos) the old state exactly"
    ));
}
