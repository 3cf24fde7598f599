//! `moat snapshot`: walk a workspace, store what changed, commit a snapshot.
//!
//! Pipeline: parallel walk → stat-cache check (unchanged files are never
//! opened) → parallel read/chunk/hash/compress of the rest → trees built
//! bottom-up (an unchanged directory hashes to its old id and is not written
//! again) → packs, index, snapshot, stat cache, in that order.
//!
//! Invariant: a file is stored only if its stat before and after reading
//! agree, so a file written during the read is re-read, never stored torn.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use rayon::prelude::*;

use crate::chunker::{self, ChunkParams};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::id::ObjectId;
use crate::pack::ObjectKind;
use crate::progress::Progress;
use crate::snapshot::{Snapshot, Stats, Trigger};
use crate::statcache::{CachedFile, FileStat, StatCache};
use crate::store::Store;
use crate::tree::{Content, Entry, Tree};
use crate::walk::{self, Node, NodeKind, WalkOptions};
use crate::writer::ObjectWriter;

/// Read attempts before a file that keeps changing is skipped.
const READ_TRIES: u32 = 3;
/// Files up to this size are read whole; larger ones stream through a window.
const WHOLE_READ_MAX: u64 = 8 << 20;

#[derive(Clone, Debug)]
pub struct CaptureOptions {
    pub walk: WalkOptions,
    pub trigger: Trigger,
    pub message: String,
    pub allow_empty: bool,
    pub run_id: Option<String>,
    /// Pin the snapshot (or, when unchanged, its parent) against retention.
    pub pin: bool,
    /// Growth guard: refuse (or warn about) a snapshot that adds too much.
    pub guard: Option<Guard>,
    /// zstd level for this snapshot's new objects [default: the store's].
    pub zstd_level: Option<i32>,
}

/// The growth guard: the classic accident is a new `node_modules/` or
/// `target/` that is not ignored. Checked after the walk, before any file
/// is read, from the sizes of new files and the growth of changed ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Guard {
    pub max_new_bytes: u64,
    pub max_new_files: u64,
    /// Refuse the snapshot (automatic ones); otherwise only warn (manual).
    pub enforce: bool,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            walk: WalkOptions::default(),
            trigger: Trigger::Manual,
            message: String::new(),
            allow_empty: false,
            run_id: None,
            pin: false,
            guard: None,
            zstd_level: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Written(ObjectId),
    /// The tree equals the parent's; no snapshot was written.
    Unchanged(ObjectId),
}

#[derive(Debug)]
pub struct CaptureReport {
    pub outcome: Outcome,
    pub snapshot: Snapshot,
    pub warnings: Vec<String>,
}

enum FileResult {
    Stored(Vec<ObjectId>, FileStat),
    Skipped(String),
}

/// Canonical absolute path of a workspace directory.
pub fn workspace_root(path: &Path) -> Result<PathBuf> {
    let p = std::fs::canonicalize(path).at(path)?;
    if !p.is_dir() {
        return Err(Error::NotADirectory(p));
    }
    Ok(p)
}

/// The result of walking a workspace and hashing what changed.
pub struct Scan {
    pub ws: PathBuf,
    pub start_ns: i64,
    pub root: ObjectId,
    /// The stat cache entries describing the workspace as scanned.
    pub cache_entries: Vec<(Vec<u8>, CachedFile)>,
    /// The stat cache on disk already describes this scan.
    pub cache_unchanged: bool,
    pub stats: Stats,
    pub warnings: Vec<String>,
}

/// Walks `ws` (canonical) and builds its trees through `writer`.
fn scan(
    store: &Store,
    ws: &Path,
    walk_opts: &WalkOptions,
    guard: Option<&Guard>,
    writer: &ObjectWriter,
    progress: &dyn Progress,
) -> Result<Scan> {
    let start_ns = fsutil::now_ns();
    let mut warnings = Vec::new();
    let mut wopts = walk_opts.clone();
    let runs = crate::store::moat_home().map(|h| h.join("runs"));
    let own = [Ok(store.root().to_path_buf()), runs];
    wopts.skip_dirs.extend(
        own.into_iter()
            .flatten()
            .filter_map(|p| std::fs::canonicalize(p).ok()),
    );
    progress.start("scanning", 0);
    // Decoding the cache alongside the walk was measured slower than one
    // after the other (both allocate heavily, on two cores).
    let (nodes, walk_warnings) = walk::walk(ws, &wopts)?;
    let cache = StatCache::load(&StatCache::path_for(store.root(), ws)).unwrap_or_else(|e| {
        warnings.push(format!(
            "ignoring unreadable stat cache ({e}); every file will be read"
        ));
        StatCache::default()
    });
    warnings.extend(walk_warnings);
    let (root, cache_entries, mut stats, skipped) =
        build(store, ws, &nodes, &cache, guard, writer, progress)?;
    // Every file came from the cache and none disappeared: the cache on disk
    // already says all this new one would.
    let cache_unchanged = stats.files_read == 0 && cache_entries.len() == cache.entries.len();
    warnings.extend(skipped);
    stats.new_objects = writer.new_objects.load(Ordering::Relaxed);
    stats.new_bytes = writer.new_bytes.load(Ordering::Relaxed);
    Ok(Scan {
        ws: ws.to_path_buf(),
        start_ns,
        root,
        cache_entries,
        cache_unchanged,
        stats,
        warnings,
    })
}

