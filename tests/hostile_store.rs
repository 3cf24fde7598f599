//! Hostile stores: objects that claim more than the store can hold, trees
//! that restore would refuse, FIFOs where store files should be, and
//! symlinked store directories. Every one is a clear error or a `check`
//! problem: no hang, no huge allocation, nothing written outside the store.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::hostile::*;
use common::*;
use moat::ObjectId;
use moat::format::compress::Compression;
use moat::format::pack::ObjectKind;

/// Runs `cmd` to completion, or kills it and fails the test after `secs`:
/// moat must never block on a store file.
fn finishes(mut cmd: Command, secs: u64, what: &str) -> Output {
    let mut child: Child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn moat");
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("{what}: moat hangs (killed after {secs}s)\n{}", show(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// moat with its address space limited to 1 GiB: an allocation the size
/// of a hostile claim aborts it instead of succeeding.
fn limited(env: &Env, args: &[&str]) -> Output {
    let mut cmd = env.cmd();
    cmd.args(args);
    common::hostile::limit_memory(&mut cmd, 1 << 30);
    finishes(cmd, 120, &format!("{args:?}"))
}

fn clean_failure(out: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{what}: should fail\n{}", show(out));
    assert_eq!(out.status.code(), Some(1), "{what}: crashed\n{}", show(out));
    assert!(
        !err.contains("panicked") && !err.contains("memory allocation"),
        "{what}: {err}"
    );
    err
}

/// Item 11: a few KiB of zstd claiming 4 GiB, as a chunk and as a tree.
/// Refused from the index entry (raw_len above the store's chunk_max or
/// the tree limit) before any decompression.
#[test]
fn objects_claiming_more_than_the_store_allows_are_refused_unread() {
    for kind in [ObjectKind::Chunk, ObjectKind::Tree] {
        let env = Env::new();
        let forge = Forge::new(&env);
        let bomb = zstd_bomb(u32::MAX as u64);
        assert!(bomb.len() < 200 << 10);
        let bomb_id = ObjectId::hash(b"claims 4 GiB");
        forge.pack(vec![Forged {
            id: bomb_id,
            kind,
            compression: Compression::Zstd,
            raw_len: u32::MAX,
            stored: bomb,
        }]);
        let id = match kind {
            // The entry claims a size one chunk can hold (a tree claiming
            // more is refused before any chunk is looked at): the chunk's
            // own claim is what is refused here.
            ObjectKind::Chunk => forge.commit(&[tree(vec![file(b"huge", 1000, vec![bomb_id])])], &[]),
            ObjectKind::Tree => forge.snapshot(bomb_id),
        };
        let target = env.path("out");
        let out = limited(&env, &["restore", &id, "--to", target.to_str().unwrap()]);
        let err = clean_failure(&out, "restore");
        assert!(
            err.contains(&bomb_id.to_hex()) && err.contains("limit"),
            "{kind:?}: {err}"
        );
        let out = limited(&env, &["check", "--read-data"]);
        let err = clean_failure(&out, "check");
        assert!(
            err.contains(&bomb_id.to_hex()) && err.contains("limit"),
            "{kind:?}: {err}"
        );
    }
}

/// Item 12: what restore refuses, `check` reports, with snapshot and path,
/// every problem and not just the first.
#[test]
fn check_finds_what_restore_refuses() {
    let env = Env::new();
    let forge = Forge::new(&env);
    let c = ObjectId::hash(b"12345");
    let sub = tree(vec![file(b"inner", 5, vec![c])]);
    let (sub_id, _) = sub.id_and_bytes();
    let root = tree(vec![
        file(b"claims-10", 10, vec![c]),
        file(b"claims-2", 2, vec![c]),
        file(b"chunk-is-a-tree", 5, vec![sub_id]),
        dir(b"tree-is-a-chunk", c),
        dir(b"fine", sub_id),
    ]);
    let snap = forge.commit(&[sub, root], &[b"12345"]);
    for args in [&["check"][..], &["check", "--read-data"]] {
        let err = env.fails(args);
        for path in ["/claims-10", "/claims-2", "/chunk-is-a-tree", "/tree-is-a-chunk"] {
            assert!(
                err.lines().any(|l| l.contains(&snap[..8]) && l.contains(path)),
                "{args:?}: {path} not reported with its snapshot:\n{err}"
            );
        }
        assert!(!err.contains("/fine"), "{err}");
    }
    // And restore does refuse each of them.
    for path in ["claims-10", "claims-2", "chunk-is-a-tree", "tree-is-a-chunk"] {
        let target = env.path(&format!("out-{path}"));
        env.fails(&["restore", &snap, "--path", path, "--to", target.to_str().unwrap()]);
    }
}

fn make_fifo(path: &Path) {
    let _ = fs::remove_file(path);
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
}

fn first_file(dir: &Path) -> PathBuf {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                return e.path();
            }
        }
    }
    panic!("no file below {}", dir.display());
}

