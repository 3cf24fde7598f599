//! store-format.md, checked against the code: each test reads real files
//! that moat wrote, or drives moat, the way the document says a reader
//! may, so a claim of the document that stops matching the code fails
//! here. Claims already tested elsewhere are named where they belong
//! instead of being tested twice.
//!
//! The readers below are written from the document alone (not from
//! `src/format`): that is what an independent reader of the store has.

mod common;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::*;
use moat::ObjectId;
use moat::format::compress::{self, Compression};
use moat::format::snapshot::Snapshot;
use moat::format::tree::{Content, Entry, Tree};
use proptest::prelude::*;

const DOC: &str = include_str!("../store-format.md");

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// Every file below `dir`, recursively.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// One object as "Pack files" describes a table entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Obj {
    id: [u8; 32],
    kind: u8,
    compression: u8,
    offset: u32,
    stored_len: u32,
    raw_len: u32,
}

/// A pack read as the document says: header, end magic, table length,
/// count, entries of 42 bytes; the objects fill offset 12 to the table.
fn doc_pack(data: &[u8]) -> Vec<Obj> {
    assert_eq!(&data[..8], b"MOATPACK");
    assert_eq!(le32(data, 8), 1, "pack version");
    assert_eq!(&data[data.len() - 8..], b"MOATPEND");
    let table_len = le32(data, data.len() - 12) as usize;
    let table_start = data.len() - 12 - table_len;
    let count = le32(data, table_start) as usize;
    assert_eq!(table_len, 4 + 42 * count, "table length = 4 + 42·count");
    let mut offset = 12u32;
    let mut out = Vec::new();
    for k in 0..count {
        let e = &data[table_start + 4 + 42 * k..][..42];
        let o = Obj {
            id: e[..32].try_into().unwrap(),
            kind: e[32],
            compression: e[33],
            offset,
            stored_len: le32(e, 34),
            raw_len: le32(e, 38),
        };
        offset += o.stored_len;
        out.push(o);
    }
    // Item 26: the table starts at 12 + the sum of stored_len.
    assert_eq!(
        table_start as u64,
        12 + out.iter().map(|o| u64::from(o.stored_len)).sum::<u64>(),
        "the table does not start at 12 + the sum of stored_len"
    );
    out
}

/// An index file (version 2) read as "Index files" says; returns its pack
/// ids and (id, record) entries, after checking the fan-out and the
/// checksum, which is also the file's name.
fn doc_index(name: &str, data: &[u8]) -> (Vec<[u8; 32]>, Vec<Obj>, Vec<u32>) {
    assert_eq!(&data[..8], b"MOATIDX\0");
    assert_eq!(le32(data, 8), 2, "index version written");
    let end = data.len() - 32;
    assert_eq!(blake3::hash(&data[..end]).as_bytes(), &data[end..], "checksum");
    assert_eq!(hex::encode(&data[end..]), name, "the index id is its checksum");
    let np = le32(data, 12) as usize;
    let mut at = 16;
    let packs: Vec<[u8; 32]> = (0..np)
        .map(|j| data[at + 32 * j..at + 32 * j + 32].try_into().unwrap())
        .collect();
    at += 32 * np;
    let n = le32(data, at) as usize;
    let b = data[at + 4];
    assert!(b <= 16 && data[at + 5..at + 8] == [0, 0, 0], "fan-out header");
    at += 8;
    let fan: Vec<u32> = (0..1usize << b).map(|i| le32(data, at + 4 * i)).collect();
    at += 4 << b;
    assert_eq!(at + n * 50, end, "sizes add up");
    let ids: Vec<[u8; 32]> = (0..n)
        .map(|i| data[at + 32 * i..at + 32 * i + 32].try_into().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] <= w[1]), "ids sorted");
    for (i, f) in fan.iter().enumerate() {
        let top = |id: &[u8; 32]| match b {
            0 => 0,
            b => (u32::from_be_bytes(id[..4].try_into().unwrap()) >> (32 - b)) as usize,
        };
        assert_eq!(
            *f as usize,
            ids.iter().filter(|id| top(id) <= i).count(),
            "fan-out {i}"
        );
    }
    let rec = at + 32 * n;
    let mut entries = Vec::new();
    let mut pack_of = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let r = &data[rec + 18 * i..][..18];
        pack_of.push(le32(r, 2));
        entries.push(Obj {
            id: *id,
            kind: r[0],
            compression: r[1],
            offset: le32(r, 6),
            stored_len: le32(r, 10),
            raw_len: le32(r, 14),
        });
    }
    (packs, entries, pack_of)
}