/// Scans a workspace without writing anything to the store. Returns the
/// scan and the trees the store does not hold yet (encoded), so the
/// workspace can be compared with snapshots.
pub fn scan_dry(
    store: &Store,
    workspace: &Path,
    walk_opts: &WalkOptions,
    progress: &dyn Progress,
) -> Result<(Scan, HashMap<ObjectId, Vec<u8>>)> {
    let ws = workspace_root(workspace)?;
    let writer = ObjectWriter::dry(store)?;
    let scan = scan(store, &ws, walk_opts, None, &writer, progress)?;
    Ok((scan, writer.finish_dry()))
}

/// Replaces the workspace's stat cache (best effort: it is only a cache).
pub fn save_cache(
    store: &Store,
    ws: &Path,
    taken_ns: i64,
    entries: Vec<(Vec<u8>, CachedFile)>,
) -> Result<()> {
    let bytes = StatCache::encode(ws.as_os_str().as_bytes(), taken_ns, entries);
    fsutil::atomic_write(
        &store.tmp_dir(),
        &StatCache::path_for(store.root(), ws),
        &bytes,
        false,
    )
}

pub fn capture(
    store: &Store,
    workspace: &Path,
    opts: &CaptureOptions,
    progress: &dyn Progress,
) -> Result<CaptureReport> {
    let started = Instant::now();
    let ws = workspace_root(workspace)?;
    let _lock = store.lock_shared()?;
    let parent = latest_of(store, &ws)?;
    let mut writer = ObjectWriter::new(store)?;
    if let Some(level) = opts.zstd_level {
        writer = writer.with_level(level);
    }
    let scan = match scan(store, &ws, &opts.walk, opts.guard.as_ref(), &writer, progress) {
        Ok(s) => s,
        Err(e) => {
            writer.abandon();
            return Err(e);
        }
    };
    writer.finish()?;
    fsutil::failpoint("before-snapshot");

    let Scan {
        root,
        start_ns,
        cache_entries,
        cache_unchanged,
        mut stats,
        mut warnings,
        ..
    } = scan;
    stats.duration_ns = started.elapsed().as_nanos() as u64;
    let snap = Snapshot {
        root,
        parent: parent.as_ref().map(|p| p.0),
        workspace: ws.as_os_str().as_bytes().to_vec(),
        host: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        time_ns: start_ns,
        trigger: opts.trigger,
        message: opts.message.clone(),
        git: crate::git::head(&ws),
        run_id: opts.run_id.clone(),
        stats,
    };
    let outcome = match &parent {
        Some((pid, p)) if p.root == root && !opts.allow_empty => Outcome::Unchanged(*pid),
        _ => Outcome::Written(snap.encode().0),
    };
    // The pin goes first: once the snapshot is visible, a gc may run, and
    // it must already see the pin.
    if opts.pin {
        let (Outcome::Written(id) | Outcome::Unchanged(id)) = &outcome;
        store.pin(id)?;
    }
    if matches!(outcome, Outcome::Written(_)) {
        store.write_snapshot(&snap)?;
    }
    // The cache goes last: it may only name chunks whose index is published.
    if cache_unchanged {
        // Nothing to record.
    } else if let Err(e) = save_cache(store, &ws, start_ns, cache_entries) {
        warnings.push(format!("could not save the stat cache: {e}"));
    }
    progress.finish();
    Ok(CaptureReport {
        outcome,
        snapshot: snap,
        warnings,
    })
}

/// The newest snapshot of workspace `ws`.
pub fn latest_of(store: &Store, ws: &Path) -> Result<Option<(ObjectId, Snapshot)>> {
    let (all, _) = store.list_snapshots()?;
    Ok(all
        .into_iter()
        .rev()
        .find(|r| r.snap.workspace_path() == ws)
        .map(|r| (r.id, r.snap)))
}

type Built = (ObjectId, Vec<(Vec<u8>, CachedFile)>, Stats, Vec<String>);

