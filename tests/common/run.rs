//! Helpers for the tests of `moat run`: run it against the test's store
//! and home, and read back what it recorded.

use std::path::Path;
use std::process::{Command, Stdio};

use super::{Env, show};

/// `moat run --workspace WS -- CMD...` with the test's store and home.
pub fn moat_run(env: &Env, ws: &Path, cmd: &[&str]) -> Command {
    let mut c = moat_in(env);
    c.args(["run", "--workspace", ws.to_str().expect("utf8"), "--"])
        .args(cmd);
    c
}

/// Runs `sh -c SCRIPT` under `moat run` in `ws`; panics unless it
/// succeeds. Returns the run's id and its snapshots, oldest first.
pub fn run_script(env: &Env, ws: &Path, script: &str) -> (String, Vec<serde_json::Value>) {
    let out = moat_run(env, ws, &["sh", "-c", script])
        .output()
        .expect("run moat");
    assert!(out.status.success(), "{}", show(&out));
    let run = last_run_id(env);
    let snaps = run_snapshots(env, &run);
    (run, snaps)
}

/// The moat binary with the test's store and home, stdin closed.
pub fn moat_in(env: &Env) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_moat"));
    c.env("MOAT_STORE", env.store())
        .env("MOAT_HOME", env.path("home"))
        .stdin(Stdio::null());
    c
}

/// A moat command that reads the test's runs (`runs`, `trace`); its stdout.
pub fn moat_home(env: &Env, args: &[&str]) -> String {
    let out = moat_in(env).args(args).output().expect("run moat");
    assert!(out.status.success(), "{}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every recorded run, oldest first.
pub fn runs(env: &Env) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&moat_home(env, &["runs", "--json"])).expect("json");
    v.as_array().expect("array").clone()
}

/// The id of the newest run.
pub fn last_run_id(env: &Env) -> String {
    let r = runs(env);
    r.last().expect("a run")["id"].as_str().expect("id").to_string()
}

/// The snapshots of a run, oldest first (`snapshots --run ID --json`).
pub fn run_snapshots(env: &Env, run_id: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["snapshots", "--run", run_id, "--json"])).expect("json");
    v.as_array().expect("array").clone()
}

/// What moat did during a run (`runs/<id>/moat.log`).
pub fn run_log(env: &Env, run_id: &str) -> String {
    std::fs::read_to_string(env.path("home").join("runs").join(run_id).join("moat.log")).unwrap_or_default()
}
