//! The index over many writing sessions: each publishes an index file,
//! writers merge small ones (store::consolidate), and readers running at
//! the same time never miss an object.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use common::*;

fn index_files(env: &Env) -> usize {
    std::fs::read_dir(env.store().join("index")).unwrap().count()
}

#[test]
fn many_sessions_leave_few_index_files_and_readers_never_miss() {
    let env = Env::new();
    let ws = env.path("ws");
    for i in 0..20 {
        write(&ws.join(format!("base/{i}.txt")), format!("base {i}").as_bytes());
    }
    let first = env.snapshot(&ws);
    let done = AtomicBool::new(false);
    let snaps = std::thread::scope(|s| {
        // A reader that lists and reads every object while writers merge
        // index files under it.
        let reader = s.spawn(|| {
            let mut runs = 0;
            while !done.load(Ordering::SeqCst) || runs == 0 {
                let out = env.cmd().args(["check"]).output().unwrap();
                assert!(out.status.success(), "check during merges:\n{}", show(&out));
                runs += 1;
            }
            runs
        });
        let mut snaps = vec![first.clone()];
        for i in 0..40 {
            write(&ws.join(format!("edit/{i}.txt")), format!("edit {i}").as_bytes());
            snaps.push(env.snapshot(&ws));
        }
        done.store(true, Ordering::SeqCst);
        assert!(reader.join().unwrap() > 0);
        snaps
    });
    // 41 sessions published an index file each; merges keep fewer than 8
    // per size class.
    let files = index_files(&env);
    assert!(files < 16, "{files} index files after 41 sessions");
    env.ok(&["check", "--read-data"]);
    let out = env.path("first");
    env.restore(&first, &out);
    assert!(out.join("base/19.txt").exists() && !out.join("edit").exists());
    let last = env.path("last");
    env.restore(snaps.last().unwrap(), &last);
    assert_same_tree(&ws, &last);
    // gc rewrites the whole index as one file.
    env.ok(&["gc", "--all"]);
    assert_eq!(index_files(&env), 1);
    env.ok(&["check", "--read-data"]);
}
