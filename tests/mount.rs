//! `moat mount`: a read-only FUSE view of one snapshot, or of all the
//! snapshots of a workspace, equal byte for byte (and in modes, mtimes and
//! symlinks) to a restore of the same snapshot; files read chunk by chunk,
//! each chunk verified; unmounted on SIGINT and SIGTERM.

mod common;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use common::fuse::{self, is_mounted};
use common::*;
use moat::store::backend::FileKind;

const BIG: usize = 8 << 20;

/// The rich tree plus one multi-chunk file, a directory too large for one
/// readdir reply (the kernel asks again from an offset), and a file from
/// before 1970 (a negative mtime).
fn workspace(env: &Env) -> std::path::PathBuf {
    let ws = env.path("ws");
    rich_tree(&ws);
    write(&ws.join("big/multi.bin"), &noise(BIG, 42));
    for i in 0..600 {
        write(
            &ws.join(format!("many/entry-{i:04}.txt")),
            format!("{i}\n").as_bytes(),
        );
    }
    write(&ws.join("old.txt"), b"from 1960\n");
    let then = std::time::UNIX_EPOCH - std::time::Duration::new(315_619_200, 250_000_000);
    fs::File::options()
        .write(true)
        .open(ws.join("old.txt"))
        .unwrap()
        .set_modified(then)
        .unwrap();
    ws
}

fn diff_r(a: &Path, b: &Path) {
    let out = Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(a)
        .arg(b)
        .output()
        .expect("diff");
    assert!(
        out.status.success(),
        "diff -r {} {}: {}",
        a.display(),
        b.display(),
        show(&out)
    );
}

/// A store holding one snapshot of `multi.bin`, BIG bytes of noise from
/// `seed` (some 128 chunks); the snapshot's id.
fn one_big_file(seed: u64) -> (Env, String) {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("multi.bin"), &noise(BIG, seed));
    let id = env.snapshot(&ws);
    (env, id)
}

/// The number `N` in the `N chunks decoded` of `mount --verbose`.
fn chunks_decoded(stderr: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.contains("chunks decoded"))
        .unwrap_or_else(|| panic!("no stats in: {stderr}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "chunks").unwrap();
    words[at - 1].parse().unwrap()
}

#[test]
fn a_mounted_snapshot_equals_its_restore_and_unmounts_on_sigterm() {
    let test = "a_mounted_snapshot_equals_its_restore_and_unmounts_on_sigterm";
    let env = Env::new();
    let ws = workspace(&env);
    let id = env.snapshot(&ws);
    let restored = env.path("restored");
    env.restore(&id, &restored);
    let mnt = env.path("mnt");
    let Some(mut m) = fuse::mount(test, &env, &[&id], &mnt, env.dir.path()) else {
        return;
    };
    assert_same_tree(&restored, &mnt);
    diff_r(&restored, &mnt);
    assert_eq!(fs::read_dir(mnt.join("many")).unwrap().count(), 600);
    // Ranges of the multi-chunk file, across chunk boundaries.
    let want = noise(BIG, 42);
    let f = fs::File::open(mnt.join("big/multi.bin")).unwrap();
    for (off, len) in [
        (0, 1),
        (1, 70_000),
        (65_535, 3),
        (BIG / 2 + 17, 300_000),
        (BIG - 10, 10),
        (BIG - 5, 100),
    ] {
        let mut buf = vec![0u8; len];
        let n = f.read_at(&mut buf, off as u64).unwrap();
        let end = (off + len).min(BIG);
        assert_eq!(n, end - off, "read at {off}");
        assert_eq!(&buf[..n], &want[off..end], "bytes at {off}");
    }
    assert_eq!(f.read_at(&mut [0u8; 4], BIG as u64).unwrap(), 0, "EOF");
    // Read-only.
    let e = fs::write(mnt.join("new.txt"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    drop(f);
    let (status, err) = m.stop(libc::SIGTERM);
    assert!(status.success(), "{status}: {err}");
    assert!(!is_mounted(&mnt), "still mounted after SIGTERM");
}

#[test]
fn a_read_in_the_middle_of_a_large_file_fetches_only_its_chunks() {
    let test = "a_read_in_the_middle_of_a_large_file_fetches_only_its_chunks";
    let (env, id) = one_big_file(9);
    let mnt = env.path("mnt");
    let Some(mut m) = fuse::mount(test, &env, &["--verbose", &id], &mnt, env.dir.path()) else {
        return;
    };
    let f = fs::File::open(mnt.join("multi.bin")).unwrap();
    let mut buf = [0u8; 100];
    f.read_at(&mut buf, (BIG / 2) as u64).unwrap();
    assert_eq!(&buf[..], &noise(BIG, 9)[BIG / 2..BIG / 2 + 100]);
    drop(f);
    let (status, err) = m.stop(libc::SIGINT);
    assert!(status.success(), "{status}: {err}");
    assert!(!is_mounted(&mnt), "still mounted after SIGINT");
    let decoded = chunks_decoded(&err);
    // 8 MiB is some 128 chunks; the read plus the kernel's readahead
    // needs a handful.
    assert!(
        (1..=8).contains(&decoded),
        "{decoded} chunks decoded for one small read: {err}"
    );
}

#[test]
fn all_snapshots_of_a_workspace_are_listed_by_time_with_latest() {
    let test = "all_snapshots_of_a_workspace_are_listed_by_time_with_latest";
    let env = Env::new();
    let ws = workspace(&env);
    let a = env.snapshot(&ws);
    write(&ws.join("README.md"), b"# changed\n");
    fs::remove_dir_all(ws.join("empty")).unwrap();
    let b = env.snapshot(&ws);
    let mnt = env.path("mnt");
    // Not from a directory without snapshots.
    let home = env.path("home");
    fs::create_dir_all(&home).unwrap();
    let out = output_within(env.cmd().args(["mount"]).arg(&mnt).current_dir(&home), 60);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no snapshots of"),
        "{}",
        show(&out)
    );

    let Some(mut m) = fuse::mount(test, &env, &[], &mnt, &ws) else {
        return;
    };
    let mut names: Vec<String> = fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(names[2], "latest");
    assert!(names[0].ends_with(&format!("-{}", &a[..12])), "{names:?}");
    assert!(names[1].ends_with(&format!("-{}", &b[..12])), "{names:?}");
    assert_eq!(
        fs::read_link(mnt.join("latest")).unwrap().as_os_str().as_bytes(),
        names[1].as_bytes()
    );
    for (id, name) in [(&a, &names[0]), (&b, &names[1])] {
        let to = env.path(&format!("r-{id}"));
        env.restore(id, &to);
        assert_same_tree(&to, &mnt.join(name));
    }
    diff_r(&env.path(&format!("r-{b}")), &mnt.join("latest/"));
    let (status, err) = m.stop(libc::SIGINT);
    assert!(status.success(), "{status}: {err}");
    assert!(!is_mounted(&mnt));
}

#[test]
fn a_damaged_chunk_fails_its_read_with_eio_and_no_other() {
    let test = "a_damaged_chunk_fails_its_read_with_eio_and_no_other";
    let (env, id) = one_big_file(5);
    // Flip a byte inside the stored form of the file's last chunk.
    let store = moat::Store::open(&env.store()).unwrap();
    let snap = moat::ops::resolve::snapshot(&store, &id, None).unwrap();
    let entry = moat::ops::inspect::lookup(&store, &snap.snap.root, b"multi.bin")
        .unwrap()
        .unwrap();
    let moat::format::tree::Content::File(chunks) = entry.content else {
        panic!("not a file")
    };
    let last = chunks.last().unwrap();
    let idx = store.index().unwrap();
    let e = idx.get(last).unwrap();
    let pack = store.describe(FileKind::Pack, &idx.pack_id(e.pack).to_hex());
    let mut bytes = fs::read(&pack).unwrap();
    bytes[e.offset as usize + e.stored_len as usize / 2] ^= 0x55;
    fs::write(&pack, bytes).unwrap();
    drop(store);

    let mnt = env.path("mnt");
    let Some(mut m) = fuse::mount(test, &env, &[&id], &mnt, env.dir.path()) else {
        return;
    };
    let f = fs::File::open(mnt.join("multi.bin")).unwrap();
    let mut buf = vec![0u8; 4096];
    f.read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..], &noise(BIG, 5)[..4096], "the first chunks are intact");
    let e = f.read_at(&mut buf, (BIG - 100) as u64).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    drop(f);
    let (status, err) = m.stop(libc::SIGTERM);
    assert!(status.success(), "{status}: {err}");
    assert!(!is_mounted(&mnt), "still mounted after SIGTERM");
    assert!(
        err.contains("multi.bin"),
        "the damage is reported with its path: {err}"
    );
}

