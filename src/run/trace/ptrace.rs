//! Linux tracer: ptrace of the run's own child tree. Works unprivileged and
//! in containers, and sees every exec with its argv, however short-lived,
//! because each traced process stops at exec (and the tracer sees it exit).
//!
//! Holding: a process whose program the holder names (a commit, a build)
//! gets `PTRACE_O_TRACEEXIT` at its exec stop, for it alone (its children
//! inherit it until they exec). At its exit stop, if it is exiting with
//! code 0, it is left stopped and the holder told; the loop keeps serving
//! every other tracee meanwhile (polling for releases instead of blocking
//! in waitpid), and resumes the held process when the holder releases it.
//! Its parent (the agent's shell) cannot see it exit before that.
//!
//! All ptrace requests come from the one thread that forked the child (the
//! tracer must be that thread), and it waits only for its own tracees
//! (`__WNOTHREAD`), never for children other threads of moat start. When
//! the command exits, held processes are released first; then background
//! processes it left running (a dev server, a daemon) are detached and run
//! on untraced, so `moat run` ends with its command; if moat dies, the
//! kernel detaches them too.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::ptrace::{self, Event, Options};
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::{EventSink, ExecEvent, Holder, Launch, MAX_HOLD, Release, Tracer, now_ns, split_argv};
use crate::format::snapshot::Trigger;

pub struct PtraceTracer {
    holder: Option<Arc<dyn Holder>>,
}

impl PtraceTracer {
    /// Checks that this process may trace its children (seccomp and Yama
    /// can forbid it) by tracing a child that exits at once.
    pub fn probe() -> Result<Self, String> {
        if std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").is_ok_and(|s| s.trim() == "3") {
            return Err("kernel.yama.ptrace_scope is 3 (ptrace disabled)".into());
        }
        // SAFETY: the child only calls async-signal-safe functions.
        match unsafe { libc::fork() } {
            -1 => Err(format!("fork failed: {}", Errno::last())),
            0 => unsafe {
                let ok = libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) == 0;
                libc::_exit(if ok { 0 } else { 1 })
            },
            pid => match waitpid(Pid::from_raw(pid), None) {
                Ok(WaitStatus::Exited(_, 0)) => Ok(PtraceTracer { holder: None }),
                Ok(_) => Err("PTRACE_TRACEME is refused here (seccomp or a security module)".into()),
                Err(e) => Err(format!("waitpid: {e}")),
            },
        }
    }
}

/// A program seen at exec, waiting for its exit.
struct Pending {
    event: ExecEvent,
}

/// Options every tracee has: follow the tree and stop at each exec. Only
/// a process whose program is a moment also stops at its exit.
const BASE: Options = Options::PTRACE_O_TRACEFORK
    .union(Options::PTRACE_O_TRACEVFORK)
    .union(Options::PTRACE_O_TRACECLONE)
    .union(Options::PTRACE_O_TRACEEXEC);

/// How often the loop looks for releases while a process is held (it
/// polls then, instead of blocking in waitpid, which nothing else wakes).
const POLL: Duration = Duration::from_micros(500);

/// How long the loop keeps polling after a stop before it sleeps in
/// waitpid. The next stop often follows within microseconds (a fork stops
/// parent and child, then the child execs and exits), and waking a
/// sleeping tracer was most of what tracing a short process cost: a loop of
/// 2,000 `/bin/true` ran 1.32x slower traced with blocking waits, 1.12x
/// with 200 µs of polling that yields the CPU to anything runnable
/// (`cargo bench --bench run`).
const SPIN: Duration = Duration::from_micros(200);

/// A process held at its exit.
struct Held {
    pid: i32,
    since: Instant,
    late: Arc<AtomicBool>,
}

