//! Every decoder of bytes moat reads from a store or a workspace, driven by
//! proptest with arbitrary bytes and with mutations of valid encodings, so
//! each one runs on every `cargo test` (the fuzz targets in `fuzz/` go
//! deeper where cargo-fuzz is available; `.ci/run` runs both). A decoder
//! may refuse its input; it may not panic, hang or allocate without bound,
//! and what it accepts must survive a round trip.

use std::path::Path;

use moat::ObjectId;
use moat::format::compress::{self, Compression};
use moat::format::config::StoreConfig;
use moat::format::header;
use moat::format::index::IndexFile;
use moat::format::pack::{self, FinishedPack, ObjectKind, PackEntry};
use moat::format::snapshot::Snapshot;
use moat::format::statcache::{self, CachedFile, FileStat, Meta, Payload, Record, StatCache, Table, Totals};
use moat::format::statdelta;
use moat::format::tree::{Content, Entry, Tree};
use moat::format::watch_token::Token;
use moat::store::backend::FileKind;
use moat::store::backend::layout;
use moat::store::backend::remote::S3Url;
use moat::worktree::config::{self, WorkspaceConfig};
use moat::worktree::watch::socket::{self, Request};
use moat::worktree::watch::{Answer, Ignoring, Since};
use proptest::prelude::*;

const P: &str = "proptest";

fn valid_pack() -> Vec<u8> {
    let objects: [&[u8]; 3] = [b"hello", &[b'x'; 3000], b"fn main() {}\n"];
    let mut out = Vec::new();
    header::write(&mut out, pack::MAGIC, pack::VERSION);
    let mut entries = Vec::new();
    for raw in objects {
        let (compression, stored) = compress::encode(raw, 3);
        entries.push(PackEntry {
            id: ObjectId::hash(raw),
            kind: ObjectKind::Chunk,
            compression,
            offset: out.len() as u32,
            stored_len: stored.len() as u32,
            raw_len: raw.len() as u32,
        });
        out.extend(stored);
    }
    let table = pack::encode_table(&entries);
    out.extend(&table);
    out.extend((table.len() as u32).to_le_bytes());
    out.extend(pack::END_MAGIC);
    out
}

fn valid_index() -> Vec<u8> {
    let data = valid_pack();
    let entries = pack::parse(&data, Path::new(P)).expect("a valid pack");
    let p = FinishedPack {
        id: ObjectId::hash(&data),
        entries,
        bytes: data.len() as u64,
    };
    IndexFile::from_packs(&[p]).encode().1
}

fn valid_tree() -> Vec<u8> {
    // Sizes a capture writes: the file's length, the link target's, 0.
    let entry = |name: &[u8], content: Content| Entry {
        name: name.to_vec(),
        mode: 0o644,
        mtime_ns: 1_700_000_000_123_456_789,
        size: match &content {
            Content::File(_) => 5,
            Content::Symlink(t) => t.len() as u64,
            Content::Dir(_) => 0,
        },
        content,
    };
    let mut t = Tree {
        entries: vec![
            entry(b"a.txt", Content::File(vec![ObjectId::hash(b"hello")])),
            entry(b"dir", Content::Dir(ObjectId::hash(b"t"))),
            entry(b"link\xff", Content::Symlink(b"../a.txt".to_vec())),
        ],
    };
    t.sort();
    t.encode()
}

fn valid_snapshot() -> Vec<u8> {
    use moat::format::snapshot::{GitInfo, Scan, Stats, Trigger};
    Snapshot {
        root: ObjectId::hash(b"root"),
        parent: Some(ObjectId::hash(b"parent")),
        workspace: b"/home/me/ws".to_vec(),
        host: "host".into(),
        time_ns: 1_700_000_000_000_000_000,
        trigger: Trigger::GitCommit,
        message: "message".into(),
        git: Some(GitInfo {
            commit: "a".repeat(40),
            branch: Some("main".into()),
        }),
        run_id: Some("run".into()),
        stats: Stats {
            files: 3,
            bytes: 300,
            ..Stats::default()
        },
        skipped: vec![serde_bytes::ByteBuf::from(b"sock".to_vec())],
        exact: true,
        scan: Scan::Walked,
    }
    .encode()
    .1
}

fn valid_statcache() -> Vec<u8> {
    let stat = FileStat {
        dev: 1,
        ino: 2,
        mode: 0o100644,
        size: 5,
        mtime_ns: 3,
        ctime_ns: 4,
    };
    let f = CachedFile {
        stat,
        chunks: vec![ObjectId::hash(b"hello")],
    };
    StatCache::encode(b"/ws", 10, vec![(b"a.txt".to_vec(), f)])
}

