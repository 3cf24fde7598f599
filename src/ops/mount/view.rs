//! The read-only filesystem `moat mount` shows, independent of FUSE:
//! inodes, directories from tree objects, file contents from chunks.
//!
//! Invariants: listing is lazy — a directory's tree is read (and verified
//! by the store) the first time it is looked into, never the whole
//! snapshot up front, and each directory is read once. File contents are
//! read chunk by chunk through the store's verified object read, so a read
//! in the middle of a large file decodes only the chunks it covers, and a
//! damaged chunk fails only the reads that cover it. Chunk offsets come
//! from the index (each chunk's length), and must add up to the file's
//! size. Decoded chunks are kept in a small LRU bounded in bytes. Every
//! tree loaded is charged to one `format::tree::Budget` for all mounted
//! snapshots, as a walk's would be: no directory deeper than `MAX_DEPTH`,
//! and no more entries or tree bytes than the snapshots may hold, however
//! often a hostile store names one subtree (inodes are kept for the life
//! of the mount, so this bounds its memory).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::cache::ChunkCache;
use crate::error::{Error, Result};
use crate::format::id::ObjectId;
use crate::format::pack::ObjectKind;
use crate::format::tree::{Budget, Content, Entry, Tree};
use crate::ops::trees::show_path;
use crate::store::{SnapshotRecord, Store};

/// The inode of the mount's root directory.
pub const ROOT: u64 = 1;

/// Decoded chunks kept for reads that come back to them.
const CACHE_BYTES: usize = 32 << 20;

/// What is mounted.
pub enum Layout {
    /// One snapshot, as the root.
    One(Box<SnapshotRecord>),
    /// Several, each as `<time>-<id>/`, plus `latest` naming the newest.
    Many(Vec<SnapshotRecord>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    /// Permission bits.
    pub mode: u32,
    pub size: u64,
    pub mtime_ns: i64,
}

enum Body {
    /// A directory whose children were known from the start.
    Listed,
    /// A directory from a tree object, read on first use.
    Tree(ObjectId),
    File {
        chunks: Arc<[ObjectId]>,
        /// Start of each chunk, then the size; from the index, on first read.
        offsets: Option<Arc<[u64]>>,
    },
    Symlink(Vec<u8>),
}

struct Node {
    parent: u64,
    /// Components below its snapshot's root (which is 0).
    depth: usize,
    name: Vec<u8>,
    attr: Attr,
    body: Body,
    /// Sorted by name (as tree entries are).
    children: Option<Children>,
}

/// A directory's entries: (name, inode), sorted by name.
pub type Children = Arc<Vec<(Vec<u8>, u64)>>;

/// A file's chunks, and the offset of each (then the size).
type FileLayout = (Arc<[ObjectId]>, Arc<[u64]>);

/// What the mount served, for `--verbose`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MountStats {
    pub reads: u64,
    pub bytes_read: u64,
    pub chunks_decoded: u64,
    pub bytes_decoded: u64,
    pub cache_hits: u64,
    pub dirs_loaded: u64,
}

#[derive(Default)]
struct Counters {
    reads: AtomicU64,
    bytes_read: AtomicU64,
    chunks_decoded: AtomicU64,
    bytes_decoded: AtomicU64,
    cache_hits: AtomicU64,
    dirs_loaded: AtomicU64,
}

pub struct View {
    store: Arc<Store>,
    nodes: RwLock<Vec<Node>>,
    cache: Mutex<ChunkCache>,
    /// What directories loaded so far have used of the limits of trees
    /// (as for a walk over every mounted snapshot: inodes are kept, so
    /// the limits bound the view's memory).
    budget: Mutex<Budget>,
    counters: Counters,
}

/// The name of a snapshot's directory in a `Many` mount: UTC time to the
/// millisecond, so that names sort as the snapshots were taken (two in
/// one second are common: a rollback's safety snapshot, a test), then
/// the short id.
pub fn snapshot_dir_name(r: &SnapshotRecord) -> String {
    let t = r.snap.time_ns;
    let secs = crate::util::date::format_rfc3339(t);
    let ms = t.rem_euclid(1_000_000_000) / 1_000_000;
    format!(
        "{}.{ms:03}Z-{}",
        secs.strip_suffix('Z').unwrap_or(&secs),
        r.id.short()
    )
}

fn node_of(ino: u64, parent: u64, depth: usize, e: Entry) -> Node {
    let (kind, body, size) = match e.content {
        Content::Dir(id) => (Kind::Dir, Body::Tree(id), 0),
        Content::File(chunks) => (
            Kind::File,
            Body::File {
                chunks: chunks.into(),
                offsets: None,
            },
            e.size,
        ),
        Content::Symlink(t) => {
            let len = t.len() as u64;
            (Kind::Symlink, Body::Symlink(t), len)
        }
    };
    Node {
        parent,
        depth,
        attr: Attr {
            ino,
            kind,
            mode: e.mode & 0o7777,
            size,
            mtime_ns: e.mtime_ns,
        },
        name: e.name,
        body,
        children: None,
    }
}

