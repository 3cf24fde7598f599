//! Snapshot → restore round trips through the real binary.

mod common;

use std::fs;
use std::os::unix::ffi::OsStrExt;

use common::*;

#[test]
fn every_entry_kind_round_trips() {
    let env = Env::new();
    let ws = env.path("ws");
    rich_tree(&ws);
    let id = env.snapshot(&ws);
    assert_eq!(id.len(), 64);
    let out = env.path("out");
    env.restore(&id[..8], &out);
    assert_same_tree(&ws, &out);
    // A symlink is restored as a link, never followed.
    assert_eq!(
        fs::read_link(out.join("src/up-link")).unwrap().to_str(),
        Some("../outside")
    );
    assert!(!env.path("outside").exists());
    env.ok(&["check", "--read-data"]);
}

#[test]
fn gitignore_and_excludes_are_honoured_and_git_dir_never_stored() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join(".gitignore"), b"target/\n*.log\n");
    write(&ws.join("target/debug/x"), b"build output");
    write(&ws.join("app.log"), b"log");
    write(&ws.join("keep.rs"), b"code");
    write(&ws.join("secret/key"), b"k");
    write(&ws.join(".git/HEAD"), b"ref: refs/heads/main\n");
    write(
        &ws.join(".git/refs/heads/main"),
        b"0123456789abcdef0123456789abcdef01234567\n",
    );
    let id = last_line(&env.ok(&["snapshot", ws.to_str().unwrap(), "--exclude", "secret/"]));
    let ls = env.ok(&["ls", &id]);
    assert!(ls.contains("keep.rs") && ls.contains(".gitignore"), "{ls}");
    for gone in ["target", "app.log", "secret", ".git"] {
        assert!(
            !ls.lines().any(|l| l.ends_with(&format!(" {gone}/"))),
            "{gone} should not be stored:\n{ls}"
        );
        assert!(
            !ls.lines().any(|l| l.ends_with(&format!(" {gone}"))),
            "{gone} should not be stored:\n{ls}"
        );
    }
    let show = env.ok(&["show", &id]);
    assert!(
        show.contains("0123456789abcdef0123456789abcdef01234567 (main)"),
        "{show}"
    );
    // --no-ignore stores ignored files (but still never .git).
    let id2 = last_line(&env.ok(&["snapshot", ws.to_str().unwrap(), "--no-ignore"]));
    let ls2 = env.ok(&["ls", &id2]);
    assert!(
        ls2.contains("app.log") && ls2.contains("target/debug/x") && !ls2.contains(".git/"),
        "{ls2}"
    );
}

#[test]
fn restore_subpath_and_refuse_non_empty_target() {
    let env = Env::new();
    let ws = env.path("ws");
    rich_tree(&ws);
    let id = env.snapshot(&ws);
    let out = env.path("part");
    env.ok(&["restore", &id, "--to", out.to_str().unwrap(), "--path", "src"]);
    assert_same_tree(&ws.join("src"), &out.join("src"));
    assert!(!out.join("README.md").exists());
    let err = env.fails(&["restore", &id, "--to", out.to_str().unwrap()]);
    assert!(err.contains("not empty") && err.contains("--force"), "{err}");
    let fresh = env.path("fresh");
    let err = env.fails(&[
        "restore",
        &id,
        "--to",
        fresh.to_str().unwrap(),
        "--path",
        "nope/x",
    ]);
    assert!(err.contains("no path 'nope/x'"), "{err}");
    assert!(!fresh.exists(), "a failed restore created its target");
}

#[test]
fn force_restore_replaces_symlinks_in_target_without_following_them() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("src/lib.rs"), b"pub fn f() {}\n");
    let id = env.snapshot(&ws);
    let out = env.path("out");
    let victim = env.path("victim");
    fs::create_dir_all(&victim).unwrap();
    fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::symlink(&victim, out.join("src")).unwrap();
    env.ok(&["restore", &id, "--to", out.to_str().unwrap(), "--force"]);
    assert!(
        fs::read_dir(&victim).unwrap().next().is_none(),
        "wrote through a symlink"
    );
    assert_same_tree(&ws, &out);
}

#[test]
fn unchanged_workspace_writes_no_snapshot_unless_allowed() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("a"), b"1");
    let first = env.snapshot(&ws);
    let out = env.ok(&["snapshot", ws.to_str().unwrap()]);
    assert!(out.contains("unchanged"), "{out}");
    assert_eq!(last_line(&out), first);
    let forced = last_line(&env.ok(&["snapshot", ws.to_str().unwrap(), "--allow-empty"]));
    assert_ne!(forced, first);
    let list = env.ok(&["snapshots", ws.to_str().unwrap()]);
    assert_eq!(list.lines().count(), 3, "{list}");
}

#[test]
fn ids_prefixes_and_latest() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("a"), b"1");
    let a = env.snapshot(&ws);
    write(&ws.join("a"), b"2");
    let b = env.snapshot(&ws);
    let show = |spec: &str| {
        let v: serde_json::Value = serde_json::from_str(&env.ok(&["show", spec, "--json"])).unwrap();
        v["id"].as_str().unwrap().to_string()
    };
    assert_eq!(show(&a[..6]), a);
    assert_eq!(show("latest"), b);
    assert_eq!(show("latest~1"), a);
    assert!(env.fails(&["show", "latest~2"]).contains("no snapshot matches"));
    assert!(env.fails(&["show", "abc"]).contains("at least 6 hex"));
    assert!(env.fails(&["show", "000000"]).contains("no snapshot matches"));
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["snapshots", "--all", "--json"])).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[1]["parent"].as_str(), Some(a.as_str()));
}

#[test]
fn special_files_are_skipped_with_a_warning() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("a"), b"1");
    nix::unistd::mkfifo(&ws.join("pipe"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(ws.join("sock")).unwrap();
    let out = env
        .cmd()
        .args(["snapshot", ws.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("skipped FIFO") && err.contains("skipped socket"),
        "{err}"
    );
}

#[test]
fn non_utf8_names_survive_ls_json_and_restore() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join(std::ffi::OsStr::from_bytes(b"\xff\xfe")), b"x");
    let id = env.snapshot(&ws);
    let out = env.path("o");
    env.restore(&id, &out);
    assert_eq!(
        fs::read(out.join(std::ffi::OsStr::from_bytes(b"\xff\xfe"))).unwrap(),
        b"x"
    );
}

#[test]
fn a_store_inside_the_workspace_is_never_captured() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("code.rs"), b"fn f() {}");
    let inner = ws.join("moat-store");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_moat"))
            .arg("--store")
            .arg(&inner)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["snapshot", ws.to_str().unwrap()]);
    let second = run(&["snapshot", ws.to_str().unwrap()]);
    assert!(
        second.contains("unchanged"),
        "the store's own writes must not count: {second}"
    );
    let ls = run(&["ls", "latest"]);
    assert!(ls.contains("code.rs") && !ls.contains("moat-store"), "{ls}");
}

#[test]
fn zstd_level_is_configurable_per_snapshot() {
    let env = Env::new();
    let ws = env.path("ws");
    write(
        &ws.join("text.txt"),
        "some very compressible text\n".repeat(5000).as_bytes(),
    );
    let id = last_line(&env.ok(&["snapshot", ws.to_str().unwrap(), "--zstd-level", "19"]));
    let out = env.path("out");
    env.restore(&id, &out);
    assert_same_tree(&ws, &out);
    let err = env.fails(&["snapshot", ws.to_str().unwrap(), "--zstd-level", "99"]);
    assert!(err.contains("out of range"), "{err}");
}
