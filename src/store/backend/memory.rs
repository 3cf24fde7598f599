//! The in-memory twin of the local backend, for the unit tests of the
//! layers above the store: the same contract (atomic publish, no replace
//! by `create_new`, names listed by kind, an in-process reader/writer
//! lock), no filesystem. It has no scratch directory, so captures into it
//! read files directly instead of staging clones.
//!
//! Clones share their files and lock: a test keeps one to look inside the
//! store it gave a `Store`. `fail_writes` makes every later write of one
//! kind fail with EIO, as a full or failing disk would, so tests can drive
//! the error paths.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::{Backend, Blob, FileKind, Meta, Shape, Upload};
use crate::error::{Error, Result};
use crate::store::lock::{Held, Hold, Lock};

type Files = BTreeMap<(FileKind, String), Arc<Vec<u8>>>;
type Hook = Box<dyn FnOnce(&MemoryBackend) + Send>;

#[derive(Clone, Default)]
pub struct MemoryBackend {
    files: Arc<Mutex<Files>>,
    failing: Arc<Mutex<Option<FileKind>>>,
    /// Runs once, before the next read of its kind (a concurrent process
    /// acting between a listing and a read).
    hook: Arc<Mutex<Option<(FileKind, Hook)>>>,
    lock: MemoryLock,
    location: PathBuf,
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemoryBackend {
    pub fn new() -> Self {
        MemoryBackend {
            location: PathBuf::from("memory:"),
            ..Default::default()
        }
    }

    /// From now on every write of `kind` fails (`None`: none does).
    pub fn fail_writes(&self, kind: Option<FileKind>) {
        *guard(&self.failing) = kind;
    }

    fn check_write(failing: &Mutex<Option<FileKind>>, kind: FileKind, at: &Path) -> Result<()> {
        match *guard(failing) == Some(kind) {
            true => Err(Error::store_write(
                at,
                std::io::Error::from_raw_os_error(libc::EIO),
            )),
            false => Ok(()),
        }
    }

    /// Runs `f` once, right before the next read of a file of `kind`.
    pub fn before_next_read(&self, kind: FileKind, f: impl FnOnce(&MemoryBackend) + Send + 'static) {
        *guard(&self.hook) = Some((kind, Box::new(f)));
    }

    /// How many files of `kind` it holds.
    pub fn count(&self, kind: FileKind) -> usize {
        guard(&self.files).keys().filter(|(k, _)| *k == kind).count()
    }
}

impl Backend for MemoryBackend {
    fn location(&self) -> &Path {
        &self.location
    }

    fn local_root(&self) -> Option<&Path> {
        None
    }

    fn scratch(&self) -> Option<&Path> {
        None
    }

