//! `--json` on every command that reports results: one JSON value on
//! stdout, nothing else there, and names carried exactly. The convention
//! (README, "JSON output"): a name field `X` is a string; when its bytes are
//! not UTF-8 it holds the lossy text and `X_bytes` holds the raw bytes as an
//! array of integers.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use common::*;
use serde_json::Value;

const ODD: &[u8] = b"caf\xe9-\xff.txt";

fn json(env: &Env, args: &[&str]) -> Value {
    let out = env.ok(args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not one JSON value ({e}):\n{out}"))
}

/// The exact bytes of name field `key` of `v`, by the convention.
fn name_bytes(v: &Value, key: &str) -> Vec<u8> {
    match v.get(format!("{key}_bytes")) {
        Some(b) => b
            .as_array()
            .unwrap_or_else(|| panic!("{key}_bytes is not an array: {v}"))
            .iter()
            .map(|n| u8::try_from(n.as_u64().unwrap()).unwrap())
            .collect(),
        None => v[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} is not a string: {v}"))
            .as_bytes()
            .to_vec(),
    }
}

/// A workspace (itself under a non-UTF-8 directory name) with a non-UTF-8
/// file, and two snapshots of it.
fn setup() -> (Env, PathBuf, String, String) {
    let env = Env::new();
    let ws = env.path("ws").join(OsStr::from_bytes(b"dir-\xfe"));
    write(&ws.join("plain.txt"), b"one\n");
    write(&ws.join(OsStr::from_bytes(ODD)), b"odd\n");
    let a = in_ws(&env, &ws, &["snapshot", "--json"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    write(&ws.join(OsStr::from_bytes(ODD)), b"odd, changed\n");
    write(&ws.join("new.txt"), b"new\n");
    let b = in_ws(&env, &ws, &["snapshot", "--json"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    (env, ws, a, b)
}

fn in_ws(env: &Env, ws: &std::path::Path, args: &[&str]) -> Value {
    let mut c = env.cmd();
    c.args(args).current_dir(ws);
    let out = output_within(&mut c, 60);
    assert!(out.status.success(), "{args:?}: {}", show(&out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: not one JSON value ({e}):\n{}", show(&out)))
}

/// The bytes of `p`'s canonical path, as JSON output names a workspace.
fn canonical_bytes(p: &std::path::Path) -> Vec<u8> {
    std::fs::canonicalize(p).unwrap().as_os_str().as_bytes().to_vec()
}

#[test]
fn names_that_are_not_utf8_are_exact_in_every_json_output() {
    let (env, ws, a, b) = setup();
    let ws_bytes = canonical_bytes(&ws);

    let show = json(&env, &["show", &a, "--json"]);
    assert_eq!(name_bytes(&show, "workspace"), ws_bytes, "{show}");
    assert!(show["workspace"].as_str().unwrap().contains('\u{fffd}'));

    let ls = json(&env, &["ls", &a, "--json"]);
    let odd = ls
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e.get("path_bytes").is_some())
        .unwrap_or_else(|| panic!("{ls}"));
    assert_eq!(name_bytes(odd, "path"), ODD);
    let plain = ls
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "plain.txt")
        .unwrap();
    assert!(
        plain.get("path_bytes").is_none(),
        "UTF-8 names carry no bytes: {plain}"
    );

    let diff = json(&env, &["diff", &a, &b, "--json"]);
    let changed: Vec<Vec<u8>> = diff
        .as_array()
        .unwrap()
        .iter()
        .map(|c| name_bytes(c, "path"))
        .collect();
    assert!(changed.contains(&ODD.to_vec()), "{diff}");

    let list = in_ws(&env, &ws, &["snapshots", ".", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(name_bytes(&list[0], "workspace"), ws_bytes);

    let log = in_ws(&env, &ws, &["log", "--json"]);
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0]["id"], b.as_str(), "newest first");
    let paths: Vec<Vec<u8>> = log[0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| name_bytes(c, "path"))
        .collect();
    assert!(
        paths.contains(&ODD.to_vec()) && paths.contains(&b"new.txt".to_vec()),
        "{paths:?}"
    );
    assert_eq!(log[0]["changes"][0]["status"].as_str().map(str::len), Some(1));

    let plan = in_ws(&env, &ws, &["rollback", &a, ".", "--dry-run", "--json"]);
    assert_eq!(name_bytes(&plan, "workspace"), ws_bytes, "{plan}");
    assert_eq!(plan["snapshot"], a.as_str());
    let changes: Vec<(String, Vec<u8>)> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["status"].as_str().unwrap().to_string(), name_bytes(c, "path")))
        .collect();
    assert!(changes.contains(&("M".into(), ODD.to_vec())), "{changes:?}");
    assert!(
        changes.contains(&("D".into(), b"new.txt".to_vec())),
        "{changes:?}"
    );
    assert!(ws.join("new.txt").exists(), "a dry run changes nothing");
}

#[test]
fn gc_check_and_clean_temp_report_in_json() {
    let (env, ws, a, b) = setup();
    let ws_bytes = canonical_bytes(&ws);
    // A temp file a crashed writer left (its pid cannot be alive).
    let tmp = env.store().join("tmp").join("2147483646-1-1.pack.tmp");
    std::fs::write(&tmp, vec![0u8; 100]).unwrap();

    let dry = in_ws(
        &env,
        &ws,
        &[
            "gc",
            "--keep-last",
            "1",
            "--delete-initial",
            "--dry-run",
            "--min-age",
            "0s",
            "--json",
        ],
    );
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert_eq!(name_bytes(&dry, "workspace"), ws_bytes);
    assert_eq!(dry["removed"].as_array().unwrap().len(), 1, "{dry}");
    assert_eq!(dry["removed"][0]["id"], a.as_str());
    assert_eq!(dry["kept"], 1);
    assert!(dry["freed_bytes"].as_u64().is_some(), "{dry}");
    assert_eq!(dry["temps"].as_array().unwrap().len(), 1, "{dry}");
    assert_eq!(dry["temps"][0]["size"], 100);
    assert_eq!(dry["problems"].as_array().unwrap().len(), 0);

    let clean = json(
        &env,
        &["system", "clean-temp", "--min-age", "0s", "--dry-run", "--json"],
    );
    assert_eq!(clean["dry_run"], true);
    let items = clean["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{clean}");
    assert_eq!(name_bytes(&items[0], "path"), tmp.as_os_str().as_bytes());
    assert_eq!(items[0]["what"], "pack");
    assert!(tmp.exists());
    // --json never asks: without --force or --dry-run it refuses.
    let err = env.fails(&["system", "clean-temp", "--min-age", "0s", "--json"]);
    assert!(err.contains("--force"), "{err}");
    let clean = json(
        &env,
        &["system", "clean-temp", "--min-age", "0s", "--force", "--json"],
    );
    assert_eq!(clean["removed"].as_array().unwrap().len(), 1, "{clean}");
    assert_eq!(clean["removed_bytes"], 100);
    assert!(!tmp.exists());

    let done = in_ws(
        &env,
        &ws,
        &["gc", "--keep-last", "1", "--delete-initial", "--json"],
    );
    assert_eq!(done["dry_run"], false);
    assert_eq!(done["removed"][0]["id"], a.as_str(), "{done}");

    let check = json(&env, &["check", "--json"]);
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(check["snapshots"], 1);
    assert_eq!(check["read_data"], false);
    let check = json(&env, &["check", "--read-data", "--json"]);
    assert_eq!(check["read_data"], true);
    assert!(check["packs"].as_u64().unwrap() >= 1, "{check}");
    assert!(check["problems"].as_array().unwrap().is_empty());
    let _ = b;
}

#[test]
fn check_reports_problems_in_json_and_fails() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("a.txt"), &noise(200_000, 3));
    env.snapshot(&ws);
    // Lose every pack: each chunk and tree is then missing.
    for d in std::fs::read_dir(env.store().join("packs")).unwrap() {
        std::fs::remove_dir_all(d.unwrap().path()).unwrap();
    }
    let out = env.cmd().args(["check", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert!(!v["problems"].as_array().unwrap().is_empty(), "{v}");
}

#[test]
fn restore_and_rollback_report_in_json() {
    let (env, ws, a, _b) = setup();
    let to = env.path("out");
    let r = json(&env, &["restore", &a, "--to", to.to_str().unwrap(), "--json"]);
    assert_eq!(r["snapshot"], a.as_str());
    assert_eq!(r["files"], 2, "{r}");
    assert_eq!(
        name_bytes(&r, "target"),
        std::fs::canonicalize(&to).unwrap().as_os_str().as_bytes()
    );
    let rb = in_ws(&env, &ws, &["rollback", &a, ".", "--json"]);
    assert_eq!(rb["snapshot"], a.as_str(), "{rb}");
    assert_eq!(rb["written"], 1, "{rb}");
    assert_eq!(rb["deleted"], 1, "{rb}");
    assert!(rb["safety"].as_str().is_some_and(|s| s.len() == 64), "{rb}");
    assert!(!ws.join("new.txt").exists());
}

#[test]
fn pin_unpin_and_delete_report_in_json() {
    let (env, _ws, a, b) = setup();
    let pinned = json(&env, &["snapshots", "pin", &a[..8], &b, "--json"]);
    assert_eq!(pinned, serde_json::json!({"pinned": [a, b]}));
    let list = json(&env, &["snapshots", "--all", "--json"]);
    assert!(
        list.as_array().unwrap().iter().all(|s| s["pinned"] == true),
        "{list}"
    );
    let unpinned = json(&env, &["snapshots", "unpin", &b, "--json"]);
    assert_eq!(unpinned, serde_json::json!({"unpinned": [b]}));
    let deleted = json(&env, &["snapshots", "delete", &b, "--json"]);
    assert_eq!(deleted, serde_json::json!({"deleted": [b]}));
    let list = json(&env, &["snapshots", "--all", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    // Nothing is changed when one id does not resolve, and the error is
    // on stderr with nothing on stdout.
    let out = output_within(
        env.cmd()
            .args(["snapshots", "delete", &a, "ffffffffff", "--json"]),
        60,
    );
    assert!(!out.status.success() && out.stdout.is_empty(), "{}", show(&out));
    assert_eq!(
        json(&env, &["snapshots", "--all", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
