//! The FUSE side of `moat mount` (Linux, `fuser` with its pure-Rust mount:
//! mount(2) as root, else the `fusermount3` helper). Answers the kernel
//! from the `View`; every error is reported (with the path) and answered
//! with EIO, never a panic.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, Request,
    SessionUnmounter,
};

use super::view::{Attr, Kind, View};
use crate::error::{Error, Result};

/// Snapshots never change: the kernel may keep what it learnt for long.
const TTL: Duration = Duration::from_secs(3600);

pub type OnError = Box<dyn Fn(String) + Send + Sync>;

struct Fs {
    view: Arc<View>,
    on_error: OnError,
    uid: u32,
    gid: u32,
}

fn time(ns: i64) -> SystemTime {
    let d = Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 { UNIX_EPOCH + d } else { UNIX_EPOCH - d }
}

impl Fs {
    fn file_attr(&self, a: &Attr) -> FileAttr {
        let t = time(a.mtime_ns);
        FileAttr {
            ino: INodeNo(a.ino),
            size: a.size,
            blocks: a.size.div_ceil(512),
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind: match a.kind {
                Kind::Dir => FileType::Directory,
                Kind::File => FileType::RegularFile,
                Kind::Symlink => FileType::Symlink,
            },
            perm: (a.mode & 0o7777) as u16,
            // 1 for directories too: "unknown", so `find` does not skip
            // subdirectories by counting links.
            nlink: 1,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn failed(&self, what: &str, ino: u64, e: &Error) -> Errno {
        (self.on_error)(format!("{what} {}: {e}", self.view.shown(ino)));
        Errno::EIO
    }
}

impl Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.view.lookup(parent.0, name.as_bytes()) {
            Ok(Some(a)) => reply.entry(&TTL, &self.file_attr(&a), Generation(0)),
            Ok(None) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(self.failed("listing", parent.0, &e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.view.attr(ino.0) {
            Some(a) => reply.attr(&TTL, &self.file_attr(&a)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.view.readlink(ino.0) {
            Some(t) => reply.data(&t),
            None => reply.error(Errno::EINVAL),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.view.attr(ino.0) {
            // Contents never change: keep the page cache across opens.
            Some(a) if a.kind == Kind::File => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Some(_) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.view.read(ino.0, offset, size) {
            Ok(Some(data)) => reply.data(&data),
            Ok(None) => reply.error(Errno::EISDIR),
            Err(e) => reply.error(self.failed("reading", ino.0, &e)),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let kids = match self.view.children(ino.0) {
            Ok(Some(k)) => k,
            Ok(None) => return reply.error(Errno::ENOTDIR),
            Err(e) => return reply.error(self.failed("listing", ino.0, &e)),
        };
        let parent = self.view.parent(ino.0);
        let dots = [
            (ino.0, FileType::Directory, b".".as_slice()),
            (parent, FileType::Directory, b".."),
        ];
        let entries = dots.into_iter().chain(kids.iter().map(|(name, child)| {
            let kind = match self.view.attr(*child).map(|a| a.kind) {
                Some(Kind::Dir) => FileType::Directory,
                Some(Kind::Symlink) => FileType::Symlink,
                _ => FileType::RegularFile,
            };
            (*child, kind, name.as_slice())
        }));
        for (i, (child, kind, name)) in entries.enumerate().skip(offset as usize) {
            // The offset of the next entry; true when the reply is full.
            if reply.add(INodeNo(child), i as u64 + 1, kind, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }
}

enum Event {
    Stop,
    Ended(std::io::Result<()>),
}

/// A live mount: `wait` until `Stopper::stop` is called (a signal) or the
/// filesystem is unmounted from outside.
pub struct Mounted {
    dir: PathBuf,
    view: Arc<View>,
    unmounter: SessionUnmounter,
    events: Receiver<Event>,
    sender: Sender<Event>,
}

/// Asks a `Mounted` to unmount (from a signal-handling thread).
#[derive(Clone)]
pub struct Stopper(Sender<Event>);

impl Stopper {
    pub fn stop(&self) {
        let _ = self.0.send(Event::Stop);
    }
}

/// Mounts `view` read-only on `dir` and serves it from background threads.
pub fn mount(view: Arc<View>, dir: &Path, on_error: OnError) -> Result<Mounted> {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName("moat".into()),
        MountOption::Subtype("moat".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    config.n_threads = Some(std::thread::available_parallelism().map_or(2, |n| n.get().min(4)));
    let fs = Fs {
        view: view.clone(),
        on_error,
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
    };
    let mut session = fuser::Session::new(fs, dir, &config).map_err(|source| Error::Mount {
        path: dir.to_path_buf(),
        source,
    })?;
    let unmounter = session.unmount_callable();
    let (sender, events) = channel();
    let ended = sender.clone();
    std::thread::Builder::new()
        .name("moat-mount".into())
        .spawn(move || {
            let _ = ended.send(Event::Ended(session.run()));
        })
        .map_err(|e| Error::io(dir, e))?;
    Ok(Mounted {
        dir: dir.to_path_buf(),
        view,
        unmounter,
        events,
        sender,
    })
}

impl Mounted {
    pub fn stopper(&self) -> Stopper {
        Stopper(self.sender.clone())
    }

    /// Serves until stopped or unmounted from outside; then makes sure the
    /// mount is gone (lazily when a process still uses it) and returns
    /// what was served.
    pub fn wait(mut self) -> Result<super::view::MountStats> {
        loop {
            match self.events.recv() {
                Ok(Event::Stop) => {
                    if self.unmounter.unmount().is_err() {
                        // Busy (a shell inside it): detach now, gone once
                        // the last user leaves.
                        detach(&self.dir)?;
                        return Ok(self.view.stats());
                    }
                }
                Ok(Event::Ended(res)) => {
                    res.map_err(|e| Error::io(&self.dir, e))?;
                    return Ok(self.view.stats());
                }
                Err(_) => return Ok(self.view.stats()),
            }
        }
    }
}

/// A lazy unmount: umount2(MNT_DETACH) as root, else `fusermount3 -uz`.
fn detach(dir: &Path) -> Result<()> {
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| Error::io(dir, std::io::Error::other(e)))?;
    // SAFETY: a valid C string naming the mount point.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
        return Ok(());
    }
    for helper in ["fusermount3", "fusermount"] {
        if std::process::Command::new(helper)
            .arg("-uz")
            .arg(dir)
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Ok(());
        }
    }
    Err(Error::io(
        dir,
        std::io::Error::other("could not unmount; run `fusermount3 -uz` on it"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_before_and_after_1970_map_exactly() {
        let d = |s, n| Duration::new(s, n);
        assert_eq!(time(0), UNIX_EPOCH);
        assert_eq!(
            time(1_500_000_000_123_456_789),
            UNIX_EPOCH + d(1_500_000_000, 123_456_789)
        );
        assert_eq!(
            time(-315_619_199_750_000_000),
            UNIX_EPOCH - d(315_619_199, 750_000_000)
        );
        assert_eq!(
            time(i64::MIN),
            UNIX_EPOCH - Duration::from_nanos(i64::MIN.unsigned_abs())
        );
    }
}