#[test]
fn a_busy_mount_is_detached_on_sigint() {
    let test = "a_busy_mount_is_detached_on_sigint";
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("a.txt"), b"held open\n");
    let id = env.snapshot(&ws);
    let mnt = env.path("mnt");
    let Some(mut m) = fuse::mount(test, &env, &[&id], &mnt, env.dir.path()) else {
        return;
    };
    // An open file (a shell cd'd inside would do the same) makes a plain
    // unmount fail with EBUSY; moat detaches instead of staying mounted.
    let f = fs::File::open(mnt.join("a.txt")).unwrap();
    let mut buf = [0u8; 9];
    f.read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"held open");
    let (status, err) = m.stop(libc::SIGINT);
    assert!(status.success(), "{status}: {err}");
    assert!(!is_mounted(&mnt), "still mounted after SIGINT with a file open");
    drop(f);
}

#[test]
fn a_tree_nested_deeper_than_restore_reads_fails_there_with_eio() {
    use moat::format::tree::MAX_DEPTH;
    let test = "a_tree_nested_deeper_than_restore_reads_fails_there_with_eio";
    let env = Env::new();
    let trees = common::hostile::deep_chain(MAX_DEPTH + 5);
    let id = common::hostile::Forge::new(&env).commit(&trees, &[b"deep"]);
    let mnt = env.path("mnt");
    let Some(mut m) = fuse::mount(test, &env, &[&id], &mnt, env.dir.path()) else {
        return;
    };
    // Down `d/d/d/...` one openat at a time (the path is longer than
    // PATH_MAX): the levels a restore would write open, the next fails.
    let open_dir = |at: std::os::fd::BorrowedFd<'_>, name: &str| {
        nix::fcntl::openat(
            at,
            name,
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )
    };
    let mut dir = fs::File::open(&mnt).unwrap().into();
    let mut levels = 0;
    let failed = loop {
        match open_dir(std::os::fd::AsFd::as_fd(&dir), "d") {
            Ok(next) => {
                dir = next;
                levels += 1;
            }
            Err(e) => break e,
        }
    };
    assert_eq!(failed, nix::errno::Errno::EIO, "after {levels} levels");
    assert_eq!(levels, MAX_DEPTH, "the levels a restore would write");
    drop(dir);
    let (status, err) = m.stop(libc::SIGTERM);
    assert!(status.success(), "{status}: {err}");
    assert!(err.contains("deeper than"), "{err}");
    assert!(
        err.lines().all(|l| l.len() < 1000),
        "messages cut paths short: {err}"
    );
}
