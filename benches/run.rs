//! `moat run` in real use:
//!
//! 1. **Hold**: how long a `git commit` is held at its exit while its
//!    snapshot stages, on a 25,000- and a 100,000-file repository (generated
//!    with `git fast-import`): five commits once the pre-run snapshot is in
//!    the store (steady state), and one issued the instant the run starts
//!    (its parent still being ingested), also with a fresh store (the
//!    workspace's first snapshot still being ingested), and five with `moat
//!    watch` running (a capture re-examines only what changed).
//! 2. **Overhead**: `cargo build` of a real crate (regex 1.13.2, offline,
//!    from the local registry), `make -j2` of a generated C project of 300
//!    files, and a shell loop of 2,000 `/bin/true`: plain, under `moat run`
//!    with snapshots disabled (tracing only) and, for the builds, under
//!    `moat run` as configured out of the box. Runs are interleaved (plain,
//!    moat, plain, moat, ...) so drift on a shared machine cancels; medians
//!    and ratios are printed.
//!
//! On a shared, loaded machine the wall-clock ratios of fork-heavy loops
//! under the default scheduler are not meaningful (plain loops were
//! measured *slower* than traced ones there); `chrt -f 10 cargo bench
//! --bench run` runs everything under SCHED_FIFO, which reproduces a quiet
//! machine for the sequential loop, but overstates the cost for `make -j2`:
//! a FIFO task is not preempted by its peers, so a stopped process waits
//! for a running compiler to finish before the tracer gets a CPU.
//!
//! `cargo bench --bench run`. Knobs: MOAT_BENCH_PARTS (any of
//! `hold,cargo,make,true`; default all), MOAT_BENCH_REPS (default 3),
//! MOAT_BENCH_BASELINE (another moat binary, e.g. an older build, measured
//! the same way in both parts), MOAT_BENCH_HOLD_FILES (default
//! `25000,100000`).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::{env_usize, median, table};

const MOAT: &str = env!("CARGO_BIN_EXE_moat");

fn main() {
    let parts = std::env::var("MOAT_BENCH_PARTS").unwrap_or_else(|_| "hold,cargo,make,true".into());
    let reps = env_usize("MOAT_BENCH_REPS", 3);
    let tmp = tempfile::tempdir().expect("tempdir");
    let baseline = std::env::var_os("MOAT_BENCH_BASELINE").map(PathBuf::from);
    if parts.contains("hold") {
        let sizes = std::env::var("MOAT_BENCH_HOLD_FILES").unwrap_or_else(|_| "25000,100000".into());
        let mut rows = Vec::new();
        for n in sizes.split(',').filter_map(|s| s.trim().parse::<usize>().ok()) {
            let ws = repo(tmp.path(), n);
            // Baseline and this build in turn, each case on its own home.
            if let Some(b) = &baseline {
                rows.extend(hold(tmp.path(), &ws, n, b, "baseline"));
            }
            rows.extend(hold(tmp.path(), &ws, n, Path::new(MOAT), "this build"));
        }
        table(
            "git commit held at its exit until its snapshot is staged (ms)",
            &["repository", "moat", "case", "median", "min", "max", "commits"],
            &rows,
        );
    }
    let mut rows = Vec::new();
    if parts.contains("cargo") {
        match cargo_project(tmp.path()) {
            Ok(ws) => {
                let clean = |ws: &Path| {
                    let _ = std::fs::remove_dir_all(ws.join("target"));
                };
                let cmd = ["cargo", "build", "--offline", "-q"];
                rows.extend(overhead(
                    "cargo build (regex)",
                    &ws,
                    &cmd,
                    reps,
                    true,
                    &baseline,
                    clean,
                ));
            }
            Err(why) => println!("SKIPPED cargo build: {why}"),
        }
    }
    if parts.contains("make") {
        let ws = c_project(tmp.path(), 300);
        let clean = |ws: &Path| {
            let _ = Command::new("make")
                .arg("-s")
                .arg("clean")
                .current_dir(ws)
                .status();
        };
        rows.extend(overhead(
            "make -j2 (300 C files)",
            &ws,
            &["make", "-s", "-j2"],
            reps,
            true,
            &baseline,
            clean,
        ));
    }
    if parts.contains("true") {
        let ws = tmp.path().join("loop");
        std::fs::create_dir_all(&ws).expect("mkdir");
        let script = "i=0; while [ $i -lt 2000 ]; do /bin/true; i=$((i+1)); done";
        let cmd = ["sh", "-c", script];
        rows.extend(overhead(
            "2,000 /bin/true",
            &ws,
            &cmd,
            reps.max(5),
            false,
            &baseline,
            |_| {},
        ));
    }
    if !rows.is_empty() {
        table(
            "moat run overhead (interleaved medians)",
            &["workload", "how", "median s", "ratio", "runs"],
            &rows,
        );
    }
}

