//! The Unix socket between `moat watch` and the captures of its
//! workspace: `$MOAT_HOME/watch/<blake3(workspace)[..16] hex>.sock`.
//!
//! Requests are one byte (1 begin, 2 status, 3 stop; begin is followed by
//! the token asked about); answers are length-prefixed little-endian
//! fields. A vouched answer's text field holds the JSON of the rules of
//! what the watcher leaves unwatched (`Ignoring`); empty, as a watcher
//! older than those rules sends it, means it watches every directory. Only processes of the user who owns `$MOAT_HOME` reach it. A
//! capture that cannot connect, or gets no complete answer in time, walks
//! (the answer is never half-used).
//!
//! Invariant: only the process holding the exclusive flock on
//! `<hash>.lock` beside the socket creates or removes `<hash>.sock`, and it
//! holds the lock for its whole life. So a starting watcher (whose socket
//! exists a moment before it listens), a stopping one, `--status` and a new
//! watcher never remove each other's socket; a socket whose lock nobody
//! holds is stale.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Answer, Hub, Ignoring, Since, Status, Vouch};
use crate::error::{Error, Result};

const BEGIN: u8 = 1;
const STATUS: u8 = 2;
const STOP: u8 = 3;
/// Bounds on what a client accepts (no unbounded allocation).
const MAX_PATH: usize = 1 << 20;
const MAX_PATHS: usize = 4 * super::state::MAX_DIRTY;
const TIMEOUT: Duration = Duration::from_secs(30);

/// The directory of watcher sockets.
pub fn dir(home: &Path) -> PathBuf {
    home.join("watch")
}

/// The socket of the watcher of workspace `ws`.
pub fn socket_path(home: &Path, ws: &Path) -> PathBuf {
    let h = blake3::hash(ws.as_os_str().as_bytes()).to_hex();
    dir(home).join(format!("{}.sock", &h[..32]))
}

/// The lock file that owns socket `sock` (see the module doc).
fn lock_path(sock: &Path) -> PathBuf {
    sock.with_extension("lock")
}

