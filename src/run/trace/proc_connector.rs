//! Linux tracer: the kernel's proc connector (netlink `CN_IDX_PROC`). Needs
//! CAP_NET_ADMIN and the initial network namespace; elsewhere the kernel
//! refuses the subscription or silently sends nothing, which `subscribe`
//! detects and reports. Its exec events carry no argv, so argv is read from
//! /proc on arrival: a process that has already exited is reported with an
//! empty command. For `moat run`, ptrace is preferred for that reason.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;

use super::{EventSink, ExecEvent, Launch, Tracer, now_ns};

const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_EVENT_FORK: u32 = 0x1;
const PROC_EVENT_EXEC: u32 = 0x2;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;
const NLMSG_HDR: usize = 16;
const CN_MSG: usize = 20;

pub struct ProcConnector {
    sock: OwnedFd,
}

/// One decoded process event.
#[derive(Debug, PartialEq, Eq)]
pub enum ProcEvent {
    Fork { parent: i32, child: i32 },
    Exec { pid: i32 },
    Exit { pid: i32, code: i32 },
}

fn errno_msg(what: &str) -> String {
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => format!("{what}: {e} (needs CAP_NET_ADMIN)"),
        _ => format!("{what}: {e}"),
    }
}

impl ProcConnector {
    /// Opens, binds and subscribes; then proves events arrive by running
    /// `true` and waiting up to a second for its exec event.
    pub fn subscribe() -> Result<Self, String> {
        // SAFETY: plain socket syscalls on a descriptor we own.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_CONNECTOR,
            )
        };
        if fd < 0 {
            return Err(errno_msg("netlink socket"));
        }
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        addr.nl_groups = CN_IDX_PROC;
        addr.nl_pid = 0;
        let len = std::mem::size_of::<libc::sockaddr_nl>() as u32;
        if unsafe { libc::bind(fd, &addr as *const _ as *const libc::sockaddr, len) } != 0 {
            return Err(errno_msg("bind to the proc connector"));
        }
        let msg = listen_message();
        if unsafe { libc::send(fd, msg.as_ptr().cast(), msg.len(), 0) } < 0 {
            return Err(errno_msg("subscribe to process events"));
        }
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        let tvp = &tv as *const libc::timeval as *const libc::c_void;
        let tvl = std::mem::size_of::<libc::timeval>() as u32;
        unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, tvp, tvl) };
        let t = ProcConnector { sock };
        let probe = Command::new("true")
            .spawn()
            .map_err(|e| format!("spawn probe: {e}"))?;
        let probe_pid = probe.id() as i32;
        let mut probe = probe;
        let _ = probe.wait();
        for _ in 0..5 {
            for ev in t.recv().unwrap_or_default() {
                if matches!(ev, ProcEvent::Exec { pid } | ProcEvent::Exit { pid, .. } if pid == probe_pid) {
                    return Ok(t);
                }
            }
        }
        Err("subscribed, but no events arrive (not the initial network or PID namespace?)".into())
    }

    /// Receives one datagram and decodes every message in it.
    fn recv(&self) -> std::io::Result<Vec<ProcEvent>> {
        let mut buf = [0u8; 8192];
        let n = unsafe { libc::recv(self.sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(parse_datagram(&buf[..n as usize]))
    }
}

fn listen_message() -> Vec<u8> {
    let total = NLMSG_HDR + CN_MSG + 4;
    let mut m = Vec::with_capacity(total);
    m.extend_from_slice(&(total as u32).to_ne_bytes());
    m.extend_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes());
    m.extend_from_slice(&0u16.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&std::process::id().to_ne_bytes());
    for v in [CN_IDX_PROC, CN_VAL_PROC, 0, 0] {
        m.extend_from_slice(&v.to_ne_bytes());
    }
    m.extend_from_slice(&4u16.to_ne_bytes());
    m.extend_from_slice(&0u16.to_ne_bytes());
    m.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
    m
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Decodes every netlink message of a datagram (several may arrive in one).
pub fn parse_datagram(mut b: &[u8]) -> Vec<ProcEvent> {
    let mut out = Vec::new();
    while let Some(len) = u32_at(b, 0).map(|l| l as usize) {
        if len < NLMSG_HDR || len > b.len() {
            break;
        }
        // proc_event: what u32, cpu u32, timestamp u64, then the union.
        let ev = &b[NLMSG_HDR + CN_MSG.min(len - NLMSG_HDR)..len];
        let d = 16;
        let what = u32_at(ev, 0);
        let i = |k: usize| u32_at(ev, d + 4 * k).map(|v| v as i32);
        let parsed = match what {
            Some(PROC_EVENT_FORK) => i(1)
                .zip(i(3))
                .map(|(parent, child)| ProcEvent::Fork { parent, child }),
            Some(PROC_EVENT_EXEC) => i(1).map(|pid| ProcEvent::Exec { pid }),
            // A thread's exit (pid != tgid) is not the process's.
            Some(PROC_EVENT_EXIT) if i(0) != i(1) => None,
            Some(PROC_EVENT_EXIT) => i(1).zip(i(2)).map(|(pid, status)| ProcEvent::Exit {
                pid,
                code: if status & 0x7f == 0 {
                    (status >> 8) & 0xff
                } else {
                    128 + (status & 0x7f)
                },
            }),
            _ => None,
        };
        out.extend(parsed);
        let step = (len + 3) & !3;
        b = b.get(step..).unwrap_or_default();
    }
    out
}

impl Tracer for ProcConnector {
    fn name(&self) -> &'static str {
        "proc-connector"
    }

    fn run(
        self: Box<Self>,
        launch: &Launch,
        sink: &EventSink,
        started: &dyn Fn(i32),
    ) -> std::io::Result<i32> {
        let (mut child, root) = launch.spawn(started)?;
        let mut tree: HashSet<i32> = HashSet::from([root]);
        let mut parent: HashMap<i32, i32> = HashMap::from([(root, std::process::id() as i32)]);
        let mut pending: HashMap<i32, ExecEvent> = HashMap::new();
        let mut root_exited = None;
        let mut root_exec_seen = false;
        let mut quiet_rounds = 0;
        // The root's own exec may precede the subscription's view of it.
        pending.insert(root, exec_event(root, root_pid_parent(), Some(launch)));
        loop {
            let events = match self.recv() {
                Ok(e) => e,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    Vec::new()
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            quiet_rounds = if events.is_empty() { quiet_rounds + 1 } else { 0 };
            // Every few quiet seconds, forget pids whose exit was lost.
            if quiet_rounds % 10 == 9 {
                tree.retain(|p| alive(*p));
                let lost: Vec<i32> = pending.keys().filter(|p| !tree.contains(p)).copied().collect();
                for pid in lost {
                    if let Some(e) = pending.remove(&pid) {
                        sink.send(e);
                    }
                }
            }
            for ev in events {
                match ev {
                    ProcEvent::Fork { parent: p, child: c } if tree.contains(&p) => {
                        tree.insert(c);
                        parent.insert(c, p);
                    }
                    ProcEvent::Exec { pid } if pid == root && !root_exec_seen => {
                        // The root's own exec: already recorded from `launch`.
                        root_exec_seen = true;
                    }
                    ProcEvent::Exec { pid } if tree.contains(&pid) => {
                        let ppid = parent.get(&pid).copied().unwrap_or(0);
                        if let Some(prev) = pending.insert(pid, exec_event(pid, ppid, None)) {
                            sink.send(ExecEvent {
                                duration: Some((now_ns() - prev.timestamp) as u64),
                                ..prev
                            });
                        }
                    }
                    ProcEvent::Exit { pid, code } if tree.remove(&pid) => {
                        if let Some(e) = pending.remove(&pid) {
                            let duration = Some((now_ns() - e.timestamp).max(0) as u64);
                            sink.send(ExecEvent {
                                exit_code: Some(code),
                                duration,
                                ..e
                            });
                        }
                    }
                    _ => {}
                }
            }
            if root_exited.is_none()
                && let Some(status) = child.try_wait()?
            {
                root_exited = Some(super::stub::exit_code(status));
            }
            // Done when every traced exit has arrived, or when the rest are
            // dead and the socket has been quiet (their events were lost).
            let rest_dead = quiet_rounds >= 2 && tree.iter().all(|p| !alive(*p));
            if let Some(code) = root_exited.filter(|_| tree.is_empty() || rest_dead) {
                for (_, e) in pending.drain() {
                    sink.send(e);
                }
                return Ok(code);
            }
        }
    }
}

fn root_pid_parent() -> i32 {
    std::process::id() as i32
}

fn alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The root's event comes from what moat launched; others from /proc.
fn exec_event(pid: i32, ppid: i32, launch: Option<&Launch>) -> ExecEvent {
    let mut e = super::ptrace::from_proc(pid, ppid);
    if let Some(l) = launch {
        e.command = super::detect::basename(&l.program.to_string_lossy()).to_string();
        e.args = l.args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        e.working_dir = l.cwd.to_string_lossy().into_owned();
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(what: u32, data: &[u32]) -> Vec<u8> {
        let mut ev = Vec::new();
        ev.extend_from_slice(&what.to_ne_bytes());
        ev.extend_from_slice(&0u32.to_ne_bytes());
        ev.extend_from_slice(&0u64.to_ne_bytes());
        for d in data {
            ev.extend_from_slice(&d.to_ne_bytes());
        }
        let len = NLMSG_HDR + CN_MSG + ev.len();
        let mut m = (len as u32).to_ne_bytes().to_vec();
        m.resize(NLMSG_HDR + CN_MSG, 0);
        m.extend(ev);
        m
    }

    #[test]
    fn parses_every_message_of_a_datagram() {
        let mut d = message(PROC_EVENT_FORK, &[10, 10, 11, 11]);
        d.extend(message(PROC_EVENT_EXEC, &[11, 11]));
        d.extend(message(PROC_EVENT_EXIT, &[11, 11, 3 << 8, 17]));
        d.extend(message(PROC_EVENT_EXIT, &[12, 12, 9, 17]));
        assert_eq!(
            parse_datagram(&d),
            vec![
                ProcEvent::Fork {
                    parent: 10,
                    child: 11
                },
                ProcEvent::Exec { pid: 11 },
                ProcEvent::Exit { pid: 11, code: 3 },
                ProcEvent::Exit {
                    pid: 12,
                    code: 128 + 9
                },
            ]
        );
        assert!(parse_datagram(&d[..10]).is_empty());
    }
}