/// A delta on top of a cache: a directory record flagged `LISTED`, a file
/// and a symlink below it.
fn valid_statdelta() -> Vec<u8> {
    let ws = b"/ws";
    let key = statcache::ws_key(ws);
    let stat = FileStat {
        dev: 1,
        ino: 2,
        mode: 0o100644,
        size: 5,
        mtime_ns: 3,
        ctime_ns: 4,
    };
    let dir = Record {
        stat,
        multi_link: false,
        payload: Payload::Dir {
            tree: ObjectId::hash(b"t"),
            entries: 2,
            totals: Totals {
                files: 1,
                symlinks: 1,
                bytes: 5,
                ..Totals::default()
            },
        },
    };
    let file = Record {
        stat,
        multi_link: true,
        payload: Payload::File(vec![ObjectId::hash(b"hello")]),
    };
    let link = Record {
        stat,
        multi_link: false,
        payload: Payload::Symlink,
    };
    let records = vec![
        statcache::with_listed(&key, &statcache::encode_record(&key, b"d", &dir), true),
        statcache::encode_record(&key, b"d/f", &file),
        statcache::encode_record(&key, b"d/l", &link),
    ];
    let meta = Meta {
        workspace: ws.to_vec(),
        taken_ns: 10,
        walk_key: [1; 32],
        nonce: [2; 16],
        excludes: vec![(b".git/info/exclude".to_vec(), stat)],
    };
    statdelta::encode(&[7; 32], &meta, records)
}

fn valid_token() -> Vec<u8> {
    Token {
        cache_check: [3; 32],
        epoch: [4; 16],
        seq: 99,
    }
    .encode()
}

fn valid_answer() -> Vec<u8> {
    let next = Since {
        epoch: [5; 16],
        seq: 7,
    };
    socket::write_answer(&Answer::Vouched {
        dirty: vec![b"src".to_vec(), b"a/b.rs".to_vec()],
        next,
        ignoring: Ignoring {
            ignore_files: true,
            excludes: vec!["target/".into()],
        },
    })
}

/// Where a stat cache's header check lies, read as store-format.md says
/// (so a test can make it match and reach the tables behind it).
fn header_check_at(c: &[u8]) -> Option<usize> {
    let u32_at = |at: usize| Some(u32::from_le_bytes(c.get(at..at + 4)?.try_into().ok()?) as usize);
    let mut at: usize = 12 + 8 + 32 + 16;
    at = at.checked_add(4 + u32_at(at)?)?;
    let n = u32_at(at)?;
    at += 4;
    for _ in 0..n.min(1 << 16) {
        at = at.checked_add(4 + u32_at(at)? + 44)?;
    }
    let count = u64::from_le_bytes(c.get(at..at + 8)?.try_into().ok()?) as usize;
    at = at.checked_add(8 + 256 * 8)?.checked_add(count.checked_mul(8)?)?;
    (at + 32 <= c.len()).then_some(at)
}

/// A delta's embedded cache read as a capture reads it: the header, then
/// lookups of every record's path, its ancestors and what lies below.
fn exercise_delta(data: &[u8]) {
    let Ok((_, at)) = statdelta::split(data, Path::new(P)) else {
        return;
    };
    let Ok(t) = Table::open(&data[at..], Path::new(P)) else {
        return;
    };
    let _ = t.get(b"");
    let _ = t.below(b"");
    for i in 0..t.len().min(64) {
        if let Ok(raw) = t.raw(i) {
            let p = statcache::record_path(raw).to_vec();
            let _ = statcache::is_listed(raw);
            let _ = t.get(&p);
            let _ = t.find(&p);
            let _ = t.below(&p);
            for (dir, _) in statdelta::ancestors(&p) {
                let _ = t.get(dir);
            }
        }
    }
    let _ = t.files();
}

const KINDS: [FileKind; 7] = [
    FileKind::Pack,
    FileKind::Index,
    FileKind::Snapshot,
    FileKind::Pin,
    FileKind::Cache,
    FileKind::CacheDelta,
    FileKind::WatchToken,
];

/// Listed names: store files among them map to one path and back.
fn check_name(text: &str) -> Result<(), TestCaseError> {
    for kind in KINDS {
        if let Some(name) = layout::name_of(kind, text) {
            let p = layout::path(kind, name).expect("an accepted name has a path");
            prop_assert_eq!(p.file_name().and_then(|f| f.to_str()), Some(text));
            prop_assert!(p.components().count() <= 3);
            // Only the lowercase hex moat writes names a store file.
            prop_assert!(!name.bytes().any(|b| b.is_ascii_uppercase()), "{}", name);
        }
    }
    if let Some(Ok(u)) = S3Url::parse(text) {
        prop_assert!(!u.prefix.starts_with('/') && !u.prefix.ends_with('/'));
    }
    Ok(())
}

