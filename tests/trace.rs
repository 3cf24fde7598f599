//! The Linux tracers on this machine, for real.
#![cfg(target_os = "linux")]

mod common;

use std::ffi::OsString;

use moat::run::trace::proc_connector::ProcConnector;
use moat::run::trace::ptrace::PtraceTracer;
use moat::run::trace::{EventSink, ExecEvent, Launch, Tracer, is_git_commit};

/// ptrace's waitpid(-1) reaps any child of the process, so the tracers
/// must not run in parallel test threads.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(t: Box<dyn Tracer>, script: &str, cwd: &std::path::Path) -> (i32, Vec<ExecEvent>) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (sink, rx) = EventSink::channel(10_000);
    let launch = Launch {
        program: "sh".into(),
        args: vec![OsString::from("-c"), script.into()],
        cwd: cwd.into(),
        env: vec![],
    };
    let code = t.run(&launch, &sink, &|_| {}).expect("run traced command");
    drop(sink);
    (code, rx.into_iter().collect())
}

#[test]
fn ptrace_sees_a_grandchild_git_commit_with_its_exit_code() {
    let env = common::Env::new();
    let repo = env.path("repo");
    std::fs::create_dir_all(&repo).unwrap();
    common::git(&repo, &["init", "-q"]);
    let tracer = PtraceTracer::probe().expect("ptrace must work unprivileged on this machine");
    let script = "sh -c 'git -c user.name=t -c user.email=t@t commit --allow-empty -qm traced'; \
                  git log-not-a-command 2>/dev/null; exit 3";
    let (code, events) = run(Box::new(tracer), script, &repo);
    assert_eq!(code, 3, "the command's exit code comes back");
    let commit = events
        .iter()
        .find(|e| is_git_commit(&e.command, &e.args))
        .unwrap_or_else(|| panic!("no git commit seen in {events:#?}"));
    assert_eq!(commit.exit_code, Some(0));
    assert!(commit.working_dir.ends_with("repo"), "{commit:?}");
    assert!(commit.duration.is_some());
    // Its parent is the inner sh, whose parent is the outer sh.
    let inner = events
        .iter()
        .find(|e| e.pid == commit.ppid)
        .expect("inner sh seen");
    assert_eq!(inner.command, "sh");
    let outer = events
        .iter()
        .find(|e| e.pid == inner.ppid)
        .expect("outer sh seen");
    assert_eq!(outer.exit_code, Some(3));
    let failed = events
        .iter()
        .find(|e| e.args.first().is_some_and(|a| a == "log-not-a-command"));
    assert_ne!(failed.and_then(|e| e.exit_code), Some(0), "{events:#?}");
}

#[test]
fn proc_connector_works_or_says_why() {
    let subscribed = {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        ProcConnector::subscribe()
    };
    match subscribed {
        Ok(t) => {
            let env = common::Env::new();
            let (code, events) = run(Box::new(t), "sleep 0.2; exit 5", env.dir.path());
            assert_eq!(code, 5);
            assert!(events.iter().any(|e| e.exit_code == Some(5)), "{events:#?}");
        }
        Err(why) => {
            eprintln!("proc connector unavailable: {why}");
            assert!(
                why.contains("CAP_NET_ADMIN") || why.contains("namespace") || why.contains("netlink"),
                "the reason must say what is missing: {why}"
            );
        }
    }
}
