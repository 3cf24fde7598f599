//! The S3 backend over `object_store`'s in-memory bucket: the store's
//! write and read paths, the local cache, uploads, the lease check.

use std::sync::Arc;

use super::*;
use crate::format::pack::ObjectKind;
use crate::store::Store;
use crate::store::writer::ObjectWriter;

fn store(home: &Path) -> (Store, Arc<Remote>) {
    let (s, r, _) = store_and_lock(home);
    (s, r)
}

fn store_and_lock(home: &Path) -> (Store, Arc<Remote>, RemoteLock) {
    let url = S3Url {
        bucket: "bkt".into(),
        prefix: "a/b".into(),
    };
    let remote = Arc::new(Remote::in_memory(url).unwrap());
    let backend = S3Backend::over(remote.clone(), Some(home.to_path_buf()));
    let lock = backend.lock.clone();
    (Store::create_in(Box::new(backend)).unwrap(), remote, lock)
}

#[test]
fn objects_round_trip_and_index_files_are_cached() {
    let home = tempfile::tempdir().unwrap();
    let (store, remote) = store(home.path());
    let w = ObjectWriter::new(&store).unwrap();
    let id = w.put_chunk(b"hello remote").unwrap();
    let p = w.finish().unwrap();
    assert_eq!((p.packs, p.objects), (1, 1));
    assert_eq!(
        store.read_object(&id, ObjectKind::Chunk).unwrap(),
        b"hello remote"
    );
    // The objects are named as a local store's files, below the prefix.
    let names: Vec<String> = remote.list("").unwrap().into_iter().map(|(r, _, _)| r).collect();
    assert!(names.contains(&"config".to_string()), "{names:?}");
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("packs/") && n.ends_with(".pack")),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("index/") && n.ends_with(".idx")),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("locks/")),
        "a lock object outlived its hold"
    );
    // A second load of the index lists, and fetches nothing: the index
    // file comes from the local cache.
    let before = remote.traffic();
    let idx = crate::store::index::Index::load(store.backend()).unwrap();
    assert!(idx.contains(&id));
    let after = remote.traffic();
    assert_eq!(after.requests - before.requests, 1, "one listing");
    assert_eq!(after.bytes_received, before.bytes_received);
}

#[test]
fn a_damaged_cache_copy_is_fetched_again() {
    let home = tempfile::tempdir().unwrap();
    let (store, _) = store(home.path());
    let w = ObjectWriter::new(&store).unwrap();
    let id = w.put_chunk(b"x").unwrap();
    w.finish().unwrap();
    let name = store.backend().list(FileKind::Index).unwrap().remove(0);
    let cached = store
        .backend()
        .scratch()
        .unwrap()
        .parent()
        .unwrap()
        .join("index")
        .join(format!("{name}.idx"));
    assert!(cached.exists(), "{}", cached.display());
    std::fs::write(&cached, b"garbage").unwrap();
    let idx = crate::store::index::Index::load(store.backend()).unwrap();
    assert!(idx.problems.is_empty(), "{:?}", idx.problems);
    assert!(idx.contains(&id));
}

#[test]
fn a_dropped_upload_leaves_nothing_and_names_are_checked() {
    let home = tempfile::tempdir().unwrap();
    let (store, remote) = store(home.path());
    let mut up = store.backend().upload(FileKind::Pack).unwrap();
    up.write(b"partial").unwrap();
    drop(up);
    assert!(store.backend().list(FileKind::Pack).unwrap().is_empty());
    assert!(store.backend().write(FileKind::Snapshot, "../x", b"").is_err());
    assert!(remote.list("").unwrap().iter().all(|(r, _, _)| !r.contains("..")));
    // create_new never replaces.
    let name = ObjectId::hash(b"p").to_hex();
    assert!(store.backend().create_new(FileKind::Pin, &name, b"1").unwrap());
    assert!(!store.backend().create_new(FileKind::Pin, &name, b"2").unwrap());
}

#[test]
fn a_writer_that_lost_its_lease_publishes_nothing() {
    let home = tempfile::tempdir().unwrap();
    let (store, _, lock) = store_and_lock(home.path());
    let w = ObjectWriter::new(&store).unwrap();
    w.put_chunk(b"late").unwrap();
    lock.expire_all();
    let err = w.finish().unwrap_err();
    assert!(err.to_string().contains("could not be renewed"), "{err}");
    assert!(store.backend().list(FileKind::Pack).unwrap().is_empty());
    assert!(store.backend().list(FileKind::Index).unwrap().is_empty());
}

#[test]
fn a_pack_read_from_again_and_again_is_fetched_whole_once() {
    let home = tempfile::tempdir().unwrap();
    let (store, remote) = store(home.path());
    let w = ObjectWriter::new(&store).unwrap();
    let ids: Vec<_> = (0..20u32)
        .map(|i| w.put_chunk(&i.to_le_bytes().repeat(500)).unwrap())
        .collect();
    w.finish().unwrap();
    store.index().unwrap();
    let before = remote.traffic();
    for (i, id) in ids.iter().enumerate() {
        let data = store.read_object(id, ObjectKind::Chunk).unwrap();
        assert_eq!(data, (i as u32).to_le_bytes().repeat(500));
    }
    let requests = remote.traffic().requests - before.requests;
    // Ranged GETs until the pack is hot, then one HEAD and one GET.
    assert_eq!(requests, u64::from(HOT_AFTER - 1) + 2, "{requests} requests");
}
