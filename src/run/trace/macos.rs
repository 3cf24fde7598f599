//! macOS tracer: polls the process table (libproc over `KERN_PROC`) for
//! descendants of the command and reads each new one's argv with
//! `KERN_PROCARGS2`. Polling misses processes shorter than the interval and
//! sees no exit codes except the command's own; it needs no privileges.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::{EventSink, ExecEvent, Launch, Tracer, now_ns, split_argv};

const POLL: Duration = Duration::from_millis(20);

#[derive(Default)]
pub struct PollTracer;

/// (pid, ppid) of every process. The `libc` crate has no `kinfo_proc`
/// binding for macOS, so the table comes from libproc (the supported
/// interface over the same `KERN_PROC` data).
fn process_table() -> Vec<(i32, i32)> {
    // SAFETY: a null buffer asks for the number of pids.
    let n = unsafe { libc::proc_listallpids(std::ptr::null_mut(), 0) };
    if n <= 0 {
        return Vec::new();
    }
    let mut pids = vec![0i32; n as usize + 64];
    let bytes = (pids.len() * std::mem::size_of::<i32>()) as libc::c_int;
    // SAFETY: the buffer holds `bytes` bytes.
    let got = unsafe { libc::proc_listallpids(pids.as_mut_ptr().cast(), bytes) };
    pids.truncate(got.max(0) as usize);
    pids.into_iter()
        .filter_map(|pid| {
            // SAFETY: proc_bsdinfo is plain data; the call fills at most its size.
            let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
            let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
            let r = unsafe {
                libc::proc_pidinfo(
                    pid,
                    libc::PROC_PIDTBSDINFO,
                    0,
                    (&mut info as *mut libc::proc_bsdinfo).cast(),
                    size,
                )
            };
            (r == size).then_some((pid, info.pbi_ppid as i32))
        })
        .collect()
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
        let (mut child, root) = launch.spawn(started)?;
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
