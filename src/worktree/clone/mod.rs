//! Copy-on-write cloning: make a file share another's data blocks instead
//! of copying them (APFS `clonefile`, Linux `FICLONE` on btrfs, XFS with
//! reflink and bcachefs), with plain copies as the fallback.
//!
//! moat uses clones in two places: `capture` stages the files it is about to
//! read (a clone is a point-in-time copy, so the workspace may change while
//! the copy is ingested), and `restore`/`rollback` clone content that is
//! already on the target filesystem instead of decompressing it.
//!
//! Invariants: a clone either succeeds or reports `Unsupported` with nothing
//! left at the destination, so callers can always fall back. Destinations
//! are created exclusively and never through a symlink. Platform code lives
//! in `linux.rs` and `macos.rs`; every other OS reports `Unsupported`.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{IoContext, Result};

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as platform;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
use macos as platform;
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
mod other;
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
use other as platform;

/// What a clone attempt did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The destination exists and shares the source's blocks.
    Cloned,
    /// The filesystem (or OS) cannot clone here; nothing was created.
    Unsupported(String),
}

/// How `copy_file` copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// A copy-on-write clone: no data copied.
    Clone,
    /// An in-kernel copy (`copy_file_range`), no round trip through moat.
    CopyRange,
    /// A buffered read/write copy.
    Copy,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Clone => "clone",
            Method::CopyRange => "copy_file_range",
            Method::Copy => "buffered copy",
        }
    }
}

/// The seam between moat and the OS's clone call, so tests (and
/// `--no-clone`) can run every caller down its fallback path.
pub trait Cloner: Send + Sync {
    /// Clones the open regular file `src` to a new file at `dst`, which
    /// must not exist. `Unsupported` leaves nothing at `dst`.
    fn clone_open(&self, src: &File, dst: &Path) -> Result<Outcome>;
    /// The name shown in verbose output.
    fn name(&self) -> &'static str;
}

/// The OS's clone call.
pub struct SystemCloner;

impl Cloner for SystemCloner {
    fn clone_open(&self, src: &File, dst: &Path) -> Result<Outcome> {
        platform::clone_open(src, dst).at(dst)
    }

    fn name(&self) -> &'static str {
        platform::NAME
    }
}

/// Never clones: every caller takes its fallback path.
pub struct NoCloner;

impl Cloner for NoCloner {
    fn clone_open(&self, _src: &File, _dst: &Path) -> Result<Outcome> {
        Ok(Outcome::Unsupported("cloning is turned off (--no-clone)".into()))
    }

    fn name(&self) -> &'static str {
        "none"
    }
}

/// The cloner to use: the OS's, or none when cloning is turned off.
pub fn cloner(enabled: bool) -> &'static dyn Cloner {
    if enabled { &SystemCloner } else { &NoCloner }
}

/// Opens a file to clone or copy from: a regular file only, never through
/// a symlink, never waiting on a FIFO swapped in for it.
pub fn open_source(src: &Path) -> Result<File> {
    crate::util::fs::open_regular(src, false).map(|(f, _)| f).at(src)
}

/// Opens `rel` (a `/`-separated path) below the directory `dir` for
/// reading, never through a symlink and never outside `dir`: one
/// `openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS)` on Linux, else (or where
/// that call is missing) one `openat(O_NOFOLLOW)` per component. Opened
/// non-blocking, so a FIFO in the way cannot hang the caller.
pub fn open_beneath(dir: &Path, rel: &[u8]) -> std::io::Result<File> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a plain relative path");
    let comps: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
    if comps.iter().any(|c| crate::format::tree::bad_name(c).is_some()) {
        return Err(bad());
    }
    let root = File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)?;
    match platform::open_beneath(&root, rel) {
        Some(r) => r,
        None => open_by_components(root, &comps),
    }
}

/// `open_beneath` without `openat2`: one `openat(O_NOFOLLOW)` per
/// component below `root`, each but the last a directory.
fn open_by_components(root: File, comps: &[&[u8]]) -> std::io::Result<File> {
    use std::os::fd::AsFd;
    let mut cur: std::os::fd::OwnedFd = root.into();
    for (i, c) in comps.iter().enumerate() {
        use nix::fcntl::OFlag;
        let last = i + 1 == comps.len();
        let flags = OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_CLOEXEC
            | if last {
                OFlag::O_NONBLOCK | OFlag::O_NOCTTY
            } else {
                OFlag::O_DIRECTORY
            };
        let name = std::ffi::OsStr::from_bytes(c);
        cur = nix::fcntl::openat(cur.as_fd(), name, flags, nix::sys::stat::Mode::empty())?;
    }
    Ok(File::from(cur))
}

/// Clones file `src` to a new file `dst`.
pub fn clone_file(src: &Path, dst: &Path) -> Result<Outcome> {
    SystemCloner.clone_open(&open_source(src)?, dst)
}

/// Clones the directory tree `src` to `dst` in one call where the OS offers
/// it (macOS `clonefile`); elsewhere `Unsupported`.
pub fn clone_dir(src: &Path, dst: &Path) -> Result<Outcome> {
    platform::clone_dir(src, dst).at(dst)
}

