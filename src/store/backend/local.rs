//! The local backend: a store in a directory (store-format.md, "Layout").
//!
//! Writes are temp file in `tmp/` → fsync → rename → fsync of the
//! directory (the stat cache and its watch token skip both fsyncs: they
//! are disposable). Packs, index files and stat caches are read through
//! shared memory maps; a pack's map is
//! kept for the life of the backend, so ranged reads of one pack cost a
//! lookup, not a syscall.
//!
//! Invariants: every file is opened through `file` (`O_NOFOLLOW|
//! O_NONBLOCK`, type checked on the descriptor), the layout directories,
//! `lock` and `config` are checked not to be symlinks when the store is
//! opened, and names map to paths through `layout` only.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{Backend, Blob, FileKind, Meta, Shape, Upload, file, layout};
use crate::error::{Error, IoContext, Result};
use crate::store::lock::{Flock, Lock};

pub struct LocalBackend {
    root: PathBuf,
    tmp: PathBuf,
    lock: Flock,
    /// Maps of packs read so far, by name.
    maps: Mutex<HashMap<String, Arc<memmap2::Mmap>>>,
}

impl LocalBackend {
    /// A store at `root`, created (directories only) if absent.
    pub fn create(root: &Path) -> Result<Self> {
        fs::create_dir_all(root).at(root)?;
        file::check_layout(root, &layout::DIRS, &layout::FILES)?;
        for d in layout::DIRS {
            let p = root.join(d);
            match fs::create_dir(&p) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(Error::io(&p, e)),
                _ => {}
            }
        }
        // Again: a racing process may have put anything in place meanwhile.
        Self::open(root)
    }

    /// The store at `root`, refused if a layout directory, `lock` or
    /// `config` is a symlink or of the wrong type.
    pub fn open(root: &Path) -> Result<Self> {
        file::check_layout(root, &layout::DIRS, &layout::FILES)?;
        Ok(LocalBackend {
            root: root.to_path_buf(),
            tmp: root.join(layout::dir(FileKind::Tmp)),
            lock: Flock {
                path: root.join(layout::LOCK),
            },
            maps: Mutex::new(HashMap::new()),
        })
    }

    fn path(&self, kind: FileKind, name: &str) -> Result<PathBuf> {
        layout::path(kind, name)
            .map(|p| self.root.join(p))
            .ok_or_else(|| Error::UnsafeStore {
                path: self.root.join(layout::dir(kind)).join(name),
                detail: "is not a store file name".into(),
            })
    }

    fn dir(&self, kind: FileKind) -> PathBuf {
        self.root.join(layout::dir(kind))
    }

    /// The pack `name`, mapped once for the life of the backend.
    fn pack_map(&self, name: &str) -> Result<Arc<memmap2::Mmap>> {
        let mut maps = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = maps.get(name) {
            return Ok(m.clone());
        }
        let map = Arc::new(file::map(&self.path(FileKind::Pack, name)?)?);
        maps.insert(name.to_string(), map.clone());
        Ok(map)
    }
}

fn absent(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
}