struct State<'a> {
    sink: &'a EventSink,
    holder: Option<&'a dyn Holder>,
    parent: HashMap<i32, i32>,
    pending: HashMap<i32, Pending>,
    /// Pids whose first stop has been seen.
    known: HashSet<i32>,
    /// Pids running (or having run) a program the holder wants at exit.
    moments: HashMap<i32, Trigger>,
    /// Pids that stop at exit (set for a moment, or inherited from one).
    exit_stops: HashSet<i32>,
    held: HashMap<u64, Held>,
    next_hold: u64,
    tx: Sender<u64>,
    rx: Receiver<u64>,
}

impl State<'_> {
    /// A process exec'd: records its program and decides whether it is a
    /// moment to hold at its exit. Returns whether its working directory is
    /// still to be read: only a possible moment needs it before the process
    /// goes on (the workspace filter); for the rest it is read right after,
    /// off the path every exec waits on.
    fn on_exec(&mut self, pid: i32) -> bool {
        // A process that execs again ends its previous program.
        self.finish(pid, None);
        // The fork event of the parent may not have been handled yet (the
        // two stops race): then /proc, read while the process is stopped.
        let ppid = self
            .parent
            .get(&pid)
            .copied()
            .or_else(|| proc_ppid(pid))
            .unwrap_or(0);
        let mut event = argv_event(pid, ppid);
        let Some(h) = self.holder else {
            self.pending.insert(pid, Pending { event });
            return true;
        };
        // A moment stays one across later execs (`gradlew` execs java).
        let maybe = h.may_want(&event.command, &event.args);
        if maybe {
            event.working_dir = proc_cwd(pid);
            if let Some(t) = h.wants(&event) {
                self.moments.insert(pid, t);
            }
        }
        let want = self.moments.contains_key(&pid);
        if want != self.exit_stops.contains(&pid) {
            let opts = if want {
                BASE | Options::PTRACE_O_TRACEEXIT
            } else {
                BASE
            };
            if ptrace::setoptions(Pid::from_raw(pid), opts).is_ok() {
                if want {
                    self.exit_stops.insert(pid);
                } else {
                    self.exit_stops.remove(&pid);
                }
            }
        }
        self.pending.insert(pid, Pending { event });
        !maybe
    }

    /// Fills in the working directory of `pid`'s program (read after it
    /// was let go: a process gone by then keeps an empty one).
    fn read_cwd(&mut self, pid: i32) {
        if let Some(p) = self.pending.get_mut(&pid) {
            p.event.working_dir = proc_cwd(pid);
        }
    }

    /// A fork, vfork or clone: the child inherits the parent's options.
    fn on_fork(&mut self, parent: i32, child: i32) {
        self.parent.insert(child, parent);
        if self.exit_stops.contains(&parent) {
            self.exit_stops.insert(child);
        }
    }

    /// `pid` stopped at its exit: hold it when it is a moment that
    /// succeeded. Returns whether it is held.
    fn on_exit_stop(&mut self, pid: i32) -> bool {
        let status = ptrace::getevent(Pid::from_raw(pid)).unwrap_or(-1);
        let (Some(h), Some(&trigger)) = (self.holder, self.moments.get(&pid)) else {
            return false;
        };
        // The wait status: 0 is a normal exit with code 0.
        if status != 0 {
            return false;
        }
        let Some(event) = self.finish(pid, Some(0)) else {
            return false;
        };
        let id = self.next_hold;
        self.next_hold += 1;
        let late = Arc::new(AtomicBool::new(false));
        self.held.insert(
            id,
            Held {
                pid,
                since: Instant::now(),
                late: late.clone(),
            },
        );
        h.held(trigger, &event, Release::new(id, self.tx.clone(), late));
        true
    }

    /// Lets go of every process whose holder is done, and of any held
    /// longer than `MAX_HOLD` (its snapshot is then marked late).
    fn release_due(&mut self) {
        while let Ok(id) = self.rx.try_recv() {
            self.release(id);
        }
        let overdue: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, h)| h.since.elapsed() >= MAX_HOLD)
            .map(|(id, _)| *id)
            .collect();
        for id in overdue {
            if let Some(h) = self.held.get(&id) {
                h.late.store(true, Ordering::SeqCst);
            }
            self.release(id);
        }
    }

    fn release(&mut self, id: u64) {
        if let Some(h) = self.held.remove(&id) {
            let _ = ptrace::cont(Pid::from_raw(h.pid), None);
        }
    }

    /// A traced task exited.
    fn gone(&mut self, pid: i32, code: i32) {
        self.finish(pid, Some(code));
        self.known.remove(&pid);
        self.parent.remove(&pid);
        self.moments.remove(&pid);
        self.exit_stops.remove(&pid);
    }

    /// Ends the program `pid` runs: sends its event, and returns it.
    fn finish(&mut self, pid: i32, code: Option<i32>) -> Option<ExecEvent> {
        let Pending { mut event } = self.pending.remove(&pid)?;
        event.exit_code = code;
        event.duration = Some((now_ns() - event.timestamp).max(0) as u64);
        self.sink.send(event.clone());
        Some(event)
    }
}

