//! `moat run -- CMD`: run a command (an agent) in a workspace, trace what
//! its process tree executes, and take a snapshot at every moment that
//! matters: `pre-run` before CMD starts, `git-commit` and `build` when such
//! a command exits 0, `idle` once files changed and then stayed quiet for
//! `idle_threshold_seconds`, and `post-run` when CMD exits.
//!
//! The run watches the workspace itself (`watcher.rs`, started as the run
//! starts, without holding CMD back), so each snapshot once it is ready
//! costs what changed, and idle detection takes the same events. If it
//! cannot watch, the log says why and every snapshot walks the workspace.
//!
//! Invariants: each snapshot is the workspace at its moment. The pre-run
//! snapshot is staged before CMD starts (and ingested in the background
//! while CMD works). Under ptrace a successful commit or build is held at
//! its exit until its snapshot is staged (`snapper.rs`), so its parent
//! cannot run the next command in between; other tracers cannot hold, and
//! their commit and build snapshots are marked not exact. No moment is
//! dropped (`snapper.rs` coalesces, never debounces). Automatic snapshots
//! obey the growth guard. moat says nothing on CMD's terminal: what it did
//! goes to `runs/<id>/moat.log` (`log.rs`); it returns CMD's exit code. A
//! run is recorded under `$MOAT_HOME/runs/<id>/` (`run.json`, `exec.jsonl`,
//! `moat.log`). With `remote: {url, auto_push: true}` in `moat.yaml`, each
//! committed snapshot is pushed to that store by a background thread
//! (`push.rs`); a failed push is retried and logged, never fatal.
//!
//! Uses `ops`, `capture`, `worktree`, `store`, `format` and `util`.

mod idle;
pub mod log;
mod push;
mod snapper;
pub mod trace;
mod watcher;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::format::snapshot::Trigger;
use crate::store::Store;
use crate::util::fs as fsutil;
use crate::worktree::config::{Triggers, WorkspaceConfig};
use idle::IdleWatch;
pub use log::{Log, RunLog};
use snapper::{Moment, Snapper};
use trace::{EventSink, ExecEvent, Holder, Launch, Release};
use watcher::RunWatch;

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
    /// The snapshot of the state before the run (when it was taken).
    #[serde(default)]
    pub pre_run: Option<String>,
    /// How long each held process was held at its exit, ns, in order.
    #[serde(default)]
    pub holds_ns: Vec<u64>,
    pub dropped_events: u64,
}

pub struct RunOptions {
    /// The workspace root (canonical).
    pub workspace: PathBuf,
    /// Where CMD runs (the workspace or a directory inside it).
    pub cwd: PathBuf,
    pub config: WorkspaceConfig,
    pub program: std::ffi::OsString,
    pub args: Vec<std::ffi::OsString>,
    pub runs_dir: PathBuf,
    /// Stage snapshots by cloning (see `capture`).
    pub clone: bool,
    /// Lines for the run's log from before it started (which workspace,
    /// which config file).
    pub notes: Vec<String>,
}

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

