//! A workspace with a `moat watch` process beside it, for the watcher
//! tests (`tests/watch.rs`, `tests/watch_ignored.rs`): start and stop the
//! watcher, ask its status, snapshot through it, and compare each watched
//! snapshot with a full walk of the same state.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Env, show};
use moat::capture;
use moat::util::progress::NoProgress;
use moat::worktree::config;
use moat::worktree::walk::WalkOptions;

/// The inotify queue length every watcher gets. The knob is global to the
/// machine, which may run other test suites at once, so no test lowers it:
/// the overflow test floods a queue of this length instead.
pub fn queue_limit() -> usize {
    fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(16384)
}

pub struct Watched {
    pub env: Env,
    /// The workspace (canonical).
    pub ws: PathBuf,
    pub child: Option<Child>,
}

impl Watched {
    pub fn new() -> Self {
        let env = Env::new();
        let ws = env.path("ws");
        fs::create_dir_all(&ws).unwrap();
        fs::create_dir_all(env.path("home")).unwrap();
        let ws = fs::canonicalize(&ws).unwrap();
        Watched { env, ws, child: None }
    }

    pub fn home(&self) -> PathBuf {
        self.env.path("home")
    }

    pub fn cmd(&self) -> Command {
        let mut c = self.env.cmd();
        c.env("MOAT_HOME", self.home());
        c
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.ws.join(rel)
    }

    /// Starts `moat watch` and waits until it answers.
    pub fn start(&mut self) {
        let err = self.env.path("watch.err");
        let child = self
            .cmd()
            .args(["watch", self.ws.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(fs::File::create(&err).unwrap())
            .spawn()
            .expect("spawn moat watch");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.status().is_none() {
            let exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            let log = || fs::read_to_string(&err).unwrap_or_default();
            assert!(exited.is_none(), "moat watch exited ({exited:?}): {}", log());
            assert!(Instant::now() < deadline, "watcher did not start: {}", log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// This workspace's entry of `moat watch --status --json` (asking also
    /// makes the watcher take its queued events in).
    pub fn status(&self) -> Option<serde_json::Value> {
        let out = self.cmd().args(["watch", "--status", "--json"]).output().unwrap();
        let all: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let ws = self.ws.to_str().unwrap();
        all.as_array()?.iter().find(|s| s["workspace"] == ws).cloned()
    }

    pub fn watched_dirs(&self) -> u64 {
        let s = self.status().expect("watcher running");
        s["watched_dirs"].as_u64().unwrap()
    }

    /// `moat watch --stop` for this workspace; waits for the watcher to end.
    pub fn stop(&mut self) {
        let out = self
            .cmd()
            .args(["watch", "--stop", self.ws.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", show(&out));
        if let Some(mut c) = self.child.take() {
            c.wait().unwrap();
        }
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.as_ref().expect("watcher running").id() as i32)
    }

    /// A snapshot (allowed empty, `extra` flags); its JSON and the
    /// --verbose lines.
    pub fn snap_with(&self, extra: &[&str]) -> (serde_json::Value, String) {
        let ws = self.ws.to_str().unwrap();
        let mut args = vec!["snapshot", ws, "--json", "--verbose", "--allow-empty"];
        args.extend_from_slice(extra);
        let out = self.cmd().args(&args).output().unwrap();
        assert!(out.status.success(), "{}", show(&out));
        let v = serde_json::from_slice(&out.stdout).expect("json");
        (v, String::from_utf8_lossy(&out.stderr).into_owned())
    }

    pub fn snap(&self) -> (serde_json::Value, String) {
        self.snap_with(&[])
    }

    /// The root tree of a full walk of the workspace as it is now, by the
    /// rules `moat snapshot` with `cli` walks by (moat.yaml included).
    pub fn walked_root_by(&self, cli: WalkOptions) -> String {
        let store = moat::Store::open(&self.env.store()).unwrap();
        let rules = config::scan(&self.ws, None, cli).unwrap();
        let (scan, _) = capture::scan_dry(&store, &self.ws, &rules.walk, &NoProgress).unwrap();
        scan.root.to_hex()
    }

    /// `walked_root_by` the default rules.
    pub fn walked_root(&self) -> String {
        self.walked_root_by(WalkOptions::default())
    }

    /// Snapshots, expecting a watched scan equal to a full walk.
    pub fn watched_ok(&self, what: &str) -> serde_json::Value {
        let (v, err) = self.snap();
        assert_eq!(v["scan"], "watched", "{what}: not watched: {err}");
        let walked = self.walked_root();
        assert_eq!(
            v["root"].as_str().unwrap(),
            walked,
            "{what}: tree differs from a full walk"
        );
        v
    }

    /// Snapshots, expecting a full walk for a reason containing `why`.
    pub fn walked_because(&self, why: &str) -> serde_json::Value {
        let (v, err) = self.snap();
        assert_eq!(v["scan"], "walked", "expected a walk ({why}): {err}");
        assert!(err.contains(why), "expected reason {why:?}: {err}");
        assert_eq!(v["root"].as_str().unwrap(), self.walked_root());
        v
    }

    /// The paths in the latest snapshot, as `moat ls latest` prints them.
    pub fn ls(&self) -> String {
        let out = self
            .cmd()
            .args(["ls", "latest"])
            .current_dir(&self.ws)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
