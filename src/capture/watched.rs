//! Finding what changed: ask the watcher (if any) what changed since the
//! stat cache's scan, then walk either only that (and its ancestors,
//! reusing every other directory's cached tree) or the whole workspace,
//! and look every walked entry up in the cache.
//!
//! Invariants: the watcher is asked before the walk starts (its token then
//! covers every change the walk might miss); anything short of a vouched
//! answer that fits this cache means a full walk, with the reason kept for
//! `--verbose`; a cache found damaged midway is dropped and the whole
//! workspace walked again without it.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use super::prior::{self, Plan, Prior, Pruner};
use super::read::FileResult;
use crate::error::{Error, Result};
use crate::format::id::ObjectId;
use crate::format::snapshot::Scan;
use crate::format::statcache::{self, FileStat, Payload, Record, Totals};
use crate::store::Store;
use crate::store::writer::ObjectWriter;
use crate::worktree::statcache::{self as cachefile, Mapped};
use crate::worktree::walk::{self, Node, WalkOptions};
use crate::worktree::watch::{self, Answer, Since, WatchLink};

/// What the scan phase found.
#[derive(Default)]
pub struct Found {
    pub nodes: Vec<Node>,
    pub results: Vec<Option<FileResult>>,
    pub prior: Vec<Prior>,
    /// Directories left out of a watched walk, with their cached records.
    pub pruned: Vec<(Vec<u8>, Record)>,
    pub root_prior: Prior,
    /// Nothing changed and nothing was walked: the cached root and totals.
    pub whole: Option<(ObjectId, Totals)>,
    pub table: Option<Arc<Mapped>>,
    pub key: [u8; 32],
    pub walk_key: [u8; 32],
    pub excludes: Vec<(Vec<u8>, FileStat)>,
    pub warnings: Vec<String>,
    /// Paths the walk could not store, and moat temp names it met.
    pub skipped: Vec<Vec<u8>>,
    pub temps: Vec<Vec<u8>>,
    pub scan: Scan,
    pub note: Option<String>,
    pub next: Option<Since>,
}

/// Maps the workspace's cache; a damaged, foreign or old one is reported
/// and not used.
fn open_cache(store: &Store, ws: &Path, warnings: &mut Vec<String>) -> Option<Arc<Mapped>> {
    match cachefile::open(store, ws) {
        Ok(t) => t.map(Arc::new),
        Err(Error::UnsupportedVersion { found, .. }) if found < statcache::VERSION => {
            warnings.push(format!(
                "ignoring a version {found} stat cache; it is rebuilt now, so every file is read once"
            ));
            None
        }
        Err(e) => {
            warnings.push(format!(
                "ignoring unreadable stat cache ({e}); every file will be read"
            ));
            None
        }
    }
}

fn ask(link: &WatchLink, ws: &Path, since: Option<Since>) -> Answer {
    let off = |reason: &str| Answer::Refused {
        reason: reason.into(),
        next: None,
    };
    match link {
        WatchLink::Off => off("watching is off for this capture"),
        WatchLink::With(v) => v.begin(since),
        WatchLink::Socket => match crate::store::moat_home() {
            Ok(home) => watch::socket::begin(&home, ws, since),
            Err(_) => off("no moat home directory, so no watcher"),
        },
    }
}

/// Scans `ws` (canonical) with walk options `wopts` (the store's own
/// directories already among `skip_dirs`).
pub fn scan(
    store: &Store,
    ws: &Path,
    wopts: &WalkOptions,
    writer: &ObjectWriter,
    link: &WatchLink,
) -> Result<Found> {
    let mut warnings = Vec::new();
    let mut table = open_cache(store, ws, &mut warnings);
    let since = table.as_ref().and_then(|t| {
        cachefile::load_token(store, ws)
            .filter(|tok| tok.cache_check == t.header_check)
            .map(|tok| Since {
                epoch: tok.epoch,
                seq: tok.seq,
            })
    });
    let walk_key = prior::walk_key(wopts);
    let (next, mut plan) = match ask(link, ws, since) {
        Answer::Vouched {
            dirty,
            next,
            ignoring,
        } => {
            let plan = match &table {
                // The watcher left unwatched what its rules ignore: usable
                // only if this walk ignores at least that.
                _ if !ignoring.covers(wopts) => Err(format!(
                    "the watcher leaves unwatched directories this scan's rules walk (it ignores {})",
                    ignoring.describe()
                )),
                Some(t) => prior::plan_watched(ws, t, &walk_key, dirty),
                None => Err("there is no stat cache to start from".into()),
            };
            (Some(next), plan)
        }
        Answer::Refused { reason, next } => (next, Err(reason)),
    };
    let mut collapse = true;
    loop {
        match attempt(ws, wopts, table.clone(), plan, writer, collapse)? {
            Ok(mut f) => {
                f.warnings.splice(0..0, warnings);
                f.key = statcache::ws_key(ws.as_os_str().as_bytes());
                f.walk_key = walk_key;
                f.next = next;
                return Ok(f);
            }
            Err(Retry::Damaged(damage)) => {
                warnings.push(format!(
                    "ignoring damaged stat cache ({damage}); every file will be read"
                ));
                table = None;
                plan = Err("the stat cache is damaged".into());
            }
            Err(Retry::Walk(why)) => plan = Err(why),
            Err(Retry::Uncollapsed(why)) => {
                collapse = false;
                plan = Err(why);
            }
        }
    }
}

