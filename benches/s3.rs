//! Remote stores against moto's S3 server on loopback (started here, as
//! the tests start it): `moat push` of a first snapshot of a real tree
//! and of a snapshot after 10 edits (bytes and requests sent), `moat pull`
//! into a fresh store and a restore from it, and `moat snapshot` straight
//! into the bucket; beside `restic backup` of the same tree into the same
//! server (`restic -r s3:http://127.0.0.1:PORT/bucket`) where restic is
//! installed. Requests are counted by moat and by moto's request log.
//!
//! The tree: Rust sources from `~/.cargo/registry/src` (else generated
//! text), MOAT_BENCH_BYTES (default 40 MB) of them.

mod common;
#[path = "../tests/common/moto.rs"]
#[allow(dead_code)]
mod moto;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::{human, table};

const MOAT: &str = env!("CARGO_BIN_EXE_moat");

struct Bench {
    moto: &'static moto::Moto,
    dir: tempfile::TempDir,
    rows: Vec<Vec<String>>,
}

impl Bench {
    fn cmd(&self, store: &str) -> Command {
        let mut c = Command::new(MOAT);
        c.arg("--store").arg(store).arg("--quiet");
        self.moto.env(&mut c, &self.dir.path().join("home"));
        c
    }

    fn path(&self, p: &str) -> String {
        self.dir.path().join(p).to_string_lossy().into_owned()
    }

    /// Runs `c`; returns its stdout and seconds.
    fn run(&self, mut c: Command) -> (String, f64) {
        let t = Instant::now();
        let out = c.output().expect("run");
        assert!(
            out.status.success(),
            "{c:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            t.elapsed().as_secs_f64(),
        )
    }

    /// A moat transfer, reported from its `--json` and moto's log.
    fn transfer(&mut self, what: &str, c: Command) {
        let logged = self.moto.requests_logged();
        let (out, secs) = self.run(c);
        let j: serde_json::Value = serde_json::from_str(out.lines().last().unwrap_or("{}")).expect("json");
        let n = |k: &str| j[k].as_u64().unwrap_or(0);
        self.rows.push(vec![
            what.into(),
            format!("{}", n("objects")),
            human(n("bytes_sent").max(n("bytes_received"))),
            format!(
                "{} ({} in moto's log)",
                n("requests"),
                self.moto.requests_logged() - logged
            ),
            format!("{secs:.2}"),
        ]);
    }

    /// Anything else, with moto's log counting its requests.
    fn timed(&mut self, what: &str, c: Command, bytes: String) {
        let logged = self.moto.requests_logged();
        let (_, secs) = self.run(c);
        self.rows.push(vec![
            what.into(),
            "-".into(),
            bytes,
            format!("{} in moto's log", self.moto.requests_logged() - logged),
            format!("{secs:.2}"),
        ]);
    }
}

/// The workspace: a real tree copied in, and its files in order.
fn make_tree(ws: &Path, max_bytes: usize) -> Vec<PathBuf> {
    let mut files = Vec::new();
    match common::registry_src() {
        Some(src) => {
            for (p, data) in common::read_tree(&src, Some("rs"), max_bytes) {
                let rel = p.strip_prefix(&src).unwrap_or(&p);
                let to = ws.join(rel);
                std::fs::create_dir_all(to.parent().unwrap_or(ws)).expect("mkdir");
                std::fs::write(&to, data).expect("write");
                files.push(to);
            }
        }
        None => {
            let mut rng = common::Rng::new(7);
            let mut total = 0;
            let mut i = 0;
            while total < max_bytes {
                let data = common::gen_text(&mut rng, 2_000 + (i % 40) * 500);
                total += data.len();
                let to = ws.join(format!("d{}/f{i}.rs", i % 50));
                std::fs::create_dir_all(to.parent().unwrap_or(ws)).expect("mkdir");
                std::fs::write(&to, data).expect("write");
                files.push(to);
                i += 1;
            }
        }
    }
    files
}

