//! Helpers shared by the integration tests: run the real binary against a
//! temp store, build trees, compare trees byte for byte.
#![allow(dead_code)]

pub mod coarse;
pub mod fuse;
pub mod hostile;
pub mod loopfs;
pub mod moto;
pub mod ops;
pub mod pty;
pub mod reflink;
pub mod run;
pub mod tmpfs;
pub mod watched;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Env {
    pub dir: tempfile::TempDir,
    /// The store, when it is not `dir/store` (see `with_store`).
    store: Option<PathBuf>,
}

impl Env {
    pub fn new() -> Self {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
            store: None,
        }
    }

    /// An environment (store and all) inside `base`.
    pub fn new_in(base: &Path) -> Self {
        Env {
            dir: tempfile::tempdir_in(base).expect("tempdir"),
            store: None,
        }
    }

    /// An environment whose store is `store` (e.g. on a small tmpfs) while
    /// workspaces and restore targets stay in an ordinary temp dir.
    pub fn with_store(store: &Path) -> Self {
        Env {
            store: Some(store.to_path_buf()),
            ..Env::new()
        }
    }

    pub fn store(&self) -> PathBuf {
        self.store
            .clone()
            .unwrap_or_else(|| self.dir.path().join("store"))
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_moat"));
        c.arg("--store")
            .arg(self.store())
            .env_remove("MOAT_STORE")
            .env_remove("MOAT_HOME");
        c.current_dir(self.dir.path());
        c
    }

    /// Runs moat with `args`; panics with its output unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().expect("run moat");
        assert!(out.status.success(), "moat {args:?} failed:\n{}", show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs moat with `args`, expecting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().expect("run moat");
        assert!(
            !out.status.success(),
            "moat {args:?} should fail:\n{}",
            show(&out)
        );
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!err.contains("panicked"), "moat panicked: {err}");
        err
    }

    /// Takes a snapshot of `ws` and returns its id (the last stdout line).
    pub fn snapshot(&self, ws: &Path) -> String {
        let out = self.ok(&["snapshot", ws.to_str().expect("utf8 path")]);
        last_line(&out)
    }

    pub fn snapshot_json(&self, ws: &Path, extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["snapshot", ws.to_str().expect("utf8"), "--json"];
        args.extend_from_slice(extra);
        serde_json::from_str(&self.ok(&args)).expect("json")
    }

    pub fn restore(&self, id: &str, to: &Path) {
        self.ok(&["restore", id, "--to", to.to_str().expect("utf8")]);
    }
}

impl Env {
    /// Runs moat with `args` and `MOAT_FAILPOINT=point`, which must make it
    /// abort (as `kill -9` would, at that step); returns its output.
    pub fn aborted_at(&self, point: &str, args: &[&str]) -> Output {
        let out = self
            .cmd()
            .args(args)
            .env("MOAT_FAILPOINT", point)
            .output()
            .expect("run moat");
        assert!(
            !out.status.success(),
            "the failpoint {point} should abort: {}",
            show(&out)
        );
        out
    }

    /// Restores snapshot `id` into a fresh directory and checks it is `want`
    /// (a `listing`) byte for byte.
    pub fn assert_restores(&self, id: &str, want: &[String]) {
        let out = self.path(&format!("verify-{}", &id[..16]));
        let _ = fs::remove_dir_all(&out);
        self.restore(id, &out);
        assert_eq!(
            listing(&out),
            want,
            "snapshot {id} does not restore byte for byte"
        );
        fs::remove_dir_all(&out).expect("remove the restored copy");
    }
}

pub fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn last_line(s: &str) -> String {
    s.lines().last().unwrap_or_default().trim().to_string()
}

pub fn write(path: &Path, data: &[u8]) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).expect("mkdir");
    }
    fs::write(path, data).expect("write");
}

/// Deterministic pseudo-random bytes.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// A tree with every entry kind moat stores.
pub fn rich_tree(root: &Path) {
    write(&root.join("README.md"), b"# hello\n");
    write(&root.join("src/main.rs"), b"fn main() {}\n");
    write(&root.join("src/empty.txt"), b"");
    write(&root.join("big/blob.bin"), &noise(700 * 1024, 7));
    write(&root.join("bin/run.sh"), b"#!/bin/sh\necho hi\n");
    fs::set_permissions(root.join("bin/run.sh"), fs::Permissions::from_mode(0o755)).expect("chmod");
    write(&root.join("ro.txt"), b"read only");
    fs::set_permissions(root.join("ro.txt"), fs::Permissions::from_mode(0o444)).expect("chmod");
    fs::create_dir_all(root.join("empty/nested/deeper")).expect("mkdir");
    let odd = root.join(std::ffi::OsStr::from_bytes(b"caf\xe9-\xff.txt"));
    write(&odd, b"latin-1 name");
    std::os::unix::fs::symlink("src/main.rs", root.join("rel-link")).expect("symlink");
    std::os::unix::fs::symlink("/nonexistent/target", root.join("dangling")).expect("symlink");
    std::os::unix::fs::symlink("../outside", root.join("src/up-link")).expect("symlink");
}