/// Every pack of the store: (pack id, its objects as its table says).
fn packs_of(store: &Path) -> Vec<([u8; 32], Vec<Obj>)> {
    files_below(&store.join("packs"))
        .into_iter()
        .map(|p| {
            let data = fs::read(&p).unwrap();
            let name = p.file_name().unwrap().to_str().unwrap();
            let id = *blake3::hash(&data).as_bytes();
            assert_eq!(
                format!("{}.pack", hex::encode(id)),
                name,
                "pack id = blake3 of the file"
            );
            assert_eq!(
                p.parent().unwrap().file_name().unwrap().to_str().unwrap(),
                &name[..2],
                "fan-out dir"
            );
            (id, doc_pack(&data))
        })
        .collect()
}

/// Every index entry of the store, with the pack it names.
fn index_entries(store: &Path) -> Vec<([u8; 32], Obj)> {
    let mut out = Vec::new();
    for p in files_below(&store.join("index")) {
        let name = p.file_name().unwrap().to_str().unwrap();
        let (packs, entries, pack_of) = doc_index(name.strip_suffix(".idx").unwrap(), &fs::read(&p).unwrap());
        for (e, j) in entries.into_iter().zip(pack_of) {
            out.push((packs[j as usize], e));
        }
    }
    out
}

/// Item 26 ("Pack files"): every pack moat writes has its table at
/// 12 + the sum of `stored_len`, its objects back to back in table order
/// from offset 12, each decoding to its id; the index's records match
/// the tables.
#[test]
fn packs_are_laid_out_as_the_document_says() {
    let env = Env::new();
    let ws = env.path("ws");
    rich_tree(&ws);
    write(&ws.join("big/more.bin"), &noise(300 * 1024, 3));
    env.snapshot(&ws);
    let packs = packs_of(&env.store());
    assert!(packs.len() >= 2, "a chunk pack and a tree pack");
    for p in files_below(&env.store().join("packs")) {
        let data = fs::read(&p).unwrap();
        for o in doc_pack(&data) {
            let stored = &data[o.offset as usize..][..o.stored_len as usize];
            let c = match o.compression {
                0 => Compression::None,
                1 => Compression::Zstd,
                c => panic!("compression {c}"),
            };
            compress::decode(&ObjectId(o.id), c, o.raw_len, stored).expect("the object decodes to its id");
        }
    }
    // Chunks and trees go to separate packs.
    for (_, objs) in &packs {
        assert!(objs.windows(2).all(|w| w[0].kind == w[1].kind));
    }
    for (pack, e) in index_entries(&env.store()) {
        let (_, objs) = packs
            .iter()
            .find(|(id, _)| *id == pack)
            .expect("the index names a pack");
        assert!(objs.contains(&e), "the index entry matches its pack's table");
    }
}

/// Item 28 ("Index files"): after gc, an index may omit dead objects
/// that still sit in a pack it kept whole; every entry matches its pack's
/// table, and `check --read-data` accepts the store.
#[test]
fn after_gc_an_index_may_omit_dead_objects_of_a_kept_pack() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("big.bin"), &noise(900 * 1024, 11));
    write(&ws.join("small.txt"), b"only in the first snapshot\n");
    env.snapshot(&ws);
    fs::remove_file(ws.join("small.txt")).unwrap();
    env.snapshot(&ws);
    let small = ObjectId::hash(b"only in the first snapshot\n").0;
    let ws_s = ws.to_str().unwrap();
    env.ok(&["gc", ws_s, "--keep-last", "1", "--delete-initial"]);
    let packs = packs_of(&env.store());
    let entries = index_entries(&env.store());
    let holder = packs
        .iter()
        .find(|(_, objs)| objs.iter().any(|o| o.id == small))
        .expect("the pack holding the dead chunk is kept whole (over 75% live)");
    assert!(
        !entries.iter().any(|(_, e)| e.id == small),
        "the dead chunk is still indexed"
    );
    for (pack, e) in &entries {
        let (_, objs) = packs
            .iter()
            .find(|(id, _)| id == pack)
            .expect("indexed pack exists");
        assert!(objs.contains(e), "index entry differs from its pack's table");
    }
    assert!(
        entries.iter().any(|(p, _)| *p == holder.0),
        "the kept pack is indexed"
    );
    env.ok(&["check", "--read-data"]);
    let out = env.path("out");
    env.restore("latest", &out);
    assert_eq!(fs::read(out.join("big.bin")).unwrap(), noise(900 * 1024, 11));
}

/// Rewrites the snapshot file `id` with `edit` applied; returns the new id.
fn reforge(store: &Path, id: &str, edit: impl FnOnce(&mut Snapshot)) -> String {
    let path = store.join("snapshots").join(id);
    let mut s = Snapshot::decode(&fs::read(&path).unwrap(), &path).unwrap();
    edit(&mut s);
    let (new, bytes) = s.encode();
    fs::write(store.join("snapshots").join(new.to_hex()), bytes).unwrap();
    new.to_hex()
}