fn main() {
    let Some(moto) = moto::moto() else { return };
    let mut b = Bench {
        moto,
        dir: tempfile::tempdir().expect("tempdir"),
        rows: Vec::new(),
    };
    let ws = b.dir.path().join("ws");
    let files = make_tree(&ws, common::env_usize("MOAT_BENCH_BYTES", 40_000_000));
    let bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    println!(
        "tree: {} files, {} (moto at {})",
        files.len(),
        human(bytes),
        moto.endpoint()
    );
    let url = format!("s3://{}/moat", moto.bucket());
    let local = b.path("local");

    let mut c = b.cmd(&local);
    c.args(["snapshot", &ws.to_string_lossy()]);
    b.run(c);
    let mut c = b.cmd(&local);
    c.args(["push", &url, "--all", "--json"]);
    b.transfer("push, first snapshot", c);
    // Ten edits: appended lines in ten files spread over the tree.
    for k in 0..10 {
        let f = &files[k * files.len() / 10];
        let mut data = std::fs::read(f).expect("read");
        data.extend_from_slice(format!("\n// edit {k}\n").as_bytes());
        std::fs::write(f, data).expect("write");
    }
    let mut c = b.cmd(&local);
    c.args(["snapshot", &ws.to_string_lossy()]);
    b.run(c);
    let mut c = b.cmd(&local);
    c.args(["push", &url, "--all", "--json"]);
    b.transfer("push, 10-edit snapshot", c);
    let mut c = b.cmd(&local);
    c.args(["push", &url, "--all", "--json"]);
    b.transfer("push again (nothing new)", c);
    let fresh = b.path("fresh");
    let mut c = b.cmd(&fresh);
    c.args(["pull", &url, "--all", "--json"]);
    b.transfer("pull both into a fresh store", c);
    let mut c = b.cmd(&fresh);
    c.args(["restore", "latest", "--to", &b.path("restored")]);
    b.timed("restore from the pulled store", c, human(bytes));
    let direct = format!("s3://{}/direct", moto.bucket());
    let mut c = b.cmd(&direct);
    c.args(["snapshot", &ws.to_string_lossy()]);
    b.timed("snapshot straight into the bucket", c, "-".into());
    let mut c = b.cmd(&direct);
    c.args(["restore", "latest", "--to", &b.path("restored-direct")]);
    b.timed("restore straight from the bucket", c, human(bytes));

    restic(&mut b, &ws);
    table(
        "remote stores (moto S3 on loopback)",
        &["what", "objects", "bytes over the wire", "requests", "seconds"],
        &b.rows,
    );
}

/// `restic backup` of the same tree into the same server, twice (the
/// second after the same edits are already in place: what it adds).
fn restic(b: &mut Bench, ws: &Path) {
    if Command::new("restic").arg("version").output().is_err() {
        println!("restic: not installed, no comparison (apt-get install restic)");
        return;
    }
    let repo = format!("s3:{}/{}/restic", b.moto.endpoint(), b.moto.bucket());
    let env = |c: &mut Command| {
        b.moto.env(c, &b.dir.path().join("home"));
        c.env("RESTIC_PASSWORD", "bench")
            .env("RESTIC_CACHE_DIR", b.dir.path().join("restic-cache"));
    };
    let mut c = Command::new("restic");
    c.args(["-r", &repo, "init", "-q"]);
    env(&mut c);
    b.run(c);
    let mut c = Command::new("restic");
    c.args(["-r", &repo, "backup", "-q", "--json"]).arg(ws);
    env(&mut c);
    let logged = b.moto.requests_logged();
    let (out, secs) = b.run(c);
    let added = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        // Bytes stored (compressed) where restic says, else as read.
        .find_map(|j| j["data_added_packed"].as_u64().or(j["data_added"].as_u64()))
        .unwrap_or(0);
    b.rows.push(vec![
        "restic backup (same tree)".into(),
        "-".into(),
        human(added),
        format!("{} in moto's log", b.moto.requests_logged() - logged),
        format!("{secs:.2}"),
    ]);
}