fn dir_node(ino: u64, parent: u64, name: Vec<u8>, body: Body, mtime_ns: i64) -> Node {
    Node {
        parent,
        depth: 0,
        name,
        attr: Attr {
            ino,
            kind: Kind::Dir,
            mode: 0o755,
            size: 0,
            mtime_ns,
        },
        body,
        children: None,
    }
}

/// The path of `ino` below the mount point (its names joined by `/`).
fn path_in(nodes: &[Node], ino: u64) -> Vec<u8> {
    let mut parts = Vec::new();
    let mut at = ino;
    while at != ROOT {
        let Some(n) = nodes.get(View::index(at)) else {
            break;
        };
        parts.push(n.name.as_slice());
        at = n.parent;
    }
    parts.reverse();
    parts.join(&b'/')
}

impl View {
    pub fn new(store: Arc<Store>, layout: Layout) -> View {
        let snapshots = match &layout {
            Layout::One(_) => 1,
            Layout::Many(r) => r.len() as u64,
        };
        let mut nodes = Vec::new();
        match layout {
            Layout::One(r) => nodes.push(dir_node(
                ROOT,
                ROOT,
                Vec::new(),
                Body::Tree(r.snap.root),
                r.snap.time_ns,
            )),
            Layout::Many(records) => {
                let newest = records.iter().map(|r| r.snap.time_ns).max().unwrap_or(0);
                nodes.push(dir_node(ROOT, ROOT, Vec::new(), Body::Listed, newest));
                let mut kids = Vec::new();
                for r in &records {
                    let ino = nodes.len() as u64 + 1;
                    let name = snapshot_dir_name(r).into_bytes();
                    nodes.push(dir_node(
                        ino,
                        ROOT,
                        name.clone(),
                        Body::Tree(r.snap.root),
                        r.snap.time_ns,
                    ));
                    kids.push((name, ino));
                }
                // The newest by (time, id), as `latest` resolves.
                if let Some(r) = records.iter().max_by_key(|r| (r.snap.time_ns, r.id)) {
                    let ino = nodes.len() as u64 + 1;
                    let target = snapshot_dir_name(r).into_bytes();
                    nodes.push(Node {
                        parent: ROOT,
                        depth: 0,
                        name: b"latest".to_vec(),
                        attr: Attr {
                            ino,
                            kind: Kind::Symlink,
                            mode: 0o777,
                            size: target.len() as u64,
                            mtime_ns: r.snap.time_ns,
                        },
                        body: Body::Symlink(target),
                        children: None,
                    });
                    kids.push((b"latest".to_vec(), ino));
                }
                kids.sort();
                nodes[0].children = Some(Arc::new(kids));
            }
        }
        View {
            store,
            nodes: RwLock::new(nodes),
            cache: Mutex::new(ChunkCache::new(CACHE_BYTES)),
            budget: Mutex::new(Budget::for_snapshots(snapshots.max(1))),
            counters: Counters::default(),
        }
    }

