//! `moat run`, `moat runs`, `moat trace`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};

use clap::Args;
use moat::run::{self, RunOptions};
use moat::store::moat_home;
use moat::worktree::config;

use super::{Ctx, fmt, out};

#[derive(Args)]
pub struct RunArgs {
    /// Workspace to run in and snapshot [default: the repository or
    /// snapshotted workspace the current directory is in, where CMD then
    /// runs; else the current directory]
    #[arg(long)]
    workspace: Option<PathBuf>,
    /// Configuration file [default: moat.yaml or agent.yaml in the workspace]
    #[arg(long)]
    config: Option<PathBuf>,
    /// Snapshots read changed files directly instead of cloning them first
    /// (then the command waits for the whole pre-run snapshot)
    #[arg(long)]
    no_clone: bool,
    /// The command and its arguments
    #[arg(last = true, required = true, value_name = "CMD")]
    cmd: Vec<OsString>,
}

#[derive(Args)]
pub struct RunsArgs {
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct TraceArgs {
    /// Run id (or a unique prefix)
    run: String,
    #[arg(long)]
    json: bool,
}

static CHILD: AtomicI32 = AtomicI32::new(0);

/// Blocks the termination signals in this thread (and so in every thread
/// started later) and forwards them to the command from a thread of their
/// own. SIGINT and SIGQUIT typed at the terminal already reach the command
/// (same process group), so only those sent to moat itself are forwarded.
fn forward_signals() {
    // SAFETY: plain signal-mask and sigwaitinfo calls on local sets.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        std::thread::spawn(move || {
            loop {
                let (sig, from_tty) = wait_signal(&set);
                let pid = CHILD.load(Ordering::SeqCst);
                let typed = from_tty && (sig == libc::SIGINT || sig == libc::SIGQUIT);
                if sig > 0 && pid > 0 && !typed {
                    libc::kill(pid, sig);
                }
            }
        });
    }
}

/// The next blocked signal, and whether the kernel (a terminal) sent it.
#[cfg(target_os = "linux")]
fn wait_signal(set: &libc::sigset_t) -> (i32, bool) {
    // SAFETY: siginfo_t is plain data filled by sigwaitinfo.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let sig = libc::sigwaitinfo(set, &mut info);
        (sig, info.si_code == libc::SI_KERNEL)
    }
}

/// Without sigwaitinfo the sender is unknown: SIGINT and SIGQUIT are taken
/// to come from the terminal, which delivers them to the command itself.
#[cfg(not(target_os = "linux"))]
fn wait_signal(set: &libc::sigset_t) -> (i32, bool) {
    let mut sig = 0;
    // SAFETY: sigwait writes the signal number.
    unsafe { libc::sigwait(set, &mut sig) };
    (sig, true)
}

pub fn run_run(ctx: &Ctx, a: RunArgs) -> moat::Result<i32> {
    forward_signals();
    let store = ctx.open_or_create()?;
    // CMD runs in the workspace given, else where moat was started.
    let cwd = match &a.workspace {
        Some(w) => moat::worktree::workspace_root(w)?,
        None => moat::worktree::workspace_root(&PathBuf::from("."))?,
    };
    let (ws, why) = super::snapshot::choose_workspace(&store, a.workspace)?;
    // The run's snapshots walk by `config.walk_options`, as `scan` does.
    let rules = config::scan(&ws, a.config.as_deref(), Default::default())?;
    let mut notes = vec![why];
    if let Some(f) = &rules.file {
        notes.push(format!("config {}", out::quote_path(f)));
    }
    // moat says nothing on CMD's terminal unless asked: the run's log has
    // it. Whatever becomes of moat's stderr (`2>&1 | head -1`), the command
    // runs: these lines never fail.
    let live = |l: &str| {
        if ctx.verbose {
            errln!("moat: {l}");
        }
    };
    let mut cmd = a.cmd.into_iter();
    let program = cmd.next().unwrap_or_default();
    let opts = RunOptions {
        workspace: ws,
        cwd,
        notes,
        config: rules.config,
        program,
        args: cmd.collect(),
        runs_dir: moat_home()?.join("runs"),
        clone: !a.no_clone,
    };
    run::run(&store, opts, &live, &CHILD)
}

fn find_run(prefix: &str) -> moat::Result<run::RunInfo> {
    let runs = run::list(&moat_home()?.join("runs"))?;
    let hits: Vec<run::RunInfo> = runs.into_iter().filter(|r| r.id.starts_with(prefix)).collect();
    match hits.len() {
        1 => Ok(hits.into_iter().next().unwrap_or_default()),
        0 => Err(moat::Error::NoSuchSnapshot(format!("run {prefix}"))),
        _ => Err(moat::Error::AmbiguousSnapshot {
            prefix: prefix.into(),
            candidates: hits.iter().map(|r| r.id.clone()).collect::<Vec<_>>().join(", "),
        }),
    }
}

pub fn run_runs(_ctx: &Ctx, a: RunsArgs) -> moat::Result<i32> {
    let runs = run::list(&moat_home()?.join("runs"))?;
    if a.json {
        outln!("{}", serde_json::to_string(&runs).unwrap_or_default());
        return Ok(0);
    }
    outln!(
        "{:<12}  {:<19}  {:>4}  {:>5}  {:<12}  {:<14}  command",
        "id",
        "start (UTC)",
        "exit",
        "snaps",
        "pre-run",
        "tracer"
    );
    for r in runs {
        let exit = r.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "-".into());
        let pre = r.pre_run.as_deref().map_or("-", |p| &p[..p.len().min(12)]);
        outln!(
            "{:<12}  {:<19}  {:>4}  {:>5}  {:<12}  {:<14}  {}",
            r.id,
            fmt::time(r.start_ns),
            exit,
            r.snapshots.len(),
            pre,
            r.tracer,
            out::escape(&r.command.join(" "))
        );
    }
    Ok(0)
}

pub fn run_trace(_ctx: &Ctx, a: TraceArgs) -> moat::Result<i32> {
    let r = find_run(&a.run)?;
    let runs = moat_home()?.join("runs");
    let events = run::events(&runs, &r.id)?;
    if a.json {
        for e in &events {
            outln!("{}", serde_json::to_string(e).unwrap_or_default());
        }
        return Ok(0);
    }
    outln!(
        "{:<19}  {:>7}  {:>7}  {:>4}  {:>9}  command",
        "time (UTC)",
        "pid",
        "ppid",
        "exit",
        "ms"
    );
    for e in events {
        let exit = e.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "-".into());
        let ms = e
            .duration
            .map(|d| format!("{:.1}", d as f64 / 1e6))
            .unwrap_or_else(|| "-".into());
        outln!(
            "{:<19}  {:>7}  {:>7}  {:>4}  {:>9}  {} {}",
            fmt::time(e.timestamp),
            e.pid,
            e.ppid,
            exit,
            ms,
            out::escape(&e.command),
            out::escape(&e.args.join(" "))
        );
    }
    if let Some(log) = run::log::read(&run::run_dir(&runs, &r.id)) {
        outln!("\nwhat moat did ({}):", run::log::FILE_NAME);
        for line in log.lines() {
            outln!("{}", out::escape(line));
        }
    }
    Ok(0)
}
