//! `moat gc`: retention, reclaiming space, crash safety and concurrency.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::*;

fn ids(env: &Env, ws: &Path) -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["snapshots", ws.to_str().unwrap(), "--json"])).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// Ten snapshots, each adding 300 KB of unique data and removing the
/// previous one's, with the expected listing of each.
fn history(env: &Env, ws: &Path) -> Vec<(String, Vec<String>)> {
    write(&ws.join("stable/lib.rs"), &noise(100_000, 1));
    let mut out = Vec::new();
    for i in 0..10u64 {
        let _ = std::fs::remove_file(ws.join(format!("gen/{}.bin", i.wrapping_sub(1))));
        write(&ws.join(format!("gen/{i}.bin")), &noise(300_000, 100 + i));
        out.push((env.snapshot(ws), listing(ws)));
    }
    out
}

#[test]
fn keep_last_frees_space_and_kept_snapshots_restore() {
    let env = Env::new();
    let ws = env.path("ws");
    let hist = history(&env, &ws);
    env.ok(&["snapshots", "pin", &hist[4].0]);
    let before = du(&env.store());
    let dry = env.ok(&["gc", ws.to_str().unwrap(), "--keep-last", "2", "--dry-run"]);
    assert!(
        dry.contains("would remove snapshot") && dry.contains("6 snapshots would be removed"),
        "{dry}"
    );
    assert_eq!(du(&env.store()), before, "dry run changed the store");
    let out = env.ok(&["gc", ws.to_str().unwrap(), "--keep-last", "2"]);
    assert!(out.contains("6 snapshots removed, 4 kept"), "{out}");
    let after = du(&env.store());
    assert!(
        after + 1_500_000 < before,
        "store did not shrink enough: {before} -> {after}"
    );
    // Kept: the first (initial), the pinned one, the last two.
    let kept: Vec<&(String, Vec<String>)> = [0, 4, 8, 9].iter().map(|&i| &hist[i]).collect();
    assert_eq!(
        ids(&env, &ws),
        kept.iter().map(|k| k.0.clone()).collect::<Vec<_>>()
    );
    for (id, want) in kept {
        env.assert_restores(id, want);
    }
    env.ok(&["check", "--read-data"]);
    // A second gc has nothing left to do.
    let again = env.ok(&["gc", ws.to_str().unwrap(), "--keep-last", "2"]);
    assert!(
        again.contains("0 snapshots removed") && again.contains("freed 0 B"),
        "{again}"
    );
}

#[test]
fn delete_single_snapshots_then_gc() {
    let env = Env::new();
    let ws = env.path("ws");
    let hist = history(&env, &ws);
    env.ok(&["snapshots", "delete", &hist[1].0[..8], &hist[2].0]);
    let err = env.fails(&["snapshots", "delete", "ffffffffff"]);
    assert!(err.contains("no snapshot matches"), "{err}");
    let before = du(&env.store());
    env.ok(&["gc", ws.to_str().unwrap()]);
    assert!(du(&env.store()) < before);
    assert_eq!(ids(&env, &ws).len(), 8);
    for (id, want) in hist.iter().filter(|(id, _)| *id != hist[1].0 && *id != hist[2].0) {
        env.assert_restores(id, want);
    }
}

#[test]
fn killed_gc_leaves_a_checkable_store_and_the_next_gc_finishes() {
    for point in [
        "gc-after-forget",
        "gc-after-repack",
        "gc-after-index",
        "gc-after-index-delete",
        "gc-mid-pack-delete",
    ] {
        let env = Env::new();
        let ws = env.path("ws");
        let hist = history(&env, &ws);
        let out = env
            .cmd()
            .args(["gc", ws.to_str().unwrap(), "--keep-last", "3"])
            .env("MOAT_FAILPOINT", point)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{point}: gc should have been killed");
        env.ok(&["check", "--read-data"]);
        for (id, want) in &hist[7..] {
            env.assert_restores(id, want);
        }
        env.ok(&["gc", ws.to_str().unwrap(), "--keep-last", "3"]);
        let check = env.cmd().args(["check", "--read-data"]).output().unwrap();
        assert!(check.status.success(), "{point}: {}", show(&check));
        assert!(
            check.stderr.is_empty(),
            "{point}: leftovers after the second gc: {}",
            show(&check)
        );
        let third = env.ok(&["gc", ws.to_str().unwrap(), "--keep-last", "3"]);
        assert!(third.contains("freed 0 B"), "{point}: {third}");
        assert_eq!(ids(&env, &ws).len(), 4, "{point}");
    }
}

