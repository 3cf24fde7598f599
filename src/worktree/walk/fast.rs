//! The walk itself: one task per directory on the rayon pool; each opens
//! its directory once (`O_NOFOLLOW`), lists it, and `fstatat`s every entry
//! relative to that descriptor, so no per-file path lookup and no probe for
//! an ignore file the listing does not hold.
//!
//! Invariants (those of `walk`, plus): an entry the rules ignore is never
//! stat'ed (its name is matched with the listing's file type); a
//! directory's node is emitted by the task that lists it, after its ignore
//! files were found readable, so a directory refused for them leaves no
//! node; a directory that cannot be listed is a node and a skip (it is
//! stored empty, and rollback leaves it alone). When collapsing, a task
//! hands its directory's own nodes to `collapse::listed` instead of the
//! result, which keeps or drops them once the whole subtree is decided.

use std::ffi::{CStr, OsStr};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ignore::overrides::Override;
use nix::dir::{Dir, Type};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::collapse::{self, Collapse, Pend};
use super::levels::Level;
use super::{At, Found, Node, Skip, Stat, classify};
use crate::format::tree::{MAX_DEPTH, TEMP_PREFIX, reserved};
use crate::worktree::ignore_files;

/// What the tasks of one walk share.
pub(super) struct Shared<'a> {
    pub at: At<'a>,
    pub overrides: Override,
    pub no_ignore: bool,
    pub prune: Option<super::Prune>,
    /// Set: unchanged directories collapse (`collapse.rs`).
    pub collapse: Option<&'a dyn Collapse>,
    pub out: Mutex<Out>,
}

/// What the tasks found, merged once per directory.
#[derive(Default)]
pub(super) struct Out {
    pub nodes: Vec<Node>,
    pub skips: Vec<Skip>,
    pub git_dirs: Vec<Vec<u8>>,
    /// Directories collapsed whole (`collapse.rs`).
    pub collapsed: Vec<Vec<u8>>,
}

/// A directory to list: its path, its node (None for the start), how deep
/// it is below the start, and the rules of the levels above it.
pub(super) struct Task {
    pub abs: PathBuf,
    pub rel: Vec<u8>,
    pub node: Option<Node>,
    pub depth: usize,
    pub level: Arc<Level>,
    /// When collapsing: this directory's undecided state.
    pub pend: Option<Arc<Pend>>,
}

/// Walks `task`'s directory and, on the pool, every directory below it.
pub(super) fn run(sh: &Shared, task: Task) {
    rayon::scope(|s| dir(sh, s, task));
}