/// One line per entry below `root`: path, type, mode, size, mtime, content
/// hash or link target. Two trees are equal when their listings are.
pub fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).expect("readdir") {
            let p = e.expect("entry").path();
            let m = fs::symlink_metadata(&p).expect("lstat");
            let rel = p
                .strip_prefix(root)
                .expect("prefix")
                .as_os_str()
                .as_bytes()
                .escape_ascii()
                .to_string();
            let what = if m.file_type().is_symlink() {
                format!("link {}", fs::read_link(&p).expect("readlink").display())
            } else if m.is_dir() {
                stack.push(p.clone());
                format!("dir {:o} {}", m.mode() & 0o7777, m.mtime())
            } else {
                let data = fs::read(&p).expect("read");
                format!(
                    "file {:o} {} {}.{} {}",
                    m.mode() & 0o7777,
                    m.len(),
                    m.mtime(),
                    m.mtime_nsec(),
                    blake3::hash(&data).to_hex()
                )
            };
            out.push(format!("{rel}: {what}"));
        }
    }
    out.sort();
    out
}

pub fn assert_same_tree(a: &Path, b: &Path) {
    let (la, lb) = (listing(a), listing(b));
    if la != lb {
        let only_a: Vec<_> = la.iter().filter(|l| !lb.contains(l)).collect();
        let only_b: Vec<_> = lb.iter().filter(|l| !la.contains(l)).collect();
        panic!(
            "trees differ\nonly in {}: {only_a:#?}\nonly in {}: {only_b:#?}",
            a.display(),
            b.display()
        );
    }
}

/// Total bytes of regular files below `dir`.
pub fn du(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let m = e.metadata().expect("meta");
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    total
}

/// `listing` without entries under the given top-level names.
pub fn listing_without(root: &Path, skip: &[&str]) -> Vec<String> {
    listing(root)
        .into_iter()
        .filter(|l| {
            !skip
                .iter()
                .any(|s| l.starts_with(&format!("{s}:")) || l.starts_with(&format!("{s}/")))
        })
        .collect()
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "core.quotePath=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sets the mtime of every recently written regular file below `root` an
/// hour back (older files are left alone: touching them would change their
/// ctime). A file written in the same clock tick as a snapshot starts is
/// "racy" and read again by the next snapshot (as git does); tests that
/// count re-reads or clones call this after writing, so they never depend
/// on timing.
pub fn backdate(root: &Path) {
    use nix::sys::stat::{UtimensatFlags, utimensat};
    use nix::sys::time::TimeSpec;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let hour_ago = TimeSpec::new(now - 3600, 0);
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("read_dir").flatten() {
            let t = e.file_type().expect("file type");
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() && e.metadata().expect("stat").mtime() > now - 60 {
                utimensat(
                    nix::fcntl::AT_FDCWD,
                    &e.path(),
                    &TimeSpec::UTIME_OMIT,
                    &hour_ago,
                    UtimensatFlags::NoFollowSymlink,
                )
                .expect("backdate");
            }
        }
    }
}

/// Runs `cmd` (stdin closed, output captured) to its end, or kills it after
/// `secs` seconds and panics: a hang becomes a failed test, not a stuck
/// suite. The deadline only catches hangs; nothing is timed.
pub fn output_within(cmd: &mut Command, secs: u64) -> Output {
    use std::process::Stdio;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    wait_within(cmd.spawn().expect("spawn"), secs)
}

/// Collects a spawned child's piped output and waits for it, or kills it
/// after `secs` seconds and panics (see `output_within`).
pub fn wait_within(mut child: std::process::Child, secs: u64) -> Output {
    use std::io::Read;
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            v
        })
    };
    let out = drain(child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pid {} still running after {secs} s: it hangs", child.id());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

impl Env {
    /// `ok`, but a hang (over `secs` seconds) fails the test too.
    pub fn ok_within(&self, args: &[&str], secs: u64) -> Output {
        let out = output_within(self.cmd().args(args), secs);
        assert!(out.status.success(), "moat {args:?} failed:\n{}", show(&out));
        out
    }
}

pub fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
}

/// Waits for `child` to end, or kills it after `secs` seconds and panics
/// (a hang fails the test; nothing is timed).
pub fn wait_within_status(child: &mut std::process::Child, secs: u64) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pid {} still running after {secs} s: it hangs", child.id());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