#[test]
fn gc_in_a_loop_while_snapshots_are_taken() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("base.txt"), b"base");
    env.snapshot(&ws);
    let done = std::sync::atomic::AtomicBool::new(false);
    let written: HashMap<String, Vec<String>> = std::thread::scope(|s| {
        let gc = s.spawn(|| {
            let mut runs = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) || runs == 0 {
                let out = env
                    .cmd()
                    .args(["gc", "--all", "--keep-last", "1", "--min-age", "0s"])
                    .output()
                    .unwrap();
                if !out.status.success() {
                    done.store(true, std::sync::atomic::Ordering::Relaxed);
                    panic!("gc failed: {}", show(&out));
                }
                runs += 1;
            }
            runs
        });
        // Stop the gc loop even if an assertion below fails.
        struct Stop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let stop = Stop(&done);
        let mut written = HashMap::new();
        for i in 0..12u64 {
            write(&ws.join(format!("f{}.bin", i % 4)), &noise(150_000, 1000 + i));
            // Pinned snapshots must survive any number of gcs intact.
            let out = env.ok(&["snapshot", ws.to_str().unwrap(), "--keep"]);
            written.insert(last_line(&out), listing(&ws));
        }
        drop(stop);
        assert!(gc.join().unwrap() >= 1);
        written
    });
    env.ok(&["gc", "--all", "--keep-last", "1"]);
    env.ok(&["check", "--read-data"]);
    for (id, want) in &written {
        env.assert_restores(id, want);
    }
}

#[test]
fn clean_temp_respects_age_dry_run_and_confirmation() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("a"), b"a");
    env.snapshot(&ws);
    let tmp = env.store().join("tmp");
    write(&tmp.join("999999-1-0.pack.tmp"), b"partial");
    // Younger than the default 1h: listed nowhere, kept.
    let out = env.ok(&["system", "clean-temp", "--dry-run"]);
    assert!(out.contains("0 items"), "{out}");
    let out = env.ok(&["system", "clean-temp", "--force"]);
    assert!(tmp.join("999999-1-0.pack.tmp").exists(), "{out}");
    // Old enough with --min-age 0s: dry run lists and keeps it.
    let out = env.ok(&["system", "clean-temp", "--min-age", "0s", "--dry-run"]);
    assert!(
        out.contains("999999-1-0.pack.tmp") && out.contains("(pack)"),
        "{out}"
    );
    assert!(tmp.join("999999-1-0.pack.tmp").exists());
    // Without a terminal it will not remove without --force.
    let err = env.fails(&["system", "clean-temp", "--min-age", "0s"]);
    assert!(err.contains("--force"), "{err}");
    assert!(tmp.join("999999-1-0.pack.tmp").exists());
    env.ok(&["system", "clean-temp", "--min-age", "0s", "--force"]);
    assert!(!tmp.join("999999-1-0.pack.tmp").exists());
}

#[test]
fn gc_drops_stat_caches_of_vanished_workspaces() {
    let env = Env::new();
    let ws = env.path("ws");
    write(&ws.join("a"), b"a");
    common::backdate(&ws);
    let id = env.snapshot(&ws);
    let out = env.path("restored");
    env.restore(&id, &out);
    let caches = || std::fs::read_dir(env.store().join("cache")).unwrap().count();
    assert_eq!(caches(), 2);
    std::fs::remove_dir_all(&out).unwrap();
    let msg = env.ok(&["gc", "--all"]);
    assert!(msg.contains("removed 1 stat caches"), "{msg}");
    assert_eq!(caches(), 1);
    // The live workspace keeps its cache: nothing is re-read.
    let v = env.snapshot_json(&ws, &["--allow-empty"]);
    assert_eq!(v["stats"]["files_read"], 0);
}

