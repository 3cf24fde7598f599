//! Hostile or odd workspaces: special files where moat expects regular
//! ones, oversized or deeply nested `moat.yaml`, timestamps at the ends of
//! what a snapshot can hold, and the exclude rules every scan must share.

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;

use common::*;

/// Long enough for any of these commands on a loaded machine; a hang
/// (the defects these tests guard against) never ends.
const DEADLINE: u64 = 60;

/// Asserts moat failed, without a panic, with every one of `needles` in
/// its error.
fn refused(out: &std::process::Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && !err.contains("panicked"),
        "{needles:?}: {}",
        show(out)
    );
    assert!(needles.iter().all(|n| err.contains(n)), "{needles:?}: {err}");
}

#[test]
fn a_fifo_as_moat_yaml_is_refused_not_waited_on() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("a.txt"), b"a");
    let id = env.snapshot(&ws);
    mkfifo(&ws.join("moat.yaml"));
    let w = ws.to_str().unwrap();
    for args in [
        vec!["snapshot", w],
        vec!["rollback", "--dry-run", &id, w],
        vec!["diff", &id],
        vec!["run", "--workspace", w, "--", "true"],
    ] {
        let mut cmd = env.cmd();
        cmd.args(&args)
            .current_dir(&ws)
            .env("MOAT_HOME", env.path("home"));
        refused(
            &output_within(&mut cmd, DEADLINE),
            &["moat.yaml", "not a regular file"],
        );
    }
}

#[test]
fn a_fifo_in_dot_git_is_not_waited_on() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("a.txt"), b"a");
    std::fs::create_dir_all(ws.join(".git")).unwrap();
    mkfifo(&ws.join(".git/HEAD"));
    env.ok_within(&["snapshot", ws.to_str().unwrap()], DEADLINE);
    std::fs::remove_dir_all(ws.join(".git")).unwrap();
    mkfifo(&ws.join(".git"));
    write(&ws.join("b.txt"), b"b");
    env.ok_within(&["snapshot", ws.to_str().unwrap()], DEADLINE);
}

#[test]
fn special_ignore_files_are_not_read() {
    let env = Env::new();
    let ws = env.path("ws");
    let w = ws.to_str().unwrap();
    write(&ws.join("a.txt"), b"a");
    write(&ws.join("sub/b.txt"), b"b");
    mkfifo(&ws.join("sub/.gitignore"));
    write(&ws.join("other/c.txt"), b"c");
    std::os::unix::fs::symlink("/dev/zero", ws.join("other/.ignore")).unwrap();
    let out = capped(&env, &["snapshot", w]);
    assert!(out.status.success(), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sub/.gitignore is a FIFO"), "{err}");
    assert!(err.contains("other/.ignore is a character device"), "{err}");
    let ls = env.ok(&["ls", "latest"]);
    assert!(
        ls.contains("a.txt") && !ls.contains("sub") && !ls.contains("other"),
        "{ls}"
    );
    // The root's own: an error naming it; --no-ignore reads none.
    mkfifo(&ws.join(".gitignore"));
    refused(&capped(&env, &["snapshot", w]), &[".gitignore", "FIFO"]);
    let out = capped(&env, &["snapshot", w, "--no-ignore"]);
    assert!(out.status.success(), "{}", show(&out));
}

/// moat with its address space capped, so reading an endless file fails
/// fast instead of taking the machine's memory.
fn capped(env: &Env, args: &[&str]) -> std::process::Output {
    let mut cmd = env.cmd();
    cmd.args(args).env("MOAT_HOME", env.path("home"));
    // SAFETY: setrlimit is async-signal-safe and touches no shared state.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 4 << 30,
                rlim_max: 4 << 30,
            };
            libc::setrlimit(libc::RLIMIT_AS, &lim);
            Ok(())
        });
    }
    output_within(&mut cmd, DEADLINE)
}

#[test]
fn moat_yaml_must_be_a_small_shallow_regular_file() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("a.txt"), b"a");
    let w = ws.to_str().unwrap();
    let yaml = ws.join("moat.yaml");
    let nested_maps = "{a: ".repeat(50_000);
    let nested_seqs = format!("snapshots: {{exclude: {{additional: {}", "[".repeat(200_000));
    let nested_blocks: String = (0..200).map(|i| format!("{}a{i}:\n", " ".repeat(i))).collect();
    let huge = format!("# {}\n", "x".repeat(2 << 20));
    let cases: [(&str, &str); 4] = [
        (&nested_maps, "nested"),
        (&nested_seqs, "nested"),
        (&nested_blocks, "nested"),
        (&huge, "larger than"),
    ];
    for (text, want) in cases {
        std::fs::write(&yaml, text).unwrap();
        refused(&capped(&env, &["snapshot", w]), &["moat.yaml", want]);
    }
    std::fs::remove_file(&yaml).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &yaml).unwrap();
    refused(&capped(&env, &["snapshot", w]), &["moat.yaml", "regular file"]);
    std::fs::remove_file(&yaml).unwrap();
    let run = ["run", "--workspace", w, "--config", "/dev/zero", "--", "true"];
    refused(&capped(&env, &run), &["/dev/zero", "regular file"]);
    // A real configuration at the limits still works.
    std::fs::write(
        &yaml,
        "snapshots:\n  exclude:\n    additional: ['*.log', '[ab]*']\n",
    )
    .unwrap();
    env.ok(&["snapshot", w]);
}

