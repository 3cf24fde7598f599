//! A filesystem whose timestamps have whole-second granularity, for the
//! racy-file tests: a loop-mounted ext4 with 128-byte inodes (no room for
//! nanoseconds), set up once per test process (`loopfs`: needs root and
//! e2fsprogs). Without one the tests print why, uncaptured.

use std::path::PathBuf;
use std::sync::OnceLock;

static FS: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// A fresh empty directory on the coarse filesystem, or None after
/// printing (past the test harness's capture) why there is none.
pub fn dir(test: &str) -> Option<PathBuf> {
    super::loopfs::fresh_dir(FS.get_or_init(setup), test, test)
}

fn setup() -> Result<PathBuf, String> {
    super::loopfs::mount(
        "coarse",
        &["mkfs.ext4", "-q", "-F", "-I", "128"],
        64 << 20,
        "e2fsprogs",
    )
}
