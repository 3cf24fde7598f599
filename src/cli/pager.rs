//! A pager for long output on a terminal, as git does: when stdout is a
//! terminal, `$MOAT_PAGER`, else `$PAGER`, else `less`, run by `sh -c`
//! with `LESS=FRX` unless `LESS` is set (quit at once when the output fits
//! the screen, pass colours, leave the screen as it is). An empty pager or
//! `cat` means none.
//!
//! Invariants: stdout (fd 1) is redirected into the pager's stdin for as
//! long as it runs, and `finish` (called by `main` before it prints any
//! error and exits) restores it and waits for the pager, so moat never
//! exits under a pager that is still reading the terminal. While paging,
//! the output counts as a terminal's (`out::stdout_is_terminal`): colours
//! on, control bytes escaped.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use super::out;

struct Paging {
    child: Child,
    command: String,
    /// The original stdout, put back by `finish`.
    saved: OwnedFd,
}

static PAGER: Mutex<Option<Paging>> = Mutex::new(None);

/// The pager command the environment asks for, if any.
fn command() -> Option<String> {
    let var = |k: &str| std::env::var(k).ok();
    let cmd = var("MOAT_PAGER")
        .or_else(|| var("PAGER"))
        .unwrap_or_else(|| "less".into());
    let cmd = cmd.trim();
    (!cmd.is_empty() && cmd != "cat").then(|| cmd.to_string())
}

/// Starts the pager when stdout is a terminal and `enabled`.
pub fn start(enabled: bool) -> moat::Result<()> {
    if !enabled || !out::stdout_is_terminal() {
        return Ok(());
    }
    let Some(cmd) = command() else {
        return Ok(());
    };
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(&cmd).stdin(Stdio::piped());
    if std::env::var_os("LESS").is_none() {
        sh.env("LESS", "FRX");
    }
    if std::env::var_os("LV").is_none() {
        sh.env("LV", "-c");
    }
    let mut child = sh
        .spawn()
        .map_err(|e| moat::Error::io(format!("pager `{cmd}`"), e))?;
    let Some(stdin) = child.stdin.take() else {
        return Ok(());
    };
    let _ = std::io::stdout().flush();
    // SAFETY: dup and dup2 on descriptors this process owns; fd 1 becomes
    // the pipe into the pager, the original is kept in `saved`.
    let saved = unsafe {
        let fd = libc::dup(1);
        if fd < 0 || libc::dup2(stdin.as_raw_fd(), 1) < 0 {
            let e = std::io::Error::last_os_error();
            if fd >= 0 {
                libc::close(fd);
            }
            let _ = child.kill();
            let _ = child.wait();
            return Err(moat::Error::io("stdout", e));
        }
        OwnedFd::from_raw_fd(fd)
    };
    drop(stdin);
    out::set_paged(true);
    *PAGER.lock().unwrap_or_else(|p| p.into_inner()) = Some(Paging {
        child,
        command: cmd,
        saved,
    });
    Ok(())
}

/// Ends paging: closes the pager's input and waits for it. A pager that
/// failed (e.g. not found) is an error, or the output would vanish unseen.
pub fn finish() -> moat::Result<()> {
    let Some(mut p) = PAGER.lock().unwrap_or_else(|p| p.into_inner()).take() else {
        return Ok(());
    };
    let _ = std::io::stdout().flush();
    // SAFETY: puts the original stdout back on fd 1, which closes the
    // pager's pipe there (its only write end), so the pager sees EOF.
    unsafe {
        libc::dup2(p.saved.as_raw_fd(), 1);
    }
    out::set_paged(false);
    let status = p
        .child
        .wait()
        .map_err(|e| moat::Error::io(format!("pager `{}`", p.command), e))?;
    if status.success() {
        return Ok(());
    }
    Err(moat::Error::io(
        format!("pager `{}`", p.command),
        std::io::Error::other(format!("it failed ({status}); set MOAT_PAGER or pass --no-pager")),
    ))
}
