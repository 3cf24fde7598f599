//! `moat run -- CMD`: run a command (an agent) in a workspace, trace what
//! its process tree executes, and take snapshots at the moments that matter:
//! `pre-run` before CMD starts, `git-commit` and `build` after such a
//! command exits 0, `idle` once files changed and then stayed quiet for
//! `idle_threshold_seconds`, and `post-run` when CMD exits.
//!
//! Invariants: CMD is never blocked by moat (events flow through a bounded
//! channel; snapshots run on their own thread); the pre-run snapshot is
//! staged before CMD starts (every file it needs is cloned or read, so it
//! is the workspace before CMD) and ingested in the background while CMD
//! already works, before any later snapshot; snapshots of one trigger are at most one per
//! 2 s; automatic snapshots obey the growth guard; moat returns CMD's exit
//! code. A run is recorded under `$MOAT_HOME/runs/<id>/` (`run.json`,
//! `exec.jsonl`).
//!
//! Uses `ops`, `capture`, `worktree`, `store`, `format` and `util`.

pub mod trace;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::capture::{self, CaptureOptions, Guard, Outcome};
use crate::error::{Error, IoContext, Result};
use crate::format::snapshot::Trigger;
use crate::ops::gc::retention::Policy;
use crate::store::Store;
use crate::util::fs as fsutil;
use crate::util::progress::NoProgress;
use crate::worktree::config::WorkspaceConfig;
use crate::worktree::walk::WalkOptions;
use trace::{EventSink, ExecEvent, Launch};

/// Same-trigger snapshots closer than this are skipped.
const DEBOUNCE: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunInfo {
    pub id: String,
    pub workspace: String,
    pub start_ns: i64,
    pub end_ns: Option<i64>,
    pub command: Vec<String>,
    pub tracer: String,
    pub exit_code: Option<i32>,
    /// (trigger, snapshot id) of every snapshot the run wrote.
    pub snapshots: Vec<(String, String)>,
    pub dropped_events: u64,
}

pub struct RunOptions {
    pub workspace: PathBuf,
    pub config: WorkspaceConfig,
    pub program: std::ffi::OsString,
    pub args: Vec<std::ffi::OsString>,
    pub runs_dir: PathBuf,
    /// Stage snapshots by cloning (see `capture`).
    pub clone: bool,
}

/// The log line sink (the CLI prints to stderr).
pub type Log<'a> = &'a (dyn Fn(&str) + Sync);

pub fn run_dir(runs_dir: &Path, id: &str) -> PathBuf {
    runs_dir.join(id)
}

fn new_run_id() -> String {
    let seed = format!("{}-{}", crate::util::now_ns(), std::process::id());
    blake3::hash(seed.as_bytes()).to_hex()[..12].to_string()
}

fn save_info(dir: &Path, info: &RunInfo) -> Result<()> {
    let json = serde_json::to_vec_pretty(info).map_err(|e| Error::io(dir, std::io::Error::other(e)))?;
    fsutil::atomic_write(dir, &dir.join("run.json"), &json, false)
}