    fn read_nodes(&self) -> std::sync::RwLockReadGuard<'_, Vec<Node>> {
        self.nodes.read().unwrap_or_else(|p| p.into_inner())
    }

    fn index(ino: u64) -> usize {
        usize::try_from(ino.saturating_sub(1)).unwrap_or(usize::MAX)
    }

    pub fn attr(&self, ino: u64) -> Option<Attr> {
        self.read_nodes().get(Self::index(ino)).map(|n| n.attr)
    }

    /// The directory holding `ino` (the root is its own parent).
    pub fn parent(&self, ino: u64) -> u64 {
        self.read_nodes().get(Self::index(ino)).map_or(ROOT, |n| n.parent)
    }

    /// The path of `ino` below the mount point.
    pub fn path(&self, ino: u64) -> Vec<u8> {
        path_in(&self.read_nodes(), ino)
    }

    /// The path of `ino` for a message: `/a/b`, cut short when long.
    pub fn shown(&self, ino: u64) -> String {
        show_path(&self.path(ino))
    }

    /// The entries of directory `ino` (name, inode), reading its tree the
    /// first time; None when `ino` is not a directory.
    pub fn children(&self, ino: u64) -> Result<Option<Children>> {
        let i = Self::index(ino);
        let (tree_id, depth) = {
            let nodes = self.read_nodes();
            let Some(n) = nodes.get(i) else { return Ok(None) };
            if let Some(c) = &n.children {
                return Ok(Some(c.clone()));
            }
            match n.body {
                Body::Tree(id) => (id, n.depth),
                _ => return Ok(None),
            }
        };
        let bytes = self.store.read_object(&tree_id, ObjectKind::Tree)?;
        let tree = Tree::decode(&bytes).map_err(|detail| Error::BadTree { id: tree_id, detail })?;
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = &nodes[i].children {
            return Ok(Some(c.clone())); // another thread read it meanwhile
        }
        // Charged under the nodes' lock, so a tree is charged once.
        self.budget
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .charge(bytes.len(), tree.entries.len(), depth + 1)
            .map_err(|why| Error::BadTree {
                id: tree_id,
                detail: format!("at {}: {why}", show_path(&path_in(&nodes, ino))),
            })?;
        let mut kids = Vec::with_capacity(tree.entries.len());
        for e in tree.entries {
            let child = nodes.len() as u64 + 1;
            kids.push((e.name.clone(), child));
            nodes.push(node_of(child, ino, depth + 1, e));
        }
        let kids = Arc::new(kids);
        nodes[i].children = Some(kids.clone());
        self.counters.dirs_loaded.fetch_add(1, Ordering::Relaxed);
        Ok(Some(kids))
    }

    /// The entry `name` of directory `parent`.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Option<Attr>> {
        let Some(kids) = self.children(parent)? else {
            return Ok(None);
        };
        let found = kids
            .binary_search_by(|(n, _)| n.as_slice().cmp(name))
            .ok()
            .map(|k| kids[k].1);
        Ok(found.and_then(|ino| self.attr(ino)))
    }

    pub fn readlink(&self, ino: u64) -> Option<Vec<u8>> {
        match &self.read_nodes().get(Self::index(ino))?.body {
            Body::Symlink(t) => Some(t.clone()),
            _ => None,
        }
    }

    /// A file's chunks and their offsets (computed from the index once).
    fn layout(&self, ino: u64) -> Result<Option<FileLayout>> {
        let i = Self::index(ino);
        let (chunks, size) = {
            let nodes = self.read_nodes();
            match nodes.get(i).map(|n| (&n.body, n.attr.size)) {
                Some((
                    Body::File {
                        chunks,
                        offsets: Some(o),
                    },
                    _,
                )) => return Ok(Some((chunks.clone(), o.clone()))),
                Some((
                    Body::File {
                        chunks,
                        offsets: None,
                    },
                    size,
                )) => (chunks.clone(), size),
                _ => return Ok(None),
            }
        };
        let index = self.store.index()?;
        let mut offsets = Vec::with_capacity(chunks.len() + 1);
        let mut at = 0u64;
        for c in chunks.iter() {
            let len = index
                .copies(c)
                .find(|e| e.kind == ObjectKind::Chunk)
                .map(|e| u64::from(e.raw_len))
                .ok_or_else(|| Error::MissingObject {
                    id: *c,
                    by: format!("file {}", self.shown(ino)),
                })?;
            offsets.push(at);
            at = at.saturating_add(len);
        }
        if at != size {
            return Err(Error::corrupt(
                self.shown(ino),
                "file",
                format!("its size is {size} bytes but its chunks hold {at}"),
            ));
        }
        offsets.push(at);
        let offsets: Arc<[u64]> = offsets.into();
        if let Some(Node {
            body: Body::File { offsets: slot, .. },
            ..
        }) = self.nodes.write().unwrap_or_else(|p| p.into_inner()).get_mut(i)
        {
            *slot = Some(offsets.clone());
        }
        Ok(Some((chunks, offsets)))
    }

    /// One chunk, decoded and verified (or from the cache).
    fn chunk(&self, id: &ObjectId) -> Result<Arc<Vec<u8>>> {
        if let Some(d) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(d);
        }
        let data = Arc::new(self.store.read_object(id, ObjectKind::Chunk)?);
        self.counters.chunks_decoded.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_decoded
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(*id, data.clone());
        Ok(data)
    }

    /// Up to `len` bytes of file `ino` from `offset`; None when `ino` is
    /// not a file.
    pub fn read(&self, ino: u64, offset: u64, len: u32) -> Result<Option<Vec<u8>>> {
        let Some((chunks, offsets)) = self.layout(ino)? else {
            return Ok(None);
        };
        self.counters.reads.fetch_add(1, Ordering::Relaxed);
        let size = offsets.last().copied().unwrap_or(0);
        if offset >= size {
            return Ok(Some(Vec::new()));
        }
        let end = offset.saturating_add(u64::from(len)).min(size);
        let mut out = Vec::with_capacity((end - offset) as usize);
        // The last chunk starting at or before `offset` (offsets[0] is 0).
        let mut k = offsets.partition_point(|&o| o <= offset).saturating_sub(1);
        let mut pos = offset;
        while pos < end && k < chunks.len() {
            let (start, stop) = (offsets[k], offsets[k + 1]);
            let data = self.chunk(&chunks[k])?;
            if data.len() as u64 != stop - start {
                return Err(Error::corrupt(
                    self.shown(ino),
                    "file",
                    format!(
                        "chunk {} holds {} bytes, its index entry says {}",
                        chunks[k],
                        data.len(),
                        stop - start
                    ),
                ));
            }
            let from = (pos - start) as usize;
            let to = (end.min(stop) - start) as usize;
            out.extend_from_slice(&data[from..to]);
            pos = start + to as u64;
            k += 1;
        }
        self.counters
            .bytes_read
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        Ok(Some(out))
    }

    pub fn stats(&self) -> MountStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MountStats {
            reads: get(&c.reads),
            bytes_read: get(&c.bytes_read),
            chunks_decoded: get(&c.chunks_decoded),
            bytes_decoded: get(&c.bytes_decoded),
            cache_hits: get(&c.cache_hits),
            dirs_loaded: get(&c.dirs_loaded),
        }
    }
}
