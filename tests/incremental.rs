//! The stat cache: a no-change snapshot opens no file; a change re-reads
//! only the changed file; a restore primes the cache.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;

fn stat(v: &serde_json::Value, k: &str) -> u64 {
    v["stats"][k]
        .as_u64()
        .unwrap_or_else(|| panic!("no stats.{k} in {v}"))
}

#[test]
fn unchanged_files_are_not_read_and_changed_ones_are() {
    let env = Env::new();
    let ws = env.path("ws");
    rich_tree(&ws);
    common::backdate(&ws);
    let first = env.snapshot_json(&ws, &[]);
    assert!(stat(&first, "files_read") >= 7);
    let second = env.snapshot_json(&ws, &["--allow-empty"]);
    assert_eq!(stat(&second, "files_read"), 0);
    assert_eq!(second["root"], first["root"]);
    write(&ws.join("src/main.rs"), b"fn main() { changed() }\n");
    let third = env.snapshot_json(&ws, &[]);
    assert_eq!(stat(&third, "files_read"), 1);
    assert_ne!(third["root"], first["root"]);
    assert_eq!(third["unchanged"], false);
}

/// Proof that no file is opened: the files belong to root with mode 0600.
/// Root takes the first snapshot; then `nobody`, who can stat the files but
/// cannot open them, takes the second: it succeeds with the same root tree,
/// so it opened nothing. Nothing about the files changes in between.
#[test]
fn no_change_snapshot_opens_no_file() {
    if !nix::unistd::geteuid().is_root() || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: needs root and setpriv to switch to an unprivileged user");
        return;
    }
    let env = Env::new();
    let ws = env.path("ws");
    for i in 0..20 {
        let p = ws.join(format!("d{}/f{i}.txt", i % 4));
        write(&p, format!("secret {i}\n").as_bytes());
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    }
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    common::backdate(&ws);
    let first = env.snapshot_json(&ws, &[]);
    assert_eq!(stat(&first, "files_read"), 20);
    let chown = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(env.store())
        .status()
        .unwrap();
    assert!(chown.success());
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                env!("CARGO_BIN_EXE_moat"),
            ])
            .arg("--store")
            .arg(env.store())
            .args(args)
            .output()
            .unwrap()
    };
    // The test bites: nobody really cannot read these files.
    let cat = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
        .arg(ws.join("d0/f0.txt"))
        .output()
        .unwrap();
    assert!(!cat.status.success(), "nobody could read a 0600 root file");
    let out = as_nobody(&["snapshot", ws.to_str().unwrap(), "--json", "--allow-empty"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(out.stderr.is_empty(), "{}", show(&out));
    let second: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stat(&second, "files_read"), 0);
    assert_eq!(second["root"], first["root"]);
}

#[test]
fn restore_primes_the_stat_cache() {
    let env = Env::new();
    let ws = env.path("ws");
    rich_tree(&ws);
    common::backdate(&ws);
    let id = env.snapshot(&ws);
    let out = env.path("restored");
    env.restore(&id, &out);
    let snap = env.snapshot_json(&out, &[]);
    assert_eq!(
        stat(&snap, "files_read"),
        0,
        "the restored tree was re-read: {snap}"
    );
}
