//! Fault injection for the tests, armed by `MOAT_FAILPOINT=NAME[:MODE][@N]`.
//!
//! `NAME` is a step (`after-packs`, `gc-after-index`, ...) or a store
//! writer (`pack-write`, `index-write`, `snapshot-write`, `cache-write`,
//! `pin-write`, `config-write`), checked at every write that writer makes.
//! `MODE` is what happens there: `abort` (the default: the process dies
//! like a `kill -9`, no destructors), `eio` (the write fails with EIO),
//! `short` (half the bytes are written, then the write fails; these two
//! say `moat: failpoint NAME fired (MODE)` on stderr each time), `pause`
//! (say so on stderr and wait for a line on stdin, so a test can fill the
//! disk at exactly this point). `@N` arms it from the N-th hit on (default
//! 1); `pause` fires once.
//!
//! Invariant: with `MOAT_FAILPOINT` unset every function here is a no-op
//! apart from one cached lookup, and writes go straight through.

use std::io::{self, BufRead, Write};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Abort,
    Eio,
    Short,
    Pause,
}

struct Armed {
    name: String,
    mode: Mode,
    from: u64,
    hits: AtomicU64,
}

fn parse(spec: &str) -> Option<Armed> {
    let (spec, from) = match spec.rsplit_once('@') {
        Some((s, n)) => (s, n.parse().ok()?),
        None => (spec, 1),
    };
    let (name, mode) = match spec.split_once(':') {
        None => (spec, Mode::Abort),
        Some((n, "abort")) => (n, Mode::Abort),
        Some((n, "eio")) => (n, Mode::Eio),
        Some((n, "short")) => (n, Mode::Short),
        Some((n, "pause")) => (n, Mode::Pause),
        Some(_) => return None,
    };
    Some(Armed {
        name: name.to_string(),
        mode,
        from,
        hits: AtomicU64::new(0),
    })
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| std::env::var("MOAT_FAILPOINT").ok().and_then(|s| parse(&s)))
        .as_ref()
}

/// The mode armed for this hit of `name`, if it fires now.
fn fires(name: &str) -> Option<Mode> {
    let a = armed().filter(|a| a.name == name)?;
    let n = a.hits.fetch_add(1, Ordering::Relaxed) + 1;
    let now = if a.mode == Mode::Pause {
        n == a.from
    } else {
        n >= a.from
    };
    now.then_some(a.mode)
}

fn pause(name: &str) {
    let _ = writeln!(
        io::stderr(),
        "moat: failpoint {name} paused (press Enter to go on)"
    );
    let mut line = String::new();
    let _ = io::stdin().lock().read_line(&mut line);
}

/// Says on stderr that an error-returning failpoint fired, so a test can
/// tell a command that never reached it from one that swallowed its error.
fn fired(name: &str, mode: &str) {
    let _ = writeln!(io::stderr(), "moat: failpoint {name} fired ({mode})");
}

/// A step: aborts (or pauses) when armed; other modes mean nothing here.
pub fn point(name: &str) {
    match fires(name) {
        Some(Mode::Abort) => std::process::abort(),
        Some(Mode::Pause) => pause(name),
        _ => {}
    }
}

/// `w.write_all(data)`, through failpoint `name`.
pub fn write_all(name: &str, w: &mut impl Write, data: &[u8]) -> io::Result<()> {
    match fires(name) {
        None => w.write_all(data),
        Some(Mode::Abort) => std::process::abort(),
        Some(Mode::Pause) => {
            pause(name);
            w.write_all(data)
        }
        Some(Mode::Eio) => {
            fired(name, "eio");
            Err(io::Error::from_raw_os_error(libc::EIO))
        }
        Some(Mode::Short) => {
            fired(name, "short");
            w.write_all(&data[..data.len() / 2])?;
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!(
                    "short write: {} of {} bytes (failpoint {name})",
                    data.len() / 2,
                    data.len()
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        let a = parse("pack-write:eio@3").unwrap();
        assert_eq!((a.name.as_str(), a.mode, a.from), ("pack-write", Mode::Eio, 3));
        let a = parse("after-packs").unwrap();
        assert_eq!((a.name.as_str(), a.mode, a.from), ("after-packs", Mode::Abort, 1));
        assert!(parse("x:explode").is_none());
        assert!(parse("x:eio@many").is_none());
    }
}