/// Item 13: a FIFO in place of any store file is an error or a reported
/// problem, never a hang (moat holds the store lock while it waits).
#[test]
fn fifos_in_the_store_never_hang_moat() {
    type Place = fn(&Env) -> PathBuf;
    let cases: [(&str, Place); 6] = [
        ("config", |e| e.store().join("config")),
        ("lock", |e| e.store().join("lock")),
        ("snapshot", |e| first_file(&e.store().join("snapshots"))),
        ("index", |e| first_file(&e.store().join("index"))),
        ("pack", |e| first_file(&e.store().join("packs"))),
        ("stat cache", |e| first_file(&e.store().join("cache"))),
    ];
    for (what, place) in cases {
        let env = Env::new();
        let ws = env.path("ws");
        write(&ws.join("a.txt"), b"hello");
        write(&ws.join("b.bin"), &noise(100 << 10, 3));
        let id = env.snapshot(&ws);
        make_fifo(&place(&env));
        write(&ws.join("c.txt"), b"changed");
        let target = env.path("out");
        let runs: [&[&str]; 5] = [
            &["snapshots", "--all"],
            &["check", "--read-data"],
            &["snapshot", ws.to_str().unwrap()],
            &["restore", &id, "--to", target.to_str().unwrap()],
            &["gc", "--all"],
        ];
        let mut failed = 0;
        for args in runs {
            let mut cmd = env.cmd();
            cmd.args(args);
            let out = finishes(cmd, 60, &format!("FIFO as {what}: {args:?}"));
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!err.contains("panicked"), "{what} {args:?}: {err}");
            if !out.status.success() || !err.is_empty() {
                failed += 1;
                assert!(
                    err.contains("not a regular file") || err.contains("moat check"),
                    "FIFO as {what}, {args:?}: unclear message:\n{err}"
                );
            }
        }
        assert!(failed > 0, "FIFO as {what}: nobody noticed");
    }
}

/// Item 16: a store whose layout directories, lock or config are symlinks
/// is refused, naming the path; nothing is written where they point.
#[test]
fn symlinked_store_directories_are_refused() {
    for name in [
        "packs",
        "index",
        "snapshots",
        "cache",
        "tmp",
        "pins",
        "lock",
        "config",
    ] {
        let env = Env::new();
        let ws = env.path("ws");
        write(&ws.join("a.txt"), b"hello");
        env.snapshot(&ws);
        let real = env.store().join(name);
        let elsewhere = env.path(&format!("elsewhere-{name}"));
        fs::rename(&real, &elsewhere).unwrap();
        symlink(&elsewhere, &real).unwrap();
        let before = listing(env.dir.path());
        write(&ws.join("b.bin"), &noise(50 << 10, 9));
        let before_ws = listing(env.dir.path());
        let err = env.fails(&["snapshot", ws.to_str().unwrap()]);
        assert!(
            err.contains(real.to_str().unwrap()) && err.contains("symlink"),
            "{name}: {err}"
        );
        let err = env.fails(&["gc", "--all"]);
        assert!(err.contains("symlink"), "{name}: {err}");
        // Only the workspace edit changed anything.
        let after = listing(env.dir.path());
        let new: Vec<_> = after.iter().filter(|l| !before_ws.contains(l)).collect();
        assert!(new.is_empty(), "{name}: written through the symlink: {new:?}");
        assert!(before.len() <= after.len());
    }
}

/// Item 16, one level down: a pack's fan-out directory (`packs/<xx>/`)
/// that is a symlink is never written through. All 256 of them point
/// outside the store before the first pack is written, so whatever a new
/// pack's id, its directory is one of them.
#[test]
fn symlinked_pack_fan_out_directories_are_never_written_through() {
    let env = Env::new();
    drop(Forge::new(&env));
    let elsewhere = env.path("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    let packs = env.store().join("packs");
    fs::create_dir_all(&packs).unwrap();
    for b in 0..=255u8 {
        symlink(&elsewhere, packs.join(format!("{b:02x}"))).unwrap();
    }
    let ws = env.path("ws");
    write(&ws.join("a.txt"), b"hello");
    write(&ws.join("b.bin"), &noise(50 << 10, 9));
    let err = env.fails(&["snapshot", ws.to_str().unwrap()]);
    assert!(
        err.contains(packs.to_str().unwrap()) && err.contains("symlink"),
        "{err}"
    );
    let outside: Vec<_> = fs::read_dir(&elsewhere)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(outside.is_empty(), "written through the symlink: {outside:?}");
    let files = |d: &str| -> Vec<PathBuf> {
        fs::read_dir(env.store().join(d))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect()
    };
    assert!(files("tmp").is_empty(), "temp files left: {:?}", files("tmp"));
    assert!(files("snapshots").is_empty(), "a snapshot was committed");
}