fn build(
    store: &Store,
    ws: &Path,
    nodes: &[Node],
    cache: &StatCache,
    guard: Option<&Guard>,
    writer: &ObjectWriter,
    progress: &dyn Progress,
) -> Result<Built> {
    let mut results: Vec<Option<FileResult>> = nodes
        .par_iter()
        .map(|n| {
            let hit = (n.kind == NodeKind::File)
                .then(|| cache.lookup(&n.rel, &n.stat))
                .flatten()
                .filter(|chunks| chunks.iter().all(|c| writer.in_store(c)));
            hit.map(|c| FileResult::Stored(c.to_vec(), n.stat))
        })
        .collect();
    let to_read: Vec<usize> = (0..nodes.len())
        .filter(|&i| nodes[i].kind == NodeKind::File && results[i].is_none())
        .collect();
    let mut guard_warning = None;
    if let Some(g) = guard {
        guard_warning = check_growth(g, nodes, &to_read, cache)?;
    }
    progress.start("reading", to_read.iter().map(|&i| nodes[i].stat.size).sum());
    let params = ChunkParams::from_config(&store.config);
    let read: Vec<(usize, FileResult)> = to_read
        .par_iter()
        .map(|&i| {
            let r = read_file(&ws.join(OsStr::from_bytes(&nodes[i].rel)), params, writer)?;
            progress.inc(nodes[i].stat.size);
            Ok((i, r))
        })
        .collect::<Result<_>>()?;
    let files_read = read.len() as u64;
    for (i, r) in read {
        results[i] = Some(r);
    }
    let mut out = assemble(nodes, results, writer)?;
    out.3.extend(guard_warning);
    out.2.files_read = files_read;
    Ok(out)
}

/// Builds every tree bottom-up and returns the root id, the new stat cache
/// entries, the stats and the skip warnings.
fn assemble(nodes: &[Node], results: Vec<Option<FileResult>>, writer: &ObjectWriter) -> Result<Built> {
    let mut stats = Stats::default();
    let mut warnings = Vec::new();
    let mut cache_entries = Vec::new();
    let mut children: rustc_hash::FxHashMap<&[u8], Vec<Entry>> = Default::default();
    let mut dirs: Vec<(&[u8], &Node)> = Vec::new();
    for (n, res) in nodes.iter().zip(results) {
        let (parent, name) = split_parent(&n.rel);
        let mtime_ns = n.stat.mtime_ns;
        let mut entry = Entry {
            name: name.to_vec(),
            mode: n.stat.mode & 0o7777,
            mtime_ns,
            size: 0,
            content: Content::Dir(ObjectId([0; 32])),
        };
        match (&n.kind, res) {
            (NodeKind::Dir, _) => {
                stats.dirs += 1;
                dirs.push((&n.rel, n));
                children.entry(&n.rel).or_default();
                continue;
            }
            (NodeKind::Symlink(t), _) => {
                stats.symlinks += 1;
                entry.size = t.len() as u64;
                entry.content = Content::Symlink(t.clone());
            }
            (NodeKind::File, Some(FileResult::Stored(chunks, st))) => {
                stats.files += 1;
                stats.bytes += st.size;
                entry.size = st.size;
                entry.mode = st.mode & 0o7777;
                entry.mtime_ns = st.mtime_ns;
                entry.content = Content::File(chunks.clone());
                cache_entries.push((n.rel.clone(), CachedFile { stat: st, chunks }));
            }
            (NodeKind::File, Some(FileResult::Skipped(w))) => {
                stats.skipped += 1;
                warnings.push(w);
                continue;
            }
            (NodeKind::File, None) => continue,
        }
        children.entry(parent).or_default().push(entry);
    }
    // Deepest first, so every subtree id exists before its parent is built.
    dirs.sort_by_key(|(rel, _)| std::cmp::Reverse(rel.iter().filter(|&&b| b == b'/').count()));
    for (rel, node) in dirs {
        let id = write_tree(children.remove(rel).unwrap_or_default(), writer, rel)?;
        let (parent, name) = split_parent(rel);
        children.entry(parent).or_default().push(Entry {
            name: name.to_vec(),
            mode: node.stat.mode & 0o7777,
            mtime_ns: node.stat.mtime_ns,
            size: 0,
            content: Content::Dir(id),
        });
    }
    let root = write_tree(children.remove(&b""[..]).unwrap_or_default(), writer, b"")?;
    Ok((root, cache_entries, stats, warnings))
}

