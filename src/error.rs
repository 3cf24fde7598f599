//! Typed errors of the library. Every variant names the path or object it is
//! about, so the CLI can print a message that says what failed and what to do.

use std::path::PathBuf;

use crate::format::id::ObjectId;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Writing a store file failed (full disk, I/O error): unlike a
    /// workspace read error, this fails the whole capture or gc.
    #[error("cannot write to the store: {path}: {source}")]
    StoreWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: not a regular file (found a {found}); the store is damaged or was tampered with")]
    NotRegular { path: PathBuf, found: &'static str },

    #[error(
        "{path}: {detail}; moat will not use a store whose directories, lock or config are symlinks or special files"
    )]
    UnsafeStore { path: PathBuf, detail: String },

    #[error(
        "{path}: gc needs {needed} bytes free to {what}, but only {free} bytes are free; free some space and run `moat gc` again"
    )]
    NoSpace {
        path: PathBuf,
        what: &'static str,
        needed: u64,
        free: u64,
    },

    #[error("{path}: not a moat {what} file (bad magic); is this the right store?")]
    BadMagic { path: PathBuf, what: &'static str },

    #[error(
        "{path}: {what} format version {found} is not supported (this moat reads version {supported}); upgrade moat"
    )]
    UnsupportedVersion {
        path: PathBuf,
        what: &'static str,
        found: u32,
        supported: u32,
    },

    #[error("{path}: corrupt {what}: {detail}")]
    Corrupt {
        path: PathBuf,
        what: &'static str,
        detail: String,
    },

    #[error("object {id} in pack {pack}: {detail}; the store is damaged, run `moat check --read-data`")]
    BadObject {
        id: ObjectId,
        pack: String,
        detail: String,
    },

    #[error("object {id} is not in the store index (referenced by {by}); run `moat check`")]
    MissingObject { id: ObjectId, by: String },

    #[error("tree {id}: {detail}")]
    BadTree { id: ObjectId, detail: String },

    #[error("no snapshot matches '{0}'; list them with `moat snapshots --all`")]
    NoSuchSnapshot(String),

    #[error("snapshot id '{prefix}' is ambiguous: matches {candidates}; give more characters")]
    AmbiguousSnapshot { prefix: String, candidates: String },

    #[error("'{0}' is not a snapshot id: give 'latest', 'latest~N' or at least 6 hex characters")]
    BadSnapshotSpec(String),

    #[error("no path '{path}' in snapshot {snapshot}")]
    NoSuchPath { snapshot: String, path: String },

    #[error("{0}: target exists and is not empty; pass --force to restore into it")]
    TargetNotEmpty(PathBuf),

    #[error("{0}: workspace is not a directory")]
    NotADirectory(PathBuf),

    #[error("{0}: no moat store here; take a snapshot to create one, or pass --store DIR")]
    NoStore(PathBuf),

    /// A request to a remote store failed (after its retries).
    #[error("{path}: {detail}")]
    Remote { path: PathBuf, detail: String },

    #[error("{path}: cannot decide where the store lives: {detail}")]
    StoreLocation { path: PathBuf, detail: String },

    #[error("invalid exclude pattern '{pattern}': {detail}")]
    BadPattern { pattern: String, detail: String },

    #[error("{path}: {detail}")]
    Limit { path: PathBuf, detail: String },

    #[error(
        "snapshot {snapshot} was taken of {snap_ws}, not of {ws}; pass --force to roll this workspace back to it anyway"
    )]
    OtherWorkspace {
        snapshot: String,
        snap_ws: PathBuf,
        ws: PathBuf,
    },

    #[error("{path}: {detail}")]
    Config { path: PathBuf, detail: String },

    #[error("{0}")]
    GrowthGuard(String),

    #[error("{path}: {detail}")]
    OwnDir { path: PathBuf, detail: String },

    #[error(
        "rollback would destroy what no snapshot holds (nothing was changed): {paths}; pass --force to roll back anyway"
    )]
    Uncovered { paths: String },

    /// A command whose workspace was implicit (the current directory)
    /// found no snapshots of it: the user is probably in the wrong place.
    #[error("no snapshots of {path}; {hint}")]
    NoSnapshotsOf { path: PathBuf, hint: &'static str },

    #[error("cannot mount {path}: {source}")]
    Mount {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: file kept changing while it was read ({tries} tries); not stored")]
    Unstable { path: PathBuf, tries: u32 },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn store_write(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::StoreWrite {
            path: path.into(),
            source,
        }
    }

    pub fn corrupt(path: impl Into<PathBuf>, what: &'static str, detail: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.into(),
            what,
            detail: detail.into(),
        }
    }
}

/// Attach a path to an `io::Result`.
pub trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
