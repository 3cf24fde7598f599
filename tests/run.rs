//! `moat run`: automatic snapshots on start, commit, build, idle and exit.

mod common;

use std::process::Stdio;

use common::run::*;
use common::*;

/// The script waits for each snapshot by asking moat (a condition, not a
/// clock), so the snapshot contents are exact.
const SCRIPT: &str = r#"
set -e
wait_for() {
  i=0
  until "$MOAT" snapshots --run "$MOAT_RUN_ID" --json | grep -q "\"trigger\":\"$1\""; do
    i=$((i+1)); [ $i -lt 600 ] || { echo "no $1 snapshot" >&2; exit 99; }
    sleep 0.05
  done
}
echo edited > a.txt && git add -A && git -c user.name=t -c user.email=t@t commit -qm edit
wait_for git-commit
make
wait_for build
echo quiet-now > notes.txt
wait_for idle
echo last > final.txt
exit 7
"#;

fn files_of(env: &Env, id: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["ls", id, "--json"])).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn run_takes_pre_run_commit_build_idle_and_post_run_snapshots() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("a.txt"), b"original");
    write(&ws.join(".gitignore"), b"bin/\n");
    write(
        &ws.join("moat.yaml"),
        b"snapshots:\n  triggers:\n    idle_threshold_seconds: 1\n",
    );
    // A fake `make` that builds something.
    write(&ws.join("bin/make"), b"#!/bin/sh\necho built > out.bin\n");
    std::fs::set_permissions(
        ws.join("bin/make"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    git(&ws, &["init", "-q"]);
    git(&ws, &["add", "-A"]);
    git(&ws, &["commit", "-qm", "base"]);
    let path = format!(
        "{}:{}",
        ws.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = moat_run(&env, &ws, &["sh", "-c", SCRIPT])
        .env("MOAT", env!("CARGO_BIN_EXE_moat"))
        .env("PATH", path)
        .current_dir(&ws)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "moat exits with CMD's code: {}",
        show(&out)
    );
    let log = run_log(&env, &last_run_id(&env));
    assert!(log.contains("tracer: ptrace"), "{log}");

    let runs: serde_json::Value = serde_json::from_str(&moat_home(&env, &["runs", "--json"])).unwrap();
    let run_id = runs[0]["id"].as_str().unwrap().to_string();
    assert_eq!(runs[0]["exit_code"], 7);

    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["snapshots", "--run", &run_id, "--json"])).unwrap();
    let snaps: Vec<(String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["trigger"].as_str().unwrap().to_string(),
                s["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let triggers: Vec<&str> = snaps.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        triggers,
        ["pre-run", "git-commit", "build", "idle", "post-run"],
        "{log}"
    );
    let has = |i: usize, f: &str| files_of(&env, &snaps[i].1).iter().any(|p| p == f);
    let a_txt = |i: usize| {
        let dir = env.path(&format!("check{i}"));
        env.ok(&[
            "restore",
            &snaps[i].1,
            "--to",
            dir.to_str().unwrap(),
            "--path",
            "a.txt",
        ]);
        std::fs::read_to_string(dir.join("a.txt")).unwrap()
    };
    assert_eq!(a_txt(0), "original");
    assert_eq!(a_txt(1), "edited\n");
    assert!(
        !has(1, "out.bin") && has(2, "out.bin"),
        "build output appears with the build"
    );
    assert!(!has(2, "notes.txt") && has(3, "notes.txt"));
    assert!(!has(3, "final.txt") && has(4, "final.txt"));
    assert!(!has(4, "bin/make"), "ignored paths are not stored");
    // The commit snapshot records the new HEAD.
    let show: serde_json::Value = serde_json::from_str(&env.ok(&["show", &snaps[1].1, "--json"])).unwrap();
    let head = git(&ws, &["rev-parse", "HEAD"]);
    assert_eq!(show["git"]["commit"].as_str(), Some(head.trim()));

    // exec.jsonl records the commit and the build with their exit codes.
    let trace = moat_home(&env, &["trace", &run_id, "--json"]);
    let events: Vec<serde_json::Value> = trace.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let find = |cmd: &str, arg: &str| {
        events
            .iter()
            .find(|e| e["command"] == cmd && e["args"].as_array().unwrap().iter().any(|a| a == arg))
    };
    let commit = find("git", "commit").expect("git commit event");
    assert_eq!(commit["exit_code"], 0);
    assert!(commit["duration"].as_u64().is_some() && commit["ppid"].as_i64().is_some());
    // The fake make is a script: the kernel runs it as `sh /path/bin/make`.
    let make = events.iter().find(|e| {
        e["args"]
            .as_array()
            .unwrap()
            .first()
            .and_then(|a| a.as_str())
            .is_some_and(|a| a.ends_with("bin/make"))
    });
    assert_eq!(make.expect("make event")["exit_code"], 0);
    assert!(events.iter().any(|e| e["command"] == "sh" && e["exit_code"] == 7));
}