/// Item 27 ("Snapshot files"): `latest` and `latest~N` are the newest
/// snapshots of the current directory's workspace when it has any, else
/// of the store, ordered by `(time_ns, id)` with the id as bytes; N is
/// decimal digits. (`tests/scope.rs` covers a subdirectory of a
/// workspace; `tests/cli_output.rs` huge N.)
#[test]
fn latest_is_the_newest_of_this_workspace_else_of_the_store_by_time_then_id() {
    let env = Env::new();
    let (a, b) = (env.path("a"), env.path("b"));
    write(&a.join("f"), b"a");
    write(&b.join("f"), b"b");
    let a0 = env.snapshot(&a);
    let b0 = env.snapshot(&b);
    let store = env.store();
    // Three snapshots of a at one instant, and b's newest after all of them.
    let t = 2_000_000_000_000_000_000i64;
    let mut same: Vec<String> = (0..3)
        .map(|k| {
            reforge(&store, &a0, |s| {
                s.time_ns = t;
                s.message = format!("same time {k}");
            })
        })
        .collect();
    same.sort(); // lowercase hex sorts as the bytes do
    let b_new = reforge(&store, &b0, |s| s.time_ns = t + 1);
    let show = |dir: &Path, spec: &str| -> Result<String, String> {
        let out = env
            .cmd()
            .current_dir(dir)
            .args(["show", spec, "--json"])
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        Ok(v["id"].as_str().unwrap().to_string())
    };
    // In a: a's snapshots only, the equal times ordered by id.
    assert_eq!(show(&a, "latest").unwrap(), same[2]);
    assert_eq!(show(&a, "latest~0").unwrap(), same[2]);
    assert_eq!(show(&a, "latest~1").unwrap(), same[1]);
    assert_eq!(show(&a, "latest~2").unwrap(), same[0]);
    assert_eq!(show(&a, "latest~3").unwrap(), a0);
    let err = show(&a, "latest~4").unwrap_err();
    assert!(err.contains("no snapshot matches"), "not the oldest: {err}");
    // In b: b's.
    assert_eq!(show(&b, "latest").unwrap(), b_new);
    assert_eq!(show(&b, "latest~1").unwrap(), b0);
    // Outside any workspace with snapshots: the whole store's order.
    let elsewhere = env.path("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    assert_eq!(show(&elsewhere, "latest").unwrap(), b_new);
    assert_eq!(show(&elsewhere, "latest~1").unwrap(), same[2]);
    // N is decimal digits: no sign, nothing else.
    for bad in ["latest~+1", "latest~-1", "latest~", "latest~1x", "latest1"] {
        assert!(show(&a, bad).is_err(), "{bad} was accepted");
    }
}

/// Item 30 ("Snapshot files"): what each `stats` field counts, checked
/// against the workspace and the objects the capture added to the packs.
#[test]
fn snapshot_stats_count_what_the_document_says() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("a.txt"), b"abc");
    write(&ws.join("sub/b.txt"), b"defgh");
    fs::create_dir_all(ws.join("sub/empty")).unwrap();
    std::os::unix::fs::symlink("a.txt", ws.join("link")).unwrap();
    mkfifo(&ws.join("sub/fifo"));
    let v = env.snapshot_json(&ws, &[]);
    let st = &v["stats"];
    let n = |k: &str| st[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
    assert_eq!(n("files"), 2, "regular files");
    assert_eq!(n("dirs"), 2, "directories, not the root");
    assert_eq!(n("symlinks"), 1);
    assert_eq!(n("bytes"), 8, "the sum of the files' sizes");
    assert_eq!(n("files_read"), 2, "no stat cache yet: every file read");
    assert_eq!(n("skipped"), v["skipped"].as_array().unwrap().len() as u64, "{v}");
    assert_eq!(n("skipped"), 1, "the FIFO is counted: {v}");
    // New objects: two chunks and three trees (root, sub, sub/empty),
    // and their stored bytes as the pack tables give them.
    let objs: Vec<Obj> = packs_of(&env.store()).into_iter().flat_map(|(_, o)| o).collect();
    assert_eq!(n("new_objects"), 5);
    assert_eq!(n("new_objects"), objs.len() as u64);
    assert_eq!(
        n("new_bytes"),
        objs.iter().map(|o| u64::from(o.stored_len)).sum::<u64>()
    );
    // A new file of stored content: only the new root tree is new; the
    // chunk already stored is not counted.
    write(&ws.join("c.txt"), b"abc");
    let v = env.snapshot_json(&ws, &[]);
    assert_eq!(v["stats"]["new_objects"].as_u64(), Some(1), "{v}");
}