/// Bytes of the regular files directly in `dir` (a staging dir holds
/// only copies; nothing is followed).
fn dir_size(dir: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

impl Backend for LocalBackend {
    fn location(&self) -> &Path {
        &self.root
    }

    fn local_root(&self) -> Option<&Path> {
        Some(&self.root)
    }

    fn scratch(&self) -> Option<&Path> {
        Some(&self.tmp)
    }

    fn describe(&self, kind: FileKind, name: &str) -> PathBuf {
        match layout::path(kind, name) {
            Some(p) => self.root.join(p),
            None => self.dir(kind).join(name),
        }
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Option<Blob>> {
        let res = match kind {
            FileKind::Pack => self.pack_map(name).map(Blob::mapped),
            // Read in place: index files and stat caches can be large.
            FileKind::Index | FileKind::Cache => {
                file::map(&self.path(kind, name)?).map(|m| Blob::mapped(Arc::new(m)))
            }
            _ => file::read(&self.path(kind, name)?).map(Blob::from),
        };
        match res {
            Ok(b) => Ok(Some(b)),
            Err(e) if absent(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Blob> {
        let whole = match kind {
            FileKind::Pack => Blob::mapped(self.pack_map(name)?),
            _ => Blob::from(file::read(&self.path(kind, name)?)?),
        };
        Ok(whole.slice(offset, len))
    }

    fn stat(&self, kind: FileKind, name: &str) -> Result<Option<Meta>> {
        let path = self.path(kind, name)?;
        let m = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let t = m.file_type();
        let shape = if t.is_file() {
            Shape::File
        } else if t.is_dir() {
            Shape::Dir
        } else {
            Shape::Other(crate::util::fs::type_name(t))
        };
        let ns = crate::util::timestamp_ns_clamped;
        Ok(Some(Meta {
            shape,
            len: if shape == Shape::Dir {
                dir_size(&path)
            } else {
                m.len()
            },
            touched_ns: ns(m.mtime(), m.mtime_nsec()).max(ns(m.ctime(), m.ctime_nsec())),
        }))
    }

    fn list(&self, kind: FileKind) -> Result<Vec<String>> {
        let dir = self.dir(kind);
        if kind == FileKind::Config {
            return Ok(file::exists(&self.path(kind, "")?)?
                .then(String::new)
                .into_iter()
                .collect());
        }
        // Packs sit one fan-out level down.
        let dirs = match kind {
            FileKind::Pack => match fs::read_dir(&dir) {
                // Only real directories: a symlinked fan-out dir is never
                // followed (gc would delete through it).
                Ok(rd) => rd
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path())
                    .collect(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(Error::io(&dir, e)),
            },
            _ => vec![dir],
        };
        let mut out = Vec::new();
        for d in dirs {
            let rd = match fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&d, e)),
            };
            for ent in rd {
                let ent = ent.at(&d)?;
                if let Some(name) = ent.file_name().to_str().and_then(|f| layout::name_of(kind, f)) {
                    // Only where the layout puts it (a pack in its own
                    // fan-out dir), as a bucket's listing does.
                    if kind != FileKind::Pack || d.file_name().and_then(|f| f.to_str()) == name.get(..2) {
                        out.push(name.to_string());
                    }
                }
            }
        }
        Ok(out)
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        file::write_atomic(&self.tmp, kind, &self.path(kind, name)?, data)
    }

    fn create_new(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<bool> {
        let dest = self.path(kind, name)?;
        let (mut f, tmp) = file::create_temp(&self.tmp, kind.temp_ext())?;
        let res = file::write(kind, &mut f, &tmp, data)
            .and_then(|()| f.sync_all().map_err(|e| Error::store_write(&tmp, e)))
            // link() never replaces: of two racing creators, one wins.
            .map(|()| fs::hard_link(&tmp, &dest));
        let _ = fs::remove_file(&tmp);
        match res? {
            Ok(()) => file::fsync_dir(dest.parent().unwrap_or(&self.root)).map(|()| true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Error::store_write(&dest, e)),
        }
    }

    fn upload(&self, kind: FileKind) -> Result<Box<dyn Upload>> {
        let (f, tmp) = file::create_temp(&self.tmp, kind.temp_ext())?;
        Ok(Box::new(LocalUpload {
            file: Some(BufWriter::with_capacity(1 << 20, f)),
            tmp,
            kind,
            root: self.root.clone(),
        }))
    }

    fn remove(&self, kind: FileKind, name: &str) -> Result<bool> {
        let path = self.path(kind, name)?;
        match kind {
            FileKind::Tmp if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) => {
                // remove_dir_all unlinks symlinks inside, never follows them.
                fs::remove_dir_all(&path).at(&path).map(|()| true)
            }
            FileKind::Pack => {
                if let Some(dir) = path.parent().filter(|d| fs::symlink_metadata(d).is_ok()) {
                    file::real_dir(dir)?;
                }
                let existed = file::remove(&path)?;
                // An emptied fan-out dir goes too (fails harmlessly if not empty).
                if let Some(dir) = path.parent() {
                    let _ = fs::remove_dir(dir);
                }
                Ok(existed)
            }
            _ => file::remove(&path),
        }
    }

    fn sync(&self, kind: FileKind) -> Result<()> {
        file::fsync_dir(&self.dir(kind))
    }

    fn free_space(&self) -> Option<u64> {
        let s = nix::sys::statvfs::statvfs(&self.root).ok()?;
        Some((s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64))
    }

    fn lock(&self) -> &dyn Lock {
        &self.lock
    }
}

/// A file being written to `tmp/`, renamed into place by `publish`.
struct LocalUpload {
    /// None once published (the temp file then no longer exists).
    file: Option<BufWriter<File>>,
    tmp: PathBuf,
    kind: FileKind,
    root: PathBuf,
}

impl Upload for LocalUpload {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| Error::store_write(&self.tmp, io::ErrorKind::BrokenPipe.into()))?;
        file::write(self.kind, f, &self.tmp, data)
    }

    fn publish(mut self: Box<Self>, name: &str) -> Result<()> {
        let dest = layout::path(self.kind, name)
            .map(|p| self.root.join(p))
            .ok_or_else(|| Error::store_write(&self.tmp, io::Error::other("not a store file name")))?;
        let buffered = self
            .file
            .take()
            .ok_or_else(|| Error::store_write(&self.tmp, io::ErrorKind::BrokenPipe.into()))?;
        let mut f = buffered
            .into_inner()
            .map_err(|e| Error::store_write(&self.tmp, e.into_error()))?;
        f.flush().map_err(|e| Error::store_write(&self.tmp, e))?;
        if self.kind.durable() {
            f.sync_all().map_err(|e| Error::store_write(&self.tmp, e))?;
        }
        drop(f);
        file::publish(&self.tmp, &dest, self.kind.durable())
    }

    fn describe(&self) -> PathBuf {
        self.tmp.clone()
    }
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        // Unpublished, or publish failed before or at the rename: the temp
        // file is this upload's alone. (After a successful rename it no
        // longer exists under this name.)
        let _ = fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_files_where_store_files_belong_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let b = LocalBackend::create(d.path()).unwrap();
        let id = crate::format::id::ObjectId::hash(b"s").to_hex();
        let path = d.path().join("snapshots").join(&id);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        assert!(matches!(
            b.read(FileKind::Snapshot, &id),
            Err(Error::NotRegular { found: "FIFO", .. })
        ));
        let m = b.stat(FileKind::Snapshot, &id).unwrap().unwrap();
        assert_eq!(m.shape, Shape::Other("FIFO"));
        assert_eq!(b.read(FileKind::Pin, &id).unwrap().map(|b| b.len()), None);
        assert!(b.read(FileKind::Snapshot, "../config").is_err());
    }

    #[test]
    fn uploads_publish_under_their_name_or_leave_nothing() {
        let d = tempfile::tempdir().unwrap();
        let b = LocalBackend::create(d.path()).unwrap();
        let name = crate::format::id::ObjectId::hash(b"p").to_hex();
        let mut u = b.upload(FileKind::Pack).unwrap();
        u.write(b"abc").unwrap();
        u.publish(&name).unwrap();
        assert_eq!(&*b.read_range(FileKind::Pack, &name, 1, 10).unwrap(), b"bc");
        assert_eq!(b.list(FileKind::Pack).unwrap(), vec![name.clone()]);
        let mut u = b.upload(FileKind::Pack).unwrap();
        u.write(b"unfinished").unwrap();
        drop(u);
        assert_eq!(fs::read_dir(d.path().join("tmp")).unwrap().count(), 0);
        assert!(b.remove(FileKind::Pack, &name).unwrap());
        assert!(
            !d.path().join("packs").join(&name[..2]).exists(),
            "fan-out dir removed"
        );
        assert!(b.create_new(FileKind::Config, "", b"one").unwrap());
        assert!(!b.create_new(FileKind::Config, "", b"two").unwrap());
        assert_eq!(&*b.read(FileKind::Config, "").unwrap().unwrap(), b"one");
    }
}
