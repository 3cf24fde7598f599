//! Random file operations on a small workspace, shared by the property
//! tests that hold incremental snapshots to a full, cache-less walk
//! (`watch_prop.rs`, `collapse_prop.rs`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use moat::worktree::walk::WalkOptions;

pub const DIRS: [&str; 5] = ["", "a", "a/b", "c", "a/b/d"];
pub const NAMES: [&str; 4] = ["f0", "f1", "f2", "g"];
/// Ignore-file contents: directories, files, everything but `g`, nothing.
pub const RULES: [&str; 6] = ["", "b/\n", "f1\n", "d\n", "c/\n", "*\n!g\n"];

fn path(ws: &Path, d: u8, n: u8) -> PathBuf {
    let dir = DIRS[d as usize % DIRS.len()];
    let name = NAMES[n as usize % NAMES.len()];
    if dir.is_empty() {
        ws.join(name)
    } else {
        ws.join(dir).join(name)
    }
}

fn dir(ws: &Path, d: u8) -> PathBuf {
    ws.join(DIRS[1 + d as usize % (DIRS.len() - 1)])
}

/// Whether a full walk leaves directory `d` out (it exists and is not
/// walked): the watcher does not watch it.
fn ignored_dir(ws: &Path, d: &Path) -> bool {
    let Ok(rel) = d.strip_prefix(ws) else {
        return false;
    };
    if rel.as_os_str().is_empty() || !d.is_dir() {
        return false;
    }
    let (nodes, _) = moat::worktree::walk::walk(ws, &WalkOptions::default()).unwrap();
    let rel = std::os::unix::ffi::OsStrExt::as_bytes(rel.as_os_str());
    !nodes.iter().any(|n| n.rel == rel)
}

/// Applies one operation; failures (a missing source, a non-empty target)
/// are simply no-ops, like a user's failed command.
pub fn apply(ws: &Path, op: (u8, u8, u8, u8, u8)) {
    let (kind, d1, n1, d2, n2) = op;
    let p = path(ws, d1, n1);
    let q = path(ws, d2, n2);
    let rules = RULES[n2 as usize % RULES.len()];
    let _ = match kind % 14 {
        0 => fs::create_dir_all(p.parent().unwrap()).and_then(|_| fs::write(&p, [n2; 5])),
        1 => fs::write(&p, vec![d2; 1 + n2 as usize]),
        2 => fs::remove_file(&p),
        3 => fs::rename(&p, &q),
        4 => fs::create_dir_all(dir(ws, d1)),
        5 => fs::remove_dir_all(dir(ws, d1)),
        6 => fs::rename(dir(ws, d1), dir(ws, d2)),
        7 => fs::set_permissions(
            &p,
            fs::Permissions::from_mode(if n2 % 2 == 0 { 0o755 } else { 0o644 }),
        ),
        8 => fs::remove_file(&p)
            .or(Ok(()))
            .and_then(|_| std::os::unix::fs::symlink(NAMES[n2 as usize % 4], &p)),
        // Same size, then the old mtime back: only ctime and the event tell.
        9 => fs::metadata(&p).and_then(|m| {
            let len = m.len() as usize;
            fs::write(&p, vec![b'z'; len])?;
            let t = nix::sys::time::TimeSpec::new(std::os::unix::fs::MetadataExt::mtime(&m), 0);
            nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                &p,
                &t,
                &t,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .map_err(std::io::Error::from)
        }),
        // A second name inside the workspace, then a write through it: no
        // event names the first. (A link made from outside the workspace,
        // or inside an ignored directory, which is not watched, gives no
        // event at all: README says so. Such a link is not made here.)
        10 if ignored_dir(ws, q.parent().unwrap()) => Ok(()),
        10 => fs::hard_link(&p, &q).and_then(|_| {
            fs::OpenOptions::new()
                .write(true)
                .open(&q)
                .and_then(|mut f| std::io::Write::write_all(&mut f, &[d2, n2, 7]))
        }),
        11 => fs::create_dir_all(p.parent().unwrap()).and_then(|_| fs::write(&p, b"")),
        12 => {
            let d = p.parent().unwrap();
            fs::create_dir_all(d).and_then(|_| fs::write(d.join(".gitignore"), rules))
        }
        _ => fs::create_dir_all(ws.join(".git/info"))
            .and_then(|_| fs::write(ws.join(".git/info/exclude"), rules)),
    };
}

/// The root a full walk of `ws` finds with no stat cache at all (a scan
/// into a fresh store under `tmp`): the reference an incremental snapshot
/// is held to.
pub fn cacheless_root(tmp: &Path, ws: &Path) -> moat::ObjectId {
    let fresh = tempfile::tempdir_in(tmp).unwrap();
    let store = moat::Store::open_or_create(&fresh.path().join("store")).unwrap();
    let (walked, _) = moat::capture::scan_dry(
        &store,
        ws,
        &WalkOptions::default(),
        &moat::util::progress::NoProgress,
    )
    .unwrap();
    walked.root
}