fn io_of(e: nix::errno::Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

fn dir<'s>(sh: &'s Shared, scope: &rayon::Scope<'s>, t: Task) {
    let mut out = Out::default();
    // This directory's own nodes: its node, its files and symlinks.
    let mut mine: Vec<Node> = Vec::new();
    let listed = Dir::open(
        &t.abs,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    );
    let mut d = match listed {
        Ok(d) => d,
        Err(e) => {
            mine.extend(t.node);
            out.skips.push(skip(
                &t.rel,
                format!("skipped: {}: {}", t.abs.display(), io_of(e)),
            ));
            return settle(sh, out, mine, t.pend, false);
        }
    };
    let mut names: Vec<(std::ffi::CString, Option<Type>)> = Vec::new();
    let mut errors = Vec::new();
    for e in d.iter() {
        match e {
            Ok(e) => {
                let n = e.file_name();
                if n.to_bytes() != b"." && n.to_bytes() != b".." {
                    names.push((n.to_owned(), e.file_type()));
                }
            }
            Err(e) => {
                errors.push(skip(
                    &t.rel,
                    format!("skipped: {}: {}", t.abs.display(), io_of(e)),
                ));
                break;
            }
        }
    }
    let level = if sh.no_ignore {
        t.level.clone()
    } else {
        let has = |n: &[u8]| names.iter().any(|(m, _)| m.as_bytes() == n);
        let (has_ignore, has_gitignore, has_git) = (has(b".ignore"), has(b".gitignore"), has(b".git"));
        let mut exclude = None;
        if has_ignore || has_gitignore || has_git {
            // The start's ignore files were checked before the walk (an
            // error there); any other directory with a bad one is left out.
            let found = ignore_files::inspect(&t.abs);
            if let Some((file, why)) = found.bad {
                let why = format!("skipped {}: {} is {why}", t.abs.display(), file.display());
                out.skips.push(skip(&t.rel, why));
                return settle(sh, out, mine, t.pend, false);
            }
            exclude = found.exclude;
        }
        Level::child(&t.level, &t.abs, has_ignore, has_gitignore, exclude.as_deref())
    };
    // The stat the directory's cached record is matched against.
    let own_stat = t.node.as_ref().map(|n| n.stat);
    mine.extend(t.node);
    out.skips.append(&mut errors);
    let fd = d.as_raw_fd();
    let mut all_same = sh.collapse.is_some() && t.pend.is_some();
    let mut kept: u64 = 0;
    let match_paths = !sh.overrides.is_empty() || level.any();
    for (cname, dtype) in names {
        let name = cname.as_bytes();
        let child_rel = join(&t.rel, name);
        let depth = t.depth + 1;
        let abs = t.abs.join(OsStr::from_bytes(name));
        let mut stat = None;
        let is_dir = match dtype {
            Some(Type::Directory) => true,
            Some(_) => false,
            None => {
                stat = Some(fstatat(fd, &cname));
                matches!(&stat, Some(Ok(s)) if s.is_dir())
            }
        };
        if match_paths && ignored(sh, &level, &abs, is_dir) {
            continue;
        }
        if name == b".git" {
            out.git_dirs.push(child_rel);
            continue;
        }
        if reserved(name).is_some() && !name.starts_with(TEMP_PREFIX) {
            continue;
        }
        if is_dir && sh.prune.as_ref().is_some_and(|p| p(&child_rel)) {
            continue;
        }
        if name.starts_with(TEMP_PREFIX) {
            out.skips.push(Skip {
                rel: Some(child_rel),
                why: String::new(),
                temp: true,
            });
            continue;
        }
        if depth + sh.at.depth_base > MAX_DEPTH {
            let why = format!(
                "skipped {}: nested deeper than {MAX_DEPTH} directories",
                abs.display()
            );
            out.skips.push(skip(&child_rel, why));
            continue;
        }
        let st = match stat.unwrap_or_else(|| fstatat(fd, &cname)) {
            Ok(s) => s,
            // Deleted between the listing and the stat: it is not there.
            Err(nix::errno::Errno::ENOENT) => continue,
            Err(e) => {
                out.skips.push(skip(
                    &child_rel,
                    format!("skipped {}: {}", abs.display(), io_of(e)),
                ));
                continue;
            }
        };
        let link = || readlinkat(fd, &cname);
        let (found, descend) = classify(sh.at, &abs, child_rel.clone(), &st, link);
        let node = match found {
            Some(Found::Node(n)) => n,
            Some(Found::Both(n, why)) => {
                all_same = false;
                out.skips.push(Skip {
                    rel: None,
                    why,
                    temp: false,
                });
                n
            }
            Some(Found::Skipped(s)) => {
                out.skips.push(s);
                continue;
            }
            None => continue,
        };
        kept += 1;
        if descend {
            let task = Task {
                abs,
                pend: t.pend.as_ref().map(|p| p.child(&child_rel)),
                rel: child_rel,
                node: Some(node),
                depth,
                level: level.clone(),
            };
            scope.spawn(move |s| dir(sh, s, task));
        } else {
            if all_same && let Some(c) = sh.collapse {
                all_same = c.same(&node);
            }
            mine.push(node);
        }
    }
    if all_same && let Some(c) = sh.collapse {
        let own = own_stat.or_else(|| fstat(fd).ok().map(|s| s.file_stat()));
        all_same =
            out.skips.is_empty() && own.is_some_and(|st| c.dir(&t.rel, &st).map(u64::from) == Some(kept));
    }
    settle(sh, out, mine, t.pend, all_same);
}

/// Hands what a directory's task found over: its own nodes straight to the
/// walk's result, or (collapsing) to the directory's undecided state.
fn settle(sh: &Shared, mut out: Out, mine: Vec<Node>, pend: Option<Arc<Pend>>, same: bool) {
    match pend {
        None => {
            out.nodes.extend(mine);
            merge(sh, out);
        }
        Some(p) => {
            merge(sh, out);
            collapse::listed(sh, p, mine, same);
        }
    }
}

/// Adds decided nodes and collapsed directories to the walk's result.
pub(super) fn merge_nodes(sh: &Shared, mut nodes: Vec<Node>, mut collapsed: Vec<Vec<u8>>) {
    let mut all = sh.out.lock().unwrap_or_else(|p| p.into_inner());
    all.nodes.append(&mut nodes);
    all.collapsed.append(&mut collapsed);
}

