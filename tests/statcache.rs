//! The stat cache is trusted only when it is intact and names the
//! workspace it describes: a damaged or foreign cache is ignored with a
//! warning, and the snapshot stores what the files hold.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use moat::ObjectId;

fn cache_files(env: &Env) -> Vec<PathBuf> {
    fs::read_dir(env.store().join("cache"))
        .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|p: &PathBuf| p.extension().is_some_and(|e| e == "stat"))
        .collect()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The content of `rel` in snapshot `id`, restored.
fn restored(env: &Env, id: &str, rel: &str, tag: &str) -> Vec<u8> {
    let out = env.path(tag);
    env.restore(id, &out);
    fs::read(out.join(rel)).unwrap()
}

fn two_files(ws: &Path) {
    write(&ws.join("a.txt"), b"AAAAAAAAAAAAAAAA contents of a\n");
    write(&ws.join("b.txt"), b"BBBBBBBBBBBBBBBB contents of b\n");
    // Old mtimes: the cache would vouch for both (no racy re-read).
    backdate(ws);
}

#[test]
fn damaged_stat_cache_is_ignored_not_trusted() {
    let env = Env::new();
    let ws = env.path("ws");
    two_files(&ws);
    env.snapshot(&ws);
    let [cache] = cache_files(&env).try_into().expect("one stat cache");
    // Swap the chunk ids of a.txt and b.txt in place: same length, so only
    // a checksum can tell.
    let ida = ObjectId::hash(&fs::read(ws.join("a.txt")).unwrap());
    let idb = ObjectId::hash(&fs::read(ws.join("b.txt")).unwrap());
    let mut data = fs::read(&cache).unwrap();
    let pa = find(&data, &ida.0).expect("a's chunk in the cache");
    let pb = find(&data, &idb.0).expect("b's chunk in the cache");
    data[pa..pa + 32].copy_from_slice(&idb.0);
    data[pb..pb + 32].copy_from_slice(&ida.0);
    fs::write(&cache, &data).unwrap();
    write(&ws.join("c.txt"), b"a change, so a snapshot is written\n");
    let v = env.snapshot_json(&ws, &[]);
    let warnings = v["warnings"].to_string();
    assert!(warnings.contains("stat cache"), "no warning: {v}");
    let id = v["id"].as_str().unwrap();
    assert_eq!(
        restored(&env, id, "a.txt", "out"),
        fs::read(ws.join("a.txt")).unwrap()
    );
    env.ok(&["check", "--read-data"]);
}

#[test]
fn stat_cache_of_another_workspace_is_ignored() {
    let env = Env::new();
    let ws = env.path("ws");
    two_files(&ws);
    env.snapshot(&ws);
    let ws = fs::canonicalize(&ws).unwrap();
    // A well-formed cache that names another workspace, whose entry for
    // a.txt matches a.txt's stat but holds b.txt's chunks.
    let meta = fs::symlink_metadata(ws.join("a.txt")).unwrap();
    let idb = ObjectId::hash(&fs::read(ws.join("b.txt")).unwrap());
    let entry = moat::format::statcache::CachedFile {
        stat: moat::format::statcache::FileStat::of(&meta),
        chunks: vec![idb],
    };
    let bytes = moat::format::statcache::StatCache::encode(
        b"/some/other/workspace",
        i64::MAX,
        vec![(b"a.txt".to_vec(), entry)],
    );
    let [cache] = cache_files(&env).try_into().expect("one stat cache");
    fs::write(&cache, bytes).unwrap();
    write(&ws.join("c.txt"), b"a change, so a snapshot is written\n");
    let v = env.snapshot_json(&ws, &[]);
    assert!(v["warnings"].to_string().contains("stat cache"), "{v}");
    let id = v["id"].as_str().unwrap();
    assert_eq!(
        restored(&env, id, "a.txt", "out"),
        fs::read(ws.join("a.txt")).unwrap()
    );
}

/// The cache-tree never keeps a directory's tree when an entry changed
/// without changing the directory's entry count.
#[test]
fn cache_tree_sees_changes_that_keep_the_entry_count() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("d/a.txt"), b"a");
    write(&ws.join("d/b.txt"), b"b");
    write(&ws.join("d/deep/er/c.txt"), b"c");
    write(&ws.join("e/x"), b"x");
    backdate(&ws);
    env.snapshot(&ws);
    let steps: Vec<Box<dyn Fn()>> = vec![
        // Rename inside a directory: same count, other name.
        Box::new(|| fs::rename(ws.join("d/a.txt"), ws.join("d/z.txt")).unwrap()),
        // A file replaced by a symlink of the same name.
        Box::new(|| {
            fs::remove_file(ws.join("d/b.txt")).unwrap();
            std::os::unix::fs::symlink("z.txt", ws.join("d/b.txt")).unwrap();
        }),
        // A deep change, then backdated so only the stat tells.
        Box::new(|| {
            write(&ws.join("d/deep/er/c.txt"), b"C");
            backdate(&ws);
        }),
        // A file replaced by a directory of the same name.
        Box::new(|| {
            fs::remove_file(ws.join("e/x")).unwrap();
            write(&ws.join("e/x/inner"), b"i");
        }),
    ];
    for (k, step) in steps.iter().enumerate() {
        step();
        let id = env.snapshot(&ws);
        let out = env.path(&format!("out{k}"));
        env.restore(&id, &out);
        assert_same_tree(&ws, &out);
    }
}

#[test]
fn version_1_cache_is_ignored_with_a_note_and_rebuilt() {
    let env = Env::new();
    let ws = env.path("ws");
    two_files(&ws);
    env.snapshot(&ws);
    let [cache] = cache_files(&env).try_into().expect("one stat cache");
    let mut v1 = b"MOATSTAT".to_vec();
    v1.extend_from_slice(&1u32.to_le_bytes());
    v1.extend_from_slice(&[0; 20]);
    fs::write(&cache, &v1).unwrap();
    let v = env.snapshot_json(&ws, &["--allow-empty"]);
    assert!(v["warnings"].to_string().contains("version 1 stat cache"), "{v}");
    assert_eq!(v["stats"]["files_read"], 2, "{v}");
    let v = env.snapshot_json(&ws, &["--allow-empty"]);
    assert_eq!(v["stats"]["files_read"], 0, "rebuilt: {v}");
    assert_eq!(v["warnings"].as_array().map(Vec::len), Some(0), "{v}");
}

/// A capture whose every directory matched the cache, but whose walk
/// options differ from the cached scan's, rewrites the cache whole (it
/// once wrote an empty one, so the next snapshot read every file again).
#[test]
fn other_walk_options_rewrite_the_whole_cache() {
    let env = Env::new();
    let ws = env.path("ws");
    two_files(&ws);
    write(&ws.join("d/e/f.txt"), b"deep");
    backdate(&ws);
    env.snapshot(&ws);
    let excl = ["--allow-empty", "--exclude", "*.nothing"];
    let v = env.snapshot_json(&ws, &excl);
    assert_eq!(v["stats"]["files_read"], 0, "{v}");
    let v = env.snapshot_json(&ws, &excl);
    assert_eq!(v["stats"]["files_read"], 0, "{v}");
}
