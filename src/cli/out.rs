//! Everything the CLI prints goes through here. Stdout lines end moat
//! quietly once their reader has gone (`moat ls | head`): killed by
//! SIGPIPE, as git is, with no panic and no message. Stderr lines never
//! fail a command (`moat run -- CMD 2>&1 | head -1` still runs CMD) and
//! have their control characters escaped. Names and metadata on stdout are
//! quoted by the caller with `quote`/`escape` (one implementation, in
//! `moat::util::quote`); JSON is printed exact.

use std::fmt;
use std::io::{IsTerminal, Write};

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
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
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

/// Whether stdout is a terminal (colours, and escaping file contents).
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
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
