//! Progress bars on a terminal (indicatif); nothing when piped or quiet.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use moat::util::progress::{NoProgress, Progress};

pub struct Bar {
    bar: Mutex<Option<ProgressBar>>,
}

impl Bar {
    fn begin(&self, phase: &str, total: u64, template: &str) {
        let bar = if total == 0 {
            ProgressBar::new_spinner()
        } else {
            ProgressBar::new(total).with_style(
                ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
            )
        };
        bar.set_message(phase.to_string());
        if let Some(old) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).replace(bar) {
            old.finish_and_clear();
        }
    }
}

impl Progress for Bar {
    fn start(&self, phase: &str, total: u64) {
        self.begin(
            phase,
            total,
            "{msg:12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        );
    }

    fn start_count(&self, phase: &str, total: u64) {
        self.begin(phase, total, "{msg:12} [{bar:30}] {pos}/{len} eta {eta}");
    }

    fn inc(&self, n: u64) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            b.inc(n);
        }
    }

    fn finish(&self) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
            b.finish_and_clear();
        }
    }
}

/// A bar on an interactive stderr unless `quiet` (or the command prints
/// JSON, which is never mixed with progress).
pub fn progress(quiet: bool) -> Box<dyn Progress> {
    if quiet || !std::io::stderr().is_terminal() {
        Box::new(NoProgress)
    } else {
        Box::new(Bar {
            bar: Mutex::new(None),
        })
    }
}
