//! gc, check and restore over the store's in-memory backend: the layers
//! above the store run unchanged on a backend that is not a directory.

use std::fs;

use super::*;
use crate::capture::{self, CaptureOptions, Outcome};
use crate::ops::check::{CheckOptions, check};
use crate::ops::restore::{RestoreOptions, restore};
use crate::store::backend::memory::MemoryBackend;
use crate::store::backend::{Backend, FileKind};
use crate::util::progress::NoProgress;

fn written(r: capture::CaptureReport) -> ObjectId {
    match r.outcome {
        Outcome::Written(id) => id,
        o => panic!("no snapshot written: {o:?}"),
    }
}

#[test]
fn capture_gc_check_and_restore_run_on_the_memory_backend() {
    let d = tempfile::tempdir().unwrap();
    let ws = d.path().join("ws");
    fs::create_dir(&ws).unwrap();
    fs::write(ws.join("small"), b"small file").unwrap();
    // Over the in-memory staging size: it would be cloned into a scratch
    // dir, which this backend does not have.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(ws.join("big"), &big).unwrap();
    let mem = MemoryBackend::new();
    let store = Store::create_in(Box::new(mem.clone())).unwrap();
    let opts = CaptureOptions::default();
    let first = capture::capture(&store, &ws, &opts, &NoProgress).unwrap();
    let why = first.staging.fallback.clone().unwrap_or_default();
    assert!(why.contains("no local directory"), "{why}");
    let first = written(first);
    fs::write(ws.join("big"), b"now small").unwrap();
    let second = written(capture::capture(&store, &ws, &opts, &NoProgress).unwrap());
    let packs = mem.count(FileKind::Pack);

    let gc_opts = GcOptions {
        policy: Policy {
            keep_last: Some(1),
            delete_initial: true,
            ..Policy::default()
        },
        ..GcOptions::default()
    };
    let report = gc(&store, &gc_opts, &NoProgress, || {}).unwrap();
    assert_eq!(report.removed.iter().map(|r| r.id).collect::<Vec<_>>(), [first]);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(
        mem.count(FileKind::Pack) < packs,
        "the first snapshot's big file went"
    );
    assert_eq!(mem.count(FileKind::Index), 1);

    let checked = check(&store, &CheckOptions { read_data: true }, &NoProgress).unwrap();
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);
    let target = d.path().join("restored");
    let snap = store.load_snapshot(&second).unwrap();
    restore(&store, &snap, &target, &RestoreOptions::default(), &NoProgress).unwrap();
    assert_eq!(fs::read(target.join("big")).unwrap(), b"now small");
    assert_eq!(fs::read(target.join("small")).unwrap(), b"small file");

    // A pack lost from the backend is what check reports.
    let name = store.index().unwrap().packs()[0].to_hex();
    mem.remove(FileKind::Pack, &name).unwrap();
    let checked = check(&store, &CheckOptions::default(), &NoProgress).unwrap();
    assert!(
        checked.problems.iter().any(|p| p.contains("missing")),
        "{:?}",
        checked.problems
    );
}
