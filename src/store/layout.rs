//! Where each kind of store file lives below the store root (see
//! store-format.md, "Layout"). The only place that names the store's
//! directories.

use std::path::{Path, PathBuf};

use crate::format::id::ObjectId;

/// The directories every store has.
pub const DIRS: [&str; 6] = ["packs", "index", "snapshots", "cache", "tmp", "pins"];

pub const CONFIG: &str = "config";
pub const LOCK: &str = "lock";
/// The files at the store's top level.
pub const FILES: [&str; 2] = [CONFIG, LOCK];

/// `packs/<xx>/<id>.pack`
pub fn pack(id: &ObjectId) -> PathBuf {
    let hex = id.to_hex();
    PathBuf::from("packs").join(&hex[..2]).join(format!("{hex}.pack"))
}

/// `index/<id>.idx`
pub fn index(id: &ObjectId) -> PathBuf {
    PathBuf::from("index").join(format!("{}.idx", id.to_hex()))
}

/// `snapshots/<id>`
pub fn snapshot(id: &ObjectId) -> PathBuf {
    PathBuf::from("snapshots").join(id.to_hex())
}

/// `pins/<id>`
pub fn pin(id: &ObjectId) -> PathBuf {
    PathBuf::from("pins").join(id.to_hex())
}

/// `cache/<first 32 hex of blake3(workspace path)>.stat`
pub fn stat_cache(workspace: &Path) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let h = blake3::hash(workspace.as_os_str().as_bytes()).to_hex();
    PathBuf::from("cache").join(format!("{}.stat", &h[..32]))
}