/// Runs CMD under the tracer; returns its exit code. `live` receives every
/// log line as it happens (the CLI prints them with `--verbose`);
/// `child_pid` the command's pid (for signal forwarding).
pub fn run(store: &Store, opts: RunOptions, live: Log, child_pid: &AtomicI32) -> Result<i32> {
    let ws = crate::worktree::workspace_root(&opts.workspace)?;
    let id = new_run_id();
    let dir = run_dir(&opts.runs_dir, &id);
    std::fs::create_dir_all(&dir).at(&dir)?;
    let log = RunLog::create(&dir, live)?;
    for n in &opts.notes {
        log.line(n);
    }
    let mut command = vec![opts.program.to_string_lossy().into_owned()];
    command.extend(opts.args.iter().map(|a| a.to_string_lossy().into_owned()));
    let (mut tracer, tracer_log) = trace::pick(opts.config.tracing.disable_exec);
    for l in &tracer_log {
        log.line(l);
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
    log.line(&format!("run {id} in {}", ws.display()));

    let cfg = &opts.config;
    let snapshots = !cfg.snapshots.disabled;
    let (moments, moments_rx) = mpsc::channel::<Moment>();
    let wanted = Wanted {
        ws: ws.clone(),
        triggers: cfg.snapshots.triggers.clone(),
    };
    let holds = snapshots
        && tracer.hold_with(Arc::new(MomentHolder {
            tx: moments.clone(),
            wanted: wanted.clone(),
        }));
    if snapshots {
        log.line(match holds {
            true => "commits and builds are held at their exit until their snapshot is staged",
            false => "this tracer cannot hold processes: commit and build snapshots are taken after the fact",
        });
    }
    // The run's own watcher, so snapshots re-examine only what changed
    // (`watcher.rs`: started in the background; the pre-run snapshot waits
    // for it only briefly).
    // It leaves unwatched what the run's snapshots never walk.
    let ignoring = crate::worktree::watch::Ignoring::of(&cfg.walk_options(Default::default()));
    let watch = snapshots.then(|| RunWatch::start(store, &ws, ignoring));
    if let Some(w) = &watch {
        w.wait(watcher::PRE_RUN_WAIT);
        log_watch(w, &log);
    }
    let snapper = Snapper::new(
        store,
        ws.clone(),
        cfg.clone(),
        id.clone(),
        info.clone(),
        opts.clone,
        &log,
        background_pool(),
        watch.clone(),
    );
    let pre_run = (snapshots && !cfg.snapshots.triggers.disable_pre_run)
        .then(|| snapper.stage_first())
        .flatten();
    let env = vec![("MOAT_RUN_ID".into(), id.clone().into())];
    let launch = Launch {
        program: opts.program,
        args: opts.args,
        cwd: opts.cwd,
        env,
    };
    let (sink, events) = EventSink::channel(4096);
    let (ready, ready_rx) = mpsc::channel();
    if let Some(r) = pre_run {
        let _ = ready.send(r);
    }
    let exec_log = File::create(dir.join("exec.jsonl")).at(dir.join("exec.jsonl"))?;
    let code = std::thread::scope(|s| -> Result<i32> {
        let pusher = cfg.remote.as_ref().filter(|r| r.auto_push).map(|r| {
            let (tx, rx) = mpsc::channel();
            snapper.push_to(tx);
            log.line(&format!("pushing each snapshot to {} in the background", r.url));
            let push = push::AutoPush::new(store, PathBuf::from(&r.url), &log);
            s.spawn(move || push.serve(rx))
        });
        let ingester = s.spawn(|| snapper.ingest_all(ready_rx));
        let stager = s.spawn(|| snapper.stage_all(moments_rx, ready));
        let from_events = (snapshots && !holds).then(|| moments.clone());
        let consumer = s.spawn(move || consume(events, exec_log, &wanted, from_events));
        let traced = s.spawn(|| {
            let started = |pid: i32| child_pid.store(pid, Ordering::SeqCst);
            let r = tracer.run(&launch, &sink, &started);
            let dropped = sink.dropped();
            drop(sink);
            (r, dropped)
        });
        // Idle detection takes the watcher's events once it is settled (its
        // own watcher if the run's could not start).
        let mut idle_wanted = snapshots && !cfg.snapshots.triggers.disable_idle;
        let mut idle = None;
        let threshold = Duration::from_secs(cfg.snapshots.triggers.idle_threshold_seconds);
        while !traced.is_finished() {
            std::thread::sleep(Duration::from_millis(50));
            if let Some(w) = &watch {
                log_watch(w, &log);
            }
            if idle_wanted && watch.as_ref().is_none_or(|w| w.settled()) {
                idle_wanted = false;
                let hub = watch.as_ref().and_then(|w| w.hub());
                match IdleWatch::start(&ws, store.location(), &opts.runs_dir, cfg, hub.as_deref()) {
                    Ok(w) => idle = Some(w),
                    Err(e) => log.line(&format!(
                        "idle snapshots disabled: cannot watch the workspace: {e}"
                    )),
                }
            }
            if idle.as_ref().is_some_and(|w: &IdleWatch| w.quiet_for(threshold)) {
                let _ = moments.send(now(Trigger::Idle));
            }
        }
        if let Some(w) = &watch {
            log_watch(w, &log);
        }
        let (result, dropped) = traced
            .join()
            .map_err(|_| Error::io(&dir, std::io::Error::other("tracer panicked")))?;
        let code = result.map_err(|e| Error::io(&opts.workspace, e))?;
        let _ = consumer.join();
        if dropped > 0 {
            log.line(&format!(
                "warning: {dropped} exec events were dropped (the tracer outran moat)"
            ));
        }
        lock(&info).dropped_events = dropped;
        if snapshots {
            let _ = moments.send(now(Trigger::PostRun));
        }
        drop(moments);
        let _ = stager.join();
        let _ = ingester.join();
        snapper.close_pushes();
        if let Some(p) = pusher {
            let _ = p.join();
        }
        Ok(code)
    })?;
    let mut i = lock(&info);
    i.end_ns = Some(crate::util::now_ns());
    i.exit_code = Some(code);
    save_info(&dir, &i)?;
    log.line(&format!(
        "run {id} finished: exit code {code}, {} snapshots",
        i.snapshots.len()
    ));
    Ok(code)
}

/// Logs how starting the run's watcher went, once it has.
fn log_watch(w: &RunWatch, log: &RunLog) {
    if let Some(line) = w.take_line() {
        log.line(&line);
    }
}

/// A moment that is now (idle, the end of the run).
fn now(trigger: Trigger) -> Moment {
    Moment {
        trigger,
        exact: true,
        release: None,
        what: String::new(),
    }
}

/// Tells the tracer which processes to hold (commits and builds the
/// configuration wants, working in the workspace) and turns each held one
/// into a moment.
struct MomentHolder {
    tx: Sender<Moment>,
    wanted: Wanted,
}

/// Which finished programs are moments of this workspace.
#[derive(Clone)]
struct Wanted {
    ws: PathBuf,
    triggers: Triggers,
}

impl Wanted {
    /// A commit or build the configuration wants, wherever it works.
    fn kind(&self, command: &str, args: &[String]) -> Option<Trigger> {
        let t = &self.triggers;
        trace::moment(command, args).filter(|m| match m {
            Trigger::GitCommit => !t.disable_git_commits,
            Trigger::Build => !t.disable_builds,
            _ => false,
        })
    }

    /// A commit or build the configuration wants, working inside the
    /// workspace (a test suite committing in temp repositories is not a
    /// moment of this workspace).
    fn moment(&self, e: &ExecEvent) -> Option<Trigger> {
        let m = self.kind(&e.command, &e.args)?;
        let dir = trace::work_dir(Path::new(&e.working_dir), &e.command, &e.args);
        // An unknown working dir (a process gone before it was read) counts.
        (e.working_dir.is_empty() || dir.starts_with(&self.ws)).then_some(m)
    }
}

impl Holder for MomentHolder {
    fn may_want(&self, command: &str, args: &[String]) -> bool {
        self.wanted.kind(command, args).is_some()
    }

    fn wants(&self, event: &ExecEvent) -> Option<Trigger> {
        self.wanted.moment(event)
    }

    fn held(&self, trigger: Trigger, event: &ExecEvent, release: Release) {
        // If the stager is gone, the moment (and its release) is dropped,
        // which lets the process go.
        let _ = self.tx.send(Moment {
            trigger,
            exact: true,
            release: Some(release),
            what: describe(event),
        });
    }
}

/// `git commit -m x`, shortened for the log.
fn describe(e: &ExecEvent) -> String {
    let mut s = std::iter::once(e.command.as_str())
        .chain(e.args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    if s.len() > 80 {
        let mut cut = 77;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
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

/// Writes `exec.jsonl`; with a tracer that cannot hold, also turns
/// finished commits and builds into (not exact) moments.
fn consume(events: Receiver<ExecEvent>, out: File, wanted: &Wanted, moments: Option<Sender<Moment>>) {
    let mut out = std::io::BufWriter::new(out);
    let mut pause = CONSUME_EVERY;
    loop {
        // Polled, not waited on: a receiver blocked in `recv` is woken by
        // every event, which costs the tracer a system call per process
        // and this thread a wake-up. Quiet runs are polled less often.
        let mut done = false;
        pause = (pause * 2).min(CONSUME_EVERY * 16);
        loop {
            match events.try_recv() {
                Ok(ev) => {
                    pause = CONSUME_EVERY;
                    record(&ev, &mut out, wanted, moments.as_ref());
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    done = true;
                    break;
                }
            }
        }
        let _ = out.flush();
        if done {
            return;
        }
        std::thread::sleep(pause);
    }
}

/// How often the exec events are written out (and, with a tracer that
/// cannot hold, turned into moments) while processes run.
const CONSUME_EVERY: Duration = Duration::from_millis(10);

fn record(ev: &ExecEvent, out: &mut impl Write, wanted: &Wanted, moments: Option<&Sender<Moment>>) {
    if let Ok(line) = serde_json::to_string(ev) {
        let _ = writeln!(out, "{line}");
    }
    let Some(tx) = moments else { return };
    if ev.exit_code != Some(0) {
        return;
    }
    if let Some(trigger) = wanted.moment(ev) {
        let _ = tx.send(Moment {
            trigger,
            exact: false,
            release: None,
            what: describe(ev),
        });
    }
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
