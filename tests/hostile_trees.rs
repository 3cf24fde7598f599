//! Trees no capture writes: names capture never stores (`.git`, moat's own
//! temp names), nesting deeper than any real path, and tiny stores whose
//! trees expand to a billion files. Every reader refuses them with a clear
//! error, without overflowing its stack or allocating without bound.

mod common;

use std::fs;
use std::process::Output;

use common::hostile::{self, Forge, dir, file, file_of, id, tree};
use common::*;
use moat::ObjectId;
use moat::format::tree::Tree;

/// Commits `trees` (the last is the root) and `chunks` as a snapshot of
/// the workspace `ws`.
fn forge(env: &Env, ws: &std::path::Path, trees: &[Tree], chunks: &[&[u8]]) -> String {
    use std::os::unix::ffi::OsStrExt;
    let ws = fs::canonicalize(ws).unwrap().as_os_str().as_bytes().to_vec();
    Forge::new(env).commit_with(trees, chunks, |s| s.workspace = ws)
}

/// Exited with an error of its own (not killed by a signal, no panic).
fn assert_clean_failure(what: &str, out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{what}: {}", show(out));
    assert!(!err.contains("panicked"), "{what}: {err}");
    err
}

fn run(env: &Env, args: &[&str]) -> Output {
    env.cmd().args(args).output().expect("run moat")
}

#[test]
fn planted_git_entries_are_refused_by_restore_rollback_and_check() {
    for (planted, name) in [
        (&b".git"[..], ".git"),
        (b".GIT", ".GIT"),
        (b".moat-tmp-x", ".moat-tmp-x"),
    ] {
        let env = Env::new();
        let ws = env.path("ws");
        write(&ws.join("a.txt"), b"a");
        write(
            &ws.join(".git/config"),
            b"[core]\n\trepositoryformatversion = 0\n",
        );
        write(&ws.join(".git/hooks/pre-commit"), b"#!/bin/sh\nexit 0\n");
        let real = listing(&ws.join(".git"));
        let (hook, cfg): (&[u8], &[u8]) = (
            b"#!/bin/sh\ntouch /tmp/pwned\n",
            b"[core]\n\tfsmonitor = touch /tmp/pwned\n",
        );
        let hooks = tree(vec![file_of(b"pre-commit", hook)]);
        let git = tree(vec![file_of(b"config", cfg), dir(b"hooks", id(&hooks))]);
        let root = tree(vec![dir(planted, id(&git)), file_of(b"a.txt", b"a")]);
        let id = forge(&env, &ws, &[hooks, git, root], &[hook, cfg, b"a"]);
        let out = env.path("out");
        let err = assert_clean_failure(
            "restore",
            &run(&env, &["restore", &id, "--to", out.to_str().unwrap()]),
        );
        assert!(err.contains(name), "restore must name {name}: {err}");
        assert!(!out.join(name).exists(), "restore wrote {name}");

        let r = run(&env, &["rollback", &id, ws.to_str().unwrap(), "--force"]);
        let err = assert_clean_failure("rollback", &r);
        assert!(err.contains(name), "rollback must name {name}: {err}");
        assert_eq!(listing(&ws.join(".git")), real, "rollback touched .git");
        assert!(!ws.join(name).exists() || name == ".git");

        let err = assert_clean_failure("check", &run(&env, &["check"]));
        assert!(err.contains(name), "check must name {name}: {err}");
    }
}

#[test]
fn names_capture_never_stores_are_never_captured() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("a.txt"), b"a");
    write(&ws.join(".GIT/config"), b"x");
    write(&ws.join("sub/.git/HEAD"), b"ref");
    write(&ws.join(".moat-tmp-leftover"), b"x");
    let id = env.snapshot(&ws);
    let ls = env.ok(&["ls", &id]);
    assert!(ls.contains("a.txt"), "{ls}");
    for reserved in [".GIT", ".git", ".moat-tmp-"] {
        assert!(!ls.contains(reserved), "{reserved} was captured:\n{ls}");
    }
}

/// A chain of `depth` nested directories with a file at the bottom.
fn deep_snapshot(env: &Env, depth: usize) -> String {
    let ws = env.path("ws");
    fs::create_dir_all(&ws).unwrap();
    forge(env, &ws, &hostile::deep_chain(depth), &[b"deep"])
}

