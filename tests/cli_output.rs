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
    let run_id = first_run_id(&env);
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
    let run_id = first_run_id(&env);
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

/// Item 18, beyond `latest~N`: every number a user types (counts and
/// durations of gc, log and clean-temp, dates, the zstd level, numbers in
/// `moat.yaml`) at the edges of its type is used or refused, never a panic
/// or a wrapped value.
#[test]
fn every_number_a_user_types_is_checked() {
    let env = Env::new();
    let ws = env.path("ws");
    let w = ws.to_str().unwrap();
    write(&ws.join("a.txt"), b"a");
    env.snapshot(&ws);
    let max = "18446744073709551615";
    let mut cases: Vec<Vec<&str>> = Vec::new();
    for opt in ["--keep-last", "--keep-hourly", "--keep-daily", "--keep-weekly"] {
        cases.push(vec!["gc", "--dry-run", w, opt, max]);
    }
    for d in [
        "9223372036s",
        "106751d",
        "15250w",
        "9223372037s",
        "99999999999999999999d",
    ] {
        cases.push(vec!["gc", "--dry-run", w, "--keep-within", d]);
        cases.push(vec!["gc", "--dry-run", w, "--min-age", d]);
        cases.push(vec!["system", "clean-temp", "--dry-run", "--min-age", d]);
        cases.push(vec!["log", "--workspace", w, "--since", d]);
    }
    for when in ["0001-01-01", "9999-12-31T23:59:59Z", "1677-09-21", "2262-04-12"] {
        cases.push(vec!["log", "--workspace", w, "--since", when]);
        cases.push(vec!["log", "--workspace", w, "--until", when]);
    }
    cases.push(vec!["log", "--workspace", w, "-n", max]);
    for level in ["2147483647", "-2147483648", "99999999999"] {
        cases.push(vec!["snapshot", w, "--allow-empty", "--zstd-level", level]);
    }
    let mut outputs: Vec<(String, Output)> = cases
        .iter()
        .map(|args| (format!("{args:?}"), with_home(&env, args)))
        .collect();
    write(
        &ws.join("moat.yaml"),
        format!(
            "snapshots:\n  retention:\n    max_count: {max}\n  max_new_bytes: {max}\n  max_new_files: {max}\n  triggers:\n    idle_threshold_seconds: {max}\n"
        )
        .as_bytes(),
    );
    for args in [
        &["run", "--workspace", w, "--", "true"][..],
        &["gc", "--dry-run", w],
        &["snapshot", w, "--allow-empty"],
    ] {
        outputs.push((format!("moat.yaml: {args:?}"), with_home(&env, args)));
    }
    for (what, out) in outputs {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            matches!(out.status.code(), Some(0..=2)) && !err.contains("panicked"),
            "{what}: {}",
            show(&out)
        );
    }
}

/// Runs `cmd` as `cmd | head -1` (with `merged`: `cmd 2>&1 | head -1`), a
/// real head that reads one line and quits; returns moat's status, its
/// stderr (unless merged) and what head printed.
fn into_head(mut cmd: Command, merged: bool) -> (std::process::ExitStatus, String, String) {
    use std::io::Read;
    use std::os::fd::OwnedFd;
    let mut head = Command::new("head")
        .arg("-1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("head");
    let pipe: OwnedFd = head.stdin.take().unwrap().into();
    if merged {
        cmd.stderr(Stdio::from(pipe.try_clone().unwrap()));
    } else {
        cmd.stderr(Stdio::piped());
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::from(pipe));
    let mut child = cmd.spawn().expect("moat");
    // Only moat and head hold the pipe now.
    drop(cmd);
    let err = child.stderr.take().map(|mut e| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = e.read_to_string(&mut s);
            s
        })
    });
    let status = wait_within_status(&mut child, DEADLINE);
    let mut shown = String::new();
    head.stdout.take().unwrap().read_to_string(&mut shown).unwrap();
    head.wait().unwrap();
    let err = err.map(|t| t.join().unwrap()).unwrap_or_default();
    (status, err, shown)
}

/// Item 17 with a real `| head -1`: head quits after one line while moat
/// still has far more to write than a pipe holds, so moat meets EPIPE in
/// the middle of its output (not at its first write, as into a pipe closed
/// from the start). Every command ends by SIGPIPE, quietly, as git does;
/// `moat --verbose run -- CMD 2>&1 | head -1` still runs CMD.
#[test]
fn piped_into_head_moat_ends_by_sigpipe_in_mid_output() {
    let env = Env::new();
    let ws = env.path("ws");
    let w = ws.to_str().unwrap();
    // ls prints over 600 kB (long names); diff -p and log -p several MB.
    let body = |v: &str| format!("{v} {}\n", "text of a line ".repeat(12)).repeat(4);
    let name = |i: usize| format!("{}-{i:04}.txt", "n".repeat(200));
    for i in 0..3000 {
        write(&ws.join(name(i)), body("old").as_bytes());
    }
    let a = env.snapshot(&ws);
    for i in 0..3000 {
        write(&ws.join(name(i)), body("new").as_bytes());
    }
    let b = env.snapshot(&ws);
    // A run whose trace is over 1 MB: 150 programs with a 10 kB argument.
    let marker = env.path("started");
    let long = "x".repeat(10_000);
    let script = format!(
        "touch {}; for i in $(seq 150); do /bin/true {long}; done",
        marker.display()
    );
    let run = with_home(&env, &["run", "--workspace", w, "--", "sh", "-c", &script]);
    assert!(run.status.success() && marker.exists(), "{}", show(&run));
    let run_id = first_run_id(&env);
    let commands: Vec<Vec<&str>> = vec![
        vec!["ls", &a],
        vec!["diff", "-p", &a, &b],
        vec!["log", "-p", "--workspace", w],
        vec!["trace", "--json", &run_id],
    ];
    for args in commands {
        let mut cmd = env.cmd();
        cmd.args(&args).env("MOAT_HOME", env.path("home"));
        let (status, err, shown) = into_head(cmd, false);
        assert!(
            status.signal() == Some(libc::SIGPIPE),
            "{args:?} should end by SIGPIPE in mid output: {status:?}\n{err}"
        );
        assert!(err.is_empty(), "{args:?}: {err}");
        assert_eq!(shown.lines().count(), 1, "{args:?}: {shown}");
    }
    std::fs::remove_file(&marker).unwrap();
    let mut cmd = env.cmd();
    cmd.args(["--verbose", "run", "--workspace", w, "--", "sh", "-c"])
        .arg(format!("touch {}; seq 100000", marker.display()))
        .env("MOAT_HOME", env.path("home"));
    let (status, _, shown) = into_head(cmd, true);
    assert!(
        marker.exists(),
        "moat run never started its command: {status:?} {shown}"
    );
    assert!(status.code() != Some(101), "{status:?}");
}

/// The id of the first run `moat runs --json` lists.
fn first_run_id(env: &Env) -> String {
    let v: serde_json::Value = serde_json::from_slice(&with_home(env, &["runs", "--json"]).stdout).unwrap();
    v[0]["id"].as_str().unwrap().to_string()
}
