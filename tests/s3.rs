//! Stores in an S3 bucket, against moto's real S3 server on loopback
//! (`common::moto`): snapshot into and restore from `s3://`, push and
//! pull between stores, resumed and repeated transfers, clear errors.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::moto::{Moto, moto, moto_auth};
use common::{Env, assert_same_tree, last_line, rich_tree, show, write};

/// A test environment whose store is a fresh bucket.
struct S3 {
    env: Env,
    moto: &'static Moto,
    url: String,
}

impl S3 {
    fn new() -> Option<S3> {
        Self::on(moto()?)
    }

    fn on(moto: &'static Moto) -> Option<S3> {
        let url = format!("s3://{}/stores/one", moto.bucket());
        Some(S3 {
            env: Env::with_store(Path::new(&url)),
            moto,
            url,
        })
    }

    fn home(&self) -> PathBuf {
        self.env.path("home")
    }

    fn cmd(&self) -> Command {
        let mut c = self.env.cmd();
        self.moto.env(&mut c, &self.home());
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().expect("run moat");
        assert!(out.status.success(), "moat {args:?} failed:\n{}", show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn fails_with(&self, cmd: &mut Command, args: &[&str]) -> String {
        let out = cmd.args(args).output().expect("run moat");
        assert!(
            !out.status.success(),
            "moat {args:?} should fail:\n{}",
            show(&out)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// A local store beside the bucket, same credentials and home.
    fn local(&self, name: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_moat"));
        c.env("MOAT_STORE", self.env.path(name));
        self.moto.env(&mut c, &self.home());
        c.current_dir(self.env.dir.path());
        c
    }

    fn json(&self, mut c: Command, args: &[&str]) -> serde_json::Value {
        let out = c.args(args).output().expect("run moat");
        assert!(out.status.success(), "moat {args:?} failed:\n{}", show(&out));
        serde_json::from_str(&last_line(&String::from_utf8_lossy(&out.stdout))).expect("json")
    }
}

fn ok_local(mut c: Command, args: &[&str]) -> String {
    let out = c.args(args).output().expect("run moat");
    assert!(out.status.success(), "moat {args:?} failed:\n{}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn snapshot_into_and_restore_from_a_bucket() {
    let Some(s) = S3::new() else { return };
    let ws = s.env.path("ws");
    rich_tree(&ws);
    let id = last_line(&s.ok(&["snapshot", ws.to_str().unwrap()]));
    write(&ws.join("src/new.rs"), b"fn added() {}\n");
    let id2 = last_line(&s.ok(&["snapshot", ws.to_str().unwrap()]));
    assert_ne!(id, id2);
    let to = s.env.path("back");
    s.ok(&["restore", &id2, "--to", to.to_str().unwrap()]);
    assert_same_tree(&ws, &to);
    let list = s.ok(&["snapshots", "--all"]);
    assert!(list.contains(&id[..8]) && list.contains(&id2[..8]), "{list}");
    let d = s.ok(&["diff", &id, &id2]);
    assert!(d.contains("src/new.rs"), "{d}");
    s.ok(&["ls", &id2]);
    s.ok(&["check", "--read-data"]);
    // Index files, snapshot files and trees are cached locally after one
    // read: listing, ls, diff and log again GET none of them (moto's
    // request log says), only listings.
    let gets = || s.moto.gets_below(&s.url);
    let before = gets();
    s.ok(&["snapshots", "--all"]);
    s.ok(&["ls", &id2]);
    s.ok(&["diff", &id, &id2]);
    s.ok(&["log", "--workspace", ws.to_str().unwrap()]);
    assert_eq!(gets(), before, "index, snapshot or tree fetched again");
    // The cache is safe to delete.
    std::fs::remove_dir_all(s.home().join("cache")).unwrap();
    let d2 = s.ok(&["diff", &id, &id2]);
    assert_eq!(d, d2);
    assert!(gets() > before);
}

#[test]
fn push_then_pull_into_a_fresh_store_and_push_again_sends_nothing() {
    let Some(s) = S3::new() else { return };
    let ws = s.env.path("ws");
    rich_tree(&ws);
    let id = last_line(&ok_local(s.local("a"), &["snapshot", ws.to_str().unwrap()]));
    write(&ws.join("docs/more.txt"), &common::noise(300_000, 9));
    let id2 = last_line(&ok_local(s.local("a"), &["snapshot", ws.to_str().unwrap()]));
    let first = s.json(s.local("a"), &["push", &s.url, "--all", "--json"]);
    assert_eq!(first["snapshots"], 2, "{first}");
    assert!(first["objects"].as_u64().unwrap() > 0, "{first}");
    let again = s.json(s.local("a"), &["push", &s.url, "--all", "--json"]);
    assert_eq!(again["snapshots"], 0, "{again}");
    assert_eq!(again["present"], 2, "{again}");
    assert_eq!(again["objects"], 0, "{again}");
    assert_eq!(again["bytes"], 0, "{again}");
    assert_eq!(again["bytes_sent"], 0, "{again}");
    // The config and one listing of the snapshots.
    assert!(again["requests"].as_u64().unwrap() <= 2, "{again}");
    // Pull into a fresh store: complete, and restores byte for byte.
    let pulled = s.json(s.local("b"), &["pull", &s.url, "--all", "--json"]);
    assert_eq!(pulled["snapshots"], 2, "{pulled}");
    ok_local(s.local("b"), &["check", "--read-data"]);
    let to = s.env.path("back");
    ok_local(s.local("b"), &["restore", &id2, "--to", to.to_str().unwrap()]);
    assert_same_tree(&ws, &to);
    let to1 = s.env.path("back1");
    s.ok(&["restore", &id, "--to", to1.to_str().unwrap()]);
    s.ok(&["check", "--read-data"]);
}

#[test]
fn wrong_credentials_are_a_clear_error() {
    let Some(s) = moto_auth().and_then(S3::on) else {
        return;
    };
    let ws = s.env.path("ws");
    write(&ws.join("a.txt"), b"a");
    let mut c = s.cmd();
    c.env("AWS_SECRET_ACCESS_KEY", "not-the-secret");
    let err = s.fails_with(&mut c, &["snapshot", ws.to_str().unwrap()]);
    assert!(err.contains("refused the credentials"), "{err}");
    assert!(err.contains("AWS_SECRET_ACCESS_KEY"), "{err}");
    let mut c = s.cmd();
    c.env("AWS_ACCESS_KEY_ID", "AKIANOSUCHKEY");
    let err = s.fails_with(&mut c, &["snapshots"]);
    assert!(err.contains("refused the credentials"), "{err}");
}

#[test]
fn a_missing_bucket_and_an_unreachable_endpoint_are_clear_errors() {
    let Some(s) = S3::new() else { return };
    let ws = s.env.path("ws");
    write(&ws.join("a.txt"), b"a");
    let mut c = s.local("unused");
    let err = s.fails_with(
        &mut c,
        &[
            "--store",
            "s3://no-such-bucket-here/x",
            "snapshot",
            ws.to_str().unwrap(),
        ],
    );
    assert!(
        err.contains("bucket 'no-such-bucket-here' does not exist"),
        "{err}"
    );
    // Port 1 (tcpmux): nothing listens there, and no test binds it (a
    // port freed by another test could be taken by the next one).
    let mut c = s.cmd();
    c.env("AWS_ENDPOINT_URL", "http://127.0.0.1:1");
    let err = s.fails_with(&mut c, &["snapshots"]);
    assert!(err.contains("cannot reach"), "{err}");
    // Nothing was written into the bucket by the failed commands.
    let err = s.fails_with(&mut s.cmd(), &["snapshots"]);
    assert!(err.contains("no moat store"), "{err}");
}

/// Workspace `n`'s tree: shared files, and some of its own.
fn tree(root: &Path, n: u64, edits: u64) {
    write(&root.join("shared/big.bin"), &common::noise(400_000, 1));
    write(&root.join("shared/lib.rs"), b"pub fn shared() {}\n");
    for i in 0..6 {
        write(
            &root.join(format!("own/f{i}.txt")),
            &common::noise(20_000 + i as usize * 1000, n * 100 + i + edits * 7),
        );
    }
}

#[test]
fn an_interrupted_push_resumes_and_sends_only_what_is_missing() {
    let Some(s) = S3::new() else { return };
    let ws = s.env.path("ws");
    let mut ids = Vec::new();
    for edit in 0..3 {
        tree(&ws, 1, edit);
        ids.push(last_line(&ok_local(
            s.local("a"),
            &["snapshot", ws.to_str().unwrap()],
        )));
    }
    // What the third snapshot alone adds, measured on a local copy.
    ok_local(
        s.local("a"),
        &["push", s.env.path("d").to_str().unwrap(), &ids[0], &ids[1]],
    );
    let third = s.json(
        s.local("a"),
        &["push", s.env.path("d").to_str().unwrap(), "--all", "--json"],
    );
    // Killed (SIGKILL) right before the second snapshot file is written:
    // the first snapshot and the second's objects are in the bucket.
    let mut c = s.local("a");
    c.args(["push", &s.url, "--all"])
        .env("MOAT_FAILPOINT", "transfer-snapshot:pause@2")
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut err, &mut line).unwrap();
        assert!(n > 0, "push ended before the failpoint:\n{seen}");
        seen.push_str(&line);
        if line.contains("transfer-snapshot") {
            break;
        }
    }
    child.kill().unwrap();
    let _ = child.wait();
    let listed = s.ok(&["snapshots", "--all"]);
    assert!(
        listed.contains(&ids[0][..8]) && !listed.contains(&ids[1][..8]),
        "{listed}"
    );
    let resumed = s.json(s.local("a"), &["push", &s.url, "--all", "--json"]);
    assert_eq!(resumed["present"], 1, "{resumed}");
    assert_eq!(resumed["snapshots"], 2, "{resumed}");
    assert_eq!(
        resumed["objects"], third["objects"],
        "resumed {resumed}, third alone {third}"
    );
    s.ok(&["check", "--read-data"]);
    for id in &ids {
        let to = s.env.path(&format!("r-{id}"));
        s.ok(&["restore", id, "--to", to.to_str().unwrap()]);
    }
    let to = s.env.path("last");
    s.ok(&["restore", &ids[2], "--to", to.to_str().unwrap()]);
    assert_same_tree(&ws, &to);
}

#[test]
fn two_pushers_and_a_remote_gc_at_once_lose_nothing() {
    let Some(s) = S3::new() else { return };
    // Garbage in the bucket that shares content with what is pushed
    // next: a pusher dedups against it while gc deletes it, unless the
    // lock keeps them apart.
    let wg = s.env.path("wg");
    tree(&wg, 9, 0);
    let g = last_line(&ok_local(s.local("g"), &["snapshot", wg.to_str().unwrap()]));
    let mut stores = Vec::new();
    for name in ["p", "q"] {
        let ws = s.env.path(&format!("ws-{name}"));
        stores.push((name.to_string(), ws, Vec::new()));
    }
    for round in 0..2u64 {
        ok_local(s.local("g"), &["push", &s.url, "--all"]);
        s.ok(&["snapshots", "delete", &g]);
        for (name, ws, ids) in stores.iter_mut() {
            tree(ws, 9, round);
            write(&ws.join("who.txt"), name.as_bytes());
            ids.push(last_line(&ok_local(
                s.local(name),
                &["snapshot", ws.to_str().unwrap()],
            )));
        }
        // The first pusher stops right before its snapshot file, having
        // relied on the garbage's objects (it found them in the index).
        let mut p = s.local("p");
        p.args(["push", &s.url, "--all", "--json"])
            .env("MOAT_FAILPOINT", "transfer-snapshot:pause")
            .stdin(std::process::Stdio::piped());
        let mut p = p.output_child();
        let mut p_err = std::io::BufReader::new(p.stderr.take().unwrap());
        wait_for_line(&mut p_err, "failpoint transfer-snapshot");
        // gc and the second pusher start now; gc must wait for the first.
        let mut gc = s.cmd().args(["gc", "--all"]).output_child();
        let mut q = s.local("q");
        q.args(["push", &s.url, "--all", "--json"]);
        let q = q.output_child();
        let mut gc_err = std::io::BufReader::new(gc.stderr.take().unwrap());
        let gc_said = wait_for_line(&mut gc_err, "waiting");
        // Let the first pusher go on (a gc that did not wait has finished
        // by now, deleting what that pusher relies on).
        std::io::Write::write_all(p.stdin.as_mut().unwrap(), b"\n").unwrap();
        for (what, c) in [("first push", p), ("second push", q), ("gc", gc)] {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: {what} failed:\n{}",
                show(&out)
            );
        }
        for (_, ws, ids) in &stores {
            for id in ids.iter() {
                let to = s.env.path(&format!("r{round}-{id}"));
                s.ok(&["restore", id, "--to", to.to_str().unwrap(), "--force"]);
            }
            let newest = ids.last().unwrap();
            assert_same_tree(ws, &s.env.path(&format!("r{round}-{newest}")));
        }
        s.ok(&["check", "--read-data"]);
        assert!(
            gc_said.contains("waiting"),
            "gc did not wait for the pusher: {gc_said}"
        );
    }
}

/// Reads lines until one contains `what` (returned) or the stream ends
/// (everything read is returned).
fn wait_for_line(r: &mut impl std::io::BufRead, what: &str) -> String {
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return seen;
        }
        if line.contains(what) {
            return line;
        }
        seen.push_str(&line);
    }
}

