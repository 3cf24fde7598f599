//! The remote lock against `object_store`'s in-memory bucket, two
//! "processes" being two `Remote`s on one bucket.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::*;
use crate::store::backend::remote::S3Url;

fn pair(lease: Duration) -> (RemoteLock, RemoteLock) {
    let url = S3Url {
        bucket: "bkt".into(),
        prefix: "p".into(),
    };
    let a = Arc::new(Remote::in_memory(url).unwrap());
    let b = Arc::new(a.sibling().unwrap());
    (RemoteLock::with_lease(a, lease), RemoteLock::with_lease(b, lease))
}

#[test]
fn shared_holds_coexist_and_exclusive_waits_for_them() {
    let (a, b) = pair(Duration::from_secs(60));
    let s1 = a.shared().unwrap();
    let s2 = b.shared().unwrap();
    let got = Arc::new(AtomicBool::new(false));
    let got2 = got.clone();
    let waited = Arc::new(AtomicBool::new(false));
    let waited2 = waited.clone();
    let gc = std::thread::spawn(move || {
        let h = b
            .exclusive(&mut || waited2.store(true, Ordering::SeqCst))
            .unwrap();
        got2.store(true, Ordering::SeqCst);
        h
    });
    let t0 = Instant::now();
    while !waited.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(waited.load(Ordering::SeqCst), "exclusive called on_wait");
    assert!(!got.load(Ordering::SeqCst), "exclusive while shared holds exist");
    drop(s1);
    drop(s2);
    let x = gc.join().unwrap();
    assert!(got.load(Ordering::SeqCst));
    // While it is held, a new shared hold of another process waits.
    let (tx, rx) = std::sync::mpsc::channel();
    let a2 = a.clone();
    let reader = std::thread::spawn(move || {
        let h = a2.shared().unwrap();
        tx.send(()).unwrap();
        drop(h);
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(600)).is_err(),
        "shared during exclusive"
    );
    drop(x);
    rx.recv_timeout(Duration::from_secs(20))
        .expect("shared after exclusive");
    reader.join().unwrap();
}

#[test]
fn two_exclusive_holders_never_overlap() {
    let (a, b) = pair(Duration::from_secs(60));
    let inside = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let threads: Vec<_> = [a, b]
        .into_iter()
        .map(|l| {
            let inside = inside.clone();
            std::thread::spawn(move || {
                for _ in 0..3 {
                    let h = l.exclusive(&mut || {}).unwrap();
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two exclusive holds");
                    std::thread::sleep(Duration::from_millis(30));
                    inside.fetch_sub(1, Ordering::SeqCst);
                    drop(h);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn a_dead_holder_goes_stale_after_its_lease() {
    let (a, b) = pair(Duration::from_secs(2));
    // A holder that died: its object stays, never renewed.
    a.remote
        .put("locks/shared-dead", b"x 1\n".to_vec(), true)
        .unwrap();
    let t0 = Instant::now();
    let h = b.exclusive(&mut || {}).unwrap();
    assert!(t0.elapsed() >= Duration::from_secs(1), "waited for the lease");
    drop(h);
}

#[test]
fn a_holder_that_lost_its_lease_stops_before_writing() {
    let (a, _) = pair(Duration::from_secs(60));
    let h = a.shared().unwrap();
    a.check(std::path::Path::new("x")).unwrap();
    a.expire_all();
    let err = a.check(std::path::Path::new("x")).unwrap_err();
    assert!(err.to_string().contains("could not be renewed"), "{err}");
    drop(h);
    a.check(std::path::Path::new("x")).unwrap();
}
