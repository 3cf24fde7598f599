//! Store writers under real faults. A full disk is a real tmpfs filled to
//! the last byte while moat is paused at a chosen write (`MOAT_FAILPOINT=
//! POINT:pause`); I/O errors and short writes come from the error-returning
//! failpoints (`POINT:eio`, `POINT:short`); a file-size limit (RLIMIT_FSIZE)
//! gives the kernel's own EFBIG. After every fault: the command failed with
//! an error naming the store and the cause, no temp file or unindexed pack
//! is left, every earlier snapshot restores byte for byte, `check
//! --read-data` passes, and (space freed) the next snapshot and `gc` work.
//! `scene` builds the stores and holds those checks; `every_write` arms the
//! EIO and short-write failpoints at every write of every store writer.

mod common;
#[path = "faults/every_write.rs"]
mod every_write;
#[path = "faults/scene.rs"]
mod scene;

use std::io::Write;
use std::process::Command;

use common::*;
use scene::{ENOSPC, Scene, each, run_paused};

#[test]
fn a_full_disk_at_each_phase_of_a_snapshot() {
    each(
        &["pack-write", "pack-write@3", "index-write", "snapshot-write"],
        |point| {
            let Some(mut s) = Scene::on_tmpfs("a_full_disk_at_each_phase_of_a_snapshot") else {
                return;
            };
            let fs = s.fs.as_ref().expect("tmpfs");
            let ws = s.ws.to_str().expect("utf8").to_string();
            let out = run_paused(&s.env, &["snapshot", &ws], point, || fs.fill());
            s.assert_recovers(&format!("ENOSPC at {point}"), &out, ENOSPC);
        },
    );
}

#[test]
fn a_full_disk_when_saving_the_stat_cache_keeps_the_snapshot() {
    let Some(mut s) = Scene::on_tmpfs("a_full_disk_when_saving_the_stat_cache") else {
        return;
    };
    let fs = s.fs.as_ref().expect("tmpfs");
    let ws = s.ws.to_str().expect("utf8").to_string();
    let out = run_paused(&s.env, &["snapshot", &ws], "cache-write", || fs.fill());
    s.assert_committed_anyway("ENOSPC at cache-write", &out, ENOSPC);
    s.fs.as_ref().expect("tmpfs").free();
    s.env.ok(&["gc", "--all", "--min-age", "0s"]);
    s.commit();
}

#[test]
fn a_full_disk_while_gc_rewrites() {
    each(&["pack-write", "index-write", "index-write@2"], |point| {
        let Some(mut s) = Scene::on_tmpfs("a_full_disk_while_gc_rewrites") else {
            return;
        };
        s.make_garbage();
        let fs = s.fs.as_ref().expect("tmpfs");
        let out = run_paused(&s.env, &["gc", "--all", "--min-age", "0s"], point, || fs.fill());
        s.assert_recovers(&format!("gc: ENOSPC at {point}"), &out, ENOSPC);
    });
}

/// A snapshot too big for the disk fails, cleans up after itself, and the
/// next one works once there is room, with no `system clean-temp`.
#[test]
fn a_snapshot_bigger_than_the_disk_leaves_nothing_behind() {
    let Some(mut s) = Scene::on_tmpfs("a_snapshot_bigger_than_the_disk") else {
        return;
    };
    let fs = s.fs.as_ref().expect("tmpfs");
    let free = fs.free_bytes() as usize;
    write(&s.ws.join("data/huge.bin"), &noise(free + (1 << 20), 14));
    let out = s
        .env
        .cmd()
        .args(["snapshot", s.ws.to_str().expect("utf8")])
        .output()
        .expect("run");
    s.assert_store_intact("ENOSPC: workspace bigger than the disk");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(ENOSPC), "{}", show(&out));
    std::fs::remove_file(s.ws.join("data/huge.bin")).expect("rm");
    s.assert_recovers("ENOSPC: workspace bigger than the disk", &out, ENOSPC);
}