/// Why a scan is tried again.
enum Retry {
    /// The cache is damaged: scan without it.
    Damaged(Error),
    /// The watched scan cannot be trusted: walk everything.
    Walk(String),
    /// A git exclude file appeared or went: walk again without collapsing
    /// (the new cache could not be built on the old one's records).
    Uncollapsed(String),
}

/// One try at the scan.
fn attempt(
    ws: &Path,
    wopts: &WalkOptions,
    table: Option<Arc<Mapped>>,
    plan: std::result::Result<Plan, String>,
    writer: &ObjectWriter,
    collapse: bool,
) -> Result<std::result::Result<Found, Retry>> {
    let root_prior = match table.as_deref().map(|t| t.get(b"")) {
        Some(Err(e)) => return Ok(Err(Retry::Damaged(e))),
        Some(Ok(Some(Record {
            payload:
                Payload::Dir {
                    tree,
                    entries,
                    totals,
                },
            ..
        }))) => Prior::Dir(Box::new(prior::CachedDir {
            tree,
            entries,
            totals,
        })),
        _ => Prior::Miss,
    };
    let mut f = Found {
        root_prior: root_prior.clone(),
        ..Found::default()
    };
    let (pruner, old_excludes) = match (plan, &table) {
        (Ok(plan), Some(t)) => {
            f.scan = Scan::Watched;
            if let Prior::Dir(c) = &root_prior
                && plan.is_empty()
                && c.totals.multi_links == 0
                && writer.in_store(&c.tree)
            {
                f.whole = Some((c.tree, c.totals));
                f.excludes = t.meta.excludes.clone();
                f.table = table;
                return Ok(Ok(f));
            }
            (
                Some(Arc::new(Pruner::new(plan, t.clone()))),
                t.meta.excludes.clone(),
            )
        }
        (Err(reason), _) => {
            f.note = Some(reason);
            (None, Vec::new())
        }
        (Ok(_), None) => {
            f.note = Some("there is no stat cache to start from".into());
            (None, Vec::new())
        }
    };
    let hook: Option<walk::Prune> = pruner.clone().map(|p| {
        let p: walk::Prune = Arc::new(move |rel: &[u8]| p.prune(rel));
        p
    });
    // A full walk with a cache collapses the directories that match it.
    let collapser = match (&pruner, table.as_deref()) {
        (None, Some(t)) if collapse => prior::CacheCollapse::new(ws, t, &prior::walk_key(wopts), writer),
        _ => None,
    };
    let walked = match &collapser {
        Some(c) => walk::walk_collapsing(ws, wopts, c)?,
        None => walk::walk_pruned(ws, wopts, hook)?,
    };
    if let (Some(c), Some(t)) = (&collapser, table.as_deref()) {
        if let Some(e) = c.damaged.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Ok(Err(Retry::Damaged(e)));
        }
        // Collapsed directories carry the cache's records, which were
        // taken under its git exclude files: those must be the same.
        if prior::normalized(prior::excludes_of(ws, &walked.git_dirs)) != t.meta.excludes {
            return Ok(Err(Retry::Uncollapsed(f.note.take().unwrap_or_default())));
        }
        if walked.collapsed.iter().any(|r| r.is_empty()) {
            let Prior::Dir(c) = &root_prior else {
                let e = Error::corrupt(ws, "stat cache", "the root collapsed without a root record");
                return Ok(Err(Retry::Damaged(e)));
            };
            f.whole = Some((c.tree, c.totals));
            f.excludes = t.meta.excludes.clone();
            f.table = table;
            return Ok(Ok(f));
        }
        for rel in walked.collapsed {
            match t.get(&rel) {
                Ok(Some(
                    rec @ Record {
                        payload: Payload::Dir { .. },
                        ..
                    },
                )) => f.pruned.push((rel, rec)),
                Ok(_) => {
                    let e = Error::corrupt(ws, "stat cache", "a collapsed directory has no directory record");
                    return Ok(Err(Retry::Damaged(e)));
                }
                Err(e) => return Ok(Err(Retry::Damaged(e))),
            }
        }
    }
    if let Some(p) = &pruner {
        if let Some(e) = p.damaged.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Ok(Err(Retry::Damaged(e)));
        }
        f.pruned = std::mem::take(&mut *p.pruned.lock().unwrap_or_else(|e| e.into_inner()));
        // A new hard link: the file's other names got no event and may sit
        // in pruned directories.
        match table.as_deref().map(|t| prior::new_link(&walked.nodes, t)) {
            Some(Err(e)) => return Ok(Err(Retry::Damaged(e))),
            Some(Ok(true)) => return Ok(Err(Retry::Walk("a file gained a hard link".into()))),
            _ => {}
        }
    }
    let (results, prior) = match prior::lookup(&walked.nodes, table.as_deref(), writer) {
        Ok(r) => r,
        Err(e) => return Ok(Err(Retry::Damaged(e))),
    };
    f.excludes = old_excludes;
    f.excludes.extend(prior::excludes_of(ws, &walked.git_dirs));
    f.nodes = walked.nodes;
    f.warnings = walked.warnings;
    f.skipped = walked.skipped;
    f.temps = walked.temps;
    f.results = results;
    f.prior = prior;
    f.table = table;
    Ok(Ok(f))
}
