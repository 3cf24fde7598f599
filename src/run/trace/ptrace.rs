//! Linux tracer: ptrace of the run's own child tree. Works unprivileged and
//! in containers, and sees every exec with its argv, however short-lived,
//! because each traced process stops at exec and at exit.
//!
//! All ptrace requests come from the one thread that forked the child (the
//! tracer must be that thread). When the command exits, background
//! processes it left running (a dev server, a daemon) are detached and run
//! on untraced, so `moat run` ends with its command; if moat dies, the
//! kernel detaches them too.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::sys::ptrace::{self, Event, Options};
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::{EventSink, ExecEvent, Launch, Tracer, now_ns, split_argv};

pub struct PtraceTracer;

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
                Ok(WaitStatus::Exited(_, 0)) => Ok(PtraceTracer),
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

struct State<'a> {
    sink: &'a EventSink,
    parent: HashMap<i32, i32>,
    pending: HashMap<i32, Pending>,
    /// Pids whose first stop has been seen.
    known: std::collections::HashSet<i32>,
}

impl State<'_> {
    fn on_exec(&mut self, pid: i32) {
        // A process that execs again ends its previous program.
        self.finish(pid, None);
        // The fork event of the parent may not have been handled yet (the
        // two stops race), so /proc, read while the process is stopped, wins.
        let ppid = proc_ppid(pid)
            .or_else(|| self.parent.get(&pid).copied())
            .unwrap_or(0);
        let event = from_proc(pid, ppid);
        self.pending.insert(pid, Pending { event });
    }

    /// A traced task exited.
    fn gone(&mut self, pid: i32, code: i32) {
        self.finish(pid, Some(code));
        self.known.remove(&pid);
        self.parent.remove(&pid);
    }

    fn finish(&mut self, pid: i32, code: Option<i32>) {
        if let Some(Pending { mut event }) = self.pending.remove(&pid) {
            event.exit_code = code;
            event.duration = Some((now_ns() - event.timestamp).max(0) as u64);
            self.sink.send(event);
        }
    }
}

/// An exec event for `pid`, read from /proc (argv and working dir).
pub(super) fn from_proc(pid: i32, ppid: i32) -> ExecEvent {
    let argv: Vec<Vec<u8>> = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(<[u8]>::to_vec)
                .collect()
        })
        .unwrap_or_default();
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).map(|p| p.to_string_lossy().into_owned());
    let (command, args) = split_argv(&argv);
    ExecEvent {
        timestamp: now_ns(),
        pid,
        ppid,
        command,
        args,
        working_dir: cwd.unwrap_or_default(),
        exit_code: None,
        duration: None,
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
        let opts = Options::PTRACE_O_TRACEFORK
            | Options::PTRACE_O_TRACEVFORK
            | Options::PTRACE_O_TRACECLONE
            | Options::PTRACE_O_TRACEEXEC;
        ptrace::setoptions(child, opts).map_err(io)?;
        ptrace::cont(child, None).map_err(io)?;
        let mut st = State {
            sink,
            parent: HashMap::new(),
            pending: HashMap::new(),
            known: Default::default(),
        };
        st.known.insert(child.as_raw());
        st.parent.insert(child.as_raw(), std::process::id() as i32);
        trace_loop(&mut st, child)
    }
}

/// Services stops until no traced process is left; returns the root's code.
fn trace_loop(st: &mut State, root: Pid) -> std::io::Result<i32> {
    let root_code = 0;
    loop {
        let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::__WALL)) {
            Ok(s) => s,
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => return Ok(root_code),
            Err(e) => return Err(std::io::Error::from_raw_os_error(e as i32)),
        };
        match status {
            WaitStatus::PtraceEvent(pid, _, ev) => {
                if ev == Event::PTRACE_EVENT_EXEC as i32 {
                    st.on_exec(pid.as_raw());
                } else if let Ok(new) = ptrace::getevent(pid) {
                    // fork, vfork or clone: remember the parent.
                    st.parent.insert(new as i32, pid.as_raw());
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
                    return detach_all(st, code);
                }
            }
            WaitStatus::Signaled(pid, sig, _) => {
                st.gone(pid.as_raw(), 128 + sig as i32);
                if pid == root {
                    return detach_all(st, 128 + sig as i32);
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
        let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::__WALL)) {
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
                if ev != Event::PTRACE_EVENT_EXEC as i32
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
