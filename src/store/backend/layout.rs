//! Where each kind of store file lives below a local store's root (see
//! store-format.md, "Layout"): the only place that names the store's
//! directories.
//!
//! Invariant: a name maps to a path only if it is one path component
//! (no `/`, not empty, `.` or `..`), so no name leads outside its
//! directory.

use std::path::{Path, PathBuf};

use super::FileKind;
use crate::format::id::ObjectId;

/// The directories every store has.
pub const DIRS: [&str; 6] = ["packs", "index", "snapshots", "cache", "tmp", "pins"];

pub const CONFIG: &str = "config";
pub const LOCK: &str = "lock";
/// The files at the store's top level.
pub const FILES: [&str; 2] = [CONFIG, LOCK];

/// The directory holding the files of `kind`, below the root (`""` for
/// the config, at the top).
pub fn dir(kind: FileKind) -> &'static str {
    match kind {
        FileKind::Config => "",
        FileKind::Pack => "packs",
        FileKind::Index => "index",
        FileKind::Snapshot => "snapshots",
        FileKind::Pin => "pins",
        FileKind::Cache | FileKind::CacheDelta | FileKind::WatchToken => "cache",
        FileKind::Tmp => "tmp",
    }
}

/// The file-name suffix of `kind`.
fn suffix(kind: FileKind) -> &'static str {
    match kind {
        FileKind::Pack => ".pack",
        FileKind::Index => ".idx",
        FileKind::Cache => ".stat",
        FileKind::CacheDelta => ".delta",
        FileKind::WatchToken => ".watch",
        _ => "",
    }
}

fn component(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

/// The path of file `name` of `kind` below the root: `config`,
/// `packs/<xx>/<id>.pack`, `index/<id>.idx`, `snapshots/<id>`,
/// `pins/<id>`, `cache/<wsid>.stat`, `cache/<wsid>.delta`, `cache/<wsid>.watch`, `tmp/<name>`. `None` for a name that
/// is not one path component (the config's name is ignored).
pub fn path(kind: FileKind, name: &str) -> Option<PathBuf> {
    if kind == FileKind::Config {
        return Some(PathBuf::from(CONFIG));
    }
    if !component(name) {
        return None;
    }
    let file = format!("{name}{}", suffix(kind));
    Some(match kind {
        FileKind::Pack => {
            let fan = name.get(..2).filter(|_| name.len() > 2)?;
            PathBuf::from("packs").join(fan).join(file)
        }
        _ => PathBuf::from(dir(kind)).join(file),
    })
}

/// Lowercase hex digits only: moat names files so, and a reader that
/// took `ABC…` for `abc…` would read a file under a name it never wrote.
fn lower_hex(name: &str) -> bool {
    name.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The name of a directory entry `file` of `kind`, if it is one (ids in
/// lowercase hex for packs, index files, snapshots and pins; any name in
/// `tmp/`). Anything else in those directories is not a store file.
pub fn name_of(kind: FileKind, file: &str) -> Option<&str> {
    let name = file.strip_suffix(suffix(kind))?;
    let ok = match kind {
        FileKind::Pack | FileKind::Index | FileKind::Snapshot | FileKind::Pin => {
            lower_hex(name) && ObjectId::from_hex(name).is_some()
        }
        FileKind::Cache | FileKind::CacheDelta | FileKind::WatchToken => name.len() == 32 && lower_hex(name),
        FileKind::Tmp => component(name),
        FileKind::Config => false,
    };
    ok.then_some(name)
}

/// The name of the stat cache of `workspace`: the first 32 hex digits of
/// blake3 of its path.
pub fn stat_cache_name(workspace: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    blake3::hash(workspace.as_os_str().as_bytes()).to_hex()[..32].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_names() {
        let id = ObjectId::hash(b"x");
        let hex = id.to_hex();
        let p = path(FileKind::Pack, &hex).unwrap();
        assert_eq!(p, PathBuf::from(format!("packs/{}/{hex}.pack", &hex[..2])));
        assert_eq!(
            path(FileKind::Index, &hex).unwrap(),
            PathBuf::from(format!("index/{hex}.idx"))
        );
        assert_eq!(path(FileKind::Config, "").unwrap(), PathBuf::from("config"));
        for bad in ["", ".", "..", "a/b", "x\0"] {
            assert_eq!(path(FileKind::Snapshot, bad), None, "{bad:?}");
        }
        assert_eq!(
            name_of(FileKind::Index, &format!("{hex}.idx")),
            Some(hex.as_str())
        );
        assert_eq!(name_of(FileKind::Index, "notes.idx"), None);
        let upper = hex.to_ascii_uppercase();
        assert_eq!(name_of(FileKind::Snapshot, &upper), None);
        assert_eq!(name_of(FileKind::Cache, &format!("{}.stat", &upper[..32])), None);
        assert_eq!(name_of(FileKind::Snapshot, &hex), Some(hex.as_str()));
        assert_eq!(
            name_of(FileKind::Cache, &format!("{}.stat", &hex[..32])),
            Some(&hex[..32])
        );
        assert_eq!(stat_cache_name(Path::new("/w")).len(), 32);
    }
}
