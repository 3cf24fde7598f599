//! Running moat on a pseudo-terminal, as a user at a terminal would: under
//! util-linux `script`, which gives the command a pty for stdin, stdout and
//! stderr and copies everything written to it to our pipe. Used by the
//! progress-bar and pager tests; where `script` is missing they print
//! `SKIPPED …: reason` past the harness's capture.

use std::io::Write;
use std::process::{Command, Output};

/// `s` quoted for `sh`.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Whether `script` can run a command on a pty here; else why not.
pub fn available() -> Result<(), String> {
    let out = Command::new("script")
        .args(["-qec", "test -t 1 && test -t 2", "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("no util-linux `script` to open a pty with: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`script` did not give its command a terminal: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Runs `env.cmd()`'s program with `args` (and `--store`) on a pty, with
/// extra environment `vars`, in `cwd`; returns what the terminal showed.
/// Returns None (after printing why) when no pty can be had.
pub fn run(
    test: &str,
    env: &super::Env,
    args: &[&str],
    vars: &[(&str, &str)],
    cwd: &std::path::Path,
) -> Option<Output> {
    if let Err(why) = available() {
        let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
        return None;
    }
    let mut line = String::new();
    for (k, v) in vars {
        line.push_str(&format!("{k}={} ", sh_quote(v)));
    }
    line.push_str(&sh_quote(env!("CARGO_BIN_EXE_moat")));
    line.push_str(" --store ");
    line.push_str(&sh_quote(env.store().to_str().expect("utf8 store")));
    for a in args {
        line.push(' ');
        line.push_str(&sh_quote(a));
    }
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"])
        .current_dir(cwd)
        .env_remove("MOAT_STORE")
        .env_remove("MOAT_HOME")
        .env("TERM", "xterm");
    Some(super::output_within(&mut cmd, 120))
}

/// What a terminal showed, without the carriage returns the pty adds.
pub fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n")
}
