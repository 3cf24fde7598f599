//! `moat log` as `git log` is used: `-n`, `--since`/`--until`, `--json`,
//! and a pager when stdout is a terminal (`$MOAT_PAGER`, `$PAGER`, else
//! `less -FRX`), off with `--no-pager`.

mod common;

use std::os::unix::ffi::OsStrExt;

use common::*;
use moat::format::tree::{Content, Entry, Tree};

const DAY: i64 = 86_400 * 1_000_000_000;
/// 2024-01-01 00:00:00 UTC.
const JAN1: i64 = 1_704_067_200 * 1_000_000_000;

/// Four snapshots of `ws`, each changing `a.txt`, on 1 Jan, 1 Feb, 1 Mar
/// and 1 Apr 2024 (forged, so their times are known); newest last.
fn history(env: &Env, ws: &std::path::Path) -> Vec<String> {
    let forge = hostile::Forge::new(env);
    let ws = std::fs::canonicalize(ws).unwrap();
    [0, 31, 60, 91]
        .iter()
        .enumerate()
        .map(|(i, days)| {
            let body = format!("version {i}\n").into_bytes();
            let tree = Tree {
                entries: vec![Entry {
                    name: b"a.txt".to_vec(),
                    mode: 0o644,
                    mtime_ns: JAN1,
                    size: body.len() as u64,
                    content: Content::File(vec![moat::ObjectId::hash(&body)]),
                }],
            };
            forge.commit_with(&[tree], &[&body], |s| {
                s.workspace = ws.as_os_str().as_bytes().to_vec();
                s.time_ns = JAN1 + days * DAY;
                s.message = format!("m{i}");
            })
        })
        .collect()
}

fn log(env: &Env, ws: &std::path::Path, args: &[&str]) -> Vec<String> {
    let mut c = env.cmd();
    c.arg("log").args(args).current_dir(ws);
    let out = output_within(&mut c, 60);
    assert!(out.status.success(), "{args:?}: {}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn log_limits_by_count_and_time() {
    let env = Env::new();
    let ws = env.path("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let ids = history(&env, &ws);
    let rev: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(log(&env, &ws, &["--json"]), rev);
    assert_eq!(log(&env, &ws, &["--json", "-n", "2"]), rev[..2]);
    assert_eq!(log(&env, &ws, &["--json", "-n", "0"]), Vec::<String>::new());
    assert_eq!(
        log(
            &env,
            &ws,
            &["--json", "--since", "2024-01-15", "--until", "2024-03-01"]
        ),
        vec![ids[2].clone(), ids[1].clone()],
        "--until is inclusive, as git's"
    );
    assert_eq!(
        log(&env, &ws, &["--json", "--since", "2024-02-01T00:00:01Z"]),
        vec![ids[3].clone(), ids[2].clone()]
    );
    assert_eq!(
        log(
            &env,
            &ws,
            &["--json", "--since", "2024-03-01 00:00:00", "-n", "1"]
        ),
        vec![ids[3].clone()]
    );
    // Relative: every forged snapshot is far more than a day old.
    assert_eq!(log(&env, &ws, &["--json", "--since", "1d"]), Vec::<String>::new());
    assert_eq!(log(&env, &ws, &["--json", "--until", "1d"]).len(), 4);
    // The first snapshot in the range still shows what it changed since
    // the one before it.
    let mut c = env.cmd();
    c.args(["log", "--since", "2024-02-15", "-n", "1", "-p"])
        .current_dir(&ws);
    let out = output_within(&mut c, 60);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("-version 2") && text.contains("+version 3"),
        "{text}"
    );
    for bad in ["yesterday-ish", "2024-13-01", "2024-02-30", "-5d"] {
        let err = env.fails(&[
            "log",
            &format!("--since={bad}"),
            "--workspace",
            ws.to_str().unwrap(),
        ]);
        assert!(err.contains(bad), "{bad}: {err}");
    }
}

#[test]
fn log_pages_on_a_terminal_unless_told_not_to() {
    let env = Env::new();
    let ws = env.path("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let ids = history(&env, &ws);
    let test = "log_pages_on_a_terminal_unless_told_not_to";
    let paged = env.path("paged.txt");
    let pager = format!(
        "cat > {}; echo \"LESS=$LESS\" >> {}",
        paged.display(),
        paged.display()
    );
    let Some(out) = pty::run(test, &env, &["log"], &[("MOAT_PAGER", &pager)], &ws) else {
        return;
    };
    assert!(out.status.success(), "{}", show(&out));
    // moat waited for its pager: the file is complete.
    let text = std::fs::read_to_string(&paged).expect("the pager ran");
    for id in &ids {
        assert!(text.contains(&id[..12]), "{id} not paged: {text}");
    }
    assert!(text.contains("LESS=FRX"), "{text}");
    // Paging counts as a terminal: colours, as git's pager gets them.
    assert!(text.contains("\x1b[33m"), "{text:?}");
    // Nothing of the log went to the terminal itself.
    assert!(!pty::text(&out).contains(&ids[0][..12]), "{}", pty::text(&out));

    // $PAGER when $MOAT_PAGER is unset; an explicit LESS is left alone.
    std::fs::remove_file(&paged).unwrap();
    pty::run(
        test,
        &env,
        &["log", "-n", "1"],
        &[("PAGER", &pager), ("LESS", "R")],
        &ws,
    )
    .unwrap();
    let text = std::fs::read_to_string(&paged).expect("$PAGER ran");
    assert_eq!(text.matches("m3").count(), 1, "{text}");
    assert!(text.contains("LESS=R\n"), "{text}");

    // --no-pager, and a non-terminal stdout, print directly.
    std::fs::remove_file(&paged).unwrap();
    let out = pty::run(test, &env, &["log", "--no-pager"], &[("MOAT_PAGER", &pager)], &ws).unwrap();
    assert!(!paged.exists(), "--no-pager still paged");
    assert!(pty::text(&out).contains(&ids[0][..12]), "{}", pty::text(&out));
    let mut c = env.cmd();
    c.arg("log").current_dir(&ws).env("MOAT_PAGER", &pager);
    let out = output_within(&mut c, 60);
    assert!(out.status.success() && !paged.exists(), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 4);
    // A pager that fails to start is an error, not a silent empty log.
    let out = pty::run(test, &env, &["log"], &[("MOAT_PAGER", "/nonexistent/pager")], &ws).unwrap();
    assert!(!out.status.success(), "{}", pty::text(&out));
}
