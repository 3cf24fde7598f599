//! Loop-mounted filesystems for the tests that need one of a particular
//! kind (reflinks, whole-second timestamps): an image in the temp dir,
//! formatted and mounted when first asked for (needs root on Linux) and
//! detached when the test process exits.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

static N: AtomicU64 = AtomicU64::new(0);

/// Image dirs to detach and remove at exit (`<base>/mnt` is the mount).
static MOUNTS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Formats a `size`-byte image with `mkfs` (the program and its options;
/// the image path is appended), mounts it and returns the mount point.
/// `name` tells this process's mounts apart; `package` is what to install
/// when `mkfs` is missing.
pub fn mount(name: &str, mkfs: &[&str], size: u64, package: &str) -> Result<PathBuf, String> {
    if cfg!(not(target_os = "linux")) {
        return Err("loop mounts are Linux only".into());
    }
    if !nix::unistd::geteuid().is_root() {
        return Err("not root, so no loop mount".into());
    }
    let base = std::env::temp_dir().join(format!("moat-{name}-{}", std::process::id()));
    let (img, mnt) = (base.join("fs.img"), base.join("mnt"));
    std::fs::create_dir_all(&mnt).map_err(|e| format!("create {}: {e}", mnt.display()))?;
    let f = std::fs::File::create(&img).map_err(|e| format!("create {}: {e}", img.display()))?;
    f.set_len(size)
        .map_err(|e| format!("size {}: {e}", img.display()))?;
    let (prog, opts) = mkfs.split_first().ok_or("no mkfs given")?;
    let mut args = opts.to_vec();
    args.push(path(&img));
    run(prog, &args, package)?;
    run("mount", &["-o", "loop", path(&img), path(&mnt)], "mount")?;
    let mut mounts = MOUNTS.lock().unwrap_or_else(|p| p.into_inner());
    if mounts.is_empty() {
        #[cfg(target_os = "linux")]
        // SAFETY: registers a plain extern "C" function.
        unsafe {
            libc::atexit(unmount_all)
        };
    }
    mounts.push(base);
    Ok(mnt)
}

#[cfg(target_os = "linux")]
extern "C" fn unmount_all() {
    let mounts = MOUNTS.lock().unwrap_or_else(|p| p.into_inner());
    for base in mounts.iter() {
        if let Ok(c) = std::ffi::CString::new(path(&base.join("mnt"))) {
            // SAFETY: a valid C string; MNT_DETACH never blocks.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            let _ = std::fs::remove_dir_all(base);
        }
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn run(cmd: &str, args: &[&str], package: &str) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd} could not run ({e}); install {package}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A fresh empty directory for `test` below `fs` (a mount point, or why
/// there is none), or None after printing (past the test harness's
/// capture) `SKIPPED <what>: <why>`.
pub fn fresh_dir(fs: &Result<PathBuf, String>, test: &str, what: &str) -> Option<PathBuf> {
    match fs {
        Ok(root) => {
            let n = N.fetch_add(1, Ordering::Relaxed);
            let d = root.join(format!("{}-{test}-{n}", std::process::id()));
            std::fs::create_dir_all(&d).expect("create a test dir on the mounted filesystem");
            Some(d)
        }
        Err(why) => {
            let _ = writeln!(std::io::stderr(), "SKIPPED {what}: {why}");
            None
        }
    }
}