/// Takes the lock owning `sock` without waiting; `None` while a watcher
/// holds it.
fn try_own(sock: &Path) -> Result<Option<File>> {
    let path = lock_path(sock);
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

/// Removes socket `sock` if no watcher owns it (a crashed watcher's);
/// returns whether it did.
pub fn remove_if_stale(sock: &Path) -> bool {
    match try_own(sock) {
        Ok(Some(_lock)) => {
            let _ = std::fs::remove_file(lock_path(sock));
            std::fs::remove_file(sock).is_ok()
        }
        _ => false,
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_since(out: &mut Vec<u8>, s: Option<Since>) {
    out.push(s.is_some() as u8);
    let s = s.unwrap_or(Since {
        epoch: [0; 16],
        seq: 0,
    });
    out.extend_from_slice(&s.epoch);
    out.extend_from_slice(&s.seq.to_le_bytes());
}

fn get_since(r: &mut impl Read) -> std::io::Result<Option<Since>> {
    let mut b = [0u8; 25];
    r.read_exact(&mut b)?;
    let mut epoch = [0; 16];
    epoch.copy_from_slice(&b[1..17]);
    let mut seq = [0; 8];
    seq.copy_from_slice(&b[17..25]);
    Ok((b[0] == 1).then_some(Since {
        epoch,
        seq: u64::from_le_bytes(seq),
    }))
}

fn get_u32(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn get_bytes(r: &mut impl Read, max: usize) -> std::io::Result<Vec<u8>> {
    let n = get_u32(r)? as usize;
    if n > max {
        return Err(std::io::Error::other("field too long"));
    }
    let mut v = vec![0; n];
    r.read_exact(&mut v)?;
    Ok(v)
}

fn connect(path: &Path) -> std::io::Result<UnixStream> {
    let s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    Ok(s)
}

/// A capture's `begin` through the socket of workspace `ws`'s watcher.
pub fn begin(home: &Path, ws: &Path, since: Option<Since>) -> Answer {
    let path = socket_path(home, ws);
    let refused = |reason: String| Answer::Refused { reason, next: None };
    let mut s = match connect(&path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return refused("no watcher runs for this workspace".into());
        }
        Err(e) => return refused(format!("could not reach the watcher: {e}")),
    };
    let answer = s
        .write_all(&write_request(Request::Begin(since)))
        .and_then(|_| read_answer(&mut s));
    answer.unwrap_or_else(|e| refused(format!("the watcher did not answer: {e}")))
}

/// Reads a watcher's answer to `begin` (from the socket; public for the
/// decoder tests). Refuses, as an error, fields longer than the bounds.
pub fn read_answer(s: &mut impl Read) -> std::io::Result<Answer> {
    let mut kind = [0u8; 1];
    s.read_exact(&mut kind)?;
    let next = get_since(s)?;
    let reason = String::from_utf8_lossy(&get_bytes(s, MAX_PATH)?).into_owned();
    let n = get_u32(s)? as usize;
    if n > MAX_PATHS {
        return Err(std::io::Error::other("too many paths"));
    }
    match (kind[0], next) {
        (0, Some(next)) => {
            let ignoring = match reason.is_empty() {
                true => Ignoring::default(),
                false => serde_json::from_str(&reason).map_err(std::io::Error::other)?,
            };
            let mut dirty = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                dirty.push(get_bytes(s, MAX_PATH)?);
            }
            Ok(Answer::Vouched {
                dirty,
                next,
                ignoring,
            })
        }
        _ => Ok(Answer::Refused { reason, next }),
    }
}

/// The bytes of an answer, as `read_answer` reads them.
pub fn write_answer(a: &Answer) -> Vec<u8> {
    let mut out = Vec::new();
    match a {
        Answer::Vouched {
            dirty,
            next,
            ignoring,
        } => {
            out.push(0);
            put_since(&mut out, Some(*next));
            let rules = match ignoring.is_nothing() {
                true => Vec::new(),
                // Never fails; if it did, the client reads no JSON and walks.
                false => serde_json::to_vec(ignoring).unwrap_or_else(|_| b"?".to_vec()),
            };
            put_bytes(&mut out, &rules);
            out.extend_from_slice(&(dirty.len() as u32).to_le_bytes());
            for p in dirty {
                put_bytes(&mut out, p);
            }
        }
        Answer::Refused { reason, next } => {
            out.push(1);
            put_since(&mut out, *next);
            put_bytes(&mut out, reason.as_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
        }
    }
    out
}

/// A request, as the watcher reads it from a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Begin(Option<Since>),
    Status,
    Stop,
    /// An op byte this watcher does not know: the connection is dropped.
    Unknown(u8),
}

/// Reads one request (public for the decoder tests).
pub fn read_request(s: &mut impl Read) -> std::io::Result<Request> {
    let mut op = [0u8; 1];
    s.read_exact(&mut op)?;
    Ok(match op[0] {
        BEGIN => Request::Begin(get_since(s)?),
        STATUS => Request::Status,
        STOP => Request::Stop,
        other => Request::Unknown(other),
    })
}

/// The bytes of a request, as `read_request` reads them.
pub fn write_request(req: Request) -> Vec<u8> {
    match req {
        Request::Begin(since) => {
            let mut out = vec![BEGIN];
            put_since(&mut out, since);
            out
        }
        Request::Status => vec![STATUS],
        Request::Stop => vec![STOP],
        Request::Unknown(b) => vec![b],
    }
}

/// Asks the watcher behind socket `path` for its status.
pub fn status(path: &Path) -> Result<Status> {
    let io = |e: std::io::Error| Error::io(path, e);
    let mut s = connect(path).map_err(io)?;
    s.write_all(&write_request(Request::Status)).map_err(io)?;
    let json = get_bytes(&mut s, MAX_PATH).map_err(io)?;
    serde_json::from_slice(&json).map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))
}

