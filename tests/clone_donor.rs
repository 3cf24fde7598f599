//! Restore's clone donors come from a stat cache, which is only a cache: a
//! crafted one must never make restore copy bytes from outside the
//! workspace, from another user's file, or bytes other than the entry's.
//! Runs on a reflink filesystem (see `common::reflink`); without one, the
//! clone path is never taken and the test says so.

mod common;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use moat::format::statcache::{CachedFile, FileStat, StatCache};

const CONTENT: &[u8] = b"public content, 32 bytes long!!\n";
const SECRET: &[u8] = b"root-only secret, same length!!\n";

/// Replaces the stat cache of `ws` with one entry: `rel`, claiming the
/// stat of `stat_of` and the chunks of CONTENT.
fn plant_cache(env: &Env, ws: &Path, rel: &str, stat_of: &Path) {
    let store = moat::Store::open(&env.store()).unwrap();
    let chunks = vec![moat::ObjectId::hash(CONTENT)];
    let stat = FileStat::of(&fs::symlink_metadata(stat_of).unwrap());
    let taken = moat::util::now_ns() + 3_600_000_000_000;
    let bytes = StatCache::encode(
        ws.as_os_str().as_bytes(),
        taken,
        vec![(rel.as_bytes().to_vec(), CachedFile { stat, chunks })],
    );
    fs::write(store.stat_cache_path(ws), bytes).unwrap();
}

fn restore_verbose(env: &Env, id: &str, to: &Path) -> String {
    let out = env
        .cmd()
        .args(["--verbose", "restore", id, "--to", to.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn crafted_donors_never_bring_in_foreign_bytes() {
    let Some(base) = common::reflink::dir("crafted_donors") else {
        return;
    };
    let env = Env::new_in(&base);
    let ws = env.path("ws");
    write(&ws.join("f.txt"), CONTENT);
    backdate(&ws);
    let id = env.snapshot(&ws);
    let ws = fs::canonicalize(&ws).unwrap();

    // A: a donor path through a symlink to a root-only file outside.
    let outside = env.path("outside");
    write(&outside.join("secret"), SECRET);
    fs::set_permissions(outside.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&outside, ws.join("link")).unwrap();
    plant_cache(&env, &ws, "link/secret", &outside.join("secret"));
    let out = env.path("out-a");
    let err = restore_verbose(&env, &id, &out);
    assert_eq!(
        fs::read(out.join("f.txt")).unwrap(),
        CONTENT,
        "cloned through a symlink"
    );
    assert!(err.contains("clones: 0 of"), "{err}");

    // B: a donor inside the workspace whose bytes are not the entry's.
    write(&ws.join("g.txt"), SECRET);
    backdate(&ws);
    plant_cache(&env, &ws, "g.txt", &ws.join("g.txt"));
    let out = env.path("out-b");
    let err = restore_verbose(&env, &id, &out);
    assert_eq!(fs::read(out.join("f.txt")).unwrap(), CONTENT, "unverified clone");
    assert!(err.contains("clones: 0 of"), "{err}");

    // C: the right bytes, but another user's file.
    if nix::unistd::geteuid().is_root() {
        write(&ws.join("h.txt"), CONTENT);
        backdate(&ws);
        std::os::unix::fs::chown(ws.join("h.txt"), Some(65534), Some(65534)).unwrap();
        plant_cache(&env, &ws, "h.txt", &ws.join("h.txt"));
        let err = restore_verbose(&env, &id, &env.path("out-c"));
        assert!(err.contains("clones: 0 of"), "cloned another user's file: {err}");
    }

    // And an honest cache still clones.
    plant_cache(&env, &ws, "f.txt", &ws.join("f.txt"));
    let out = env.path("out-d");
    let err = restore_verbose(&env, &id, &out);
    assert_eq!(fs::read(out.join("f.txt")).unwrap(), CONTENT);
    assert!(err.contains("clones: 1 of"), "{err}");
}
