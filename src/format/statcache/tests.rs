//! Unit tests of the stat cache codec.

use super::*;
use proptest::prelude::*;

fn arb_stat() -> impl Strategy<Value = FileStat> {
    (0..3u64, 0..3u64, 0..3u32, 0..3u64, 0..5i64, 0..5i64).prop_map(
        |(dev, ino, mode, size, mtime_ns, ctime_ns)| FileStat {
            dev,
            ino,
            mode,
            size,
            mtime_ns,
            ctime_ns,
        },
    )
}

fn st(size: u64) -> FileStat {
    FileStat {
        dev: 1,
        ino: 2,
        mode: 0o100644,
        size,
        mtime_ns: 4,
        ctime_ns: 5,
    }
}

fn file(size: u64, seed: &[u8]) -> Record {
    Record {
        stat: st(size),
        multi_link: false,
        payload: Payload::File(vec![ObjectId::hash(seed)]),
    }
}

proptest! {
    /// Any difference in any field, or a racy mtime, means "changed".
    #[test]
    fn unchanged_predicate(a in arb_stat(), b in arb_stat(), taken in 0..6i64) {
        let expect = a.dev == b.dev && a.ino == b.ino && a.mode == b.mode
            && a.size == b.size && a.mtime_ns == b.mtime_ns && a.ctime_ns == b.ctime_ns
            && b.mtime_ns < taken;
        prop_assert_eq!(unchanged(&a, &b, taken), expect);
    }

    /// Every path written is found with its record; others are not.
    #[test]
    fn lookup_finds_every_path(paths in proptest::collection::btree_set(
        proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'/'), Just(b'0'), Just(0xffu8)], 0..6), 0..40)) {
        let key = ws_key(b"/ws");
        let recs = paths.iter().map(|p| encode_record(&key, p, &file(p.len() as u64, p))).collect();
        let bytes = encode(&Meta { workspace: b"/ws".to_vec(), ..Meta::default() }, recs);
        let t = Table::open(&bytes[..], Path::new("c")).unwrap();
        prop_assert_eq!(t.len(), paths.len());
        for p in &paths {
            prop_assert_eq!(t.get(p).unwrap(), Some(file(p.len() as u64, p)));
        }
        let mut missing = b"zz".to_vec();
        missing.extend_from_slice(&[1, 2]);
        prop_assert_eq!(t.get(&missing).unwrap(), None);
        // `below` covers exactly the paths under a directory.
        for dir in [&b"a"[..], b"a/a", b"0"] {
            let r = t.below(dir).unwrap();
            let mut prefix = dir.to_vec();
            prefix.push(b'/');
            let n = paths.iter().filter(|p| p.starts_with(&prefix)).count();
            prop_assert_eq!(r.len(), n);
            for i in r {
                prop_assert!(record_path(t.raw(i).unwrap()).starts_with(&prefix));
            }
        }
    }
}

#[test]
fn encode_decode_all_kinds() {
    let key = ws_key(b"/ws");
    let dir = Record {
        stat: st(0),
        multi_link: false,
        payload: Payload::Dir {
            tree: ObjectId::hash(b"t"),
            entries: 3,
            totals: Totals {
                files: 1,
                dirs: 2,
                symlinks: 3,
                bytes: 4,
                multi_links: 5,
            },
        },
    };
    let link = Record {
        stat: st(7),
        multi_link: true,
        payload: Payload::Symlink,
    };
    let meta = Meta {
        workspace: b"/ws".to_vec(),
        taken_ns: 10,
        walk_key: [7; 32],
        nonce: [8; 16],
        excludes: vec![(b".git/info/exclude".to_vec(), st(3))],
    };
    let bytes = encode(
        &meta,
        vec![
            encode_record(&key, b"l", &link),
            encode_record(&key, b"", &dir),
            encode_record(&key, b"a/\xff", &file(3, b"x")),
        ],
    );
    let t = Table::open(&bytes[..], Path::new("c")).unwrap();
    assert_eq!(t.meta, meta);
    assert_eq!(t.get(b"").unwrap(), Some(dir));
    assert_eq!(t.get(b"l").unwrap(), Some(link));
    let c = StatCache::decode(&bytes, Path::new("c")).unwrap();
    assert_eq!(c.lookup(b"a/\xff", &st(3)).map(|c| c.len()), Some(1));
    assert!(c.lookup(b"a/\xff", &st(4)).is_none());
    assert_eq!(c.entries.len(), 1);
}

#[test]
fn every_flipped_byte_is_caught() {
    let bytes = StatCache::encode(
        b"/ws",
        10,
        vec![
            (
                b"a".to_vec(),
                CachedFile {
                    stat: st(1),
                    chunks: vec![ObjectId::hash(b"1")],
                },
            ),
            (
                b"b".to_vec(),
                CachedFile {
                    stat: st(2),
                    chunks: vec![ObjectId::hash(b"2")],
                },
            ),
        ],
    );
    for i in 0..bytes.len() {
        let mut d = bytes.clone();
        d[i] ^= 0x10;
        let whole = Table::open(&d[..], Path::new("c")).and_then(|t| t.files().map(|_| ()));
        assert!(whole.is_err(), "flip at byte {i} went unnoticed");
    }
    assert!(
        Table::open(&bytes[..bytes.len() - 3], Path::new("c"))
            .and_then(|t| t.files())
            .is_err()
    );
}

/// The binary search reads records without verifying them (for speed);
/// a flipped byte anywhere still never yields a record other than the one
/// written: every lookup is the exact record, a miss, or an error.
#[test]
fn a_damaged_record_on_the_search_path_never_yields_a_wrong_record() {
    let key = ws_key(b"/ws");
    let paths: Vec<Vec<u8>> = (0..40u8)
        .map(|i| format!("d{}/f{i:02}", i % 4).into_bytes())
        .collect();
    let mut sorted = paths.clone();
    sorted.sort();
    let recs = sorted
        .iter()
        .map(|p| encode_record(&key, p, &file(p.len() as u64, p)))
        .collect();
    let meta = Meta {
        workspace: b"/ws".to_vec(),
        ..Meta::default()
    };
    let bytes = encode(&meta, recs);
    let mut misses = 0;
    for i in 0..bytes.len() {
        let mut d = bytes.clone();
        d[i] ^= 0x10;
        let Ok(t) = Table::open(&d[..], Path::new("c")) else {
            continue;
        };
        for p in &sorted {
            match t.get(p) {
                Ok(Some(r)) => assert_eq!(r, file(p.len() as u64, p), "flip at byte {i}"),
                Ok(None) => misses += 1,
                Err(_) => {}
            }
        }
    }
    // Some flips (in a path on the search path) do steer lookups to misses.
    assert!(misses > 0);
}

#[test]
fn records_are_bound_to_their_workspace() {
    // A record copied from another workspace's cache fails its checksum.
    let other = encode_record(&ws_key(b"/other"), b"a", &file(1, b"1"));
    let bytes = encode(
        &Meta {
            workspace: b"/ws".to_vec(),
            ..Meta::default()
        },
        vec![other],
    );
    let t = Table::open(&bytes[..], Path::new("c")).unwrap();
    assert!(t.get(b"a").is_err());
}
