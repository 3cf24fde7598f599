//! Several moat processes writing one store at the same time.

mod common;

use common::*;

#[test]
fn parallel_snapshots_into_one_store_both_commit_and_restore() {
    let env = Env::new();
    // Create the store first so both writers race on data, not on setup.
    let (a, b) = (env.path("a"), env.path("b"));
    for ws in [&a, &b] {
        for i in 0..30 {
            write(&ws.join(format!("shared/{i}.bin")), &noise(200_000, i));
        }
    }
    write(&a.join("only-a.txt"), b"a");
    write(&b.join("only-b.txt"), b"b");
    let spawn = |ws: &std::path::Path| env.cmd().args(["snapshot", ws.to_str().unwrap()]).output();
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| spawn(&a));
        let hb = s.spawn(|| spawn(&b));
        (ha.join().unwrap().unwrap(), hb.join().unwrap().unwrap())
    });
    assert!(ra.status.success(), "{}", show(&ra));
    assert!(rb.status.success(), "{}", show(&rb));
    let ida = last_line(&String::from_utf8_lossy(&ra.stdout));
    let idb = last_line(&String::from_utf8_lossy(&rb.stdout));
    env.ok(&["check", "--read-data"]);
    for (id, ws) in [(ida, &a), (idb, &b)] {
        let out = env.path(&format!("out-{}", &id[..8]));
        env.restore(&id, &out);
        assert_same_tree(ws, &out);
    }
}

#[test]
fn two_processes_creating_a_store_agree_on_one_config() {
    for _ in 0..5 {
        let env = Env::new();
        let ws = env.path("ws");
        write(&ws.join("f"), b"x");
        let outs: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..3)
                .map(|_| {
                    s.spawn(|| {
                        env.cmd()
                            .args(["snapshot", ws.to_str().unwrap(), "--allow-empty"])
                            .output()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
        });
        for o in &outs {
            assert!(o.status.success(), "{}", show(o));
        }
        env.ok(&["check", "--read-data"]);
    }
}
