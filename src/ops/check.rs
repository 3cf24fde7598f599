//! `moat check`: verify that every snapshot is complete, and with
//! `read_data` that every stored byte decodes to its id.

use std::collections::HashSet;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::id::ObjectId;
use crate::format::pack;
use crate::format::tree::Content;
use crate::store::Store;
use crate::store::index::Index;
use crate::util::progress::Progress;

#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    pub read_data: bool,
}

#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    pub snapshots: u64,
    pub trees: u64,
    pub chunks: u64,
    pub packs: u64,
    /// Each one makes the check fail.
    pub problems: Vec<String>,
    /// Harmless findings (leftovers of interrupted writers).
    pub notes: Vec<String>,
}

pub fn check(store: &Store, opts: &CheckOptions, progress: &dyn Progress) -> Result<CheckReport> {
    let mut r = CheckReport::default();
    let _lock = store.lock_shared()?;
    let index = store.index()?;
    r.problems.extend(index.problems.iter().map(|e| e.to_string()));
    let (snaps, bad) = store.list_snapshots()?;
    r.problems.extend(bad.iter().map(|e| e.to_string()));
    r.snapshots = snaps.len() as u64;

    let mut trees = HashSet::new();
    let mut chunks = HashSet::new();
    progress.start("checking snapshots", snaps.len() as u64);
    for s in &snaps {
        let mut stack = vec![(s.snap.root, String::new())];
        while let Some((id, path)) = stack.pop() {
            if !trees.insert(id) {
                continue;
            }
            let tree = match store.read_tree(&id) {
                Ok(t) => t,
                Err(e) => {
                    r.problems
                        .push(format!("snapshot {} at /{path}: {e}", s.id.short()));
                    continue;
                }
            };
            for e in tree.entries {
                let child = format!("{path}{}", String::from_utf8_lossy(&e.name));
                match e.content {
                    Content::Dir(sub) => stack.push((sub, format!("{child}/"))),
                    Content::File(ids) => {
                        for c in ids {
                            if chunks.insert(c) && !index.contains(&c) {
                                r.problems.push(format!(
                                    "snapshot {}: chunk {c} of /{child} is missing from the store",
                                    s.id.short()
                                ));
                            }
                        }
                    }
                    Content::Symlink(_) => {}
                }
            }
        }
        progress.inc(1);
    }
    r.trees = trees.len() as u64;
    r.chunks = chunks.len() as u64;
    r.packs = index.packs().len() as u64;

    for p in index.packs() {
        if !store.pack_path(p).exists() {
            r.problems
                .push(format!("pack {p} is listed in the index but missing"));
        }
    }
    if opts.read_data {
        progress.start("reading packs", index.packs().len() as u64);
        let found: Vec<Vec<String>> = index
            .packs()
            .par_iter()
            .enumerate()
            .map(|(n, p)| {
                let out = verify_pack(store, &index, n as u32, p);
                progress.inc(1);
                out
            })
            .collect();
        r.problems.extend(found.into_iter().flatten());
    }
    r.notes
        .extend(index.unindexed_packs(store.root()).into_iter().map(|(p, _)| {
            format!(
                "pack {} is not indexed (left by an interrupted snapshot; `moat gc` removes it)",
                p.display()
            )
        }));
    progress.finish();
    Ok(r)
}

/// Reads a whole pack: its id, framing, and every object it holds.
fn verify_pack(store: &Store, index: &Index, n: u32, id: &ObjectId) -> Vec<String> {
    let path = store.pack_path(id);
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(_) => return Vec::new(), // reported as missing already
    };
    if ObjectId::hash(&data) != *id {
        return vec![format!("pack {id}: content does not match its name (damaged)")];
    }
    let entries = match pack::parse(&data, &path) {
        Ok(e) => e,
        Err(e) => return vec![e.to_string()],
    };
    let mut problems = Vec::new();
    for e in &entries {
        let stored = &data[e.offset as usize..][..e.stored_len as usize];
        if let Err(d) = crate::format::compress::decode(&e.id, e.compression, e.raw_len, stored) {
            problems.push(
                Error::BadObject {
                    id: e.id,
                    pack: id.to_hex(),
                    detail: d,
                }
                .to_string(),
            );
        }
    }
    let in_pack: HashSet<(ObjectId, u32, u32)> =
        entries.iter().map(|e| (e.id, e.offset, e.stored_len)).collect();
    for e in index.entries().iter().filter(|e| e.pack == n) {
        if !in_pack.contains(&(e.id, e.offset, e.stored_len)) {
            problems.push(format!("index entry for {} does not match pack {id}", e.id));
        }
    }
    problems
}
