//! The inotify watcher (Linux): one watch per directory of the workspace
//! that a walk may enter (not `.git`, not moat's own directories, not
//! those its ignore rules leave out: `listing`), events turned into dirty
//! paths.
//!
//! Invariants: a watch descriptor's path is kept right across directory
//! renames inside the workspace (a rename moves the watches with the inode,
//! so the paths of the whole moved subtree are renamed, and both names are
//! dirty); a directory that appears (created, or moved in) is dirty as a
//! whole and is watched before its event is answered for. Where an ignore
//! rule may have changed (an event on a `.gitignore`, `.ignore` or `.git`
//! entry; a `.git/info/exclude` whose stamp changed, checked at every
//! poll; the configuration file under `Rules::Workspace`), the directory
//! concerned is listed again before `poll` returns: directories no longer
//! ignored are watched and dirty, newly ignored ones unwatched. Anything
//! that may lose an event is reported: queue overflow, a mount-table change
//! under the workspace and changed configured rules as `Reset` (after
//! re-watching everything), a watch that cannot be added and the root
//! going away as `Broken`.
//!
//! inotify is used directly (nix) rather than through `notify`: vouching
//! needs `IN_Q_OVERFLOW`, `IN_ISDIR`, rename cookies and the watch table
//! itself, which `notify` keeps to itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags as F, InitFlags, Inotify as Fd, InotifyEvent, WatchDescriptor};

use super::listing::{self, Stamp, within};
use super::{Change, Ignoring, Rules, Watcher};
use crate::error::{Error, Result};
use crate::worktree::walk::WalkOptions;

fn mask() -> F {
    F::IN_CREATE
        | F::IN_DELETE
        | F::IN_MODIFY
        | F::IN_ATTRIB
        | F::IN_MOVED_FROM
        | F::IN_MOVED_TO
        | F::IN_DELETE_SELF
        | F::IN_MOVE_SELF
        | F::IN_DONT_FOLLOW
        | F::IN_ONLYDIR
}

/// Watches added by a listing, by path.
type Watches = Vec<(Vec<u8>, WatchDescriptor)>;

/// Watches one workspace with inotify.
pub struct Inotify {
    /// Shared with the listing's walker threads, which add watches.
    fd: Arc<Fd>,
    root: PathBuf,
    skip: Vec<PathBuf>,
    rules: Rules,
    /// What it leaves unwatched now, and the walk options that say so.
    ignoring: Ignoring,
    opts: WalkOptions,
    /// Directories holding a `.git`: the `info/exclude` the walk reads
    /// there, and its stamp when it was last listed.
    gits: BTreeMap<Vec<u8>, (PathBuf, Stamp)>,
    /// Directories to list again before `poll` returns; true where an
    /// ignore rule may have changed (what it newly watches is dirty).
    pending: BTreeMap<Vec<u8>, bool>,
    /// The configuration file changed (`Rules::Workspace`).
    reload: bool,
    by_wd: HashMap<WatchDescriptor, Vec<u8>>,
    by_path: BTreeMap<Vec<u8>, WatchDescriptor>,
    root_wd: Option<WatchDescriptor>,
    /// A directory moved away, waiting for the event that says where to.
    moved_from: Option<(u32, Vec<u8>)>,
    mounts: Vec<Vec<u8>>,
    mountinfo: Option<std::fs::File>,
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        return name.to_vec();
    }
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    p.extend_from_slice(dir);
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