#[test]
fn gc_applies_the_workspace_retention_config() {
    let env = Env::new();
    let ws = env.path("ws");
    write(
        &ws.join("moat.yaml"),
        b"snapshots:\n  retention:\n    max_count: 2\n    delete_initial: true\n",
    );
    let mut want = Vec::new();
    for i in 0..5u64 {
        write(&ws.join("f.bin"), &noise(10_000, i));
        want.push(env.snapshot(&ws));
    }
    let out = env.ok(&["gc", ws.to_str().unwrap()]);
    assert!(out.contains("3 snapshots removed, 2 kept"), "{out}");
    assert_eq!(ids(&env, &ws), want[3..].to_vec());
}

/// Item 3: two writers stored the same chunk (two packs, two index files)
/// and one copy is damaged. gc must keep a copy that verifies, whichever
/// one is damaged; with every copy damaged it deletes none and says so.
#[test]
fn gc_keeps_a_copy_that_verifies() {
    use common::hostile::*;
    use moat::format::pack::{ObjectKind, parse};
    use moat::store::writer::ObjectWriter;
    for damaged in [&[0usize][..], &[1], &[0, 1]] {
        let env = Env::new();
        let forge = Forge::new(&env);
        let shared = noise(200 << 10, 31);
        let own = [b"only in the first session".as_slice(), b"only in the second"];
        // Both sessions start before either publishes, so neither knows
        // the other stores `shared` too.
        let (w1, w2) = (
            ObjectWriter::new(&forge.store).unwrap(),
            ObjectWriter::new(&forge.store).unwrap(),
        );
        let c = w1.put_chunk(&shared).unwrap();
        w2.put_chunk(&shared).unwrap();
        let extra = [w1.put_chunk(own[0]).unwrap(), w2.put_chunk(own[1]).unwrap()];
        w1.finish().unwrap();
        w2.finish().unwrap();
        forge.store.invalidate_index();
        let kept = forge.commit(
            &[tree(vec![file(b"shared.bin", shared.len() as u64, vec![c])])],
            &[],
        );
        for (x, data) in extra.iter().zip(own) {
            let t = tree(vec![file(b"own", data.len() as u64, vec![*x])]);
            let doomed = forge.commit(&[t], &[]);
            env.ok(&["snapshots", "delete", &doomed]);
        }
        // The two packs holding `shared`, and the damage.
        let mut holders = Vec::new();
        let mut stack = vec![env.store().join("packs")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                    continue;
                }
                let data = std::fs::read(e.path()).unwrap();
                let entries = parse(&data, &e.path()).unwrap();
                if let Some(ent) = entries.iter().find(|x| x.id == c && x.kind == ObjectKind::Chunk) {
                    holders.push((e.path(), ent.offset as usize + ent.stored_len as usize / 2));
                }
            }
        }
        holders.sort();
        assert_eq!(holders.len(), 2, "two copies of the shared chunk");
        for &k in damaged {
            let (path, at) = &holders[k];
            let mut data = std::fs::read(path).unwrap();
            data[*at] ^= 0x55;
            std::fs::write(path, data).unwrap();
        }
        if damaged.len() == 1 {
            // Readers fall back to the copy that verifies.
            let target = env.path("before-gc");
            env.restore(&kept, &target);
            assert_eq!(std::fs::read(target.join("shared.bin")).unwrap(), shared);
        }
        let out = env
            .cmd()
            .args(["gc", "--all", "--min-age", "0s"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if damaged.len() == 2 {
            assert!(
                !out.status.success(),
                "every copy damaged: gc must say so\n{}",
                show(&out)
            );
            assert!(err.contains(&c.to_hex()) && err.contains("no copy"), "{err}");
            for (path, _) in &holders {
                assert!(path.exists(), "gc deleted a copy of an object with no good copy");
            }
            continue;
        }
        assert!(out.status.success(), "damaged {damaged:?}: {}", show(&out));
        let (bad, _) = &holders[damaged[0]];
        assert!(
            !bad.exists(),
            "damaged {damaged:?}: the damaged copy's pack is dead and goes"
        );
        env.ok(&["check", "--read-data"]);
        let target = env.path("out");
        env.restore(&kept, &target);
        assert_eq!(std::fs::read(target.join("shared.bin")).unwrap(), shared);
    }
}
