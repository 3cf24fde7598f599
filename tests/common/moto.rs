//! A real S3 endpoint for the tests: moto's S3 server on a free loopback
//! port, started once per test binary (from a thread that lives as long
//! as the binary, so the server's parent-death signal fires only when the
//! binary exits). Each test takes its own bucket.
//!
//! `moto()` checks no credentials; `moto_auth()` is a second server with
//! authentication on (a user with an access key that may do everything,
//! made through moto's IAM in the requests moto lets through
//! unauthenticated), for the tests of rejected credentials only: moto
//! 5.2's signature check refuses listings whose prefix holds a `/`, as
//! every store's listings do.
//!
//! Where moto cannot be started, `moto()` prints `SKIPPED …: reason`
//! past the test harness's capture and returns `None`.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub struct Moto {
    pub port: u16,
    pub key: String,
    pub secret: String,
    /// moto's request log (one line per request).
    pub log: PathBuf,
    buckets: Vec<String>,
    next: AtomicUsize,
}

/// Buckets made at start (tests take one each).
const BUCKETS: usize = 24;

/// Makes the buckets (and with auth the user and its key); prints
/// "KEY SECRET".
const SETUP: &str = r#"
import json, sys, boto3
port, n, auth = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "auth"
kw = dict(endpoint_url="http://127.0.0.1:" + port, region_name="us-east-1")
key, secret = "moat-test-key", "moat-test-secret"
if auth:
    iam = boto3.client("iam", aws_access_key_id="setup", aws_secret_access_key="setup", **kw)
    iam.create_user(UserName="moat")
    iam.put_user_policy(UserName="moat", PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    k = iam.create_access_key(UserName="moat")["AccessKey"]
    key, secret = k["AccessKeyId"], k["SecretAccessKey"]
s3 = boto3.client("s3", aws_access_key_id=key, aws_secret_access_key=secret, **kw)
for i in range(n):
    s3.create_bucket(Bucket="moat-test-%d" % i)
print(key, secret)
"#;

static MOTO: OnceLock<Result<Moto, String>> = OnceLock::new();
static MOTO_AUTH: OnceLock<Result<Moto, String>> = OnceLock::new();

/// The shared server, or `None` (after printing why) when there is none.
pub fn moto() -> Option<&'static Moto> {
    skipped(MOTO.get_or_init(|| start(false)))
}

/// The shared server that checks credentials (see the module doc).
pub fn moto_auth() -> Option<&'static Moto> {
    skipped(MOTO_AUTH.get_or_init(|| start(true)))
}

fn skipped(m: &'static Result<Moto, String>) -> Option<&'static Moto> {
    match m {
        Ok(m) => Some(m),
        Err(why) => {
            let _ = writeln!(std::io::stderr(), "SKIPPED S3 tests: {why}");
            None
        }
    }
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn start(auth: bool) -> Result<Moto, String> {
    let port = free_port()?;
    let log = std::env::temp_dir().join(format!("moat-moto-{}-{port}.log", std::process::id()));
    let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let (tx, rx) = std::sync::mpsc::channel();
    let log2 = log_file.try_clone().map_err(|e| e.to_string())?;
    // The server's parent-death signal follows the thread that spawned
    // it: this thread never ends, so the server lives until the binary
    // exits (however it exits).
    std::thread::spawn(move || {
        let mut cmd = Command::new("moto_server");
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        if auth {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", "3");
        }
        cmd.stdin(Stdio::null()).stdout(log_file).stderr(log2);
        // SAFETY: prctl is async-signal-safe; nothing else runs here.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let child = cmd.spawn();
        let _ = tx.send(child.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        if let Ok(mut c) = child {
            let _ = c.wait();
        }
        loop {
            std::thread::park();
        }
    });
    rx.recv()
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("moto_server could not be started ({e}); pip install 'moto[server]'"))?;
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t0.elapsed() > Duration::from_secs(60) {
            return Err("moto_server did not listen within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = Command::new("python3")
        .args(["-c", SETUP, &port.to_string(), &BUCKETS.to_string()])
        .arg(if auth { "auth" } else { "open" })
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "setting up moto failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut it = text.split_whitespace();
    let (Some(key), Some(secret)) = (it.next(), it.next()) else {
        return Err(format!("unexpected setup output: {text}"));
    };
    Ok(Moto {
        port,
        key: key.to_string(),
        secret: secret.to_string(),
        log,
        buckets: (0..BUCKETS).map(|i| format!("moat-test-{i}")).collect(),
        next: AtomicUsize::new(0),
    })
}

impl Moto {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A bucket no other test of this binary uses.
    pub fn bucket(&self) -> String {
        let i = self.next.fetch_add(1, Ordering::SeqCst);
        self.buckets
            .get(i)
            .cloned()
            .unwrap_or_else(|| panic!("more than {BUCKETS} buckets asked of moto"))
    }

    /// Points `cmd` at this server with the good credentials and a
    /// private `MOAT_HOME` (the local cache of remote stores).
    pub fn env(&self, cmd: &mut Command, home: &Path) {
        cmd.env("AWS_ENDPOINT_URL", self.endpoint())
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", &self.key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret)
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env("MOAT_HOME", home);
    }

    /// How many GETs of objects below store `url` (`s3://BUCKET/PREFIX`)
    /// other than its config moto has logged so far (listings are not
    /// GETs of an object).
    pub fn gets_below(&self, url: &str) -> usize {
        let path = format!("\"GET /{}/", url.trim_start_matches("s3://"));
        std::fs::read_to_string(&self.log)
            .map(|s| {
                s.lines()
                    .filter(|l| l.contains(&path) && !l.contains("/config "))
                    .count()
            })
            .unwrap_or(0)
    }

    /// How many requests moto has logged so far.
    pub fn requests_logged(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .map(|s| s.lines().filter(|l| l.contains("HTTP/1.1\"")).count())
            .unwrap_or(0)
    }
}