/// Copies file `src` to a new file `dst` the cheapest way available: a
/// clone, else an in-kernel copy, else a buffered copy.
pub fn copy_file(src: &Path, dst: &Path) -> Result<Method> {
    let from = open_source(src)?;
    if SystemCloner.clone_open(&from, dst)? == Outcome::Cloned {
        return Ok(Method::Clone);
    }
    let mut to = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dst)
        .at(dst)?;
    let res = (|| {
        let len = from.metadata().at(src)?.len();
        if platform::copy_range(&from, &to, len).at(dst)? {
            return Ok(Method::CopyRange);
        }
        buffered_copy(&from, &mut to).at(dst)?;
        Ok(Method::Copy)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(dst);
    }
    res
}

fn buffered_copy(mut from: &File, to: &mut File) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n])?;
    }
}

/// Errors that mean "this filesystem or pair of files cannot clone", as
/// opposed to a real failure (permissions, I/O, space).
pub fn is_unsupported(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::EXDEV | libc::EINVAL | libc::ENOTTY | libc::ENOSYS)
    ) || e.raw_os_error() == Some(libc::ENOTSUP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_leaves_nothing_and_copy_falls_back() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::write(&src, vec![7u8; 300_000]).unwrap();
        let dst = d.path().join("dst");
        let out = NoCloner.clone_open(&open_source(&src).unwrap(), &dst).unwrap();
        assert!(matches!(out, Outcome::Unsupported(_)));
        assert!(std::fs::symlink_metadata(&dst).is_err());
        // Whatever this filesystem supports, the copy is exact.
        let m = copy_file(&src, &dst).unwrap();
        assert_eq!(
            std::fs::read(&dst).unwrap(),
            std::fs::read(&src).unwrap(),
            "{m:?}"
        );
    }

    #[test]
    fn system_clone_is_exact_or_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::write(&src, b"hello clone").unwrap();
        let dst = d.path().join("dst");
        match clone_file(&src, &dst).unwrap() {
            Outcome::Cloned => assert_eq!(std::fs::read(&dst).unwrap(), b"hello clone"),
            Outcome::Unsupported(_) => assert!(std::fs::symlink_metadata(&dst).is_err()),
        }
    }

    #[test]
    fn never_through_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::write(&src, b"x").unwrap();
        let outside = d.path().join("outside");
        std::os::unix::fs::symlink(&outside, d.path().join("dst")).unwrap();
        assert!(clone_file(&src, &d.path().join("dst")).is_err());
        assert!(copy_file(&src, &d.path().join("dst")).is_err());
        assert!(!outside.exists());
        std::os::unix::fs::symlink(&src, d.path().join("link")).unwrap();
        assert!(clone_file(&d.path().join("link"), &d.path().join("dst2")).is_err());
    }

    #[test]
    fn a_fifo_source_is_refused_not_waited_on() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        crate::util::testing::mkfifo(&fifo);
        let dst = d.path().join("dst");
        let (a, b) = crate::util::testing::within(20, move || {
            (open_source(&fifo).map(drop), copy_file(&fifo, &dst).map(drop))
        });
        for r in [a, b] {
            let e = r.unwrap_err().to_string();
            assert!(e.contains("not a regular file"), "{e}");
        }
    }

    #[test]
    fn open_beneath_never_follows_a_link_or_leaves_the_dir() {
        let d = tempfile::tempdir().unwrap();
        let ws = d.path().join("ws");
        std::fs::create_dir_all(ws.join("sub")).unwrap();
        std::fs::write(ws.join("sub/f"), b"in").unwrap();
        std::fs::write(d.path().join("secret"), b"out").unwrap();
        std::os::unix::fs::symlink(d.path(), ws.join("up")).unwrap();
        std::os::unix::fs::symlink("f", ws.join("sub/link")).unwrap();
        let read = |rel: &[u8]| {
            open_beneath(&ws, rel).map(|mut f| {
                let mut s = Vec::new();
                f.read_to_end(&mut s).unwrap();
                s
            })
        };
        assert_eq!(read(b"sub/f").unwrap(), b"in");
        for bad in [
            &b"up/secret"[..],
            b"sub/link",
            b"../secret",
            b"sub/../../secret",
            b"/etc/passwd",
            b"",
        ] {
            assert!(read(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        // The walk used where openat2 is missing refuses the same paths.
        let by_components = |rel: &[u8]| {
            let comps: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
            open_by_components(File::open(&ws).unwrap(), &comps)
        };
        assert!(by_components(b"sub/f").is_ok());
        for bad in [&b"up/secret"[..], b"sub/link"] {
            assert!(by_components(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unsupported_errors_are_told_apart() {
        for e in [libc::EOPNOTSUPP, libc::EXDEV, libc::EINVAL] {
            assert!(is_unsupported(&std::io::Error::from_raw_os_error(e)));
        }
        for e in [libc::EACCES, libc::ENOSPC, libc::EIO] {
            assert!(!is_unsupported(&std::io::Error::from_raw_os_error(e)));
        }
    }
}
