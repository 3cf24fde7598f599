//! macOS tracer: polls the process table (`sysctl` `KERN_PROC_ALL`) for
//! descendants of the command and reads each new one's argv with
//! `KERN_PROCARGS2`. Polling misses processes shorter than the interval and
//! sees no exit codes except the command's own; it needs no privileges.

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::time::Duration;

use super::{EventSink, ExecEvent, Launch, Tracer, now_ns, split_argv};

const POLL: Duration = Duration::from_millis(20);

#[derive(Default)]
pub struct PollTracer;

/// (pid, ppid) of every process.
fn process_table() -> Vec<(i32, i32)> {
    let mut mib = [libc::CTL_KERN, libc::KERN_PROC, libc::KERN_PROC_ALL, 0];
    let mut size: libc::size_t = 0;
    // SAFETY: sysctl with a null buffer reports the size needed.
    let rc = unsafe {
        libc::sysctl(
            mib.as_mut_ptr(),
            3,
            std::ptr::null_mut(),
            &mut size,
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 {
        return Vec::new();
    }
    let n = size / std::mem::size_of::<libc::kinfo_proc>() + 16;
    let mut buf: Vec<libc::kinfo_proc> = Vec::with_capacity(n);
    let mut size = n * std::mem::size_of::<libc::kinfo_proc>();
    // SAFETY: the buffer holds `size` bytes; the kernel writes at most that.
    let rc = unsafe {
        libc::sysctl(
            mib.as_mut_ptr(),
            3,
            buf.as_mut_ptr().cast(),
            &mut size,
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 {
        return Vec::new();
    }
    // SAFETY: the kernel initialised `size` bytes of whole records.
    unsafe { buf.set_len(size / std::mem::size_of::<libc::kinfo_proc>()) };
    buf.iter().map(|p| (p.kp_proc.p_pid, p.kp_eproc.e_ppid)).collect()
}

/// argv of `pid` from `KERN_PROCARGS2` (argc, exec path, then argv).
fn argv_of(pid: i32) -> Vec<Vec<u8>> {
    let mut mib = [libc::CTL_KERN, libc::KERN_PROCARGS2, pid];
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = buf.len();
    // SAFETY: the buffer holds `size` bytes.
    let rc = unsafe {
        libc::sysctl(
            mib.as_mut_ptr(),
            3,
            buf.as_mut_ptr().cast(),
            &mut size,
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 || size < 4 {
        return Vec::new();
    }
    let argc = i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]).max(0) as usize;
    let rest = &buf[4..size];
    let after_path = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    rest[after_path..]
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .take(argc)
        .map(<[u8]>::to_vec)
        .collect()
}

impl Tracer for PollTracer {
    fn name(&self) -> &'static str {
        "sysctl-poll"
    }

    fn run(
        self: Box<Self>,
        launch: &Launch,
        sink: &EventSink,
        started: &dyn Fn(i32),
    ) -> std::io::Result<i32> {
        let mut child = launch.command().spawn()?;
        let root = child.id() as i32;
        started(root);
        let mut live: HashMap<i32, ExecEvent> = HashMap::new();
        let mut tree: HashSet<i32> = HashSet::from([root]);
        loop {
            let table = process_table();
            let present: HashSet<i32> = table.iter().map(|p| p.0).collect();
            for (pid, ppid) in &table {
                if tree.contains(ppid) && tree.insert(*pid) || (*pid == root && !live.contains_key(pid)) {
                    let (command, args) = split_argv(&argv_of(*pid));
                    live.insert(
                        *pid,
                        ExecEvent {
                            timestamp: now_ns(),
                            pid: *pid,
                            ppid: *ppid,
                            command,
                            args,
                            working_dir: launch.cwd.to_string_lossy().into_owned(),
                            exit_code: None,
                            duration: None,
                        },
                    );
                }
            }
            let gone: Vec<i32> = live
                .keys()
                .filter(|p| !present.contains(p) && **p != root)
                .copied()
                .collect();
            for pid in gone {
                if let Some(e) = live.remove(&pid) {
                    sink.send(ExecEvent {
                        duration: Some((now_ns() - e.timestamp).max(0) as u64),
                        ..e
                    });
                }
            }
            if let Some(status) = child.try_wait()? {
                let code = super::stub::exit_code(status);
                for (pid, e) in live.drain() {
                    let exit_code = (pid == root).then_some(code);
                    sink.send(ExecEvent {
                        exit_code,
                        duration: Some((now_ns() - e.timestamp).max(0) as u64),
                        ..e
                    });
                }
                return Ok(code);
            }
            std::thread::sleep(POLL);
        }
    }
}
