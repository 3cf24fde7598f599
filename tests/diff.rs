//! `moat diff` and `moat log` against real trees, compared with git.

mod common;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;

/// A realistic little repository: 300 files over 30 dirs.
fn project(ws: &Path) {
    for d in 0..30 {
        for f in 0..10 {
            let body: String = (0..20)
                .map(|l| format!("// dir {d} file {f} line {l}\n"))
                .collect();
            write(&ws.join(format!("pkg{d}/mod{f}.rs")), body.as_bytes());
        }
    }
    write(&ws.join("assets/logo.bin"), &noise(50_000, 3));
    write(&ws.join(".gitignore"), b"*.tmp\n");
}

/// One change of every kind.
fn edit(ws: &Path) {
    write(&ws.join("pkg0/mod0.rs"), b"// rewritten\n");
    let mut f = fs::read(ws.join("pkg1/mod1.rs")).unwrap();
    f.extend_from_slice(b"// appended\n");
    write(&ws.join("pkg1/mod1.rs"), &f);
    fs::remove_file(ws.join("pkg2/mod2.rs")).unwrap();
    fs::remove_dir_all(ws.join("pkg3")).unwrap();
    write(&ws.join("pkg4/new.rs"), b"// new file\n");
    write(&ws.join("newdir/a/b.rs"), b"// deep new\n");
    fs::set_permissions(ws.join("pkg5/mod5.rs"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::remove_file(ws.join("pkg6/mod6.rs")).unwrap();
    std::os::unix::fs::symlink("../pkg7/mod7.rs", ws.join("pkg6/mod6.rs")).unwrap();
    fs::rename(ws.join("pkg8/mod8.rs"), ws.join("pkg9/renamed.rs")).unwrap();
    let mut bin = fs::read(ws.join("assets/logo.bin")).unwrap();
    bin[100] ^= 1;
    write(&ws.join("assets/logo.bin"), &bin);
    write(&ws.join("scratch.tmp"), b"ignored");
}

#[test]
fn name_status_matches_git_for_snapshot_vs_workspace_and_snapshot_vs_snapshot() {
    let env = Env::new();
    let ws = env.path("ws");
    project(&ws);
    git(&ws, &["init", "-q"]);
    git(&ws, &["add", "-A"]);
    git(&ws, &["commit", "-qm", "base"]);
    let a = env.snapshot(&ws);
    edit(&ws);
    git(&ws, &["add", "-A"]);
    let want = git(&ws, &["diff", "--cached", "--name-status", "-M100%"]);
    assert!(want.lines().count() >= 15, "{want}");
    let live = env.ok(&["diff", &a]);
    assert_eq!(live, want, "snapshot vs workspace");
    let b = env.snapshot(&ws);
    assert_eq!(
        env.ok(&["diff", &a, &b, "--name-status"]),
        want,
        "snapshot vs snapshot"
    );
    // Path filters restrict like git's pathspecs.
    let want_pkg = git(
        &ws,
        &[
            "diff",
            "--cached",
            "--name-status",
            "-M100%",
            "--",
            "pkg6",
            "pkg0/mod0.rs",
        ],
    );
    assert_eq!(env.ok(&["diff", &a, &b, "--", "pkg6", "pkg0/mod0.rs"]), want_pkg);
    // Nothing differs between a snapshot and itself or an unchanged workspace.
    assert_eq!(env.ok(&["diff", &b, &b]), "");
    assert_eq!(env.ok(&["diff", &b]), "");
}

#[test]
fn stat_patch_and_json() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("t.txt"), b"one\ntwo\nthree\n");
    write(&ws.join("b.bin"), b"\0\x01\x02");
    let a = env.snapshot(&ws);
    write(&ws.join("t.txt"), b"one\n2\nthree\nfour\n");
    write(&ws.join("b.bin"), b"\0\x01\x03\x04");
    let stat = env.ok(&["diff", &a, "--stat"]);
    assert!(
        stat.contains("t.txt | ") && stat.contains("Bin 3 -> 4 bytes"),
        "{stat}"
    );
    assert!(
        stat.contains("2 files changed, 2 insertions(+), 1 deletion(-)"),
        "{stat}"
    );
    let p = env.ok(&["diff", &a, "-p"]);
    assert!(
        p.contains("--- a/t.txt\n+++ b/t.txt\n@@ -1,3 +1,4 @@\n one\n-two\n+2\n three\n+four\n"),
        "{p}"
    );
    assert!(p.contains("Binary files a/b.bin and b/b.bin differ"), "{p}");
    assert!(!p.contains('\x1b'), "no colour when piped");
    let j: serde_json::Value = serde_json::from_str(&env.ok(&["diff", &a, "--json"])).unwrap();
    assert_eq!(j[1]["path"], "t.txt");
    assert_eq!(j[1]["added_lines"], 2);
    assert_eq!(j[0]["binary"], true);
}