/// An exec event for `pid`, read from /proc (argv and working dir).
pub(super) fn from_proc(pid: i32, ppid: i32) -> ExecEvent {
    ExecEvent {
        working_dir: proc_cwd(pid),
        ..argv_event(pid, ppid)
    }
}

/// An exec event for `pid` with its argv, working dir not read yet.
fn argv_event(pid: i32, ppid: i32) -> ExecEvent {
    let argv: Vec<Vec<u8>> = read_proc(&format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(<[u8]>::to_vec)
                .collect()
        })
        .unwrap_or_default();
    let (command, args) = split_argv(&argv);
    ExecEvent {
        timestamp: now_ns(),
        pid,
        ppid,
        command,
        args,
        working_dir: String::new(),
        exit_code: None,
        duration: None,
    }
}

fn proc_cwd(pid: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/cwd"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A small /proc file in as few system calls as it takes (open, reads,
/// close). This runs while a process is stopped at every exec;
/// `std::fs::read` also stats the file and starts with a 32-byte probe read.
fn read_proc(path: &str) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match f.read(&mut buf)? {
            0 => return Ok(out),
            n => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Field 4 of /proc/PID/stat (after the parenthesised command name).
fn proc_ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

fn cstr(b: &[u8]) -> std::io::Result<CString> {
    CString::new(b).map_err(|_| std::io::Error::other("argument contains a NUL byte"))
}

impl Tracer for PtraceTracer {
    fn name(&self) -> &'static str {
        "ptrace"
    }

    fn hold_with(&mut self, holder: Arc<dyn Holder>) -> bool {
        self.holder = Some(holder);
        true
    }

    fn run(
        self: Box<Self>,
        launch: &Launch,
        sink: &EventSink,
        started: &dyn Fn(i32),
    ) -> std::io::Result<i32> {
        let prog = cstr(launch.program.as_bytes())?;
        let mut argv = vec![prog.clone()];
        for a in &launch.args {
            argv.push(cstr(a.as_bytes())?);
        }
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let cwd = cstr(launch.cwd.as_os_str().as_bytes())?;
        // The environment is prepared before the fork: the child may not
        // allocate.
        let mut env: Vec<CString> = Vec::new();
        for (k, v) in std::env::vars_os() {
            if !launch.env.iter().any(|(ek, _)| *ek == k) {
                env.push(cstr(&[k.as_bytes(), b"=", v.as_bytes()].concat())?);
            }
        }
        for (k, v) in &launch.env {
            env.push(cstr(&[k.as_bytes(), b"=", v.as_bytes()].concat())?);
        }
        let cannot_run = format!(
            "moat: cannot run {}: not found or not executable\n",
            launch.program.to_string_lossy()
        );
        let mut env_ptrs: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
        env_ptrs.push(std::ptr::null());
        // SAFETY: between fork and exec the child calls only
        // async-signal-safe functions on memory prepared before the fork.
        let child = match unsafe { libc::fork() } {
            -1 => return Err(std::io::Error::last_os_error()),
            0 => unsafe {
                let mut empty: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut empty);
                libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
                // Rust's runtime ignores SIGPIPE, and an ignored signal
                // survives exec: CMD must start as a shell would start it
                // (std's Command does the same reset).
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 || libc::chdir(cwd.as_ptr()) != 0 {
                    libc::_exit(127);
                }
                libc::raise(libc::SIGSTOP);
                libc::execvpe(prog.as_ptr(), argv_ptrs.as_ptr(), env_ptrs.as_ptr());
                libc::write(2, cannot_run.as_ptr().cast(), cannot_run.len());
                libc::_exit(127)
            },
            pid => Pid::from_raw(pid),
        };
        started(child.as_raw());
        let io = |e: Errno| std::io::Error::from_raw_os_error(e as i32);
        match waitpid(child, None).map_err(io)? {
            WaitStatus::Stopped(_, Signal::SIGSTOP) => {}
            WaitStatus::Exited(_, code) => return Ok(code),
            other => return Err(std::io::Error::other(format!("unexpected first stop: {other:?}"))),
        }
        ptrace::setoptions(child, BASE).map_err(io)?;
        ptrace::cont(child, None).map_err(io)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let mut st = State {
            sink,
            holder: self.holder.as_deref(),
            parent: HashMap::new(),
            pending: HashMap::new(),
            known: Default::default(),
            moments: HashMap::new(),
            exit_stops: HashSet::new(),
            held: HashMap::new(),
            next_hold: 0,
            tx,
            rx,
        };
        st.known.insert(child.as_raw());
        st.parent.insert(child.as_raw(), std::process::id() as i32);
        trace_loop(&mut st, child)
    }
}

