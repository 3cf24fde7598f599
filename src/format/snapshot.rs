//! Snapshot files: the commit point of a capture.
//!
//! Layout: header (`MOATSNAP`, version) | postcard(`Snapshot`). The snapshot
//! id is the blake3 of the whole file and its name is `snapshots/<hex id>`.
//! Version 2 (written now) adds `skipped`, `exact` and `scan` after the
//! fields of version 1, which is still read (those fields then take their
//! version-1 meaning: nothing skipped is known, exact, walked).
//! Writing this file (temp, fsync, rename) is the only commit point: packs
//! and index are published before it, so a committed snapshot is complete.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::header;
use crate::format::id::ObjectId;

pub const MAGIC: &[u8; 8] = b"MOATSNAP";
pub const VERSION: u32 = 2;
/// Versions this moat reads.
pub const READS: [u32; 2] = [1, 2];

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

/// How a capture found what changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scan {
    /// A full walk of the workspace.
    #[default]
    Walked,
    /// Only the paths a watcher reported changed since the parent snapshot.
    Watched,
}

impl Scan {
    pub fn name(self) -> &'static str {
        match self {
            Scan::Walked => "walked",
            Scan::Watched => "watched",
        }
    }
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
    /// Workspace-relative paths that exist in the workspace but are not in
    /// the snapshot because they could not be stored (unreadable, kept
    /// changing, special files). Rollback leaves these paths alone.
    pub skipped: Vec<serde_bytes::ByteBuf>,
    /// The snapshot holds the workspace exactly as it was at the moment its
    /// trigger names (false: taken some time after it, by a tracer that
    /// could not hold the process).
    pub exact: bool,
    /// How the capture found what changed.
    pub scan: Scan,
}

/// The fields of a version-1 snapshot file.
#[derive(Deserialize)]
struct SnapshotV1 {
    root: ObjectId,
    parent: Option<ObjectId>,
    #[serde(with = "serde_bytes")]
    workspace: Vec<u8>,
    host: String,
    time_ns: i64,
    trigger: Trigger,
    message: String,
    git: Option<GitInfo>,
    run_id: Option<String>,
    stats: Stats,
}

impl Snapshot {
    pub fn encode(&self) -> (ObjectId, Vec<u8>) {
        let mut out = Vec::new();
        header::write(&mut out, MAGIC, VERSION);
        out.extend(postcard::to_stdvec(self).unwrap_or_default());
        (ObjectId::hash(&out), out)
    }

    pub fn decode(data: &[u8], path: &Path) -> Result<Self> {
        let (version, body) = header::check_any(data, MAGIC, &READS, "snapshot", path)?;
        let bad = |e: postcard::Error| Error::corrupt(path, "snapshot", e.to_string());
        let (snap, rest) = if version == 1 {
            let (v1, rest): (SnapshotV1, _) = postcard::take_from_bytes(body).map_err(bad)?;
            (v1.into(), rest)
        } else {
            postcard::take_from_bytes::<Snapshot>(body).map_err(bad)?
        };
        if !rest.is_empty() {
            return Err(Error::corrupt(path, "snapshot", "trailing bytes"));
        }
        Ok(snap)
    }

    /// The skipped paths as byte strings.
    pub fn skipped_paths(&self) -> impl Iterator<Item = &[u8]> {
        self.skipped.iter().map(|p| p.as_slice())
    }

    pub fn workspace_path(&self) -> PathBuf {
        use std::os::unix::ffi::OsStrExt;
        PathBuf::from(std::ffi::OsStr::from_bytes(&self.workspace))
    }
}

impl From<SnapshotV1> for Snapshot {
    fn from(v: SnapshotV1) -> Self {
        Snapshot {
            root: v.root,
            parent: v.parent,
            workspace: v.workspace,
            host: v.host,
            time_ns: v.time_ns,
            trigger: v.trigger,
            message: v.message,
            git: v.git,
            run_id: v.run_id,
            stats: v.stats,
            skipped: Vec::new(),
            exact: true,
            scan: Scan::Walked,
        }
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
            skipped: vec![serde_bytes::ByteBuf::from(b"x/\xff".to_vec())],
            exact: false,
            scan: Scan::Watched,
        };
        let (_, bytes) = s.encode();
        let p = Path::new("s");
        assert_eq!(Snapshot::decode(&bytes, p).unwrap(), s);
        for n in 0..bytes.len() {
            assert!(Snapshot::decode(&bytes[..n], p).is_err());
        }
    }

    #[test]
    fn reads_version_1() {
        // A version-1 file written by the previous moat: header, then the
        // v1 fields (root, parent None, workspace "/w", host "h", time 5,
        // trigger manual, message "", git None, run_id None, 9 zero stats).
        let mut bytes = Vec::new();
        header::write(&mut bytes, MAGIC, 1);
        bytes.extend_from_slice(&[7u8; 32]);
        bytes.extend_from_slice(&[0, 2, b'/', b'w', 1, b'h', 10, 0, 0, 0, 0]);
        bytes.extend_from_slice(&[0u8; 9]);
        let s = Snapshot::decode(&bytes, Path::new("s")).unwrap();
        assert_eq!(s.root, ObjectId([7; 32]));
        assert_eq!((s.time_ns, s.workspace.as_slice()), (5, &b"/w"[..]));
        assert!(s.exact && s.skipped.is_empty() && s.scan == Scan::Walked);
        bytes.push(0);
        assert!(Snapshot::decode(&bytes, Path::new("s")).is_err(), "trailing byte");
        let mut v3 = bytes.clone();
        v3[8] = 3;
        assert!(matches!(
            Snapshot::decode(&v3, Path::new("s")),
            Err(Error::UnsupportedVersion { found: 3, .. })
        ));
    }
}