fn ignored(sh: &Shared, level: &Level, abs: &Path, is_dir: bool) -> bool {
    match sh.overrides.matched(abs, is_dir) {
        ignore::Match::Ignore(_) => true,
        ignore::Match::Whitelist(_) => false,
        ignore::Match::None => !sh.no_ignore && level.ignored(abs, is_dir),
    }
}

fn merge(sh: &Shared, mut out: Out) {
    let mut all = sh.out.lock().unwrap_or_else(|p| p.into_inner());
    all.nodes.append(&mut out.nodes);
    all.skips.append(&mut out.skips);
    all.git_dirs.append(&mut out.git_dirs);
    all.collapsed.append(&mut out.collapsed);
}

fn fstat(fd: i32) -> Result<Stat, nix::errno::Errno> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fd` is the open directory of this task; `st` is written by
    // the call before it is read.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        return Err(nix::errno::Errno::last());
    }
    // SAFETY: the call succeeded, so it filled `st`.
    Ok(Stat::of_raw(&unsafe { st.assume_init() }))
}

fn skip(rel: &[u8], why: String) -> Skip {
    Skip {
        rel: Some(rel.to_vec()),
        why,
        temp: false,
    }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    if !dir.is_empty() {
        p.extend_from_slice(dir);
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

fn fstatat(fd: i32, name: &CStr) -> Result<Stat, nix::errno::Errno> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fd` is the open directory of this task, `name` a NUL-ended
    // name in it, and `st` is written by the call before it is read.
    let r = unsafe { libc::fstatat(fd, name.as_ptr(), st.as_mut_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    if r != 0 {
        return Err(nix::errno::Errno::last());
    }
    // SAFETY: the call succeeded, so it filled `st`.
    Ok(Stat::of_raw(&unsafe { st.assume_init() }))
}

fn readlinkat(fd: i32, name: &CStr) -> std::io::Result<Vec<u8>> {
    // SAFETY: `fd` stays open for the whole task (it belongs to `d`).
    let dir = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    nix::fcntl::readlinkat(dir, name)
        .map(|t| t.as_bytes().to_vec())
        .map_err(io_of)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::statcache::FileStat;
    use crate::worktree::walk::{WalkOptions, walk};

    fn shared(skip: &[(u64, u64)]) -> Shared<'_> {
        Shared {
            at: At { depth_base: 0, skip },
            overrides: Override::empty(),
            no_ignore: false,
            prune: None,
            collapse: None,
            out: Mutex::default(),
        }
    }

    /// A directory swapped for a symlink after its parent listed it is
    /// never followed: the task refuses to open it and lists nothing.
    #[test]
    fn a_directory_replaced_by_a_symlink_is_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("ws");
        let outside = d.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("sub")).unwrap();
        let sh = shared(&[]);
        let task = Task {
            abs: root.join("sub"),
            rel: b"sub".to_vec(),
            node: None,
            depth: 1,
            level: Level::none(),
            pend: None,
        };
        run(&sh, task);
        let out = sh.out.into_inner().unwrap();
        assert!(out.nodes.is_empty(), "{:?}", out.nodes);
        assert_eq!(out.skips.len(), 1);
        assert_eq!(out.skips[0].rel.as_deref(), Some(&b"sub"[..]));
    }

    /// What `fstatat` relative to the directory gives equals what `std`'s
    /// `lstat` of the full path gives (the stat cache compares the two).
    #[test]
    fn relative_stats_equal_full_path_stats() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f"), b"12345").unwrap();
        std::fs::write(root.join("g"), b"").unwrap();
        std::os::unix::fs::symlink("a/b/f", root.join("l")).unwrap();
        std::fs::hard_link(root.join("g"), root.join("a/g2")).unwrap();
        let (nodes, warnings) = walk(&root, &WalkOptions::default()).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(nodes.len(), 6);
        for n in &nodes {
            let p = root.join(OsStr::from_bytes(&n.rel));
            let m = std::fs::symlink_metadata(&p).unwrap();
            assert_eq!(n.stat, FileStat::of(&m), "{}", p.display());
            assert_eq!(
                n.multi_link,
                !m.is_dir() && std::os::unix::fs::MetadataExt::nlink(&m) > 1
            );
        }
        let link = nodes.iter().find(|n| n.rel == b"l").unwrap();
        assert_eq!(link.kind, super::super::NodeKind::Symlink(b"a/b/f".to_vec()));
    }
}