/// The wait flags: only this thread's tracees; `poll`: do not block (a
/// process is held and releases must be noticed, or the loop spins).
fn wait_flags(poll: bool) -> WaitPidFlag {
    let base = WaitPidFlag::__WALL | WaitPidFlag::__WNOTHREAD;
    if poll { base | WaitPidFlag::WNOHANG } else { base }
}

/// Services stops until the root has exited and nothing is held; returns
/// the root's code.
fn trace_loop(st: &mut State, root: Pid) -> std::io::Result<i32> {
    let mut root_code = None;
    let mut last_stop = Instant::now();
    loop {
        st.release_due();
        if let Some(code) = root_code
            && st.held.is_empty()
        {
            return detach_all(st, code);
        }
        let holding = !st.held.is_empty();
        let spinning = last_stop.elapsed() < SPIN;
        let status = match waitpid(Pid::from_raw(-1), Some(wait_flags(holding || spinning))) {
            Ok(WaitStatus::StillAlive) if spinning => {
                std::thread::yield_now();
                continue;
            }
            Ok(WaitStatus::StillAlive) => {
                if let Ok(id) = st.rx.recv_timeout(POLL) {
                    st.release(id);
                }
                continue;
            }
            Ok(s) => {
                last_stop = Instant::now();
                s
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => return Ok(root_code.unwrap_or(0)),
            Err(e) => return Err(std::io::Error::from_raw_os_error(e as i32)),
        };
        match status {
            WaitStatus::PtraceEvent(pid, _, ev) if ev == Event::PTRACE_EVENT_EXEC as i32 => {
                let cwd_later = st.on_exec(pid.as_raw());
                let _ = ptrace::cont(pid, None);
                if cwd_later {
                    st.read_cwd(pid.as_raw());
                }
            }
            WaitStatus::PtraceEvent(pid, _, ev) if ev == Event::PTRACE_EVENT_EXIT as i32 => {
                // A held process stays in its exit stop until released.
                let held = st.on_exit_stop(pid.as_raw());
                if !held {
                    let _ = ptrace::cont(pid, None);
                }
            }
            WaitStatus::PtraceEvent(pid, _, _) => {
                // fork, vfork or clone: remember the parent.
                if let Ok(new) = ptrace::getevent(pid) {
                    st.on_fork(pid.as_raw(), new as i32);
                }
                let _ = ptrace::cont(pid, None);
            }
            WaitStatus::Stopped(pid, sig) => {
                // A new child's first stop is not a signal for it.
                let inject = if sig == Signal::SIGSTOP && st.known.insert(pid.as_raw()) {
                    None
                } else {
                    Some(sig)
                };
                let _ = ptrace::cont(pid, inject);
            }
            WaitStatus::Exited(pid, code) => {
                st.gone(pid.as_raw(), code);
                if pid == root {
                    root_code = Some(code);
                }
            }
            WaitStatus::Signaled(pid, sig, _) => {
                st.gone(pid.as_raw(), 128 + sig as i32);
                if pid == root {
                    root_code = Some(128 + sig as i32);
                }
            }
            _ => {}
        }
    }
}

/// Lets every traced process that outlived the command go: stop it with
/// SIGSTOP, detach it in that stop (which swallows the SIGSTOP), and report
/// its program as still running. A child forked moments ago is not sent a
/// SIGSTOP: the kernel already sent it one (its first stop), and a second
/// would stay pending past the detach and stop it for good.
fn detach_all(st: &mut State, root_code: i32) -> std::io::Result<i32> {
    let mut left: std::collections::HashSet<i32> = st.known.iter().chain(st.parent.keys()).copied().collect();
    left.retain(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
    let mut detached = std::collections::HashSet::new();
    for tid in left.iter().filter(|t| st.known.contains(t)) {
        // SAFETY: tkill only sends a signal to a thread we trace.
        unsafe { libc::syscall(libc::SYS_tkill, *tid, libc::SIGSTOP) };
    }
    while !left.is_empty() {
        let status = match waitpid(Pid::from_raw(-1), Some(wait_flags(false))) {
            Ok(s) => s,
            Err(Errno::EINTR) => continue,
            Err(_) => break,
        };
        match status {
            WaitStatus::Stopped(pid, Signal::SIGSTOP) => {
                let _ = ptrace::detach(pid, None);
                left.remove(&pid.as_raw());
                detached.insert(pid.as_raw());
            }
            WaitStatus::Stopped(pid, sig) => {
                // Deliver the other signal; SIGCONT then discards our
                // still-pending SIGSTOP so the process is not left stopped.
                let _ = ptrace::detach(pid, Some(sig));
                let _ = nix::sys::signal::kill(pid, Signal::SIGCONT);
                left.remove(&pid.as_raw());
                detached.insert(pid.as_raw());
            }
            WaitStatus::PtraceEvent(pid, _, ev) => {
                let forked = [
                    Event::PTRACE_EVENT_FORK,
                    Event::PTRACE_EVENT_VFORK,
                    Event::PTRACE_EVENT_CLONE,
                ]
                .iter()
                .any(|e| *e as i32 == ev);
                if forked
                    && let Ok(new) = ptrace::getevent(pid)
                    && !detached.contains(&(new as i32))
                {
                    // A child forked just now: detached in its first stop.
                    left.insert(new as i32);
                }
                let _ = ptrace::cont(pid, None);
            }
            WaitStatus::Exited(pid, code) => {
                st.gone(pid.as_raw(), code);
                left.remove(&pid.as_raw());
            }
            WaitStatus::Signaled(pid, sig, _) => {
                st.gone(pid.as_raw(), 128 + sig as i32);
                left.remove(&pid.as_raw());
            }
            _ => {}
        }
    }
    // Programs still running: reported without an exit code.
    let running: Vec<i32> = st.pending.keys().copied().collect();
    for pid in running {
        st.finish(pid, None);
    }
    Ok(root_code)
}