/// A git repository of `n` small files in 200 directories, committed.
fn repo(dir: &Path, n: usize) -> PathBuf {
    let ws = dir.join(format!("repo-{n}"));
    std::fs::create_dir_all(&ws).expect("mkdir");
    git(&ws, &["init", "-q"]);
    let mut stream = Vec::new();
    for i in 0..n {
        let d = format!("// file {i}\nexport const v{i} = {i};\n");
        write!(stream, "blob\nmark :{}\ndata {}\n{d}\n", i + 1, d.len()).expect("write");
    }
    stream.extend_from_slice(b"commit refs/heads/main\ncommitter b <b@b> 1700000000 +0000\ndata 4\nbase\n");
    for i in 0..n {
        writeln!(stream, "M 100644 :{} packages/p{}/src/f{i}.js", i + 1, i % 200).expect("write");
    }
    let mut fi = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(&ws)
        .stdin(Stdio::piped())
        .spawn()
        .expect("git fast-import");
    fi.stdin
        .take()
        .expect("stdin")
        .write_all(&stream)
        .expect("stream");
    assert!(fi.wait().expect("wait").success());
    git(&ws, &["checkout", "-q", "-f", "main"]);
    ws
}

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(["-c", "user.name=b", "-c", "user.email=b@b"])
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "git {args:?} in {}", dir.display());
}

/// `moat run` of `cmd` in `ws` with its own store and home below `home`,
/// and `config` instead of the workspace's.
fn moat_run(moat: &Path, home: &Path, ws: &Path, config: Option<&Path>, cmd: &[&str]) -> Command {
    let mut c = Command::new(moat);
    c.arg("run");
    if let Some(f) = config {
        c.arg("--config").arg(f);
    }
    c.arg("--workspace")
        .arg(ws)
        .arg("--")
        .args(cmd)
        .env("MOAT_HOME", home)
        .env("MOAT_STORE", home.join("store"))
        .env("MOAT", MOAT)
        .current_dir(ws)
        .stdin(Stdio::null());
    c
}

/// Commits the script makes: each edits one file and commits it.
const COMMITS: &str = r#"
for i in 1 2 3 4 5; do
  echo "edit $i" >> packages/p0/src/f0.js
  git -c user.name=b -c user.email=b@b commit -qam "edit $i"
done
"#;

/// Waits (a condition, not a clock) until the run's pre-run snapshot is
/// in the store.
const WAIT_PRE_RUN: &str = r#"
until "$MOAT" snapshots --run "$MOAT_RUN_ID" --json | grep -q '"trigger":"pre-run"'; do sleep 0.05; done
"#;

/// The hold times of one run (from its `run.json`), in ms.
fn holds(home: &Path) -> Vec<f64> {
    let runs = home.join("runs");
    let mut newest: Option<(i64, serde_json::Value)> = None;
    for e in std::fs::read_dir(&runs).expect("runs").flatten() {
        let Ok(text) = std::fs::read(e.path().join("run.json")) else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&text) else {
            continue;
        };
        let start = v["start_ns"].as_i64().unwrap_or(0);
        if newest.as_ref().is_none_or(|(s, _)| start > *s) {
            newest = Some((start, v));
        }
    }
    newest
        .and_then(|(_, v)| v["holds_ns"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|h| h.as_u64())
        .map(|h| h as f64 / 1e6)
        .collect()
}