#[test]
fn deep_trees_are_refused_without_overflowing_the_stack() {
    let env = Env::new();
    let ws = env.path("ws");
    let plain = {
        write(&ws.join("x"), b"x");
        let id = env.snapshot(&ws);
        fs::remove_file(ws.join("x")).unwrap();
        id
    };
    let deep = deep_snapshot(&env, 20_000);
    let out = env.path("out");
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("restore", vec!["restore", &deep, "--to", out.to_str().unwrap()]),
        ("ls", vec!["ls", &deep]),
        ("diff", vec!["diff", &plain, &deep]),
        ("diff to workspace", vec!["diff", &deep]),
        ("log", vec!["log", "--workspace", ws.to_str().unwrap()]),
        (
            "rollback",
            vec!["rollback", &deep, ws.to_str().unwrap(), "--force"],
        ),
    ];
    for (what, args) in cases {
        let err = assert_clean_failure(what, &run(&env, &args));
        assert!(err.contains("deeper than"), "{what}: {err}");
    }
    let err = env.fails(&["check"]);
    assert!(err.contains("deeper than"), "check: {err}");
    // Nothing was written below the restore target's first levels.
    assert!(!out.join("d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d").exists());
}

#[test]
fn nesting_up_to_the_limit_round_trips() {
    let env = Env::new();
    let ws = env.path("ws");
    let mut p = ws.clone();
    for _ in 0..200 {
        p.push("d");
    }
    write(&p.join("leaf"), b"leaf");
    let id = env.snapshot(&ws);
    let out = env.path("out");
    env.restore(&id, &out);
    assert_same_tree(&ws, &out);
    assert!(env.ok(&["ls", &id]).contains("/leaf"));
}

/// A store of a few KB whose root expands to 2^30 files: every level holds
/// two entries naming the same subtree.
fn billion_file_snapshot(env: &Env) -> String {
    let ws = env.path("ws");
    fs::create_dir_all(&ws).unwrap();
    let mut trees = vec![tree(vec![file_of(b"f0", b"x"), file_of(b"f1", b"x")])];
    for _ in 0..29 {
        let below = id(trees.last().unwrap());
        trees.push(tree(vec![dir(b"a", below), dir(b"b", below)]));
    }
    forge(env, &ws, &trees, &[b"x"])
}

#[test]
fn a_tiny_store_claiming_a_billion_files_is_refused_in_bounded_memory() {
    let env = Env::new();
    let id = billion_file_snapshot(&env);
    assert!(du(&env.store()) < 64 * 1024, "the forged store should be tiny");
    let ws = env.path("ws");
    write(&ws.join("x"), b"x");
    let other = env.snapshot(&ws);
    let out = env.path("out");
    for (what, args) in [
        ("restore", vec!["restore", &id, "--to", out.to_str().unwrap()]),
        ("diff", vec!["diff", &other, &id, "--name-status"]),
    ] {
        let mut cmd = env.cmd();
        cmd.args(&args);
        hostile::limit_memory(&mut cmd, 3 << 30);
        let out = cmd.output().unwrap();
        let err = assert_clean_failure(what, &out);
        assert!(err.contains("more than"), "{what}: {err}");
    }
    assert!(
        fs::read_dir(&out).map(|d| d.count()).unwrap_or(0) == 0,
        "restore wrote before refusing"
    );
}

#[test]
fn ls_streams_instead_of_collecting() {
    use std::io::{BufRead, BufReader};
    let env = Env::new();
    let id = billion_file_snapshot(&env);
    let mut cmd = env.cmd();
    cmd.args(["ls", &id])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    hostile::limit_memory(&mut cmd, 3 << 30);
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The first file is printed as soon as the walk reaches it; a listing
    // that collects first would print nothing before running out of memory.
    let mut first = Vec::new();
    for _ in 0..40 {
        match lines.next() {
            Some(Ok(l)) => first.push(l),
            _ => break,
        }
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    assert!(
        first.iter().any(|l| l.ends_with("/f0")),
        "no file listed before exit ({status:?}): {first:#?}"
    );
}

#[test]
fn entry_sizes_that_cannot_be_real_are_refused_before_allocating() {
    let env = Env::new();
    let ws = env.path("ws");
    fs::create_dir_all(&ws).unwrap();
    let root = tree(vec![file(b"huge", 1 << 60, vec![ObjectId::hash(b"tiny")])]);
    let id = forge(&env, &ws, &[root], &[b"tiny"]);
    let out = env.path("out");
    let err = assert_clean_failure(
        "restore",
        &run(&env, &["restore", &id, "--to", out.to_str().unwrap()]),
    );
    assert!(err.contains("huge"), "{err}");
    let err = assert_clean_failure("ls", &run(&env, &["ls", &id]));
    assert!(err.contains("huge"), "{err}");
    let first = env.snapshot(&ws);
    let mut cmd = env.cmd();
    cmd.args(["diff", "-p", &first, &id]);
    hostile::limit_memory(&mut cmd, 3 << 30);
    let err = assert_clean_failure("diff -p", &cmd.output().unwrap());
    assert!(err.contains("huge"), "{err}");
}
