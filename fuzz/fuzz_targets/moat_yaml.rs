#![no_main]

//! `moat.yaml` is read from a workspace anyone may write: parsing any text
//! must end quickly with a configuration or an error (run with `-timeout`).

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = moat::worktree::config::WorkspaceConfig::parse(&text, Path::new("moat.yaml"));
});