/// Asks the watcher behind socket `path` to stop; returns once it agreed.
pub fn stop(path: &Path) -> Result<()> {
    let io = |e: std::io::Error| Error::io(path, e);
    let mut s = connect(path).map_err(io)?;
    s.write_all(&write_request(Request::Stop)).map_err(io)?;
    let mut ok = [0u8; 1];
    s.read_exact(&mut ok).map_err(io)?;
    Ok(())
}

/// Serves one connection; returns true when asked to stop. A stop removes
/// the socket (`bound`) before it answers, so when the asker hears back the
/// path is free for a new watcher.
pub fn serve_one(mut s: UnixStream, hub: &Hub, status: &dyn Fn() -> Status, bound: &Bound) -> bool {
    let _ = s.set_read_timeout(Some(TIMEOUT));
    let _ = s.set_write_timeout(Some(TIMEOUT));
    match read_request(&mut s) {
        Ok(Request::Begin(since)) => {
            let _ = s.write_all(&write_answer(&hub.begin(since)));
            false
        }
        Ok(Request::Status) => {
            let mut out = Vec::new();
            put_bytes(&mut out, &serde_json::to_vec(&status()).unwrap_or_default());
            let _ = s.write_all(&out);
            false
        }
        Ok(Request::Stop) => {
            bound.remove();
            let _ = s.write_all(&[1]);
            true
        }
        Ok(Request::Unknown(_)) | Err(_) => false,
    }
}

/// A watcher's socket and the lock that owns it (held while this lives).
pub struct Bound {
    pub listener: UnixListener,
    pub path: PathBuf,
    _lock: File,
}

impl Bound {
    /// Removes the socket file (its owner may: it holds the lock).
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// How long a new watcher waits for one that is stopping to let go.
const HANDOVER: Duration = Duration::from_secs(10);

/// Binds the socket of workspace `ws`, replacing a stale one (a crashed
/// watcher's). Fails if a watcher already runs for `ws`; waits (boundedly)
/// for one that is on its way out.
pub fn bind(home: &Path, ws: &Path) -> Result<Bound> {
    let path = socket_path(home, ws);
    let d = dir(home);
    std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
    let running = || {
        Error::io(
            &path,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a watcher already runs for this workspace",
            ),
        )
    };
    let deadline = Instant::now() + HANDOVER;
    let lock = loop {
        if let Some(lock) = try_own(&path)? {
            break lock;
        }
        // Held: by a live watcher (it answers, or will once it listens)
        // or by one that is stopping (its socket is already gone).
        if UnixStream::connect(&path).is_ok() || Instant::now() >= deadline {
            return Err(running());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // Ours now: whatever socket is there is a dead watcher's.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| Error::io(&path, e))?;
    Ok(Bound {
        listener,
        path,
        _lock: lock,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_owner_removes_a_socket() {
        let home = tempfile::tempdir().unwrap();
        let ws = Path::new("/some/workspace");
        let bound = bind(home.path(), ws).unwrap();
        // A second watcher of the same workspace is refused.
        let again = bind(home.path(), ws);
        assert!(again.is_err_and(|e| e.to_string().contains("already runs")));
        // --status never removes a socket its owner holds, even one that
        // does not answer (a watcher between bind and listen looks so).
        assert!(!remove_if_stale(&bound.path));
        assert!(bound.path.exists());
        drop(bound);
        // The owner died without removing it: stale, replaced by the next.
        let sock = socket_path(home.path(), ws);
        assert!(sock.exists());
        let next = bind(home.path(), ws).unwrap();
        assert!(UnixStream::connect(&next.path).is_ok());
        drop(next);
        assert!(remove_if_stale(&sock));
        assert!(!sock.exists());
    }

    #[test]
    fn a_stopping_watcher_hands_its_socket_over() {
        let home = tempfile::tempdir().unwrap();
        let ws = Path::new("/w");
        let old = bind(home.path(), ws).unwrap();
        // The stop answer is sent after the socket is removed; the old
        // watcher may still hold the lock for a moment as it exits.
        old.remove();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(old);
        });
        let new = bind(home.path(), ws).unwrap();
        t.join().unwrap();
        assert!(UnixStream::connect(&new.path).is_ok());
        drop(new);
    }
}