/// Runs CMD under the tracer; returns its exit code. `on_start` receives
/// the child's pid (for signal forwarding).
pub fn run(store: &Store, opts: RunOptions, log: Log, child_pid: &AtomicI32) -> Result<i32> {
    let ws = crate::worktree::workspace_root(&opts.workspace)?;
    let id = new_run_id();
    let dir = run_dir(&opts.runs_dir, &id);
    std::fs::create_dir_all(&dir).at(&dir)?;
    let mut command = vec![opts.program.to_string_lossy().into_owned()];
    command.extend(opts.args.iter().map(|a| a.to_string_lossy().into_owned()));
    let (tracer, tracer_log) = trace::pick(opts.config.tracing.disable_exec);
    for l in &tracer_log {
        log(l);
    }
    let info = Arc::new(Mutex::new(RunInfo {
        id: id.clone(),
        workspace: ws.to_string_lossy().into_owned(),
        start_ns: crate::util::now_ns(),
        command,
        tracer: tracer.name().to_string(),
        ..RunInfo::default()
    }));
    save_info(&dir, &lock(&info))?;
    log(&format!("run {id} in {}", ws.display()));

    let snapper = Snapper {
        store,
        ws: ws.clone(),
        cfg: opts.config.clone(),
        run_id: id.clone(),
        info: info.clone(),
        clone: opts.clone,
        pool: background_pool(),
    };
    let cfg = &opts.config;
    let pre_run = (!cfg.snapshots.disabled && !cfg.snapshots.triggers.disable_pre_run)
        .then(|| snapper.stage(Trigger::PreRun, log))
        .flatten();
    let env = vec![("MOAT_RUN_ID".into(), id.clone().into())];
    let launch = Launch {
        program: opts.program,
        args: opts.args,
        cwd: ws.clone(),
        env,
    };
    let (sink, events) = EventSink::channel(4096);
    let (req_tx, req_rx) = mpsc::channel::<Trigger>();
    let exec_log = File::create(dir.join("exec.jsonl")).at(dir.join("exec.jsonl"))?;
    let code = std::thread::scope(|s| -> Result<i32> {
        let worker = s.spawn(|| {
            if let Some(staged) = pre_run {
                snapper.ingest(Trigger::PreRun, staged, log);
            }
            snapper.serve(req_rx, log)
        });
        let triggers = req_tx.clone();
        let consumer = s.spawn(move || consume(events, exec_log, cfg, &triggers));
        let traced = s.spawn(|| {
            let started = |pid: i32| child_pid.store(pid, Ordering::SeqCst);
            let r = tracer.run(&launch, &sink, &started);
            let dropped = sink.dropped();
            drop(sink);
            (r, dropped)
        });
        let idle = (!cfg.snapshots.disabled && !cfg.snapshots.triggers.disable_idle)
            .then(|| IdleWatch::start(&ws, store.location(), &opts.runs_dir, cfg));
        let idle = match idle.transpose() {
            Ok(w) => w,
            Err(e) => {
                log(&format!(
                    "idle snapshots disabled: cannot watch the workspace: {e}"
                ));
                None
            }
        };
        let threshold = Duration::from_secs(cfg.snapshots.triggers.idle_threshold_seconds);
        while !traced.is_finished() {
            std::thread::sleep(Duration::from_millis(50));
            if idle.as_ref().is_some_and(|w| w.quiet_for(threshold)) {
                let _ = req_tx.send(Trigger::Idle);
            }
        }
        let (result, dropped) = traced
            .join()
            .map_err(|_| Error::io(&dir, std::io::Error::other("tracer panicked")))?;
        let code = result.map_err(|e| Error::io(&opts.workspace, e))?;
        let _ = consumer.join();
        if dropped > 0 {
            log(&format!(
                "warning: {dropped} exec events were dropped (the tracer outran moat)"
            ));
        }
        lock(&info).dropped_events = dropped;
        if !cfg.snapshots.disabled {
            let _ = req_tx.send(Trigger::PostRun);
        }
        drop(req_tx);
        let _ = worker.join();
        Ok(code)
    })?;
    let mut i = lock(&info);
    i.end_ns = Some(crate::util::now_ns());
    i.exit_code = Some(code);
    save_info(&dir, &i)?;
    log(&format!(
        "run {id} finished: exit code {code}, {} snapshots",
        i.snapshots.len()
    ));
    Ok(code)
}

/// A thread pool whose threads run at a low priority (nice 10): on two
/// cores, full-priority ingestion visibly delays the command it snapshots.
fn background_pool() -> Option<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("moat-ingest-{i}"))
        .start_handler(|_| lower_thread_priority())
        .build()
        .ok()
}

/// Linux nice values are per thread; elsewhere this would renice the whole
/// process, so it is left alone.
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: PRIO_PROCESS with who = 0 is the calling thread on Linux.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes `exec.jsonl` and turns finished commands into snapshot requests.
fn consume(events: Receiver<ExecEvent>, mut out: File, cfg: &WorkspaceConfig, triggers: &Sender<Trigger>) {
    let t = &cfg.snapshots.triggers;
    for ev in events {
        if let Ok(line) = serde_json::to_string(&ev) {
            let _ = writeln!(out, "{line}");
        }
        if ev.exit_code != Some(0) || cfg.snapshots.disabled {
            continue;
        }
        if !t.disable_git_commits && trace::is_git_commit(&ev.command, &ev.args) {
            let _ = triggers.send(Trigger::GitCommit);
        } else if !t.disable_builds && trace::is_build(&ev.command, &ev.args) {
            let _ = triggers.send(Trigger::Build);
        }
    }
}

