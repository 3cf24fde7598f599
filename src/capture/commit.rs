//! The last step of a capture: publish the snapshot (unless nothing
//! changed), its pin, then the stat cache and the watch token.
//!
//! Invariant: the order is pin, snapshot, stat cache, token. A gc that runs
//! once the snapshot is visible already sees its pin; the cache names only
//! chunks whose index is published; the token names the cache it follows.
//! A failure after the snapshot only costs a cache (a warning).

use std::os::unix::ffi::OsStrExt;
use std::time::Instant;

use super::{CaptureOptions, CaptureReport, Outcome, Scan};
use crate::error::Result;
use crate::format::snapshot::{GitInfo, Snapshot};
use crate::format::watch_token::Token;
use crate::store::Store;
use crate::worktree::statcache;

/// Publishes the snapshot (unless unchanged), its pin, the stat cache and
/// the watch token. The parent is the workspace's newest snapshot now, at
/// the commit.
pub(super) fn commit(
    store: &Store,
    opts: &CaptureOptions,
    git: Option<GitInfo>,
    scan: Scan,
    started: Instant,
) -> Result<CaptureReport> {
    let Scan {
        ws,
        root,
        start_ns,
        records,
        meta,
        cache_kept,
        delta_base,
        mut stats,
        mut warnings,
        staging,
        scan,
        scan_note,
        next,
        mut skipped,
        unwalked,
        stale_temps,
        exact,
        ..
    } = scan;
    stats.duration_ns = started.elapsed().as_nanos() as u64;
    let parent = store.latest_of(&ws)?;
    carry_skipped(&mut skipped, parent.as_ref().map(|p| &p.1), &unwalked);
    stats.skipped = skipped.len() as u64;
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
        git,
        run_id: opts.run_id.clone(),
        stats,
        skipped: skipped.into_iter().map(serde_bytes::ByteBuf::from).collect(),
        exact: opts.exact && exact,
        scan,
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
    if let Outcome::Written(id) = &outcome
        && let Err(e) = store.write_snapshot(&snap)
    {
        // No snapshot: no pin for it either. (Its packs and index stay:
        // once published, another writer may rely on them; gc frees them.)
        if opts.pin {
            let _ = store.unpin(id);
        }
        return Err(e);
    }
    // The cache goes last: it may only name chunks whose index is
    // published; the token after it, naming it.
    let cache_check = match cache_kept {
        Some(check) => Some(check),
        None => match match delta_base {
            Some(base) => statcache::save_delta(store, &ws, &base, &meta, records),
            None => statcache::save_records(store, &ws, &meta, records),
        } {
            Ok(check) => Some(check),
            Err(e) => {
                warnings.push(format!("could not save the stat cache: {e}"));
                None
            }
        },
    };
    if let (Some(cache_check), Some(n)) = (cache_check, next) {
        let token = Token {
            cache_check,
            epoch: n.epoch,
            seq: n.seq,
        };
        if let Err(e) = statcache::save_token(store, &ws, &token) {
            warnings.push(format!("could not save the watch token: {e}"));
        }
    }
    Ok(CaptureReport {
        outcome,
        snapshot: snap,
        warnings,
        staging,
        scan_note,
        stale_temps,
    })
}

/// Adds to `skipped` what the parent snapshot skipped in the directories a
/// watched scan did not walk (`unwalked`: those directories, and whether
/// nothing at all was walked): they are as the parent saw them.
fn carry_skipped(skipped: &mut Vec<Vec<u8>>, parent: Option<&Snapshot>, unwalked: &(Vec<Vec<u8>>, bool)) {
    let Some(parent) = parent else {
        return;
    };
    let (dirs, whole) = unwalked;
    let under = |p: &[u8], d: &[u8]| p.starts_with(d) && p.get(d.len()) == Some(&b'/');
    let carried = parent
        .skipped_paths()
        .filter(|p| *whole || dirs.iter().any(|d| under(p, d)))
        .map(<[u8]>::to_vec);
    skipped.extend(carried);
    skipped.sort();
    skipped.dedup();
}
