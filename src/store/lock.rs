//! The store's lock: writers and readers hold it shared for as long as
//! they work; `gc` holds it exclusively while it decides what is garbage
//! and deletes it (store-format.md, "Garbage collection").
//!
//! `Flock` is the local implementation: flock(2) on the store's `lock`
//! file. A backend without flock (an object store) must give the same
//! guarantees some other way (lock objects made with a conditional
//! create, with leases: `store::lock_remote` does so for a bucket):
//! 1. any number of shared holds coexist; an exclusive hold excludes every
//!    other hold, shared or exclusive, of every process on every machine
//!    using the store;
//! 2. `shared` and `exclusive` wait (never fail) while a conflicting hold
//!    exists, and `exclusive` calls `on_wait` once before it waits;
//! 3. a hold ends when it is dropped, and when its process dies, within a
//!    bounded time (flock: at once). A lease-based lock must also make a
//!    holder that may have lost its lease (it could not renew it) stop
//!    before its next publish: a snapshot committed after gc took over
//!    could name objects gc is deleting;
//! 4. `Hold::try_exclusive` turns a shared hold exclusive only when no
//!    other process holds the lock, without waiting; when it fails the
//!    hold may be gone (flock(2) drops the old lock first), so a caller
//!    uses it only on its way out.

use std::fs::File;
use std::path::PathBuf;

use crate::error::{Error, IoContext, Result};
use crate::store::backend::file;

/// A hold on the store's lock; dropping it releases it.
pub trait Hold: Send + Sync {
    /// Makes a shared hold exclusive if nobody else holds the lock; never
    /// waits (see the module doc, point 4).
    fn try_exclusive(&self) -> bool;
}

pub type Held = Box<dyn Hold>;

/// A store-wide reader/writer lock shared by every process using the
/// store (see the module doc for what an implementation guarantees).
pub trait Lock: Send + Sync {
    fn shared(&self) -> Result<Held>;

    fn exclusive(&self, on_wait: &mut dyn FnMut()) -> Result<Held>;
}

/// flock(2) on a lock file. Its locks die with their process, so a
/// crashed moat never leaves a stale lock behind.
pub struct Flock {
    pub path: PathBuf,
}

impl Hold for File {
    fn try_exclusive(&self) -> bool {
        self.try_lock().is_ok()
    }
}

impl Lock for Flock {
    fn shared(&self) -> Result<Held> {
        let f = file::open_lock(&self.path)?;
        f.lock_shared().at(&self.path)?;
        Ok(Box::new(f))
    }

    fn exclusive(&self, on_wait: &mut dyn FnMut()) -> Result<Held> {
        let f = file::open_lock(&self.path)?;
        match f.try_lock() {
            Ok(()) => return Ok(Box::new(f)),
            Err(std::fs::TryLockError::WouldBlock) => on_wait(),
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&self.path, e)),
        }
        f.lock().at(&self.path)?;
        Ok(Box::new(f))
    }
}