/// Takes the run's snapshots, one at a time, on its own thread.
struct Snapper<'a> {
    store: &'a Store,
    ws: PathBuf,
    cfg: WorkspaceConfig,
    run_id: String,
    info: Arc<Mutex<RunInfo>>,
    clone: bool,
    /// Low-priority threads for background snapshot work.
    pool: Option<rayon::ThreadPool>,
}

impl<'a> Snapper<'a> {
    fn serve(&self, requests: Receiver<Trigger>, log: Log) {
        let mut last: Vec<(Trigger, Instant)> = Vec::new();
        for trigger in requests {
            if let Some((_, at)) = last.iter().find(|(t, _)| *t == trigger)
                && at.elapsed() < DEBOUNCE
            {
                log(&format!(
                    "{} snapshot skipped: one was taken {:?} ago",
                    trigger.name(),
                    at.elapsed()
                ));
                continue;
            }
            last.retain(|(t, _)| *t != trigger);
            last.push((trigger, Instant::now()));
            self.take(trigger, log);
        }
    }

    fn take(&self, trigger: Trigger, log: Log) {
        self.in_background(|| {
            if let Some(staged) = self.stage(trigger, log) {
                self.ingest(trigger, staged, log);
            }
        })
    }

    /// Runs `f` with its parallel work on the low-priority pool, so CMD
    /// keeps the CPU while moat ingests.
    fn in_background(&self, f: impl FnOnce() + Send) {
        match &self.pool {
            Some(p) => p.install(f),
            None => f(),
        }
    }

    /// The first phase of a snapshot: after it, the workspace may change.
    fn stage(&self, trigger: Trigger, log: Log) -> Option<capture::Staged<'a>> {
        let s = &self.cfg.snapshots;
        let opts = CaptureOptions {
            walk: self.cfg.walk_options(WalkOptions::default()),
            trigger,
            message: String::new(),
            run_id: Some(self.run_id.clone()),
            guard: Some(Guard {
                max_new_bytes: s.max_new_bytes,
                max_new_files: s.max_new_files,
                enforce: true,
            }),
            clone: self.clone,
            ..CaptureOptions::default()
        };
        match capture::stage(self.store, &self.ws, &opts, &NoProgress) {
            Ok(staged) => {
                let st = staged.staging();
                if st.memory_files + st.cloned_files + st.direct_files > 0 {
                    log(&format!(
                        "{} snapshot staged in {:.1} ms: {} files in memory, {} cloned, {} read directly{}",
                        trigger.name(),
                        st.stage_ns as f64 / 1e6,
                        st.memory_files,
                        st.cloned_files,
                        st.direct_files,
                        st.fallback
                            .as_ref()
                            .map(|w| format!(" ({w})"))
                            .unwrap_or_default()
                    ));
                }
                Some(staged)
            }
            Err(e) => {
                log(&format!("warning: {} snapshot not taken: {e}", trigger.name()));
                None
            }
        }
    }

    /// The second phase: ingest what was staged and commit the snapshot.
    fn ingest(&self, trigger: Trigger, staged: capture::Staged, log: Log) {
        let res = match &self.pool {
            Some(p) => p.install(|| staged.ingest(&NoProgress)),
            None => staged.ingest(&NoProgress),
        };
        match res {
            Ok(r) => {
                for w in &r.warnings {
                    log(&format!("warning: {w}"));
                }
                match r.outcome {
                    Outcome::Written(id) => {
                        log(&format!("{} snapshot {}", trigger.name(), id.short()));
                        lock(&self.info)
                            .snapshots
                            .push((trigger.name().into(), id.to_hex()));
                        self.apply_retention(log);
                    }
                    Outcome::Unchanged(id) => log(&format!(
                        "{} snapshot: unchanged since {}",
                        trigger.name(),
                        id.short()
                    )),
                }
            }
            Err(e) => log(&format!("warning: {} snapshot not taken: {e}", trigger.name())),
        }
    }

    fn apply_retention(&self, log: Log) {
        let r = &self.cfg.snapshots.retention;
        let policy = Policy {
            max_count: Some(r.max_count as usize),
            delete_initial: r.delete_initial,
            ..Policy::default()
        };
        match crate::ops::gc::forget(self.store, &policy, &self.ws) {
            Ok(gone) if !gone.is_empty() => log(&format!(
                "retention removed {} snapshots (data goes at the next moat gc)",
                gone.len()
            )),
            Ok(_) => {}
            Err(e) => log(&format!("warning: retention not applied: {e}")),
        }
    }
}