#[test]
fn diff_against_the_workspace_applies_moat_yaml_excludes() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("a.txt"), b"a");
    write(
        &ws.join("moat.yaml"),
        b"snapshots:\n  exclude:\n    additional: ['*.log']\n",
    );
    let id = env.snapshot(&ws);
    write(&ws.join("a.txt"), b"changed");
    write(&ws.join("noise.log"), b"excluded by moat.yaml");
    let mut cmd = env.cmd();
    let out = output_within(cmd.args(["diff", &id]).current_dir(&ws), DEADLINE);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "M\ta.txt\n");
    let plan = env.ok(&["rollback", "--dry-run", &id, ws.to_str().unwrap()]);
    assert_eq!(plan, "M\ta.txt\n", "diff and rollback scan alike");
}

/// Sets `path`'s mtime (not following links) and reads back what the
/// filesystem kept: None when it cannot hold that time.
fn set_mtime(path: &Path, secs: i64, nsec: i64) -> Option<()> {
    use nix::sys::stat::{UtimensatFlags, utimensat};
    use nix::sys::time::TimeSpec;
    use std::os::unix::fs::MetadataExt;
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &TimeSpec::UTIME_OMIT,
        &TimeSpec::new(secs, nsec),
        UtimensatFlags::NoFollowSymlink,
    )
    .ok()?;
    let m = std::fs::symlink_metadata(path).ok()?;
    (m.mtime() == secs && m.mtime_nsec() == nsec).then_some(())
}

#[test]
fn mtimes_at_both_ends_of_the_range_round_trip_or_are_refused() {
    // tmpfs holds any 64-bit time; ext4 only 1901..2446.
    let base = Path::new("/dev/shm");
    let env = if base.is_dir() {
        Env::new_in(base)
    } else {
        Env::new()
    };
    let ws = env.path("ws");
    write(&ws.join("keep.txt"), b"ordinary");
    // In range: just inside both ends of what i64 nanoseconds hold
    // (1677-09-21 .. 2262-04-11); out of range: just outside.
    let cases: [(&str, i64, bool); 4] = [
        ("early.txt", -9_223_372_036 + 1, true),
        ("late.txt", 9_223_372_036 - 1, true),
        ("too-early.txt", -9_300_000_000, false),
        ("too-late.txt", 10_000_000_000, false),
    ];
    let mut held = Vec::new();
    for (name, secs, _) in cases {
        let p = ws.join(name);
        write(&p, name.as_bytes());
        match set_mtime(&p, secs, 123_456_789) {
            Some(()) => held.push(name),
            None => {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED the {name} case: this filesystem cannot hold mtime {secs}"
                );
                std::fs::remove_file(&p).unwrap();
            }
        }
    }
    let out = env.ok_within(&["snapshot", ws.to_str().unwrap()], DEADLINE);
    let err = String::from_utf8_lossy(&out.stderr);
    let id = last_line(&String::from_utf8_lossy(&out.stdout));
    let target = env.path("restored");
    env.restore(&id, &target);
    for (name, _, fits) in cases {
        if !held.contains(&name) {
            continue;
        }
        if fits {
            let (a, b) = (listing(&ws), listing(&target));
            let line = |l: &Vec<String>| l.iter().find(|x| x.starts_with(name)).cloned();
            assert_eq!(line(&a), line(&b), "{name} did not round-trip");
        } else {
            assert!(
                err.contains(name) && err.contains("outside"),
                "{name} not refused clearly: {err}"
            );
            assert!(!target.join(name).exists(), "{name} stored with a wrong mtime");
        }
    }
    assert_eq!(std::fs::read(target.join("keep.txt")).unwrap(), b"ordinary");
}

/// Item 13, mid-snapshot: the walk saw regular files, then FIFOs took
/// their places before they were opened (moat paused at `point` while the
/// test swaps them). Whether a file would have been staged (small: read
/// into memory; large: cloned) or read directly (`--no-clone`), the FIFO
/// is skipped and recorded, never waited on with the store lock held.
#[test]
fn a_fifo_swapped_in_for_a_file_mid_snapshot_is_skipped_not_waited_on() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::Stdio;
    for (point, extra) in [("after-walk", &[][..]), ("after-stage", &["--no-clone"][..])] {
        let env = Env::new();
        let ws = env.path("ws");
        write(&ws.join("keep.txt"), b"kept");
        write(&ws.join("small.txt"), b"small");
        write(&ws.join("large.bin"), &noise(300 << 10, 5));
        let mut child = env
            .cmd()
            .args(["snapshot", ws.to_str().unwrap()])
            .args(extra)
            .env("MOAT_FAILPOINT", format!("{point}:pause"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        while !seen.contains("paused") {
            let n = stderr.read_line(&mut seen).unwrap();
            assert!(n > 0, "{point}: moat never paused:\n{seen}");
        }
        for name in ["small.txt", "large.bin"] {
            std::fs::remove_file(ws.join(name)).unwrap();
            mkfifo(&ws.join(name));
        }
        child.stdin.take().unwrap().write_all(b"\n").unwrap();
        let rest = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let status = wait_within_status(&mut child, DEADLINE);
        let err = seen + &rest.join().unwrap();
        let mut out = String::new();
        child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        assert!(status.success(), "{point}: {status:?}\n{err}");
        assert!(
            err.contains("small.txt") && err.contains("large.bin"),
            "{point}: the skipped files are named: {err}"
        );
        let id = last_line(&out);
        let v: serde_json::Value = serde_json::from_str(&env.ok(&["show", &id, "--json"])).unwrap();
        assert_eq!(
            v["skipped"],
            serde_json::json!([{"path": "large.bin"}, {"path": "small.txt"}]),
            "{point}: {v}"
        );
        let ls = env.ok(&["ls", &id]);
        assert!(
            ls.contains("keep.txt") && !ls.contains("small.txt"),
            "{point}: {ls}"
        );
    }
}
