//! `moat mount`: a read-only view of one snapshot, or of every snapshot
//! of a workspace (`<time>-<id>/` each, plus `latest`), like `restic
//! mount`. `view` is the filesystem itself (inodes, lazy listing from tree
//! objects, verified chunk-by-chunk reads, an LRU of decoded chunks);
//! `fuse` serves it to the kernel on Linux. Elsewhere mounting is refused
//! with a message.
//!
//! While mounted, the store's shared lock is held (as by a restore), so
//! `gc` waits instead of deleting what the mount may still read.

mod cache;
pub mod view;

#[cfg(target_os = "linux")]
mod fuse;
#[cfg(target_os = "linux")]
pub use fuse::{Mounted, OnError, Stopper, mount};

#[cfg(not(target_os = "linux"))]
mod unsupported;
#[cfg(not(target_os = "linux"))]
pub use unsupported::{Mounted, OnError, Stopper, mount};

pub use view::{Layout, MountStats, View};

#[cfg(test)]
mod tests;
