//! Snapshot files: the commit point of a capture.
//!
//! Layout: header (`MOATSNAP`, version) | postcard(`Snapshot`). The snapshot
//! id is the blake3 of the whole file and its name is `snapshots/<hex id>`.
//! Writing this file (temp, fsync, rename) is the only commit point: packs
//! and index are published before it, so a committed snapshot is complete.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::header;
use crate::format::id::ObjectId;

pub const MAGIC: &[u8; 8] = b"MOATSNAP";
pub const VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Trigger {
    Manual,
    PreRun,
    GitCommit,
    Build,
    Idle,
    PostRun,
    Safety,
}

impl Trigger {
    pub fn name(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::PreRun => "pre-run",
            Trigger::GitCommit => "git-commit",
            Trigger::Build => "build",
            Trigger::Idle => "idle",
            Trigger::PostRun => "post-run",
            Trigger::Safety => "safety",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitInfo {
    pub commit: String,
    pub branch: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Total file bytes in the snapshot.
    pub bytes: u64,
    /// Files whose contents were read (the rest came from the stat cache).
    pub files_read: u64,
    /// Objects this snapshot added to the store, and their stored size.
    pub new_objects: u64,
    pub new_bytes: u64,
    pub skipped: u64,
    pub duration_ns: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub root: ObjectId,
    pub parent: Option<ObjectId>,
    /// Absolute workspace path as raw bytes.
    #[serde(with = "serde_bytes")]
    pub workspace: Vec<u8>,
    pub host: String,
    pub time_ns: i64,
    pub trigger: Trigger,
    pub message: String,
    pub git: Option<GitInfo>,
    pub run_id: Option<String>,
    pub stats: Stats,
}

impl Snapshot {
    pub fn encode(&self) -> (ObjectId, Vec<u8>) {
        let mut out = Vec::new();
        header::write(&mut out, MAGIC, VERSION);
        out.extend(postcard::to_stdvec(self).unwrap_or_default());
        (ObjectId::hash(&out), out)
    }

    pub fn decode(data: &[u8], path: &Path) -> Result<Self> {
        let body = header::check(data, MAGIC, VERSION, "snapshot", path)?;
        let (snap, rest): (Snapshot, _) =
            postcard::take_from_bytes(body).map_err(|e| Error::corrupt(path, "snapshot", e.to_string()))?;
        if !rest.is_empty() {
            return Err(Error::corrupt(path, "snapshot", "trailing bytes"));
        }
        Ok(snap)
    }

    pub fn workspace_path(&self) -> PathBuf {
        use std::os::unix::ffi::OsStrExt;
        PathBuf::from(std::ffi::OsStr::from_bytes(&self.workspace))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let s = Snapshot {
            root: ObjectId::hash(b"r"),
            parent: None,
            workspace: b"/w\xff".to_vec(),
            host: "h".into(),
            time_ns: 5,
            trigger: Trigger::Manual,
            message: "m".into(),
            git: Some(GitInfo {
                commit: "abc".into(),
                branch: Some("main".into()),
            }),
            run_id: None,
            stats: Stats::default(),
        };
        let (_, bytes) = s.encode();
        let p = Path::new("s");
        assert_eq!(Snapshot::decode(&bytes, p).unwrap(), s);
        for n in 0..bytes.len() {
            assert!(Snapshot::decode(&bytes[..n], p).is_err());
        }
    }
}
