//! Progress on every long operation: a bar on a terminal (run here on a
//! pseudo-terminal), nothing when stderr is not one, nothing with
//! `--quiet`, and never inside `--json` output.

mod common;

use common::*;

/// A store with one snapshot of a few MiB, and its id.
fn setup() -> (Env, std::path::PathBuf, String) {
    let env = Env::new();
    let ws = env.path("ws");
    for i in 0..8 {
        write(&ws.join(format!("f{i}.bin")), &noise(400_000, i));
    }
    let id = env.snapshot(&ws);
    (env, ws, id)
}

/// The commands whose bars are checked, each with the phase its bar names.
fn commands(env: &Env, id: &str, n: usize) -> Vec<(Vec<String>, &'static str)> {
    let to = env.path(&format!("restored-{n}"));
    vec![
        (
            vec![
                "restore".into(),
                id.into(),
                "--to".into(),
                to.to_str().unwrap().into(),
            ],
            "restoring",
        ),
        (vec!["check".into(), "--read-data".into()], "reading packs"),
        (vec!["gc".into(), "--all".into()], "marking"),
    ]
}

#[test]
fn long_operations_draw_a_bar_on_a_terminal_only() {
    let (env, ws, id) = setup();
    let test = "long_operations_draw_a_bar_on_a_terminal_only";
    for (args, phase) in commands(&env, &id, 0) {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let Some(out) = pty::run(test, &env, &a, &[], &ws) else {
            return;
        };
        assert!(out.status.success(), "{a:?}: {}", show(&out));
        let text = pty::text(&out);
        assert!(text.contains(phase), "{a:?} drew no bar:\n{text}");
        // Counted phases count items, not bytes ("1 B/1 B" for a snapshot).
        if a[0] == "gc" {
            assert!(!text.contains(" B/") && text.contains("1/1"), "{a:?}:\n{text}");
        }
    }
    for (args, phase) in commands(&env, &id, 1) {
        let mut a: Vec<&str> = vec!["--quiet"];
        a.extend(args.iter().map(String::as_str));
        let out = pty::run(test, &env, &a, &[], &ws).unwrap();
        assert!(out.status.success(), "{a:?}: {}", show(&out));
        assert!(!pty::text(&out).contains(phase), "{a:?}:\n{}", pty::text(&out));
    }
    // Not a terminal: nothing on stderr but what the command reports.
    for (args, phase) in commands(&env, &id, 2) {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = output_within(env.cmd().args(&a), 60);
        assert!(out.status.success(), "{a:?}: {}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains(phase) && !err.contains('\x1b'), "{a:?}: {err}");
    }
}

#[test]
fn json_output_on_a_terminal_is_never_mixed_with_progress() {
    let (env, ws, id) = setup();
    let test = "json_output_on_a_terminal_is_never_mixed_with_progress";
    let to = env.path("restored");
    for args in [
        vec!["restore", &id, "--to", to.to_str().unwrap(), "--json"],
        vec!["check", "--read-data", "--json"],
        vec!["gc", "--all", "--json"],
    ] {
        let Some(out) = pty::run(test, &env, &args, &[], &ws) else {
            return;
        };
        assert!(out.status.success(), "{args:?}: {}", show(&out));
        let text = pty::text(&out);
        let v: Result<serde_json::Value, _> = serde_json::from_str(text.trim());
        assert!(
            v.is_ok(),
            "{args:?}: the terminal showed more than JSON:\n{text:?}"
        );
    }
}
