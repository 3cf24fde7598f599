//! Everything the CLI prints goes through here. Stdout lines end moat
//! quietly once their reader has gone (`moat ls | head`): killed by
//! SIGPIPE, as git is, with no panic and no message. Stderr lines never
//! fail a command (`moat run -- CMD 2>&1 | head -1` still runs CMD) and
//! have their control characters escaped. Names and metadata on stdout are
//! quoted by the caller with `quote`/`escape` (one implementation, in
//! `moat::util::quote`); JSON is printed exact.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

pub use moat::util::quote::{escape, quote, quote_path};

/// `println!` for the CLI: see `line`.
macro_rules! outln {
    () => {
        $crate::out::line(format_args!(""))
    };
    ($($t:tt)*) => {
        $crate::out::line(format_args!($($t)*))
    };
}

/// `eprintln!` for the CLI: see `diag`.
macro_rules! errln {
    ($($t:tt)*) => {
        $crate::out::diag(format_args!($($t)*))
    };
}

/// Writes one line to stdout. When the reader has gone (EPIPE), moat ends
/// as git does, by SIGPIPE; any other write error ends it with a message.
pub fn line(args: fmt::Arguments) {
    let mut out = std::io::stdout().lock();
    written(out.write_fmt(args).and_then(|()| out.write_all(b"\n")));
}

/// Writes bytes to stdout exactly as they are (a generated script or man
/// page), ending moat as `line` does when that fails.
pub fn raw(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    written(out.write_all(bytes).and_then(|()| out.flush()));
}

fn written(res: std::io::Result<()>) {
    if let Err(e) = res {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            reader_gone();
        }
        diag(format_args!("moat: error: cannot write the output: {e}"));
        std::process::exit(1);
    }
}

/// Writes one line to stderr with control characters escaped; a failed
/// write is ignored (there is nowhere left to report it).
pub fn diag(args: fmt::Arguments) {
    let text = args.to_string();
    let _ = writeln!(std::io::stderr(), "{}", escape(&text));
}

/// A question on stderr, left open for the answer.
pub fn prompt(args: fmt::Arguments) {
    let text = args.to_string();
    let mut err = std::io::stderr();
    let _ = write!(err, "{}", escape(&text)).and_then(|()| err.flush());
}

/// Set while stdout goes into a pager (`pager`), which shows a terminal.
static PAGED: AtomicBool = AtomicBool::new(false);

pub fn set_paged(on: bool) {
    PAGED.store(on, Ordering::Relaxed);
}

/// Whether stdout is a terminal, or a pager showing one (colours, and
/// escaping file contents).
pub fn stdout_is_terminal() -> bool {
    PAGED.load(Ordering::Relaxed) || std::io::stdout().is_terminal()
}

fn reader_gone() -> ! {
    // SAFETY: restores SIGPIPE's default action (the runtime ignores it)
    // and raises it, so the process ends the way git's does.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    std::process::exit(141)
}