impl Inotify {
    /// Watches every directory of `root` (canonical) except `.git`,
    /// `skip` and those `rules` ignore; fails with a clear error if a watch
    /// cannot be added.
    pub fn new(root: &Path, skip: Vec<PathBuf>, rules: Rules) -> Result<Self> {
        let fd = Fd::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| Error::io(root, std::io::Error::from(e)))?;
        let mut w = Inotify {
            fd: Arc::new(fd),
            root: root.to_path_buf(),
            skip,
            rules,
            ignoring: Ignoring::default(),
            opts: WalkOptions::default(),
            gits: BTreeMap::new(),
            pending: BTreeMap::new(),
            reload: false,
            by_wd: HashMap::new(),
            by_path: BTreeMap::new(),
            root_wd: None,
            moved_from: None,
            mounts: Vec::new(),
            mountinfo: std::fs::File::open("/proc/self/mountinfo").ok(),
        };
        w.mounts = w.mounts_below();
        w.set_rules();
        let mut out = Vec::new();
        w.relist([(Vec::new(), false)].into(), &mut out);
        if let Some(Change::Broken(why)) = out.into_iter().find(|c| matches!(c, Change::Broken(_))) {
            return Err(Error::io(root, std::io::Error::other(why)));
        }
        w.root_wd = w.by_path.get(&b""[..]).copied();
        if w.root_wd.is_none() {
            return Err(Error::io(
                root,
                std::io::Error::other("cannot watch the workspace directory"),
            ));
        }
        Ok(w)
    }

    fn abs(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(OsStr::from_bytes(rel))
        }
    }

    /// Takes the rules in force now; rules the walk cannot build (a bad
    /// glob, which fails every capture too) ignore nothing. Returns
    /// whether they changed.
    fn set_rules(&mut self) -> bool {
        let mut now = self.rules.current(&self.root);
        if crate::worktree::walk::rules(&self.root, &now.walk_options()).is_err() {
            now = Ignoring::default();
        }
        let changed = now != self.ignoring;
        self.opts = now.walk_options();
        self.ignoring = now;
        changed
    }

    /// Lists the directories at and below each of `roots` again with the
    /// walk's rules: watches each one a walk may enter (before it is read),
    /// unwatches the others, and reports the directories newly watched
    /// below a root marked true as dirty.
    fn relist(&mut self, roots: BTreeMap<Vec<u8>, bool>, out: &mut Vec<Change>) {
        let flagged: Vec<Vec<u8>> = roots
            .iter()
            .filter(|(_, f)| **f)
            .map(|(r, _)| r.clone())
            .collect();
        // Only the outermost roots (sorted: a root's ancestors come first).
        let mut set: BTreeSet<Vec<u8>> = BTreeSet::new();
        for r in roots.into_keys() {
            let nested = set.contains(&b""[..])
                || r.iter()
                    .enumerate()
                    .any(|(i, b)| *b == b'/' && set.contains(&r[..i]));
            if !nested {
                set.insert(r);
            }
        }
        let found: Arc<Mutex<Watches>> = Arc::default();
        let failed: Arc<Mutex<Option<String>>> = Arc::default();
        let (fd, into, fail) = (self.fd.clone(), found.clone(), failed.clone());
        let watch: listing::WatchFn = Arc::new(move |rel, abs| {
            let why = match fd.add_watch(abs, mask()) {
                Ok(wd) => {
                    into.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((rel.to_vec(), wd));
                    return true;
                }
                // Gone or no longer a directory: its parent's event says so.
                Err(Errno::ENOENT | Errno::ENOTDIR) => return false,
                Err(Errno::ENOSPC) => {
                    "the inotify watch limit is reached (raise fs.inotify.max_user_watches)".to_string()
                }
                Err(e) => format!("cannot watch {}: {e}", abs.display()),
            };
            fail.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(why);
            false
        });
        let listed = match listing::list(&self.root, &self.opts, &set, &self.skip, watch) {
            Ok(l) => l,
            Err(e) => {
                out.push(Change::Broken(format!("cannot list the workspace: {e}")));
                return;
            }
        };
        let failed = failed.lock().unwrap_or_else(|p| p.into_inner()).take();
        let found = std::mem::take(&mut *found.lock().unwrap_or_else(|p| p.into_inner()));
        let mut seen = BTreeSet::new();
        for (d, wd) in found {
            let fresh = !self.by_wd.contains_key(&wd);
            if let Some(old) = self.by_wd.insert(wd, d.clone())
                && old != d
                && self.by_path.get(&old) == Some(&wd)
            {
                self.by_path.remove(&old);
            }
            self.by_path.insert(d.clone(), wd);
            if fresh && flagged.iter().any(|r| within(&d, r)) {
                out.push(Change::Dirty(d.clone()));
            }
            seen.insert(d);
        }
        for r in &set {
            self.gits.retain(|d, _| !within(d, r));
        }
        for (d, exclude, st) in listed.gits {
            self.gits.insert(d, (exclude, st));
        }
        if let Some(why) = failed {
            out.push(Change::Broken(why));
            return;
        }
        // Unwatch what is now ignored (only on a whole listing: a short
        // one must not drop a watch a walk still needs).
        if listed.incomplete {
            return;
        }
        for r in &set {
            for (p, wd) in self.subtree(r) {
                if !seen.contains(&p) {
                    self.by_path.remove(&p);
                    if self.by_wd.get(&wd) == Some(&p) {
                        self.by_wd.remove(&wd);
                        let _ = self.fd.rm_watch(wd);
                    }
                }
            }
        }
    }

    /// The watches at and below `rel`.
    fn subtree(&self, rel: &[u8]) -> Vec<(Vec<u8>, WatchDescriptor)> {
        self.by_path
            .range(rel.to_vec()..)
            .take_while(|(p, _)| p.starts_with(rel))
            .filter(|(p, _)| within(p, rel))
            .map(|(p, w)| (p.clone(), *w))
            .collect()
    }

    fn drop_tree(&mut self, rel: &[u8]) {
        self.gits.retain(|d, _| !within(d, rel));
        for (p, wd) in self.subtree(rel) {
            let _ = self.fd.rm_watch(wd);
            self.by_path.remove(&p);
            self.by_wd.remove(&wd);
        }
    }

    /// A directory moved from `old` to `new` inside the workspace: its
    /// watches moved with it.
    fn rename_tree(&mut self, old: &[u8], new: &[u8]) {
        // Listed again under the new name (`pending`).
        self.gits.retain(|d, _| !within(d, old));
        let moved = self.subtree(old);
        for (p, _) in &moved {
            self.by_path.remove(p);
        }
        for (p, wd) in moved {
            let mut np = new.to_vec();
            np.extend_from_slice(&p[old.len()..]);
            self.by_wd.insert(wd, np.clone());
            self.by_path.insert(np, wd);
        }
    }

    fn event(&mut self, ev: InotifyEvent, out: &mut Vec<Change>) {
        if ev.mask.contains(F::IN_Q_OVERFLOW) {
            // Lost events may have made directories: watch everything anew.
            self.rewatch(out, "the inotify queue overflowed (fs.inotify.max_queued_events)");
            return;
        }
        let is_dir = ev.mask.contains(F::IN_ISDIR);
        // A directory moved away whose destination is not this event left
        // the workspace: stop watching it.
        if let Some((cookie, old)) = self.moved_from.take() {
            if ev.mask.contains(F::IN_MOVED_TO)
                && is_dir
                && ev.cookie == cookie
                && let (Some(dir), Some(name)) = (self.by_wd.get(&ev.wd).cloned(), &ev.name)
            {
                let new = join(&dir, name.as_bytes());
                self.rename_tree(&old, &new);
                // Directories made in it before their watch was added
                // (or it itself, made just before the move) are
                // watched by the listing; watched ones keep their
                // descriptor; ones ignored where it now is lose it.
                self.pending.entry(new.clone()).or_insert(false);
                out.push(Change::Dirty(new));
                return;
            }
            self.drop_tree(&old);
        }
        if ev.mask.contains(F::IN_IGNORED) {
            if Some(ev.wd) == self.root_wd {
                out.push(Change::Broken("the workspace directory was removed".into()));
            }
            if let Some(p) = self.by_wd.remove(&ev.wd)
                && self.by_path.get(&p) == Some(&ev.wd)
            {
                self.by_path.remove(&p);
            }
            return;
        }
        if ev.mask.contains(F::IN_UNMOUNT) {
            self.rewatch(out, "a file system under the workspace was unmounted");
            return;
        }
        let Some(dir) = self.by_wd.get(&ev.wd).cloned() else {
            return;
        };
        let Some(name) = ev.name else {
            // About the watched directory itself; its parent reports the
            // rest. Only the root has no parent here.
            if Some(ev.wd) == self.root_wd && ev.mask.intersects(F::IN_DELETE_SELF | F::IN_MOVE_SELF) {
                out.push(Change::Broken(
                    "the workspace directory was moved or removed".into(),
                ));
            }
            return;
        };
        let path = join(&dir, name.as_bytes());
        if is_dir && ev.mask.contains(F::IN_MOVED_FROM) {
            self.moved_from = Some((ev.cookie, path.clone()));
        } else if is_dir && ev.mask.intersects(F::IN_CREATE | F::IN_MOVED_TO) && name != ".git" {
            self.pending.entry(path.clone()).or_insert(false);
        } else if !is_dir && ev.mask.contains(F::IN_CREATE) && self.is_multi_link(&path) {
            // A new name for an existing file: writes through it change the
            // file's other names, which get no event.
            out.push(Change::Reset("a hard link was made in the workspace".into()));
        }
        // The rules of `dir` and below may have changed.
        let name = name.as_bytes();
        if self.ignoring.ignore_files && matches!(name, b".gitignore" | b".ignore" | b".git") {
            self.pending.insert(dir.clone(), true);
        }
        if dir.is_empty()
            && matches!(self.rules, Rules::Workspace)
            && crate::worktree::config::FILE_NAMES
                .iter()
                .any(|n| n.as_bytes() == name)
        {
            self.reload = true;
        }
        out.push(Change::Dirty(path));
    }

    fn is_multi_link(&self, rel: &[u8]) -> bool {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(self.abs(rel)).is_ok_and(|m| !m.is_dir() && m.nlink() > 1)
    }

    /// Drops every watch and watches everything again; the events between
    /// are lost, so the epoch ends.
    fn rewatch(&mut self, out: &mut Vec<Change>, why: &str) {
        for wd in self.by_wd.keys().copied().collect::<Vec<_>>() {
            let _ = self.fd.rm_watch(wd);
        }
        self.by_wd.clear();
        self.by_path.clear();
        self.gits.clear();
        self.pending.clear();
        self.moved_from = None;
        self.relist([(Vec::new(), false)].into(), out);
        self.root_wd = self.by_path.get(&b""[..]).copied();
        if self.root_wd.is_none() {
            out.push(Change::Broken("cannot watch the workspace directory".into()));
        }
        out.push(Change::Reset(why.into()));
    }

    /// Mount points at or below the root, from /proc/self/mountinfo.
    fn mounts_below(&mut self) -> Vec<Vec<u8>> {
        use std::io::{Read, Seek};
        let Some(f) = self.mountinfo.as_mut() else {
            return Vec::new();
        };
        let mut s = Vec::new();
        if f.rewind().is_err() || f.read_to_end(&mut s).is_err() {
            return Vec::new();
        }
        let root = self.root.as_os_str().as_bytes();
        let mut out: Vec<Vec<u8>> = s
            .split(|&b| b == b'\n')
            .filter_map(|line| line.split(|&b| b == b' ').nth(4))
            .map(unescape)
            .filter(|m| m.starts_with(root) && (m.len() == root.len() || m[root.len()] == b'/'))
            .collect();
        out.sort();
        out
    }

    /// Has the mount table changed since the last look (poll(2) on
    /// mountinfo reports POLLPRI then)?
    fn mounts_changed(&self) -> bool {
        let Some(f) = &self.mountinfo else {
            return false;
        };
        let mut p = libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLPRI,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n > 0 && p.revents & (libc::POLLPRI | libc::POLLERR) != 0
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && s.len() - i >= 4 {
            let o = &s[i + 1..i + 4];
            if o.iter().all(|c| (b'0'..=b'7').contains(c)) {
                out.push((o[0] - b'0') * 64 + (o[1] - b'0') * 8 + (o[2] - b'0'));
                i += 4;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

impl Watcher for Inotify {
    fn poll(&mut self, out: &mut Vec<Change>) -> Result<()> {
        loop {
            match self.fd.read_events() {
                Ok(evs) => {
                    for ev in evs {
                        self.event(ev, out);
                    }
                }
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(Error::io(&self.root, std::io::Error::from(e))),
            }
        }
        if self.mounts_changed() {
            let now = self.mounts_below();
            if now != self.mounts {
                self.mounts = now;
                self.rewatch(out, "the mounts under the workspace changed");
            }
        }
        // `.git` is not watched: its exclude files are looked at instead.
        for (d, (exclude, st)) in &self.gits {
            if listing::stamp(exclude) != *st {
                self.pending.insert(d.clone(), true);
                out.push(Change::Dirty(join(d, b".git/info/exclude")));
            }
        }
        if std::mem::take(&mut self.reload) && self.set_rules() {
            self.rewatch(out, "the ignore rules of the workspace configuration changed");
        }
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            self.relist(pending, out);
        }
        Ok(())
    }

    fn waiter(&self) -> Box<dyn Fn(Duration) + Send + Sync> {
        let fd: Option<OwnedFd> = self.fd.as_fd().try_clone_to_owned().ok();
        Box::new(move |t| {
            let Some(fd) = &fd else {
                std::thread::sleep(t);
                return;
            };
            let mut p = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = t.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd owned by this closure.
            unsafe { libc::poll(&mut p, 1, ms) };
        })
    }

    fn usage(&self) -> (u64, u64) {
        let paths: usize = self.by_path.keys().map(|p| 2 * p.len() + 96).sum();
        (self.by_wd.len() as u64, paths as u64)
    }

    fn ignoring(&self) -> Ignoring {
        self.ignoring.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape(br"/a\040b\134c"), b"/a b\\c".to_vec());
        assert_eq!(unescape(br"/x\04"), br"/x\04".to_vec());
    }
}