fn write_tree(entries: Vec<Entry>, writer: &ObjectWriter, rel: &[u8]) -> Result<ObjectId> {
    let mut tree = Tree { entries };
    tree.sort();
    let (id, bytes) = tree.id_and_bytes();
    if bytes.len() > u32::MAX as usize {
        return Err(Error::Limit {
            path: PathBuf::from(String::from_utf8_lossy(rel).into_owned()),
            detail: "directory listing exceeds 4 GiB; split the directory".into(),
        });
    }
    writer.put(ObjectKind::Tree, id, &bytes)
}

fn split_parent(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (b"", rel),
    }
}

/// Reads, chunks and stores one file; retried when it changes underneath.
fn read_file(path: &Path, params: ChunkParams, writer: &ObjectWriter) -> Result<FileResult> {
    for _ in 0..READ_TRIES {
        let file = match File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
        {
            Ok(f) => f,
            Err(e) => return Ok(FileResult::Skipped(format!("skipped {}: {e}", path.display()))),
        };
        let before = FileStat::of(&file.metadata().at(path)?);
        let (chunks, len) = match chunk_file(&file, path, before.size, params, writer) {
            Ok(r) => r,
            Err(Error::Io { source, .. }) => {
                return Ok(FileResult::Skipped(format!(
                    "skipped {}: {source}",
                    path.display()
                )));
            }
            Err(e) => return Err(e),
        };
        let after = FileStat::of(&file.metadata().at(path)?);
        if after == before && len == before.size {
            return Ok(FileResult::Stored(chunks, before));
        }
    }
    Ok(FileResult::Skipped(
        Error::Unstable {
            path: path.to_path_buf(),
            tries: READ_TRIES,
        }
        .to_string(),
    ))
}

fn chunk_file(
    mut file: &File,
    path: &Path,
    size: u64,
    params: ChunkParams,
    writer: &ObjectWriter,
) -> Result<(Vec<ObjectId>, u64)> {
    use std::io::Read;
    if size <= WHOLE_READ_MAX {
        let mut data = Vec::with_capacity(size as usize + 1);
        file.read_to_end(&mut data).at(path)?;
        let ranges = chunker::cut(&data, params);
        let ids = if ranges.len() > 4 {
            ranges
                .into_par_iter()
                .map(|r| writer.put_chunk(&data[r]))
                .collect::<Result<_>>()?
        } else {
            ranges
                .into_iter()
                .map(|r| writer.put_chunk(&data[r]))
                .collect::<Result<_>>()?
        };
        return Ok((ids, data.len() as u64));
    }
    let mut ids = Vec::new();
    let on_err = |e| Error::io(path, e);
    let len = chunker::stream(file, params, params.window(), on_err, |batch| {
        let got: Vec<ObjectId> = batch
            .par_iter()
            .map(|c| writer.put_chunk(c))
            .collect::<Result<_>>()?;
        ids.extend(got);
        Ok(())
    })?;
    Ok((ids, len))
}

/// Applies the growth guard to the files about to be read.
fn check_growth(g: &Guard, nodes: &[Node], to_read: &[usize], cache: &StatCache) -> Result<Option<String>> {
    let mut files = 0u64;
    let mut bytes = 0u64;
    let mut by_dir: HashMap<&[u8], (u64, u64)> = HashMap::new();
    for &i in to_read {
        let n = &nodes[i];
        let grown = match cache.entries.get(&n.rel) {
            Some(old) => n.stat.size.saturating_sub(old.stat.size),
            None => {
                files += 1;
                n.stat.size
            }
        };
        bytes += grown;
        // Group by the top-level entry: `node_modules/`, `target/`.
        let cut = n
            .rel
            .iter()
            .position(|b| *b == b'/')
            .map_or(n.rel.len(), |k| k + 1);
        let e = by_dir.entry(&n.rel[..cut]).or_default();
        e.0 += 1;
        e.1 += grown;
    }
    if files <= g.max_new_files && bytes <= g.max_new_bytes {
        return Ok(None);
    }
    let mut top: Vec<(&[u8], (u64, u64))> = by_dir.into_iter().collect();
    top.sort_by_key(|(_, (files, bytes))| std::cmp::Reverse((*bytes, *files)));
    let names: Vec<String> = top
        .iter()
        .take(3)
        .map(|(p, (f, b))| format!("{} ({f} files, {b} bytes)", String::from_utf8_lossy(p)))
        .collect();
    let msg = format!(
        "snapshot would add {files} new files and {bytes} bytes (limits {} files, {} bytes); biggest: {}. \
         Add them to .gitignore or snapshots.exclude.additional in moat.yaml if they are build output",
        g.max_new_files,
        g.max_new_bytes,
        names.join(", ")
    );
    if g.enforce {
        Err(Error::GrowthGuard(msg))
    } else {
        Ok(Some(msg))
    }
}
