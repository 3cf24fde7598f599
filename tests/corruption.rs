//! Corrupt and hostile stores: clear errors, no panics, nothing written
//! outside the restore target.

mod common;

use std::fs;

use common::hostile::{Forge, file};
use common::*;
use moat::ObjectId;
use moat::format::tree::Tree;

fn packs(env: &Env) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for sub in fs::read_dir(env.store().join("packs")).unwrap().flatten() {
        out.extend(fs::read_dir(sub.path()).unwrap().flatten().map(|e| e.path()));
    }
    out
}

#[test]
fn flipped_byte_in_a_pack_is_named() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("big.bin"), &noise(3 << 20, 1));
    let id = env.snapshot(&ws);
    // The largest pack holds the chunks.
    let pack = packs(&env)
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut data = fs::read(&pack).unwrap();
    data[5000] ^= 0x40;
    fs::write(&pack, &data).unwrap();
    let err = env.fails(&["check", "--read-data"]);
    let pack_name = pack.file_stem().unwrap().to_string_lossy().to_string();
    assert!(err.contains(&pack_name) && err.contains("problem"), "{err}");
    let err = env.fails(&["restore", &id, "--to", env.path("out").to_str().unwrap()]);
    assert!(
        err.contains("in pack") && err.contains("check --read-data"),
        "{err}"
    );
    // Structure-only check does not read chunk data, so it passes.
    env.ok(&["check"]);
}

#[test]
fn truncated_index_is_reported() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("a.txt"), b"hello");
    let id = env.snapshot(&ws);
    let idx = fs::read_dir(env.store().join("index"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let len = fs::metadata(&idx).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&idx)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let err = env.fails(&["check"]);
    assert!(
        err.contains("corrupt index") && err.contains(&idx.display().to_string()),
        "{err}"
    );
    let err = env.fails(&["restore", &id, "--to", env.path("out").to_str().unwrap()]);
    assert!(
        err.contains("not in the store index") && err.contains("moat check"),
        "{err}"
    );
}

#[test]
fn bad_magic_and_unknown_version_are_clear_errors() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("a.txt"), b"hello");
    env.snapshot(&ws);
    let cfg = env.store().join("config");
    let mut data = fs::read(&cfg).unwrap();
    data[8] = 99; // version
    fs::write(&cfg, &data).unwrap();
    let err = env.fails(&["snapshots"]);
    assert!(
        err.contains("version 99 is not supported") && err.contains("upgrade moat"),
        "{err}"
    );
    fs::write(&cfg, b"GARBAGE!GARBAGE!").unwrap();
    let err = env.fails(&["snapshots"]);
    assert!(err.contains("bad magic"), "{err}");
}

/// Commits a snapshot whose root tree is the last of `trees` (written as is).
fn commit_hostile(env: &Env, trees: &[Tree], chunks: &[&[u8]]) -> String {
    Forge::new(env).commit(trees, chunks)
}

#[test]
fn traversal_names_are_refused_and_nothing_escapes() {
    for bad in [&b"../escaped"[..], b"..", b"a/../../escaped", b"", b"."] {
        let env = Env::new();
        let c = ObjectId::hash(b"pwned");
        let tree = Tree {
            entries: vec![file(bad, 5, vec![c])],
        };
        let id = commit_hostile(&env, &[tree], &[b"pwned"]);
        let target = env.path("deep/target");
        let err = env.fails(&["restore", &id, "--to", target.to_str().unwrap()]);
        assert!(err.contains("tree") && (err.contains("name")), "{bad:?}: {err}");
        assert!(!env.path("deep/escaped").exists() && !env.path("escaped").exists());
        let err = env.fails(&["check"]);
        assert!(err.contains("problem"), "{err}");
    }
}

#[test]
fn manifest_size_bounds_the_file() {
    let env = Env::new();
    let c = ObjectId::hash(b"12345");
    // Claims 10 bytes, holds 5; and one that claims 2, holds 5.
    for (size, name) in [(10u64, &b"short"[..]), (2, b"long")] {
        let tree = Tree {
            entries: vec![file(name, size, vec![c])],
        };
        let id = commit_hostile(&env, &[tree], &[b"12345"]);
        let target = env.path(&format!("t-{size}"));
        let err = env.fails(&["restore", &id, "--to", target.to_str().unwrap()]);
        assert!(err.contains("manifest says"), "{err}");
        assert!(
            !target.join(std::str::from_utf8(name).unwrap()).exists(),
            "a partial file was left behind"
        );
    }
}

#[test]
fn missing_snapshot_tree_is_a_check_problem() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("a.txt"), b"hello");
    env.snapshot(&ws);
    for p in packs(&env) {
        fs::remove_file(p).unwrap();
    }
    let err = env.fails(&["check"]);
    assert!(err.contains("missing"), "{err}");
}
