//! What `moat run` did, line by line: `runs/<id>/moat.log` (shown by `moat
//! trace`), and live on stderr only when asked (`--verbose`). By default
//! nothing reaches CMD's terminal: inside an agent's TUI a status line
//! corrupts the screen.
//!
//! Invariant: logging never fails the run; a line that cannot be written
//! is dropped (the run's own record, `run.json`, is written separately).

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use crate::error::{IoContext, Result};

/// A sink for live log lines (the CLI prints them on stderr).
pub type Log<'a> = &'a (dyn Fn(&str) + Sync);

pub const FILE_NAME: &str = "moat.log";

pub struct RunLog<'a> {
    file: Mutex<File>,
    start: Instant,
    live: Log<'a>,
}

impl<'a> RunLog<'a> {
    /// Creates `dir/moat.log`; every line also goes to `live`.
    pub fn create(dir: &Path, live: Log<'a>) -> Result<Self> {
        let path = dir.join(FILE_NAME);
        let file = File::create(&path).at(&path)?;
        Ok(RunLog {
            file: Mutex::new(file),
            start: Instant::now(),
            live,
        })
    }

    /// One line, stamped with the seconds since the run started. Control
    /// characters (from paths, command lines) are escaped: the log is
    /// printed on terminals.
    pub fn line(&self, text: &str) {
        let text = crate::util::quote::escape(text);
        let t = self.start.elapsed().as_secs_f64();
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(f, "[{t:9.3}s] {text}");
        drop(f);
        (self.live)(&text);
    }
}

/// The log of run `dir`, if it has one.
pub fn read(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join(FILE_NAME)).ok()
}