const YAML: &str = "snapshots:\n  disabled: false\n  triggers:\n    idle_threshold_seconds: 30\n  \
                    exclude:\n    ignore_gitignore: false\n    additional: ['*.log', \"tmp/\"]\n  \
                    retention: {max_count: 3, delete_initial: true}\n  max_new_bytes: 1000\n\
                    tracing:\n  disable_exec: false # trailing comment\n";

/// `base` with a few bytes flipped, inserted or removed, or cut short.
fn mutated(base: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((0u8..4, any::<usize>(), any::<u8>()), 1..6).prop_map(move |edits| {
        let mut d = base.clone();
        for (op, at, b) in edits {
            let i = if d.is_empty() { 0 } else { at % d.len() };
            match op {
                0 if !d.is_empty() => d[i] ^= b | 1,
                1 => d.insert(i, b),
                2 if !d.is_empty() => {
                    d.remove(i);
                }
                _ => d.truncate(i),
            }
        }
        d
    })
}

/// Arbitrary bytes, or a mutation of a valid encoding (which gets past the
/// magic and checksums that stop nearly all arbitrary bytes).
fn input(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![prop::collection::vec(any::<u8>(), 0..1024), mutated(valid)]
}

/// YAML-ish text: mostly the characters that make structure.
fn yaml_text() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "[",
        "]",
        "{",
        "}",
        ":",
        ": ",
        "- ",
        "? ",
        ",",
        "'",
        "\"",
        "#",
        " ",
        "\n",
        "  ",
        "a",
        "snapshots",
        "exclude",
        "additional",
        "&x ",
        "*x",
        "!t ",
        "|",
        ">",
        "\\",
        "0",
        "-1",
        "99999999999999999999",
    ]);
    prop_oneof![
        prop::collection::vec(pieces, 0..300).prop_map(|p| p.concat()),
        mutated(YAML.as_bytes().to_vec()).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

fn check_pack(data: &[u8]) {
    if let Ok(entries) = pack::parse(data, Path::new(P)) {
        for e in &entries {
            let stored = &data[e.offset as usize..][..e.stored_len as usize];
            let _ = compress::decode(&e.id, e.compression, e.raw_len, stored);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn pack_and_compress(data in input(valid_pack())) {
        check_pack(&data);
    }

    #[test]
    fn index(data in input(valid_index())) {
        let _ = IndexFile::decode(&data, Path::new(P));
        if data.len() >= 32 {
            // Past the checksum, to reach the tables.
            let mut fixed = data.clone();
            let n = fixed.len() - 32;
            let sum = ObjectId::hash(&fixed[..n]);
            fixed[n..].copy_from_slice(&sum.0);
            if let Ok(f) = IndexFile::decode(&fixed, Path::new(P)) {
                prop_assert_eq!(IndexFile::decode(&f.encode().1, Path::new(P)).ok(), Some(f));
            }
        }
    }

    #[test]
    fn tree(data in input(valid_tree())) {
        if let Ok(t) = Tree::decode(&data) {
            // Only the canonical encoding is accepted.
            prop_assert_eq!(t.encode(), data);
        }
    }

    #[test]
    fn snapshot(data in input(valid_snapshot())) {
        if let Ok(s) = Snapshot::decode(&data, Path::new(P)) {
            prop_assert_eq!(Snapshot::decode(&s.encode().1, Path::new(P)).ok(), Some(s));
        }
    }

    #[test]
    fn statcache(data in input(valid_statcache())) {
        let _ = StatCache::decode(&data, Path::new(P));
    }

    #[test]
    fn store_config(data in input(StoreConfig::new_default().encode())) {
        if let Ok(c) = StoreConfig::decode(&data, Path::new(P)) {
            prop_assert_eq!(StoreConfig::decode(&c.encode(), Path::new(P)).ok(), Some(c));
        }
    }

    #[test]
    fn compress_frames(raw in prop::collection::vec(any::<u8>(), 0..4096),
                       stored in input(compress::encode(&[b'z'; 5000], 1).1),
                       zstd in any::<bool>(), raw_len in prop_oneof![Just(5000u32), any::<u32>()]) {
        let comp = if zstd { Compression::Zstd } else { Compression::None };
        let _ = compress::decode(&ObjectId::hash(&raw), comp, raw_len, &stored);
        let (c, enc) = compress::encode(&raw, 3);
        let back = compress::decode(&ObjectId::hash(&raw), c, raw.len() as u32, &enc);
        prop_assert_eq!(back.ok(), Some(raw));
    }

    #[test]
    fn statdelta(data in input(valid_statdelta())) {
        exercise_delta(&data);
        // Past the embedded header checksum, to reach the tables.
        if let Some(h) = data.get(44..).and_then(header_check_at) {
            let mut fixed = data.clone();
            let sum = ObjectId::hash(&data[44..44 + h]);
            fixed[44 + h..44 + h + 32].copy_from_slice(&sum.0);
            exercise_delta(&fixed);
        }
    }

    #[test]
    fn watch_token(data in input(valid_token())) {
        if let Ok(t) = Token::decode(&data, Path::new(P)) {
            prop_assert_eq!(t.encode(), data);
        }
    }

    #[test]
    fn watch_socket(data in input(valid_answer())) {
        if let Ok(req) = socket::read_request(&mut &data[..]) {
            prop_assert_eq!(socket::read_request(&mut &socket::write_request(req)[..]).ok(), Some(req));
        }
        if let Ok(a) = socket::read_answer(&mut &data[..]) {
            prop_assert_eq!(socket::read_answer(&mut &socket::write_answer(&a)[..]).ok(), Some(a));
        }
    }

    #[test]
    fn store_names(text in prop_oneof![
        ("[0-9a-fA-F]{30,34}|[0-9a-f]{62,66}|[0-9a-fA-F]{64}", prop::sample::select(
            vec!["", ".pack", ".idx", ".stat", ".delta", ".watch", ".pack.tmp", "/x"]
        )).prop_map(|(h, s)| format!("{h}{s}")),
        "s3://[a-z0-9./-]{0,80}",
        any::<String>(),
    ]) {
        check_name(&text)?;
    }

    #[test]
    fn moat_yaml(text in yaml_text()) {
        let _ = config::too_deep(&text);
        let _ = WorkspaceConfig::parse(&text, Path::new("moat.yaml"));
    }
}

/// With `MOAT_FUZZ_SEEDS=DIR` (`.ci/run` sets it), these valid encodings
/// are also written as `DIR/<fuzz target>/valid`, the seeds of the fuzz
/// run that follows: they always match the current format.
fn write_seeds() {
    let Some(dir) = std::env::var_os("MOAT_FUZZ_SEEDS") else {
        return;
    };
    let (frame_kind, frame) = compress::encode(&[b'z'; 5000], 1);
    let compress_seed = [&[frame_kind as u8][..], &5000u32.to_le_bytes(), &frame].concat();
    let id = ObjectId::hash(b"seed").to_hex();
    let seeds: [(&str, Vec<u8>); 12] = [
        ("pack", valid_pack()),
        ("index", valid_index()),
        ("tree", valid_tree()),
        ("snapshot", valid_snapshot()),
        ("statcache", valid_statcache()),
        ("config", StoreConfig::new_default().encode()),
        ("compress", compress_seed),
        ("moat_yaml", YAML.as_bytes().to_vec()),
        ("statdelta", valid_statdelta()),
        ("watch_token", valid_token()),
        ("watch_socket", valid_answer()),
        ("store_names", format!("{id}.pack").into_bytes()),
    ];
    for (target, bytes) in seeds {
        let d = Path::new(&dir).join(target);
        std::fs::create_dir_all(&d).expect("create the seed dir");
        std::fs::write(d.join("valid"), bytes).expect("write a seed");
    }
}

#[test]
fn the_valid_encodings_decode() {
    write_seeds();
    check_pack(&valid_pack());
    assert!(pack::parse(&valid_pack(), Path::new(P)).is_ok());
    assert!(IndexFile::decode(&valid_index(), Path::new(P)).is_ok());
    assert!(Tree::decode(&valid_tree()).is_ok());
    assert!(Snapshot::decode(&valid_snapshot(), Path::new(P)).is_ok());
    assert!(StatCache::decode(&valid_statcache(), Path::new(P)).is_ok());
    assert!(WorkspaceConfig::parse(YAML, Path::new("moat.yaml")).is_ok());
    let d = valid_statdelta();
    let (base, at) = statdelta::split(&d, Path::new(P)).expect("a valid delta");
    assert_eq!(base, [7; 32]);
    let t = Table::open(&d[at..], Path::new(P)).expect("its embedded cache");
    assert_eq!(
        header_check_at(&d[at..]),
        Some(d.len() - at - 32 - (0..3).map(|i| t.raw(i).unwrap().len()).sum::<usize>())
    );
    assert!(t.raw(0).is_ok_and(statcache::is_listed));
    assert!(matches!(
        t.get(b"d/l"),
        Ok(Some(Record {
            payload: Payload::Symlink,
            ..
        }))
    ));
    assert!(Token::decode(&valid_token(), Path::new(P)).is_ok());
    assert!(matches!(
        socket::read_answer(&mut &valid_answer()[..]),
        Ok(Answer::Vouched { .. })
    ));
    let begin = socket::write_request(Request::Begin(None));
    assert_eq!(
        socket::read_request(&mut &begin[..]).ok(),
        Some(Request::Begin(None))
    );
    let hex = ObjectId::hash(b"x").to_hex();
    assert_eq!(
        layout::name_of(FileKind::Pack, &format!("{hex}.pack")),
        Some(hex.as_str())
    );
}
