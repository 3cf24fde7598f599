//! Forging store contents for the hostile-store tests: objects stored the
//! normal way, or packs and index files written byte by byte with the
//! format codecs (so a test can claim whatever a hostile store claims).

use std::path::PathBuf;

use moat::ObjectId;
use moat::format::compress::Compression;
use moat::format::index::IndexFile;
use moat::format::pack::{self, FinishedPack, ObjectKind, PackEntry};
use moat::format::snapshot::{Scan, Snapshot, Stats, Trigger};
use moat::format::tree::{Content, Entry, Tree};
use moat::store::backend::FileKind;
use moat::store::writer::ObjectWriter;

use super::Env;

/// One object of a forged pack: what its table and index entry say.
pub struct Forged {
    pub id: ObjectId,
    pub kind: ObjectKind,
    pub compression: Compression,
    pub raw_len: u32,
    pub stored: Vec<u8>,
}

pub struct Forge {
    pub store: moat::Store,
}

impl Forge {
    pub fn new(env: &Env) -> Self {
        Forge {
            store: moat::Store::open_or_create(&env.store()).expect("store"),
        }
    }

    /// Stores `chunks` and `trees` through a normal writing session and
    /// commits a snapshot whose root is the last tree.
    pub fn commit(&self, trees: &[Tree], chunks: &[&[u8]]) -> String {
        self.commit_with(trees, chunks, |_| {})
    }

    /// `commit`, with the snapshot's metadata changed by `edit` first.
    pub fn commit_with(&self, trees: &[Tree], chunks: &[&[u8]], edit: impl FnOnce(&mut Snapshot)) -> String {
        let w = ObjectWriter::new(&self.store).expect("writer");
        for c in chunks {
            w.put_chunk(c).expect("put chunk");
        }
        let mut root = ObjectId([0; 32]);
        for t in trees {
            let (id, bytes) = t.id_and_bytes();
            w.put(ObjectKind::Tree, id, &bytes).expect("put tree");
            root = id;
        }
        w.finish().expect("finish");
        self.store.invalidate_index();
        self.snapshot_with(root, edit)
    }

    /// Commits a snapshot of root tree `root` (which may not exist).
    pub fn snapshot(&self, root: ObjectId) -> String {
        self.snapshot_with(root, |_| {})
    }

    fn snapshot_with(&self, root: ObjectId, edit: impl FnOnce(&mut Snapshot)) -> String {
        let mut snap = Snapshot {
            root,
            parent: None,
            workspace: b"/nonexistent".to_vec(),
            host: "evil".into(),
            time_ns: 1,
            trigger: Trigger::Manual,
            message: String::new(),
            git: None,
            run_id: None,
            stats: Stats::default(),
            skipped: Vec::new(),
            exact: true,
            scan: Scan::Walked,
        };
        edit(&mut snap);
        self.store.write_snapshot(&snap).expect("snapshot").to_hex()
    }

    /// Writes a pack holding `objects` exactly as given, and an index file
    /// listing them; returns the pack's path.
    pub fn pack(&self, objects: Vec<Forged>) -> PathBuf {
        let mut data = Vec::new();
        moat::format::header::write(&mut data, pack::MAGIC, pack::VERSION);
        let mut entries = Vec::new();
        for o in objects {
            entries.push(PackEntry {
                id: o.id,
                kind: o.kind,
                compression: o.compression,
                offset: data.len() as u32,
                stored_len: o.stored.len() as u32,
                raw_len: o.raw_len,
            });
            data.extend_from_slice(&o.stored);
        }
        let table = pack::encode_table(&entries);
        data.extend_from_slice(&table);
        data.extend_from_slice(&(table.len() as u32).to_le_bytes());
        data.extend_from_slice(pack::END_MAGIC);
        let id = ObjectId::hash(&data);
        let name = id.to_hex();
        let backend = self.store.backend();
        backend.write(FileKind::Pack, &name, &data).expect("write pack");
        let done = FinishedPack {
            id,
            entries,
            bytes: data.len() as u64,
        };
        let (iid, bytes) = IndexFile::from_packs(&[done]).encode();
        backend
            .write(FileKind::Index, &iid.to_hex(), &bytes)
            .expect("write index");
        self.store.invalidate_index();
        self.store.describe(FileKind::Pack, &name)
    }
}

pub fn file(name: &[u8], size: u64, chunks: Vec<ObjectId>) -> Entry {
    Entry {
        name: name.to_vec(),
        mode: 0o644,
        mtime_ns: 0,
        size,
        content: Content::File(chunks),
    }
}

pub fn dir(name: &[u8], id: ObjectId) -> Entry {
    Entry {
        name: name.to_vec(),
        mode: 0o755,
        mtime_ns: 0,
        size: 0,
        content: Content::Dir(id),
    }
}

pub fn tree(mut entries: Vec<Entry>) -> Tree {
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Tree { entries }
}

/// A zstd frame of `len` zero bytes made of RLE blocks: about 4 bytes per
/// 128 KiB, so a few KiB claim gigabytes (with a small window, so a
/// streaming decoder accepts it).
pub fn zstd_bomb(len: u64) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&0xFD2F_B528u32.to_le_bytes());
    f.push(0xC0); // 8-byte content size, not single-segment, no checksum
    f.push(7 << 3); // window 2^(10+7) = 128 KiB
    f.extend_from_slice(&len.to_le_bytes());
    const BLOCK: u64 = 128 << 10;
    let mut left = len;
    while left > 0 {
        let n = left.min(BLOCK);
        left -= n;
        let last = u32::from(left == 0);
        let header = last | (1 << 1) | ((n as u32) << 3); // RLE block
        f.extend_from_slice(&header.to_le_bytes()[..3]);
        f.push(0);
    }
    f
}

/// The id of `t`.
pub fn id(t: &Tree) -> ObjectId {
    t.id_and_bytes().0
}

/// A file entry holding `data` as one chunk (the chunk to store is `data`).
pub fn file_of(name: &[u8], data: &[u8]) -> Entry {
    let chunks = if data.is_empty() {
        Vec::new()
    } else {
        vec![ObjectId::hash(data)]
    };
    file(name, data.len() as u64, chunks)
}

/// A chain of `depth` nested directories `d` with a file `bottom`
/// (content "deep") at the end; the last tree is the root.
pub fn deep_chain(depth: usize) -> Vec<Tree> {
    let mut trees = vec![tree(vec![file_of(b"bottom", b"deep")])];
    for _ in 0..depth {
        let below = id(trees.last().expect("a tree"));
        trees.push(tree(vec![dir(b"d", below)]));
    }
    trees
}

/// Limits `cmd`'s address space to `bytes`: a command that allocates
/// without bound then fails fast instead of exhausting the machine.
pub fn limit_memory(cmd: &mut std::process::Command, bytes: u64) {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            let lim = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