/// The hold cases on the repository `ws` of `n` files, with binary `moat`
/// (`which` names it in the table).
fn hold(dir: &Path, ws: &Path, n: usize, moat: &Path, which: &str) -> Vec<Vec<String>> {
    let tag = which.replace(' ', "-");
    let run_in = |home: &Path, script: &str| {
        let ok = moat_run(moat, home, ws, None, &["sh", "-c", script])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "moat run failed in {}", ws.display());
        holds(home)
    };
    // A fresh store, a commit the instant the run starts: the workspace's
    // first snapshot is still being ingested.
    let fresh = run_in(
        &dir.join(format!("home-fresh-{n}-{tag}")),
        &COMMITS.replace("1 2 3 4 5", "1"),
    );
    let home = dir.join(format!("home-hold-{n}-{tag}"));
    let run = |script: &str| run_in(&home, script);
    let label = format!("{n} files");
    let row = |case: &str, h: &[f64]| {
        let min = h.iter().copied().fold(f64::INFINITY, f64::min);
        let max = h.iter().copied().fold(0.0, f64::max);
        vec![
            label.clone(),
            which.to_string(),
            case.to_string(),
            format!("{:.1}", median(h)),
            format!("{min:.1}"),
            format!("{max:.1}"),
            h.len().to_string(),
        ]
    };
    // First run: the baseline snapshot, then commits once it is stored.
    let first = run(&format!("{WAIT_PRE_RUN}{COMMITS}"));
    // A later run, with the stat cache of the last one: steady state.
    let steady = run(&format!("{WAIT_PRE_RUN}{COMMITS}"));
    // A commit the instant the run starts: its parent is still ingesting.
    let at_once = run(COMMITS.replace("1 2 3 4 5", "1").as_str());
    // With `moat watch` running, a capture re-examines only what changed.
    let watched = watching(&home, ws, || run(&format!("{WAIT_PRE_RUN}{COMMITS}")));
    vec![
        row("after the first snapshot", &first),
        row("steady state", &steady),
        row("right at start", &at_once),
        row("right at start, fresh store", &fresh),
        row("steady state, moat watch running", &watched),
    ]
}

