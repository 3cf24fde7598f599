//! The protocol driven through the test twin: what is vouched for, and
//! every way vouching is refused.

use super::*;

const _: () = assert!(MAX_DIRTY > 100);
use crate::worktree::watch::twin::{Twin, TwinFeed};

fn hub() -> (Hub, TwinFeed) {
    let (t, feed) = Twin::new();
    (Hub::new(Box::new(t)), feed)
}

fn vouched(a: Answer) -> (Vec<Vec<u8>>, Since) {
    match a {
        Answer::Vouched { mut dirty, next, .. } => {
            dirty.sort();
            (dirty, next)
        }
        other => panic!("not vouched: {other:?}"),
    }
}

fn refused(a: Answer) -> (String, Option<Since>) {
    match a {
        Answer::Refused { reason, next } => (reason, next),
        other => panic!("vouched: {other:?}"),
    }
}

#[test]
fn no_token_is_refused_but_starts_history() {
    let (h, feed) = hub();
    let (why, next) = refused(h.begin(None));
    assert!(why.contains("no watch token"), "{why}");
    feed.dirty("a");
    let (dirty, _) = vouched(h.begin(next));
    assert_eq!(dirty, vec![b"a".to_vec()]);
}

#[test]
fn changes_during_a_scan_stay_dirty_for_the_next() {
    let (h, feed) = hub();
    let (_, t1) = refused(h.begin(None));
    feed.dirty("during-first-scan");
    let (d2, t2) = vouched(h.begin(t1));
    assert_eq!(d2, vec![b"during-first-scan".to_vec()]);
    feed.dirty("during-second-scan");
    // The second capture failed and saved nothing: asking from t1 again
    // still gets everything.
    let (d3, _) = vouched(h.begin(t1));
    assert_eq!(
        d3,
        vec![b"during-first-scan".to_vec(), b"during-second-scan".to_vec()]
    );
    // Asking from t2 gets only what came after t2.
    let (d4, _) = vouched(h.begin(Some(t2)));
    assert_eq!(d4, vec![b"during-second-scan".to_vec()]);
}

#[test]
fn overflow_ends_the_epoch() {
    let (h, feed) = hub();
    let (_, t1) = refused(h.begin(None));
    feed.push(Change::Reset("inotify queue overflowed".into()));
    let (why, t2) = refused(h.begin(t1));
    assert!(why.contains("overflowed"), "{why}");
    // From a token of the new epoch on, it vouches again.
    let (d, _) = vouched(h.begin(t2));
    assert!(d.is_empty());
}

#[test]
fn broken_watcher_never_vouches() {
    let (h, feed) = hub();
    let (_, t1) = refused(h.begin(None));
    feed.push(Change::Broken("watch limit reached".into()));
    let (why, next) = refused(h.begin(t1));
    assert!(why.contains("watch limit") && next.is_none(), "{why}");
}

#[test]
fn foreign_future_and_stale_tokens_are_refused() {
    let (h, _) = hub();
    let (_, t1) = refused(h.begin(None));
    let t1 = t1.unwrap();
    let other = Since {
        epoch: [9; 16],
        seq: t1.seq,
    };
    assert!(refused(h.begin(Some(other))).0.contains("started after"));
    let future = Since {
        seq: t1.seq + 5,
        ..t1
    };
    assert!(refused(h.begin(Some(future))).0.contains("no longer holds"));
    let (_, t2) = vouched(h.begin(Some(t1)));
    let (_, _) = vouched(h.begin(Some(t2)));
    // Segments before t2 were dropped when t2 was asked about.
    assert!(refused(h.begin(Some(t1))).0.contains("no longer holds"));
}

#[test]
fn too_many_dirty_paths_end_the_epoch() {
    let (t, feed) = Twin::new();
    let h = Hub::with_max_dirty(Box::new(t), 100);
    let (_, t1) = refused(h.begin(None));
    for i in 0..=100u32 {
        feed.push(Change::Dirty(i.to_le_bytes().to_vec()));
    }
    let (why, _) = refused(h.begin(t1));
    assert!(why.contains("paths changed"), "{why}");
}

#[test]
fn observers_see_every_dirty_path_whoever_takes_it_in() {
    let (h, feed) = hub();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    h.observe(Box::new(move |p| s.lock().unwrap().push(p.to_vec())));
    feed.dirty("a");
    h.pump(Duration::ZERO);
    feed.dirty("b/c");
    let (_, next) = refused(h.begin(None));
    feed.dirty("a");
    let (dirty, _) = vouched(h.begin(next));
    assert_eq!(dirty, vec![b"a".to_vec()], "observing changes nothing vouched");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, vec![b"a".to_vec(), b"b/c".to_vec(), b"a".to_vec()]);
}
