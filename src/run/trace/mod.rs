//! Exec tracing: what a run's process tree executes, and when each process
//! exits with which code. One portable trait (`Tracer`) in front of the
//! platform tracers:
//!
//! - `ptrace` (Linux, unprivileged): traces the child tree it starts with
//!   `PTRACE_O_TRACEFORK|TRACEEXEC`; sees every exec with its argv, however
//!   short-lived, and is the one tracer that can *hold* a process: a
//!   program its `Holder` names (a commit, a build) also stops at its exit
//!   (`PTRACE_O_TRACEEXIT`, set for that process alone), and stays there
//!   until the holder releases it. Best for `moat run`.
//! - `proc_connector` (Linux, needs CAP_NET_ADMIN in the initial network
//!   namespace): netlink `CN_IDX_PROC` events; reads argv from /proc on
//!   arrival, which fails for processes that exit at once.
//! - `macos` (`KERN_PROC` sysctl polling) and `stub` (the root process only).
//!
//! Invariant: the traced program is never blocked by moat except where a
//! holder asked for it: events go through a bounded channel with
//! `try_send`, and overflow is counted, not waited on; a held process is
//! released when its holder says so, when the `Release` is dropped, or
//! after `MAX_HOLD` at the latest.

pub mod detect;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "linux")]
pub mod proc_connector;
#[cfg(target_os = "linux")]
pub mod ptrace;
mod stub;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::format::snapshot::Trigger;
pub use detect::{is_build, is_git_commit, moment, work_dir};
pub use stub::StubTracer;

/// One program run by the traced tree (one line of `exec.jsonl`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecEvent {
    /// When the program started (exec), ns since the epoch.
    pub timestamp: i64,
    pub pid: i32,
    pub ppid: i32,
    /// Basename of argv[0].
    pub command: String,
    /// argv[1..].
    pub args: Vec<String>,
    pub working_dir: String,
    /// Exit code (128 + signal when killed); `None` if it exec'd another
    /// program or was not seen exiting.
    pub exit_code: Option<i32>,
    /// ns from exec to exit.
    pub duration: Option<u64>,
}

/// Where tracers put events: bounded, never blocking.
pub struct EventSink {
    tx: SyncSender<ExecEvent>,
    dropped: AtomicU64,
}

impl EventSink {
    pub fn channel(capacity: usize) -> (EventSink, Receiver<ExecEvent>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
        (
            EventSink {
                tx,
                dropped: AtomicU64::new(0),
            },
            rx,
        )
    }

    pub fn send(&self, ev: ExecEvent) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(ev) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Events lost because the consumer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The command to run and trace.
#[derive(Clone, Debug)]
pub struct Launch {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub cwd: PathBuf,
    /// Variables added to the command's environment.
    pub env: Vec<(OsString, OsString)>,
}

impl Launch {
    /// A `std::process::Command` for tracers that spawn normally.
    pub fn command(&self) -> std::process::Command {
        let mut c = std::process::Command::new(&self.program);
        c.args(&self.args)
            .current_dir(&self.cwd)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Spawns the command normally and reports its pid to `started`.
    pub fn spawn(&self, started: &dyn Fn(i32)) -> std::io::Result<(std::process::Child, i32)> {
        let child = self.command().spawn()?;
        let pid = child.id() as i32;
        started(pid);
        Ok((child, pid))
    }
}

/// The longest a process is held: then it is let go, and the snapshot it
/// waited for is marked as not exact (a store locked by `gc`, a huge
/// change to read).
pub const MAX_HOLD: Duration = Duration::from_secs(10);

/// Who decides which processes a tracer holds at their exit, and hears of
/// each one held.
pub trait Holder: Send + Sync {
    /// Whether a program (command basename, arguments) may be a moment:
    /// a cheap first look, before its working directory is known.
    fn may_want(&self, command: &str, args: &[String]) -> bool;
    /// The moment a program (its exec event, with its working directory)
    /// names, if its successful exit is one.
    fn wants(&self, event: &ExecEvent) -> Option<Trigger>;
    /// `event` exited 0 and its process is held until `release` is
    /// released or dropped. Must not block.
    fn held(&self, trigger: Trigger, event: &ExecEvent, release: Release);
}

/// A held process, as its holder sees it: dropping (or `release`) lets it go.
pub struct Release {
    id: u64,
    tx: Sender<u64>,
    since: Instant,
    late: Arc<AtomicBool>,
}

impl Release {
    /// Made by the tracer that holds the process.
    pub fn new(id: u64, tx: Sender<u64>, late: Arc<AtomicBool>) -> Self {
        Release {
            id,
            tx,
            since: Instant::now(),
            late,
        }
    }

    /// Lets the process go; returns how long it was held.
    pub fn release(self) -> Duration {
        self.since.elapsed()
    }

    /// True once the tracer has let the process go without waiting any
    /// longer (`MAX_HOLD`, or the tracer ended).
    pub fn too_late(&self) -> bool {
        self.late.load(Ordering::SeqCst)
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = self.tx.send(self.id);
    }
}

pub trait Tracer: Send {
    fn name(&self) -> &'static str;
    /// Hands the tracer a holder; true if it will hold the processes the
    /// holder names (only ptrace can).
    fn hold_with(&mut self, _holder: Arc<dyn Holder>) -> bool {
        false
    }
    /// Runs the command to completion, sending an event as each traced
    /// program exits. `started` receives the root pid once it runs (for
    /// signal forwarding). Returns the command's exit code.
    fn run(self: Box<Self>, launch: &Launch, sink: &EventSink, started: &dyn Fn(i32))
    -> std::io::Result<i32>;
}

/// The best tracer available, and one log line per tracer considered.
pub fn pick(disabled: bool) -> (Box<dyn Tracer>, Vec<String>) {
    let mut log = Vec::new();
    if disabled {
        log.push("exec tracing disabled by configuration".to_string());
        return (Box::new(StubTracer), log);
    }
    #[cfg(target_os = "linux")]
    {
        match ptrace::PtraceTracer::probe() {
            Ok(t) => {
                log.push("tracer: ptrace of the child tree".into());
                return (Box::new(t), log);
            }
            Err(why) => log.push(format!("tracer ptrace unavailable: {why}")),
        }
        match proc_connector::ProcConnector::subscribe() {
            Ok(t) => {
                log.push("tracer: proc connector".into());
                return (Box::new(t), log);
            }
            Err(why) => log.push(format!("tracer proc connector unavailable: {why}")),
        }
    }
    #[cfg(target_os = "macos")]
    {
        log.push("tracer: sysctl KERN_PROC polling".into());
        return (Box::new(macos::PollTracer), log);
    }
    #[allow(unreachable_code)]
    {
        log.push("tracer: none available; only the command itself is seen".into());
        (Box::new(StubTracer), log)
    }
}

pub fn now_ns() -> i64 {
    crate::util::now_ns()
}

/// argv as UTF-8 strings (lossy), split into basename command and args.
pub fn split_argv(argv: &[Vec<u8>]) -> (String, Vec<String>) {
    let s = |b: &Vec<u8>| String::from_utf8_lossy(b).into_owned();
    let cmd = argv.first().map(s).unwrap_or_default();
    (
        detect::basename(&cmd).to_string(),
        argv.iter().skip(1).map(s).collect(),
    )
}
