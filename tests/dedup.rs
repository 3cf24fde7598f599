//! Deduplication across workspaces and inside large files.

mod common;

use std::fs;
use std::io::Write;

use common::*;

fn new_bytes(v: &serde_json::Value) -> u64 {
    v["stats"]["new_bytes"].as_u64().unwrap()
}

#[test]
fn second_workspace_with_same_files_adds_almost_nothing() {
    let env = Env::new();
    let (a, b) = (env.path("a"), env.path("b"));
    for ws in [&a, &b] {
        for i in 0..50 {
            write(
                &ws.join(format!("src/m{i}.rs")),
                &noise(8_000 + i as usize * 100, i),
            );
        }
        write(&ws.join("assets/big.bin"), &noise(2 << 20, 99));
    }
    let first = env.snapshot_json(&a, &[]);
    let store_after_a = du(&env.store());
    let second = env.snapshot_json(&b, &[]);
    assert!(new_bytes(&first) > 2_000_000);
    // No chunk is new: only the three directory trees (their mtimes differ).
    assert_eq!(second["stats"]["new_objects"].as_u64(), Some(3), "{second}");
    assert!(new_bytes(&second) < 8192, "{second}");
    assert!(du(&env.store()) - store_after_a < 16 * 1024);
}

#[test]
fn appending_1k_to_a_100m_file_stores_only_a_few_chunks() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("huge.bin"), &noise(100 << 20, 5));
    let first = env.snapshot_json(&ws, &[]);
    assert!(new_bytes(&first) >= 100 << 20);
    fs::OpenOptions::new()
        .append(true)
        .open(ws.join("huge.bin"))
        .unwrap()
        .write_all(&noise(1024, 6))
        .unwrap();
    let second = env.snapshot_json(&ws, &[]);
    let objects = second["stats"]["new_objects"].as_u64().unwrap();
    // The last chunk changes (and maybe one more cut point); plus two trees.
    assert!(objects <= 5, "{second}");
    assert!(new_bytes(&second) < 1 << 20, "{second}");
    let out = env.path("out");
    env.restore("latest", &out);
    assert_same_tree(&ws, &out);
}

#[test]
fn inserting_in_the_middle_of_a_large_file_stores_few_chunks() {
    let env = Env::new();
    let ws = env.path("ws");
    let mut data = noise(20 << 20, 8);
    write(&ws.join("f.bin"), &data);
    env.snapshot(&ws);
    data.splice(10 << 20..10 << 20, b"an inserted line\n".iter().copied());
    write(&ws.join("f.bin"), &data);
    let v = env.snapshot_json(&ws, &[]);
    assert!(v["stats"]["new_objects"].as_u64().unwrap() <= 5, "{v}");
}