/// Sets the mtime of `p` itself (a symlink is not followed).
fn set_mtime(p: &Path, sec: i64, nsec: i64) {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let t = libc::timespec {
        tv_sec: sec as libc::time_t,
        tv_nsec: nsec as _,
    };
    // SAFETY: a valid path and two timespecs, as utimensat(2) asks.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            [t, t].as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(rc, 0, "utimensat {}", p.display());
}

fn mtime(p: &Path) -> (i64, i64) {
    let m = fs::symlink_metadata(p).unwrap();
    (m.mtime(), m.mtime_nsec())
}

/// Item 29 ("Tree objects"): restore sets a symlink's mtime on the link
/// itself (its target keeps its own) and a directory's mode and mtime after
/// its contents are written.
#[test]
fn restore_sets_link_mtimes_on_the_link_and_directory_times_after_contents() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("d/target.txt"), b"target");
    write(&ws.join("d/e/inner.txt"), b"inner");
    std::os::unix::fs::symlink("target.txt", ws.join("d/link")).unwrap();
    set_mtime(&ws.join("d/target.txt"), 1_500_000_000, 111);
    set_mtime(&ws.join("d/link"), 1_400_000_000, 222_222_222);
    set_mtime(&ws.join("d/e/inner.txt"), 1_300_000_000, 0);
    set_mtime(&ws.join("d/e"), 1_200_000_000, 333_333_333);
    fs::set_permissions(ws.join("d/e"), fs::Permissions::from_mode(0o555)).unwrap();
    set_mtime(&ws.join("d"), 1_100_000_000, 444_444_444);
    let id = env.snapshot(&ws);
    let out = env.path("out");
    env.restore(&id, &out);
    assert_eq!(
        mtime(&out.join("d/link")),
        (1_400_000_000, 222_222_222),
        "the link's own mtime"
    );
    assert_eq!(
        mtime(&out.join("d/target.txt")),
        (1_500_000_000, 111),
        "the target's own mtime"
    );
    assert_eq!(
        mtime(&out.join("d/e")),
        (1_200_000_000, 333_333_333),
        "set after its contents"
    );
    assert_eq!(
        mtime(&out.join("d")),
        (1_100_000_000, 444_444_444),
        "set after its contents"
    );
    let mode = fs::symlink_metadata(out.join("d/e")).unwrap().mode() & 0o7777;
    assert_eq!(
        mode, 0o555,
        "a read-only directory's mode is set after its contents"
    );
    assert_eq!(fs::read(out.join("d/e/inner.txt")).unwrap(), b"inner");
    for d in [&ws, &out] {
        fs::set_permissions(d.join("d/e"), fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// "config": a config outside fastcdc's limits (or with odd sizes, which
/// fastcdc asserts against) is refused with a clear error, never a panic.
#[test]
fn a_config_outside_the_chunkers_limits_is_refused_clearly() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("f"), &noise(64 * 1024, 5));
    env.snapshot(&ws);
    let path = env.store().join("config");
    let good = moat::format::config::StoreConfig::decode(&fs::read(&path).unwrap(), &path).unwrap();
    for (min, avg, max) in [(64, 256, 512), (64, 256, 1023), (65, 256, 1024)] {
        let bad = moat::format::config::StoreConfig {
            chunk_min: min,
            chunk_avg: avg,
            chunk_max: max,
            ..good.clone()
        };
        fs::write(&path, bad.encode()).unwrap();
        write(&ws.join("f"), &noise(64 * 1024, u64::from(max)));
        let err = env.fails(&["snapshot", ws.to_str().unwrap()]);
        assert!(
            err.contains("config") && err.contains("chunk sizes"),
            "{min}/{avg}/{max}: {err}"
        );
    }
}

/// "Ids": an index file is named by its checksum; one under another name
/// is refused (reported, its objects unknown), as a snapshot file under
/// another name is.
#[test]
fn an_index_file_under_another_name_is_refused() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("f"), b"content");
    let id = env.snapshot(&ws);
    let idx = files_below(&env.store().join("index"));
    assert_eq!(idx.len(), 1);
    let other = env.store().join("index").join(format!("{}.idx", "0".repeat(64)));
    fs::rename(&idx[0], &other).unwrap();
    let err = env.fails(&["restore", &id, "--to", env.path("out").to_str().unwrap()]);
    assert!(err.contains("not in the store index"), "{err}");
    let err = env.fails(&["check"]);
    assert!(
        err.contains("does not match its name") || err.contains("0000000000"),
        "{err}"
    );
    fs::rename(&other, &idx[0]).unwrap();
    env.restore(&id, &env.path("out"));
}

#[path = "format_doc/tree.rs"]
mod tree_doc;
