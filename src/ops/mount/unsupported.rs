//! `moat mount` where moat has no FUSE support (only Linux has it): the
//! same interface, refusing to mount with a message that says why.

use std::path::Path;
use std::sync::Arc;

use super::view::{MountStats, View};
use crate::error::{Error, Result};

pub type OnError = Box<dyn Fn(String) + Send + Sync>;

pub struct Mounted;

#[derive(Clone)]
pub struct Stopper;

impl Stopper {
    pub fn stop(&self) {}
}

pub fn mount(_view: Arc<View>, dir: &Path, _on_error: OnError) -> Result<Mounted> {
    Err(Error::Mount {
        path: dir.to_path_buf(),
        source: std::io::Error::other("moat mount needs FUSE, which moat supports on Linux only"),
    })
}

impl Mounted {
    pub fn stopper(&self) -> Stopper {
        Stopper
    }

    pub fn wait(self) -> Result<MountStats> {
        Ok(MountStats::default())
    }
}
