//! A small tmpfs per test, for a real full disk: mounted in `mount`,
//! unmounted (lazily, so an open file cannot keep it busy) on drop. Needs
//! root on Linux; elsewhere `mount` prints `SKIPPED …: reason` past the
//! test harness's capture and returns None, so the caller runs what it can.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static N: AtomicU64 = AtomicU64::new(0);

pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    /// A fresh tmpfs of `bytes` bytes, or None after saying why not.
    pub fn mount(test: &str, bytes: u64) -> Option<Tmpfs> {
        match Self::try_mount(test, bytes) {
            Ok(t) => Some(t),
            Err(why) => {
                let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
                None
            }
        }
    }

    #[cfg(target_os = "linux")]
    fn try_mount(test: &str, bytes: u64) -> Result<Tmpfs, String> {
        use std::ffi::CString;
        if !nix::unistd::geteuid().is_root() {
            return Err("not root, so no tmpfs mount for a real full disk".into());
        }
        let path = std::env::temp_dir().join(format!(
            "moat-tmpfs-{}-{test}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).map_err(|e| format!("create {}: {e}", path.display()))?;
        let c = |s: &str| CString::new(s).map_err(|e| e.to_string());
        let (src, dst, fstype) = (
            c("tmpfs")?,
            c(path.to_str().ok_or("non-UTF-8 temp dir")?)?,
            c("tmpfs")?,
        );
        let opts = c(&format!("size={bytes},mode=0755"))?;
        // SAFETY: valid C strings; the data argument is tmpfs's option string.
        let r = unsafe {
            libc::mount(
                src.as_ptr(),
                dst.as_ptr(),
                fstype.as_ptr(),
                0,
                opts.as_ptr().cast(),
            )
        };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            let _ = std::fs::remove_dir(&path);
            return Err(format!("mount tmpfs on {}: {e}", path.display()));
        }
        Ok(Tmpfs { path })
    }

    #[cfg(not(target_os = "linux"))]
    fn try_mount(_: &str, _: u64) -> Result<Tmpfs, String> {
        Err("tmpfs mounts are Linux only".into())
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }

    fn filler(&self) -> PathBuf {
        self.path.join("filler")
    }

    /// Fills the filesystem to the last byte (the filler file grows until
    /// the kernel says ENOSPC).
    pub fn fill(&self) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.filler())
            .expect("open filler");
        let block = vec![0xa5u8; 64 << 10];
        for len in [64 << 10, 4096, 512, 1] {
            loop {
                match f.write(&block[..len]) {
                    Ok(n) if n > 0 => continue,
                    Ok(_) => break,
                    Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                    Err(e) => panic!("fill {}: {e}", self.path.display()),
                }
            }
        }
        assert_eq!(self.free_bytes(), 0, "the tmpfs should be full");
    }

    /// Fills the filesystem, then frees `bytes` of it again.
    pub fn fill_leaving(&self, bytes: u64) {
        self.fill();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(self.filler())
            .expect("open filler");
        let len = f.metadata().expect("stat filler").len();
        f.set_len(len.saturating_sub(bytes)).expect("shrink filler");
    }

    /// Removes the filler: the space `fill` took is free again.
    pub fn free(&self) {
        let _ = std::fs::remove_file(self.filler());
    }

    pub fn free_bytes(&self) -> u64 {
        let s = nix::sys::statvfs::statvfs(&self.path).expect("statvfs");
        s.blocks_available() as u64 * s.fragment_size() as u64
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        umount(&self.path);
        let _ = std::fs::remove_dir(&self.path);
    }
}

#[cfg(target_os = "linux")]
fn umount(path: &Path) {
    if let Some(c) = path.to_str().and_then(|s| std::ffi::CString::new(s).ok()) {
        // SAFETY: a valid C string; MNT_DETACH never blocks.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

#[cfg(not(target_os = "linux"))]
fn umount(_: &Path) {}
