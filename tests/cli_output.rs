//! What moat prints: control bytes from names and metadata never reach the
//! terminal raw, a reader that goes away ends moat quietly, and numbers
//! typed by the user never overflow.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};

use common::*;
use moat::format::tree::Tree;

const DEADLINE: u64 = 60;

/// Lines with bytes a terminal acts on: C0 controls (but newline and tab,
/// which moat prints itself), DEL, and the C1 controls in UTF-8. The
/// content lines of a patch are exempt: into a pipe they go out exact, so
/// the patch applies (as git's do; onto a terminal they are escaped).
fn raw_controls(out: &[u8], patch: bool) -> Vec<String> {
    let text = String::from_utf8_lossy(out);
    let content = |l: &str| {
        patch && (l.starts_with(['+', '-', ' ']) && !l.starts_with("+++") && !l.starts_with("---"))
            || l.starts_with("\\ No newline")
    };
    text.lines()
        .filter(|l| !content(l))
        .filter(|l| {
            l.chars()
                .any(|c| (c.is_control() && c != '\t') || ('\u{80}'..='\u{9f}').contains(&c))
        })
        .map(|l| l.escape_debug().to_string())
        .collect()
}

fn with_home(env: &Env, args: &[&str]) -> Output {
    let mut cmd = env.cmd();
    cmd.args(args).env("MOAT_HOME", env.path("home"));
    output_within(&mut cmd, DEADLINE)
}

fn arg(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap()
}

#[test]
fn control_bytes_in_names_and_metadata_are_quoted_for_the_terminal() {
    let env = Env::new();
    let ws = env.path("ws");
    let w = ws.to_str().unwrap();
    let evil = b"a\x1b[31mred";
    write(&ws.join(OsStr::from_bytes(evil)), b"one\n");
    write(&ws.join("tab\there"), b"t\n");
    std::os::unix::fs::symlink("\x1b]0;pwned\x07", ws.join("lnk")).unwrap();
    write(&ws.join(".git/HEAD"), b"ref: refs/heads/ev\x1bil\n");
    write(
        &ws.join(".git/refs/heads/ev\x1bil"),
        format!("{}\n", "0123456789".repeat(4)).as_bytes(),
    );
    mkfifo(&ws.join("fi\x1bfo"));
    let msg = "msg\x1b[2J";
    let a = last_line(&String::from_utf8_lossy(
        &env.ok_within(&["snapshot", w, "-m", msg], DEADLINE).stdout,
    ));
    write(&ws.join(OsStr::from_bytes(evil)), b"two\n");
    let b = last_line(&String::from_utf8_lossy(
        &env.ok_within(&["snapshot", w, "-m", msg], DEADLINE).stdout,
    ));
    let tree = Tree::default();
    let h = hostile::Forge::new(&env).commit_with(&[tree], &[], |s| {
        s.host = "h\x1b]2;x\x07ost".into();
        s.message = "\u{9b}31m c1".into();
        s.workspace = b"/nowhere/\x1b[1m".to_vec();
    });
    let runs = with_home(
        &env,
        &["run", "--workspace", w, "--", "sh", "-c", "true", "x\x1by"],
    );
    assert!(runs.status.success(), "{}", show(&runs));
    let run_id = {
        let v: serde_json::Value =
            serde_json::from_slice(&with_home(&env, &["runs", "--json"]).stdout).unwrap();
        v[0]["id"].as_str().unwrap().to_string()
    };
    let mut outputs = vec![("run".to_string(), runs)];
    let commands: Vec<Vec<&str>> = vec![
        vec!["snapshot", w],
        vec!["ls", &a],
        vec!["ls", &a, "no\x1bsuch"],
        vec!["show", &a],
        vec!["show", &h],
        vec!["snapshots", w],
        vec!["snapshots", "--all"],
        vec!["diff", &a, &b],
        vec!["diff", "-p", &a, &b],
        vec!["diff", "--stat", &a, &b],
        vec!["diff", &a],
        vec!["log", "--workspace", w],
        vec!["log", "-p", "--workspace", w],
        vec!["rollback", "--dry-run", &a, w],
        vec!["runs"],
        vec!["trace", &run_id],
    ];
    for args in &commands {
        let mut cmd = env.cmd();
        cmd.args(args).env("MOAT_HOME", env.path("home")).current_dir(&ws);
        outputs.push((format!("{args:?}"), output_within(&mut cmd, DEADLINE)));
    }
    for (what, out) in &outputs {
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("panicked"),
            "{what}: {}",
            show(out)
        );
        let patch = what.contains("\"-p\"");
        let bad = [raw_controls(&out.stdout, patch), raw_controls(&out.stderr, false)].concat();
        assert!(bad.is_empty(), "{what} printed raw control bytes: {bad:#?}");
    }
    // Quoted as git quotes them, so the name can be told and typed back.
    let ls = env.ok(&["ls", &a]);
    assert!(ls.contains(r#""a\033[31mred""#), "{ls}");
    assert!(ls.contains(r#""tab\there""#), "{ls}");
    assert!(ls.contains(r#"lnk -> "\033]0;pwned\a""#), "{ls}");
    let diff = env.ok(&["diff", &a, &b]);
    assert_eq!(diff, "M\t\"a\\033[31mred\"\n");
    // JSON stays exact.
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["ls", &a, "--json"])).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(names.contains(&arg(evil)), "{names:?}");
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["show", &a, "--json"])).unwrap();
    assert_eq!(v["message"], msg);
    assert_eq!(v["git"]["branch"], "ev\x1bil");
}

/// Runs moat with its stdout (and with `stderr_too` its stderr) on a pipe
/// nobody reads any more, as `moat ... | head` does once head has quit.
fn into_closed_pipe(mut cmd: Command, stderr_too: bool) -> Output {
    let (r, w) = nix::unistd::pipe().unwrap();
    drop(r);
    let w2 = w.try_clone().unwrap();
    cmd.stdin(Stdio::null()).stdout(Stdio::from(w));
    if stderr_too {
        cmd.stderr(Stdio::from(w2));
    } else {
        cmd.stderr(Stdio::piped());
    }
    wait_within(cmd.spawn().unwrap(), DEADLINE)
}

fn ended_quietly(what: &str, out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("panicked") && out.status.code() != Some(101),
        "{what}: {}",
        show(out)
    );
    assert!(
        out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
        "{what} should end like git (quietly, by SIGPIPE): {}",
        show(out)
    );
}

