//! Running `moat mount` for the mount tests: the mount is ready once moat
//! prints its `mounted` line, and a guard unmounts it (`fusermount3 -u`,
//! else a lazy `umount -l`) and kills moat whatever the test does, so a
//! failing test leaves no mount behind. Where FUSE cannot be used (no
//! `/dev/fuse`, no permission to mount) the test prints `SKIPPED …: reason`
//! past the harness's capture and runs nothing that needs it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::Env;

pub struct Mounted {
    pub child: Option<Child>,
    pub dir: PathBuf,
    /// The mount command's stderr, collected until it exits.
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// Why FUSE cannot be used here, if it cannot.
fn unusable() -> Option<String> {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        return Some(format!("cannot open /dev/fuse: {e}"));
    }
    let root = nix::unistd::geteuid().is_root();
    let helper = ["fusermount3", "fusermount"].iter().any(|h| {
        std::process::Command::new(h)
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    (!root && !helper).then(|| "not root and no fusermount3 (install fuse3)".to_string())
}

/// Whether `dir` is a mount point, from `/proc/self/mountinfo` (not from
/// stat: a FUSE mount whose server died fails every stat with ENOTCONN,
/// and must count as still mounted).
pub fn is_mounted(dir: &Path) -> bool {
    let info = std::fs::read("/proc/self/mountinfo").expect("/proc/self/mountinfo");
    // The 5th field is the mount point, with space, tab, newline and
    // backslash written as octal escapes.
    // Canonical through the parent: the mount point itself may not stat.
    let dir = match (dir.parent().map(std::fs::canonicalize), dir.file_name()) {
        (Some(Ok(p)), Some(n)) => p.join(n),
        _ => dir.to_path_buf(),
    };
    let want: Vec<u8> = dir
        .as_os_str()
        .as_bytes()
        .iter()
        .flat_map(|&b| match b {
            b' ' | b'\t' | b'\n' | b'\\' => format!("\\{b:03o}").into_bytes(),
            _ => vec![b],
        })
        .collect();
    info.split(|&b| b == b'\n')
        .any(|line| line.split(|&b| b == b' ').nth(4) == Some(want.as_slice()))
}

/// Starts `moat mount ARGS DIR` in `cwd` and waits until it is mounted;
/// None (after saying why) where FUSE is unusable.
pub fn mount(test: &str, env: &Env, args: &[&str], dir: &Path, cwd: &Path) -> Option<Mounted> {
    if let Some(why) = unusable() {
        let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
        return None;
    }
    std::fs::create_dir_all(dir).expect("mount point");
    let mut child = env
        .cmd()
        .arg("mount")
        .args(args)
        .arg(dir)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn moat mount");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut s);
        s
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut m = Mounted {
        child: Some(child),
        dir: dir.to_path_buf(),
        stderr: Some(err),
    };
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.starts_with("mounted") => return Some(m),
            Ok(_) => continue,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("moat mount: not mounted after 60 s"),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = m.child.take().expect("child").wait().expect("wait");
                let err = m.stderr.take().expect("stderr").join().expect("stderr");
                if err.contains("cannot mount") && (err.contains("not permitted") || err.contains("denied")) {
                    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {}", err.trim());
                    return None;
                }
                panic!("moat mount ended before mounting ({status}):\n{err}");
            }
        }
    }
}

impl Mounted {
    /// Sends `sig` to moat and waits for it to end; returns its exit
    /// status and stderr. The guard stays, so the caller can check that
    /// moat itself unmounted before the guard's clean-up would.
    pub fn stop(&mut self, sig: i32) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::try_from(sig).expect("signal"),
        )
        .expect("kill");
        let status = super::wait_within_status(&mut child, 60);
        let err = self.stderr.take().expect("stderr").join().expect("stderr");
        (status, err)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if is_mounted(&self.dir) {
            let ok = std::process::Command::new("fusermount3")
                .arg("-u")
                .arg(&self.dir)
                .output()
                .is_ok_and(|o| o.status.success());
            if !ok {
                let _ = std::process::Command::new("umount")
                    .arg("-l")
                    .arg(&self.dir)
                    .output();
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