/// gc in a store whose disk is full: it frees what it can without writing
/// (packs of deleted snapshots that only they used), and where it must
/// write first it says how much room it needs: as an error when its index
/// does not fit, as a note when only a rewrite does not.
#[test]
fn gc_in_a_full_store() {
    let Some(mut s) = Scene::on_tmpfs("gc_in_a_full_store") else {
        return;
    };
    // Garbage that needs no rewrite: a whole session's packs.
    write(&s.ws.join("data/session.bin"), &noise(4 << 20, 15));
    let doomed = s.env.snapshot(&s.ws);
    std::fs::remove_file(s.ws.join("data/session.bin")).expect("rm");
    s.env.ok(&["snapshots", "delete", &doomed]);
    let fs = s.fs.as_ref().expect("tmpfs");
    fs.fill();
    s.env.ok(&["gc", "--all", "--min-age", "0s"]);
    assert!(fs.free_bytes() >= 4 << 20, "gc freed the session's packs");
    s.assert_store_intact("gc in a full store");
    // Garbage that needs a new index first (a pack still partly live, a
    // dead one listed beside it). The stat caches of the checks' restores
    // go first, so nothing is left to free without writing.
    fs.free();
    s.env.ok(&["gc", "--all", "--min-age", "0s"]);
    s.make_garbage();
    let fs = s.fs.as_ref().expect("tmpfs");
    let gc = |s: &Scene| {
        let out = s
            .env
            .cmd()
            .args(["gc", "--all", "--min-age", "0s"])
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out, err)
    };
    fs.fill();
    let (out, err) = gc(&s);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        err.contains("needs") && err.contains("bytes free") && err.contains("index"),
        "{err}"
    );
    s.assert_store_intact("gc in a full store, new index needed");
    // Room for the index, not for the rewrite: the dead pack goes, the
    // rewrite waits with a note saying how much room it needs.
    fs.free();
    fs.fill_leaving(64 << 10);
    let (out, err) = gc(&s);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        err.contains("not rewritten") && err.contains("bytes free"),
        "{err}"
    );
    s.assert_store_intact("gc in a full store, rewrite skipped");
    fs.free();
    let out = s.env.ok(&["gc", "--all", "--min-age", "0s"]);
    assert!(out.contains("1 repacked"), "{out}");
    s.assert_store_intact("gc after space was freed");
}

/// Chunks of `data` as the store cuts them.
fn chunks(data: &[u8]) -> Vec<std::ops::Range<usize>> {
    let cfg = moat::format::config::StoreConfig::new_default();
    moat::capture::chunker::cut(data, moat::capture::chunker::ChunkParams::from_config(&cfg))
}

/// Item 1: a store write error (here the kernel's EFBIG from RLIMIT_FSIZE,
/// which fails only the pack holding the largest chunk) used to be reported
/// as "skipped FILE" while the capture went on, and another file holding
/// the same chunk then referenced it: the committed snapshot named a chunk
/// in no pack. Now the capture fails and commits nothing.
#[test]
fn a_store_write_error_fails_the_capture_and_commits_nothing() {
    let mut s = Scene::on_disk();
    // One pack per chunk, so each pack is about one chunk long.
    let store = moat::Store::open_or_create(&s.env.store()).expect("store");
    let cfg = moat::format::config::StoreConfig {
        pack_target: 16 << 10,
        ..store.config.clone()
    };
    std::fs::write(s.env.store().join("config"), cfg.encode()).expect("config");
    let data = noise(2 << 20, 21);
    let mut sizes: Vec<usize> = chunks(&data).iter().map(|r| r.len()).collect();
    sizes.sort_unstable();
    let (second, largest) = (sizes[sizes.len() - 2], sizes[sizes.len() - 1]);
    assert!(
        largest > second + 1024,
        "need one chunk clearly larger: {sizes:?}"
    );
    let big = chunks(&data)
        .into_iter()
        .find(|r| r.len() == largest)
        .expect("largest");
    write(&s.ws.join("data/all.bin"), &data);
    write(&s.ws.join("data/copy-of-one-chunk.bin"), &data[big]);
    // Every pack but the one holding the largest chunk fits.
    let limit = (second + largest) as u64 / 2 + 200;
    let mut cmd: Command = s.env.cmd();
    cmd.args(["snapshot", "--no-clone", s.ws.to_str().expect("utf8")]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run moat");
    s.assert_recovers("EFBIG while storing chunks", &out, "File too large");
}

/// Reading a workspace file that cannot be read stays a skipped file: the
/// snapshot is taken without it. (moat runs without CAP_DAC_OVERRIDE and
/// CAP_DAC_READ_SEARCH, so a mode-000 file is unreadable even for root.)
#[test]
fn an_unreadable_workspace_file_is_still_skipped() {
    let s = Scene::on_disk();
    let p = s.ws.join("secret.txt");
    write(&p, b"no");
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o000)).expect("chmod");
    if std::fs::File::open(&p).is_ok() && !nix::unistd::geteuid().is_root() {
        panic!("a mode-000 file opened without privileges");
    }
    let mut cmd = s.env.cmd();
    cmd.args(["snapshot", "--no-clone", s.ws.to_str().expect("utf8")]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            // Dropped from the bounding set, so exec does not grant them back.
            for cap in [1, 2] {
                if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && nix::unistd::geteuid().is_root() {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED an_unreadable_workspace_file_is_still_skipped: cannot drop CAP_DAC_OVERRIDE: {e}"
            );
            return;
        }
    };
    assert!(out.status.success(), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("secret.txt"), "the skipped file is named: {err}");
    let id = last_line(&String::from_utf8_lossy(&out.stdout));
    let files = s.env.ok(&["ls", &id]);
    assert!(
        !files.contains("secret.txt") && files.contains("two.bin"),
        "{files}"
    );
}