    fn describe(&self, kind: FileKind, name: &str) -> PathBuf {
        PathBuf::from(format!("memory:{kind:?}/{name}"))
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Option<Blob>> {
        let hook = {
            let mut h = guard(&self.hook);
            match h.as_ref() {
                Some((k, _)) if *k == kind => h.take(),
                _ => None,
            }
        };
        if let Some((_, f)) = hook {
            f(self);
        }
        Ok(guard(&self.files)
            .get(&(kind, name.to_string()))
            .map(|d| Blob::shared(d.clone())))
    }

    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Blob> {
        match self.read(kind, name)? {
            Some(b) => Ok(b.slice(offset, len)),
            None => Err(Error::io(
                self.describe(kind, name),
                std::io::ErrorKind::NotFound.into(),
            )),
        }
    }

    fn stat(&self, kind: FileKind, name: &str) -> Result<Option<Meta>> {
        Ok(self.read(kind, name)?.map(|b| Meta {
            shape: Shape::File,
            len: b.len() as u64,
            touched_ns: 0,
        }))
    }

    fn list(&self, kind: FileKind) -> Result<Vec<String>> {
        Ok(guard(&self.files)
            .keys()
            .filter(|(k, _)| *k == kind)
            .map(|(_, n)| n.clone())
            .collect())
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        Self::check_write(&self.failing, kind, &self.describe(kind, name))?;
        guard(&self.files).insert((kind, name.to_string()), Arc::new(data.to_vec()));
        Ok(())
    }

    fn create_new(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<bool> {
        Self::check_write(&self.failing, kind, &self.describe(kind, name))?;
        let mut files = guard(&self.files);
        let key = (kind, name.to_string());
        if files.contains_key(&key) {
            return Ok(false);
        }
        files.insert(key, Arc::new(data.to_vec()));
        Ok(true)
    }

    fn upload(&self, kind: FileKind) -> Result<Box<dyn Upload>> {
        Ok(Box::new(MemoryUpload {
            kind,
            data: Vec::new(),
            files: self.files.clone(),
            failing: self.failing.clone(),
        }))
    }

    fn remove(&self, kind: FileKind, name: &str) -> Result<bool> {
        Ok(guard(&self.files).remove(&(kind, name.to_string())).is_some())
    }

    fn sync(&self, _kind: FileKind) -> Result<()> {
        Ok(())
    }

    fn free_space(&self) -> Option<u64> {
        None
    }

    fn lock(&self) -> &dyn Lock {
        &self.lock
    }
}

struct MemoryUpload {
    kind: FileKind,
    data: Vec<u8>,
    files: Arc<Mutex<Files>>,
    failing: Arc<Mutex<Option<FileKind>>>,
}

impl Upload for MemoryUpload {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        MemoryBackend::check_write(&self.failing, self.kind, &self.describe())?;
        self.data.extend_from_slice(data);
        Ok(())
    }

    fn publish(self: Box<Self>, name: &str) -> Result<()> {
        MemoryBackend::check_write(&self.failing, self.kind, &self.describe())?;
        guard(&self.files).insert((self.kind, name.to_string()), Arc::new(self.data));
        Ok(())
    }

    fn describe(&self) -> PathBuf {
        PathBuf::from(format!("memory:{:?}/(unfinished)", self.kind))
    }
}

/// A reader/writer lock within one process, with flock's semantics.
#[derive(Clone, Default)]
struct MemoryLock {
    state: Arc<(Mutex<LockState>, Condvar)>,
}

#[derive(Default)]
struct LockState {
    shared: usize,
    exclusive: bool,
}

struct MemoryHold {
    state: Arc<(Mutex<LockState>, Condvar)>,
    /// Set when a shared hold became exclusive.
    upgraded: Mutex<bool>,
}

impl MemoryLock {
    fn take(&self, exclusive: bool, on_wait: &mut dyn FnMut()) -> Held {
        let (m, cv) = &*self.state;
        let mut s = guard(m);
        let busy = |s: &LockState| s.exclusive || (exclusive && s.shared > 0);
        if busy(&s) {
            on_wait();
        }
        while busy(&s) {
            s = cv.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        match exclusive {
            true => s.exclusive = true,
            false => s.shared += 1,
        }
        Box::new(MemoryHold {
            state: self.state.clone(),
            upgraded: Mutex::new(exclusive),
        })
    }
}

impl Lock for MemoryLock {
    fn shared(&self) -> Result<Held> {
        Ok(self.take(false, &mut || {}))
    }

    fn exclusive(&self, on_wait: &mut dyn FnMut()) -> Result<Held> {
        Ok(self.take(true, on_wait))
    }
}

impl Hold for MemoryHold {
    fn try_exclusive(&self) -> bool {
        let mut up = guard(&self.upgraded);
        if *up {
            return true;
        }
        let mut s = guard(&self.state.0);
        if s.shared == 1 && !s.exclusive {
            s.shared = 0;
            s.exclusive = true;
            *up = true;
        }
        *up
    }
}

impl Drop for MemoryHold {
    fn drop(&mut self) {
        let (m, cv) = &*self.state;
        let mut s = guard(m);
        match *guard(&self.upgraded) {
            true => s.exclusive = false,
            false => s.shared = s.shared.saturating_sub(1),
        }
        cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_excludes_like_flock() {
        let b = MemoryBackend::new();
        let a = b.lock().shared().unwrap();
        let c = b.lock().shared().unwrap();
        assert!(!a.try_exclusive(), "another holder");
        drop(c);
        assert!(a.try_exclusive());
        drop(a);
        let mut waited = false;
        let x = b.lock().exclusive(&mut || waited = true).unwrap();
        assert!(!waited);
        drop(x);
        assert!(b.lock().shared().is_ok());
    }

    #[test]
    fn writes_fail_on_demand_and_uploads_publish_whole() {
        let b = MemoryBackend::new();
        let mut u = b.upload(FileKind::Pack).unwrap();
        u.write(b"ab").unwrap();
        assert_eq!(b.count(FileKind::Pack), 0, "nothing visible before publish");
        u.publish("p").unwrap();
        assert_eq!(&*b.read_range(FileKind::Pack, "p", 1, 9).unwrap(), b"b");
        b.fail_writes(Some(FileKind::Index));
        assert!(matches!(
            b.write(FileKind::Index, "i", b"x"),
            Err(Error::StoreWrite { .. })
        ));
        assert!(b.write(FileKind::Snapshot, "s", b"x").is_ok());
        assert!(!b.create_new(FileKind::Snapshot, "s", b"y").unwrap());
    }
}