#[test]
fn a_reader_that_goes_away_ends_moat_quietly() {
    let env = Env::new();
    let ws = env.path("ws");
    let w = ws.to_str().unwrap();
    for i in 0..50 {
        write(&ws.join(format!("f{i}.txt")), format!("{i}\n").as_bytes());
    }
    let a = env.snapshot(&ws);
    for i in 0..50 {
        write(&ws.join(format!("f{i}.txt")), format!("{i} changed\n").as_bytes());
    }
    let b = env.snapshot(&ws);
    // `moat run -- CMD 2>&1 | head -1`: CMD runs whatever moat's own
    // output does.
    let marker = env.path("started");
    let mut run = env.cmd();
    run.args(["run", "--workspace", w, "--", "sh", "-c"])
        .arg(format!("echo started > {}", marker.display()))
        .env("MOAT_HOME", env.path("home"));
    let out = into_closed_pipe(run, true);
    assert!(
        marker.exists(),
        "moat run never started its command: {}",
        show(&out)
    );
    assert!(out.status.code() != Some(101), "{}", show(&out));
    let run_id = {
        let v: serde_json::Value =
            serde_json::from_slice(&with_home(&env, &["runs", "--json"]).stdout).unwrap();
        v[0]["id"].as_str().unwrap().to_string()
    };
    let commands: Vec<Vec<&str>> = vec![
        vec!["ls", &a],
        vec!["ls", &a, "--json"],
        vec!["snapshots", w],
        vec!["show", &a],
        vec!["diff", "-p", &a, &b],
        vec!["diff", "--stat", &a, &b],
        vec!["log", "-p", "--workspace", w],
        vec!["runs"],
        vec!["trace", &run_id],
        vec!["trace", "--json", &run_id],
        vec!["snapshot", w, "--allow-empty"],
    ];
    for args in commands {
        let mut cmd = env.cmd();
        cmd.args(&args).env("MOAT_HOME", env.path("home"));
        ended_quietly(&format!("{args:?}"), &into_closed_pipe(cmd, false));
    }
}

#[test]
fn latest_with_a_huge_offset_is_an_error_not_a_panic() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("a.txt"), b"a");
    env.snapshot(&ws);
    for spec in ["latest~18446744073709551615", "latest~18446744073709551614"] {
        let err = env.fails(&["show", spec]);
        assert!(err.contains("no snapshot matches"), "{spec}: {err}");
    }
    let err = env.fails(&["show", "latest~99999999999999999999999"]);
    assert!(err.contains("is not a snapshot id"), "{err}");
}