#[test]
fn non_utf8_names_type_changes_and_empty_dirs() {
    let env = Env::new();
    let ws = env.path("ws");
    let odd = ws.join(std::ffi::OsStr::from_bytes(b"n\xffx"));
    write(&odd, b"1");
    write(&ws.join("d/f"), b"file in dir");
    write(&ws.join("f"), b"plain");
    let a = env.snapshot(&ws);
    write(&odd, b"2");
    fs::remove_dir_all(ws.join("d")).unwrap();
    write(&ws.join("d"), b"now a file");
    fs::remove_file(ws.join("f")).unwrap();
    fs::create_dir_all(ws.join("f/empty")).unwrap();
    let out = env.ok(&["diff", &a]);
    // A byte that is not UTF-8 is shown as git shows it: quoted, in octal.
    assert_eq!(out, "A\td\nD\td/f\nD\tf\nA\tf/empty/\nM\t\"n\\377x\"\n", "{out}");
}

#[test]
fn log_lists_the_snapshots_that_changed_a_path() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("src/a.rs"), b"v1");
    write(&ws.join("other.txt"), b"x");
    let s1 = env.snapshot(&ws);
    write(&ws.join("other.txt"), b"y");
    env.snapshot(&ws);
    write(&ws.join("src/a.rs"), b"v2");
    let s3 = env.snapshot(&ws);
    let cmd = |args: &[&str]| {
        let out = env.cmd().args(args).current_dir(&ws).output().unwrap();
        assert!(out.status.success(), "{}", show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let log = cmd(&["log", "src/a.rs"]);
    let ids: Vec<&str> = log
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(ids, vec![&s3[..12], &s1[..12]], "{log}");
    assert!(log.lines().next().unwrap().contains("M src/a.rs"), "{log}");
    let p = cmd(&["log", "src", "-p"]);
    assert!(p.contains("-v1\n") && p.contains("+v2"), "{p}");
    assert_eq!(cmd(&["log"]).lines().count(), 3);
}

#[test]
fn a_corrupt_tree_size_does_not_panic_diff() {
    use moat::ObjectId;
    use moat::format::tree::Tree;
    let env = Env::new();
    let (x, y) = (ObjectId::hash(b"hello\n"), ObjectId::hash(b"world\n"));
    let tree = |size: u64, c: ObjectId| Tree {
        entries: vec![hostile::file(b"f", size, vec![c])],
    };
    let forge = hostile::Forge::new(&env);
    let a = forge.commit(&[tree(6, x)], &[b"hello\n"]);
    for size in [u64::MAX, 1 << 62, (16 << 20) + 1] {
        let b = forge.commit_with(&[tree(size, y)], &[b"world\n"], |s| s.time_ns = size as i64);
        // One chunk cannot hold more than 16 MiB: every reader refuses the
        // tree, naming the entry, before allocating anything for it.
        for mode in ["-p", "--stat", "--json", "--name-status"] {
            let out = output_within(env.cmd().args(["diff", mode, &a, &b]), 60);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{mode} {size}: {}", show(&out));
            assert!(err.contains("\"f\"") && err.contains("size"), "{mode}: {err}");
        }
    }
}

#[test]
fn large_files_are_summarised_not_read_whole() {
    let env = Env::new();
    let ws = env.path("ws");
    let line = "a line of an enormous generated text file\n";
    let mut big = line.repeat((17 << 20) / line.len());
    write(&ws.join("big.txt"), big.as_bytes());
    let a = env.snapshot(&ws);
    big.replace_range(..4, "AN L");
    write(&ws.join("big.txt"), big.as_bytes());
    let mut cmd = env.cmd();
    let live = output_within(cmd.args(["diff", "-p", &a]).current_dir(&ws), 60);
    assert!(live.status.success(), "{}", show(&live));
    let b = env.snapshot(&ws);
    for out in [live.stdout, env.ok(&["diff", "-p", &a, &b]).into_bytes()] {
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("too large for a text diff") && text.len() < 1000,
            "{text:.2000}"
        );
    }
    let stat = env.ok(&["diff", "--stat", &a, &b]);
    assert!(stat.contains("big.txt") && stat.contains("bytes"), "{stat}");
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["diff", "--json", &a, &b])).unwrap();
    assert_eq!(v[0]["added_lines"], serde_json::Value::Null, "{v}");
}
