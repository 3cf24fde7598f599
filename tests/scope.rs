//! Commands with an implicit workspace (the current directory) say which
//! one they act on, and refuse a directory with no snapshots unless a
//! WORKSPACE or `--all` is given: a retention policy run from the wrong
//! directory must not report success having removed nothing.

mod common;

use std::path::Path;

use common::*;

/// A workspace with four snapshots, and an empty directory beside it.
fn setup() -> (Env, std::path::PathBuf, std::path::PathBuf) {
    let env = Env::new();
    let ws = env.path("ws");
    for i in 0..4 {
        write(&ws.join("a.txt"), format!("{i}\n").as_bytes());
        env.snapshot(&ws);
    }
    let home = env.path("home");
    std::fs::create_dir_all(&home).unwrap();
    (env, ws, home)
}

fn count(env: &Env) -> usize {
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["snapshots", "--all", "--json"])).unwrap();
    v.as_array().unwrap().len()
}

fn in_dir(env: &Env, dir: &Path, args: &[&str]) -> std::process::Output {
    let mut c = env.cmd();
    c.args(args).current_dir(dir);
    output_within(&mut c, 60)
}

#[test]
fn gc_from_a_directory_without_snapshots_refuses_and_names_it() {
    let (env, ws, home) = setup();
    let home = std::fs::canonicalize(home).unwrap();
    let out = in_dir(&env, &home, &["gc", "--keep-last", "1"]);
    assert!(!out.status.success(), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "no snapshots of {}; name a WORKSPACE or pass --all",
        home.display()
    );
    assert!(err.contains(&want), "{err}");
    assert_eq!(count(&env), 4, "nothing removed");
    // The same in dry-run and JSON form.
    let out = in_dir(&env, &home, &["gc", "--keep-last", "1", "--dry-run", "--json"]);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(out.stdout.is_empty(), "{}", show(&out));

    // From inside the workspace it acts, and says where.
    let ws_c = std::fs::canonicalize(&ws).unwrap();
    let out = in_dir(&env, &ws, &["gc", "--keep-last", "2", "--dry-run"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("workspace {}", ws_c.display())), "{text}");
    // The newest two, and the first (outside runs it is kept by default).
    assert!(text.contains("1 snapshot would be removed, 3 kept"), "{text}");

    // Named, or --all, from anywhere.
    let text = env.ok(&["gc", ws.to_str().unwrap(), "--keep-last", "2"]);
    assert!(text.contains(&format!("workspace {}", ws_c.display())), "{text}");
    assert_eq!(count(&env), 3);
    let out = in_dir(&env, &home, &["gc", "--all", "--keep-last", "1"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("all workspaces"),
        "{}",
        show(&out)
    );
    assert_eq!(count(&env), 2);
}

#[test]
fn listing_commands_refuse_a_directory_without_snapshots_too() {
    let (env, ws, home) = setup();
    let home_c = std::fs::canonicalize(&home).unwrap();
    let want = format!("no snapshots of {}", home_c.display());
    for args in [
        vec!["snapshots"],
        vec!["snapshots", "--json"],
        vec!["log"],
        vec!["log", "--json"],
    ] {
        let out = in_dir(&env, &home, &args);
        assert!(!out.status.success(), "{args:?}: {}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&want), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: {}", show(&out));
    }
    // An explicit workspace with no snapshots is listed as empty: the
    // user named it.
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["snapshots", home.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 0);
    // Implicit and with snapshots: it says which workspace on stderr.
    let ws_c = std::fs::canonicalize(&ws).unwrap();
    for args in [vec!["snapshots"], vec!["log"]] {
        let out = in_dir(&env, &ws, &args);
        assert!(out.status.success(), "{args:?}: {}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("workspace {}", ws_c.display())),
            "{args:?}: {err}"
        );
        let out = in_dir(&env, &ws, &[&["--quiet"], args.as_slice()].concat());
        assert!(out.stderr.is_empty(), "{args:?} --quiet: {}", show(&out));
    }
    // A snapshot names the workspace it took.
    let out = in_dir(&env, &ws, &["snapshot"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("{} unchanged since snapshot", ws_c.display())),
        "{text}"
    );
    write(&ws.join("b.txt"), b"b");
    let out = in_dir(&env, &ws, &["snapshot"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("snapshot of {} saved", ws_c.display())),
        "{text}"
    );
    // A rollback run in the workspace names the one it would change.
    let out = in_dir(&env, &ws, &["rollback", "latest~1", "--dry-run"]);
    assert!(out.status.success(), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("moat: workspace {}", ws_c.display())),
        "{err}"
    );
    let out = in_dir(&env, &ws, &["--quiet", "rollback", "latest~1", "--dry-run"]);
    assert!(out.stderr.is_empty(), "{}", show(&out));
}

#[test]
fn below_a_workspace_the_implicit_one_is_its_root_as_for_snapshot() {
    let (env, ws, _home) = setup();
    let ws_c = std::fs::canonicalize(&ws).unwrap();
    let sub = ws.join("src/deeper");
    std::fs::create_dir_all(&sub).unwrap();
    let named = format!("moat: workspace {}", ws_c.display());
    for args in [
        vec!["snapshots"],
        vec!["log"],
        vec!["gc", "--keep-last", "2", "--dry-run"],
        vec!["rollback", "latest~1", "--dry-run"],
    ] {
        let out = in_dir(&env, &sub, &args);
        assert!(out.status.success(), "{args:?}: {}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&named), "{args:?}: {err}");
    }
    // And a snapshot taken there is of the same workspace.
    write(&ws.join("a.txt"), b"from below");
    let out = in_dir(&env, &sub, &["snapshot"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("snapshot of {} saved", ws_c.display())),
        "{}",
        show(&out)
    );
    let mine = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string();
    // `latest` there is that workspace's newest, though another's is newer.
    let other = env.path("other");
    write(&other.join("o.txt"), b"o");
    env.snapshot(&other);
    let out = in_dir(&env, &sub, &["show", "latest", "--json"]);
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    assert_eq!(v["id"], mine.as_str(), "{v}");
}