/// Watches the workspace for changes (inotify/FSEvents via `notify`),
/// ignoring `.git/`, the store, moat's own files and ignored paths.
struct IdleWatch {
    _watcher: notify::RecommendedWatcher,
    last_change: Arc<Mutex<Option<Instant>>>,
}

impl IdleWatch {
    fn start(
        ws: &Path,
        store: &Path,
        runs: &Path,
        cfg: &WorkspaceConfig,
    ) -> std::result::Result<Self, String> {
        use notify::Watcher;
        let ignore = ignore_matcher(ws, cfg);
        let skip: Vec<PathBuf> = [store, runs]
            .iter()
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .collect();
        let root = ws.to_path_buf();
        let last_change = Arc::new(Mutex::new(None));
        let seen = last_change.clone();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(ev) = res else { return };
            if matches!(ev.kind, notify::EventKind::Access(_)) {
                return;
            }
            let counts = ev.paths.iter().any(|p| relevant(p, &root, &skip, &ignore));
            if counts {
                *lock(&seen) = Some(Instant::now());
            }
        })
        .map_err(|e| e.to_string())?;
        watcher
            .watch(ws, notify::RecursiveMode::Recursive)
            .map_err(|e| e.to_string())?;
        Ok(IdleWatch {
            _watcher: watcher,
            last_change,
        })
    }

    /// True once, after a change followed by `threshold` of quiet.
    fn quiet_for(&self, threshold: Duration) -> bool {
        let mut last = lock(&self.last_change);
        match *last {
            Some(t) if t.elapsed() >= threshold => {
                *last = None;
                true
            }
            _ => false,
        }
    }
}

fn ignore_matcher(ws: &Path, cfg: &WorkspaceConfig) -> ignore::gitignore::Gitignore {
    let mut b = ignore::gitignore::GitignoreBuilder::new(ws);
    if !cfg.snapshots.exclude.ignore_gitignore {
        b.add(ws.join(".gitignore"));
    }
    for p in &cfg.snapshots.exclude.additional {
        let _ = b.add_line(None, p);
    }
    b.build()
        .unwrap_or_else(|_| ignore::gitignore::Gitignore::empty())
}

fn relevant(p: &Path, root: &Path, skip: &[PathBuf], ignore: &ignore::gitignore::Gitignore) -> bool {
    let Ok(rel) = p.strip_prefix(root) else {
        return false;
    };
    if rel.components().any(|c| c.as_os_str() == ".git") || skip.iter().any(|s| p.starts_with(s)) {
        return false;
    }
    if rel.file_name().is_some_and(|n| {
        std::os::unix::ffi::OsStrExt::as_bytes(n).starts_with(crate::worktree::materialize::TEMP_PREFIX)
    }) {
        return false;
    }
    !ignore.matched_path_or_any_parents(rel, p.is_dir()).is_ignore()
}

/// Reads a run's record.
pub fn load_info(runs_dir: &Path, id: &str) -> Result<RunInfo> {
    let path = run_dir(runs_dir, id).join("run.json");
    let data = std::fs::read(&path).at(&path)?;
    serde_json::from_slice(&data).map_err(|e| Error::corrupt(&path, "run record", e.to_string()))
}

/// Every run, oldest first.
pub fn list(runs_dir: &Path) -> Result<Vec<RunInfo>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(runs_dir).into_iter().flatten().flatten() {
        if let Some(info) = e.file_name().to_str().and_then(|id| load_info(runs_dir, id).ok()) {
            out.push(info);
        }
    }
    out.sort_by_key(|r| r.start_ns);
    Ok(out)
}

/// A run's exec events.
pub fn events(runs_dir: &Path, id: &str) -> Result<Vec<ExecEvent>> {
    let path = run_dir(runs_dir, id).join("exec.jsonl");
    let text = std::fs::read_to_string(&path).at(&path)?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}