/// Runs `f` while `moat watch` watches `ws` (started, then waited for until
/// `moat watch --status` lists it; stopped after).
fn watching<T>(home: &Path, ws: &Path, f: impl FnOnce() -> T) -> T {
    let moat = |args: &[&std::ffi::OsStr]| {
        let mut c = Command::new(MOAT);
        c.args(args)
            .env("MOAT_HOME", home)
            .env("MOAT_STORE", home.join("store"))
            .stdin(Stdio::null());
        c
    };
    let os = std::ffi::OsStr::new;
    let mut watcher = moat(&[os("watch"), ws.as_os_str()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moat watch");
    let ws_str = ws.to_string_lossy().into_owned();
    loop {
        let out = moat(&[os("watch"), os("--status"), os("--json")])
            .output()
            .expect("status");
        if String::from_utf8_lossy(&out.stdout).contains(&ws_str) {
            break;
        }
        assert!(watcher.try_wait().ok().flatten().is_none(), "moat watch exited");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let r = f();
    let _ = moat(&[os("watch"), os("--stop"), ws.as_os_str()]).status();
    let _ = watcher.wait();
    r
}

/// A crate that depends on regex, built offline from the local registry.
fn cargo_project(dir: &Path) -> Result<PathBuf, String> {
    let ws = dir.join("cargo-ws");
    std::fs::create_dir_all(ws.join("src")).map_err(|e| e.to_string())?;
    std::fs::write(
        ws.join("Cargo.toml"),
        "[package]\nname = \"w\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nregex = \"=1.13.2\"\n",
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(
        ws.join("src/main.rs"),
        "fn main() { println!(\"{}\", regex::Regex::new(\"a+\").unwrap().is_match(\"aa\")); }\n",
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(ws.join(".gitignore"), "target/\n").map_err(|e| e.to_string())?;
    let out = Command::new("cargo")
        .args(["generate-lockfile", "--offline"])
        .current_dir(&ws)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "regex 1.13.2 is not in the local registry: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    git(&ws, &["init", "-q"]);
    git(&ws, &["add", "-A"]);
    git(&ws, &["commit", "-qm", "base"]);
    Ok(ws)
}

/// `files` small C sources, a header, and a Makefile that links them.
fn c_project(dir: &Path, files: usize) -> PathBuf {
    let ws = dir.join("c-ws");
    std::fs::create_dir_all(ws.join("src")).expect("mkdir");
    std::fs::write(ws.join("src/common.h"), "int work(int);\n").expect("write");
    let mut main = String::from("#include \"common.h\"\n");
    for i in 0..files {
        let body = format!(
            "#include \"common.h\"\nstatic int table_{i}[64];\nint f{i}(int x) {{\n  for (int k = 0; k < 64; k++) table_{i}[k] = x * k + {i};\n  int s = 0;\n  for (int k = 0; k < 64; k++) s ^= table_{i}[k] >> (k % 7);\n  return s;\n}}\n"
        );
        std::fs::write(ws.join(format!("src/f{i}.c")), body).expect("write");
        main.push_str(&format!("int f{i}(int);\n"));
    }
    main.push_str("int work(int x) { return x; }\nint main(void) { int s = 0;\n");
    for i in 0..files {
        main.push_str(&format!("  s += f{i}(s);\n"));
    }
    main.push_str("  return s & 1; }\n");
    std::fs::write(ws.join("src/main.c"), main).expect("write");
    std::fs::write(
        ws.join("Makefile"),
        "SRC := $(wildcard src/*.c)\nOBJ := $(SRC:src/%.c=obj/%.o)\n\nall: app\n\napp: $(OBJ)\n\t$(CC) -o $@ $^\n\n\
         obj/%.o: src/%.c src/common.h\n\t@mkdir -p obj\n\t$(CC) -O1 -c -o $@ $<\n\nclean:\n\trm -rf obj app\n",
    )
    .expect("write");
    std::fs::write(ws.join(".gitignore"), "obj/\napp\n").expect("write");
    git(&ws, &["init", "-q"]);
    git(&ws, &["add", "-A"]);
    git(&ws, &["commit", "-qm", "base"]);
    ws
}

/// Times `cmd` in `ws` plain and under `moat run` (tracing only; and, when
/// `default_too`, as configured out of the box), interleaved; `clean`
/// runs untimed before each run.
fn overhead(
    label: &str,
    ws: &Path,
    cmd: &[&str],
    reps: usize,
    default_too: bool,
    baseline: &Option<PathBuf>,
    clean: impl Fn(&Path),
) -> Vec<Vec<String>> {
    let home = ws.with_extension("home");
    let tracing_only = ws.with_extension("tracing.yaml");
    std::fs::write(&tracing_only, "snapshots:\n  disabled: true\n").expect("write");
    let moat = PathBuf::from(MOAT);
    let mut ways: Vec<(String, Box<dyn Fn() -> Command>)> = vec![(
        "plain".into(),
        Box::new(|| {
            let mut c = Command::new(cmd[0]);
            c.args(&cmd[1..]).current_dir(ws).stdin(Stdio::null());
            c
        }),
    )];
    let mut variants = vec![("moat run, tracing only".to_string(), moat.clone(), true)];
    if default_too {
        variants.push(("moat run, out of the box".to_string(), moat.clone(), false));
    }
    if let Some(b) = baseline {
        variants.push(("baseline moat, tracing only".to_string(), b.clone(), true));
    }
    for (name, bin, only_trace) in variants {
        let (home, cfg) = (home.clone(), tracing_only.clone());
        ways.push((
            name,
            Box::new(move || moat_run(&bin, &home, ws, only_trace.then_some(cfg.as_path()), cmd)),
        ));
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
    for _ in 0..reps {
        for (i, (_, make)) in ways.iter().enumerate() {
            clean(ws);
            let t = Instant::now();
            let out = make()
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .expect("run");
            let secs = t.elapsed().as_secs_f64();
            assert!(
                out.status.success(),
                "{label}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            times[i].push(secs);
        }
    }
    let plain = median(&times[0]);
    ways.iter()
        .zip(&times)
        .map(|((name, _), t)| {
            vec![
                label.to_string(),
                name.clone(),
                format!("{:.3}", median(t)),
                format!("{:.3}", median(t) / plain),
                t.iter().map(|s| format!("{s:.2}")).collect::<Vec<_>>().join(" "),
            ]
        })
        .collect()
}