trait Spawn {
    fn output_child(&mut self) -> std::process::Child;
}

impl Spawn for Command {
    fn output_child(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn moat")
    }
}

#[test]
fn moat_run_pushes_each_snapshot_and_survives_a_failing_remote() {
    let Some(s) = S3::new() else { return };
    let ws = s.env.path("ws");
    write(&ws.join("a.txt"), b"before\n");
    write(
        &ws.join("moat.yaml"),
        format!("remote:\n  url: {}\n  auto_push: true\n", s.url).as_bytes(),
    );
    let out = run_sh(&s, &ws, "echo after > a.txt");
    assert!(out.status.success(), "{}", show(&out));
    let local = ok_local(s.local("a"), &["snapshots", "--all"]);
    let remote = s.ok(&["snapshots", "--all"]);
    let n = |t: &str| t.lines().filter(|l| !l.trim().is_empty()).count();
    assert!(n(&local) >= 2, "{local}");
    assert_eq!(n(&remote), n(&local), "local:\n{local}\nremote:\n{remote}");
    let to = s.env.path("back");
    s.ok(&["restore", "latest", "--to", to.to_str().unwrap()]);
    assert_eq!(std::fs::read(to.join("a.txt")).unwrap(), b"after\n");
    // A remote that cannot be reached: the run still succeeds, with CMD's
    // exit code, and says what was not pushed.
    write(
        &ws.join("moat.yaml"),
        b"remote:\n  url: s3://no-such-bucket-here/x\n  auto_push: true\n",
    );
    let out = run_sh(&s, &ws, "exit 3");
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not exist") && err.contains("not pushed"),
        "{err}"
    );
}

/// `moat run --verbose` of `sh -c script` in `ws`, with store "a".
fn run_sh(s: &S3, ws: &Path, script: &str) -> std::process::Output {
    let mut c = s.local("a");
    c.args(["run", "--verbose", "--workspace"])
        .arg(ws)
        .args(["--", "sh", "-c", script]);
    c.output().unwrap()
}

#[test]
fn throttling_is_retried_with_backoff_then_said() {
    let Some(s) = S3::new() else { return };
    // An endpoint that answers every request with 503 SlowDown.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            seen2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            slow_down(conn);
        }
    });
    let mut c = s.cmd();
    c.env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"));
    let err = s.fails_with(&mut c, &["snapshots"]);
    assert!(err.contains("throttling"), "{err}");
    let n = seen.load(std::sync::atomic::Ordering::SeqCst);
    assert!(n > 3, "retried only {n} times");
}

/// Reads one request head and answers 503 SlowDown, closing.
fn slow_down(mut conn: std::net::TcpStream) {
    use std::io::{Read, Write};
    let mut head = Vec::new();
    let mut b = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut b) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&b[..n]),
        }
    }
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>\
                <Message>Please reduce your request rate.</Message></Error>";
    let _ = write!(
        conn,
        "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
}