#[test]
fn growth_guard_refuses_automatic_snapshots_and_warns_on_manual_ones() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("a.txt"), b"a");
    write(
        &ws.join("moat.yaml"),
        b"snapshots:\n  max_new_files: 5\n  triggers:\n    disable_idle: true\n",
    );
    let script = "mkdir -p node_modules/pkg && for i in 1 2 3 4 5 6 7 8 9 10; do echo $i > node_modules/pkg/f$i.js; done";
    let out = moat_run(&env, &ws, &["sh", "-c", script]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let log = run_log(&env, &last_run_id(&env));
    assert!(
        log.contains("post-run snapshot not taken") && log.contains("node_modules/ (10 files"),
        "{log}"
    );
    // pre-run only (3 files); the post-run was refused.
    let list = env.ok(&["snapshots", ws.to_str().unwrap()]);
    assert_eq!(list.lines().count(), 2, "{list}");
    // A manual snapshot takes it, with the same warning.
    let out = env
        .cmd()
        .args(["snapshot", ws.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("node_modules/ (10 files"));
}

#[test]
fn bad_config_is_an_error_naming_the_key() {
    let env = Env::new();
    let ws = env.path("ws");
    write(
        &ws.join("moat.yaml"),
        b"snapshots:\n  triggers:\n    idle_threshold_seconds: soon\n",
    );
    let out = moat_run(&env, &ws, &["true"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("idle_threshold_seconds") && err.contains("line 3"),
        "{err}"
    );
}

#[test]
fn signals_sent_to_moat_reach_the_command() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("a.txt"), b"a");
    write(&ws.join("moat.yaml"), b"snapshots:\n  disabled: true\n");
    let ready = env.path("ready");
    let script = format!(
        "trap 'exit 42' TERM; touch {}; while :; do sleep 0.05; done",
        ready.display()
    );
    let mut child = moat_run(&env, &ws, &["sh", "-c", &script])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the trap to be installed (a condition, not a clock).
    while !ready.exists() {
        assert!(child.try_wait().unwrap().is_none(), "moat run exited early");
        std::thread::yield_now();
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(42),
        "SIGTERM was forwarded and CMD's code returned"
    );
}

#[test]
fn background_processes_do_not_keep_moat_run_waiting() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("moat.yaml"), b"snapshots:\n  disabled: true\n");
    let out = moat_run(
        &env,
        &ws,
        &["sh", "-c", "sleep 120 >/dev/null 2>&1 & echo $! > bg.pid; exit 3"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let pid: i32 = std::fs::read_to_string(ws.join("bg.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // moat returned while the background process still runs, detached and
    // not left stopped.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("background sleep still alive");
    let state = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let tracer = status
        .lines()
        .find(|l| l.starts_with("TracerPid:"))
        .unwrap()
        .to_string();
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    assert!(state == "S" || state == "R", "state {state}");
    assert!(tracer.ends_with("\t0"), "{tracer}");
}

/// CMD starts with the signal dispositions a shell would give it: moat
/// (whose runtime ignores SIGPIPE) must not hand its own on, or `yes | head`
/// in the agent's shell complains of a broken pipe instead of ending
/// quietly.
#[test]
fn cmd_starts_with_sigpipe_at_its_default() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("moat.yaml"), b"snapshots:\n  disabled: true\n");
    let out = moat_run(&env, &ws, &["sh", "-c", "grep SigIgn /proc/self/status"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let line = String::from_utf8_lossy(&out.stdout);
    let mask = line
        .split_whitespace()
        .nth(1)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or_else(|| panic!("no SigIgn line: {line}"));
    let sigpipe = 1u64 << (libc::SIGPIPE - 1);
    assert_eq!(mask & sigpipe, 0, "CMD started with SIGPIPE ignored: {line}");
}
