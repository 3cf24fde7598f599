//! A filesystem with real reflinks for the clone tests: the directory in
//! `$MOAT_TEST_REFLINK_DIR` if set, else a loop-mounted XFS
//! (`mkfs.xfs -m reflink=1`) set up once per test process (needs root and
//! xfsprogs) and detached at exit. When neither is possible the tests that
//! need it print why, uncaptured, and run only their fallback half.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

static FS: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// A fresh empty directory on a reflink filesystem, or None after printing
/// (past the test harness's capture) why there is none.
pub fn dir(test: &str) -> Option<PathBuf> {
    super::loopfs::fresh_dir(
        FS.get_or_init(setup),
        test,
        &format!("the reflink half of {test}"),
    )
}

fn setup() -> Result<PathBuf, String> {
    if let Some(d) = std::env::var_os("MOAT_TEST_REFLINK_DIR").filter(|d| !d.is_empty()) {
        let d = PathBuf::from(d);
        probe(&d)?;
        return Ok(d);
    }
    let mnt = super::loopfs::mount("xfs", &["mkfs.xfs", "-q", "-m", "reflink=1"], 1 << 30, "xfsprogs")
        .map_err(|e| format!("{e} (or set MOAT_TEST_REFLINK_DIR to a btrfs or reflink XFS dir)"))?;
    probe(&mnt)?;
    Ok(mnt)
}

/// Proves a clone works in `dir`.
fn probe(dir: &Path) -> Result<(), String> {
    let (a, b) = (dir.join(".probe-a"), dir.join(".probe-b"));
    let _ = std::fs::remove_file(&b);
    std::fs::write(&a, b"probe").map_err(|e| format!("write in {}: {e}", dir.display()))?;
    let r = moat::worktree::clone::clone_file(&a, &b);
    let _ = (std::fs::remove_file(&a), std::fs::remove_file(&b));
    match r {
        Ok(moat::worktree::clone::Outcome::Cloned) => Ok(()),
        Ok(moat::worktree::clone::Outcome::Unsupported(why)) => {
            Err(format!("{} cannot clone: {why}", dir.display()))
        }
        Err(e) => Err(format!("clone probe in {} failed: {e}", dir.display())),
    }
}

/// Whether every extent of `path` is shared with another file (FIEMAP).
#[cfg(target_os = "linux")]
pub fn all_extents_shared(path: &Path) -> bool {
    const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
    const FIEMAP_FLAG_SYNC: u32 = 1;
    const FIEMAP_EXTENT_SHARED: u32 = 0x2000;
    const MAX: usize = 64;
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Extent {
        logical: u64,
        physical: u64,
        length: u64,
        reserved64: [u64; 2],
        flags: u32,
        reserved: [u32; 3],
    }
    #[repr(C)]
    struct Fiemap {
        start: u64,
        length: u64,
        flags: u32,
        mapped: u32,
        count: u32,
        reserved: u32,
        extents: [Extent; MAX],
    }
    let f = std::fs::File::open(path).expect("open for FIEMAP");
    let mut m = Fiemap {
        start: 0,
        length: u64::MAX,
        flags: FIEMAP_FLAG_SYNC,
        mapped: 0,
        count: MAX as u32,
        reserved: 0,
        extents: [Extent::default(); MAX],
    };
    use std::os::fd::AsRawFd;
    // SAFETY: `m` is a correctly laid out fiemap with room for MAX extents.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_FIEMAP as _, &mut m) };
    assert_eq!(
        r,
        0,
        "FIEMAP on {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    let n = m.mapped as usize;
    n > 0 && m.extents[..n].iter().all(|e| e.flags & FIEMAP_EXTENT_SHARED != 0)
}
