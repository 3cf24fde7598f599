//! Shell completions, man pages and `--help`, all generated from the clap
//! definitions of the real binary.

mod common;

use std::process::Command;

use common::*;

/// Every command a user can type, as `moat --help` must list it.
const COMMANDS: &[&str] = &[
    "snapshot",
    "snapshots",
    "show",
    "ls",
    "restore",
    "diff",
    "log",
    "rollback",
    "run",
    "runs",
    "trace",
    "gc",
    "system",
    "check",
    "watch",
    "mount",
    "completions",
    "man",
    "push",
    "pull",
];

#[test]
fn every_shell_gets_a_completion_script_and_bash_parses_it() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = env.ok(&["completions", shell]);
        assert!(script.len() > 200, "{shell}: {script}");
        for c in ["snapshot", "rollback", "mount"] {
            assert!(script.contains(c), "{shell} completes no `{c}`");
        }
    }
    let bash = env.path("moat.bash");
    std::fs::write(&bash, env.ok(&["completions", "bash"])).unwrap();
    let out = Command::new("bash").arg("-n").arg(&bash).output().expect("bash");
    assert!(out.status.success(), "bash -n: {}", show(&out));
    // And it completes: source it and ask for the commands after `moat r`.
    let probe = format!(
        "source {}; COMP_WORDS=(moat r); COMP_CWORD=1; COMP_LINE='moat r'; COMP_POINT=6; _moat moat r moat; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        bash.display()
    );
    let out = Command::new("bash").args(["-c", &probe]).output().expect("bash");
    assert!(out.status.success(), "{}", show(&out));
    let words = String::from_utf8_lossy(&out.stdout);
    for w in ["restore", "rollback", "run", "runs"] {
        assert!(
            words.lines().any(|l| l == w),
            "bash completes `moat r` to {words:?}"
        );
    }
    let err = env.fails(&["completions", "tcsh"]);
    assert!(err.contains("tcsh"), "{err}");
}

#[test]
fn man_prints_roff_for_moat_and_each_command_and_writes_them_all() {
    let env = Env::new();
    let top = env.ok(&["man"]);
    assert!(top.starts_with(".ie") || top.contains(".TH moat"), "{top}");
    assert!(top.contains(".TH moat 1"), "{top}");
    let gc = env.ok(&["man", "gc"]);
    assert!(gc.contains(".TH moat-gc 1"), "{gc}");
    assert!(gc.contains("keep\\-last"), "{gc}");
    let nested = env.ok(&["man", "system", "clean-temp"]);
    assert!(nested.contains(".TH moat-system-clean-temp 1"), "{nested}");
    let err = env.fails(&["man", "nosuch"]);
    assert!(err.contains("nosuch"), "{err}");

    let dir = env.path("man");
    let out = env.ok(&["man", "--out", dir.to_str().unwrap()]);
    let mut pages: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for c in COMMANDS {
        let page = format!("moat-{c}.1");
        assert!(pages.contains(&page), "no {page} in {pages:?}");
        let text = std::fs::read_to_string(dir.join(&page)).unwrap();
        assert!(text.contains(&format!(".TH moat-{c} 1")), "{page}");
    }
    assert!(pages.contains(&"moat.1".to_string()), "{pages:?}");
    assert!(
        pages.contains(&"moat-snapshots-delete.1".to_string()),
        "{pages:?}"
    );
    assert!(out.contains(&format!("{} pages", pages.len())), "{out}");
    // Each page renders as a man page (groff, when installed).
    if Command::new("groff").arg("-v").output().is_ok() {
        let out = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(dir.join("moat-gc.1"))
            .output()
            .unwrap();
        assert!(out.status.success() && out.stderr.is_empty(), "{}", show(&out));
    }
}

#[test]
fn help_lists_every_command_with_a_one_line_description() {
    let env = Env::new();
    let help = env.ok(&["--help"]);
    let section: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    for c in COMMANDS {
        let line = section
            .iter()
            .find(|l| l.split_whitespace().next() == Some(c))
            .unwrap_or_else(|| panic!("`moat --help` does not list {c}:\n{help}"));
        let desc = line.trim_start().strip_prefix(c).unwrap().trim();
        assert!(desc.len() > 10, "{c} has no description: {line:?}");
    }
    // No command is listed that the list above does not know (so this
    // test and the README's table stay complete).
    for l in &section {
        let name = l.split_whitespace().next().unwrap();
        assert!(
            name == "help" || COMMANDS.contains(&name),
            "unknown command {name}"
        );
    }
}
