//! The Unix socket between `moat watch` and the captures of its
//! workspace: `$MOAT_HOME/watch/<blake3(workspace)[..16] hex>.sock`.
//!
//! Requests are one byte (1 begin, 2 status, 3 stop; begin is followed by
//! the token asked about); answers are length-prefixed little-endian
//! fields. Only processes of the user who owns `$MOAT_HOME` reach it. A
//! capture that cannot connect, or gets no complete answer in time, walks
//! (the answer is never half-used).

use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Answer, Hub, Since, Status, Vouch};
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
    let mut req = vec![BEGIN];
    put_since(&mut req, since);
    let answer = s.write_all(&req).and_then(|_| read_answer(&mut s));
    answer.unwrap_or_else(|e| refused(format!("the watcher did not answer: {e}")))
}

fn read_answer(s: &mut UnixStream) -> std::io::Result<Answer> {
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
            let mut dirty = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                dirty.push(get_bytes(s, MAX_PATH)?);
            }
            Ok(Answer::Vouched { dirty, next })
        }
        _ => Ok(Answer::Refused { reason, next }),
    }
}

fn write_answer(a: &Answer) -> Vec<u8> {
    let mut out = Vec::new();
    match a {
        Answer::Vouched { dirty, next } => {
            out.push(0);
            put_since(&mut out, Some(*next));
            put_bytes(&mut out, b"");
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

/// Asks the watcher behind socket `path` for its status.
pub fn status(path: &Path) -> Result<Status> {
    let io = |e: std::io::Error| Error::io(path, e);
    let mut s = connect(path).map_err(io)?;
    s.write_all(&[STATUS]).map_err(io)?;
    let json = get_bytes(&mut s, MAX_PATH).map_err(io)?;
    serde_json::from_slice(&json).map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))
}

/// Asks the watcher behind socket `path` to stop; returns once it agreed.
pub fn stop(path: &Path) -> Result<()> {
    let io = |e: std::io::Error| Error::io(path, e);
    let mut s = connect(path).map_err(io)?;
    s.write_all(&[STOP]).map_err(io)?;
    let mut ok = [0u8; 1];
    s.read_exact(&mut ok).map_err(io)?;
    Ok(())
}

/// Serves one connection; returns true when asked to stop.
pub fn serve_one(mut s: UnixStream, hub: &Hub, status: &dyn Fn() -> Status) -> bool {
    let _ = s.set_read_timeout(Some(TIMEOUT));
    let _ = s.set_write_timeout(Some(TIMEOUT));
    let mut op = [0u8; 1];
    if s.read_exact(&mut op).is_err() {
        return false;
    }
    match op[0] {
        BEGIN => {
            if let Ok(since) = get_since(&mut s) {
                let _ = s.write_all(&write_answer(&hub.begin(since)));
            }
            false
        }
        STATUS => {
            let mut out = Vec::new();
            put_bytes(&mut out, &serde_json::to_vec(&status()).unwrap_or_default());
            let _ = s.write_all(&out);
            false
        }
        STOP => {
            let _ = s.write_all(&[1]);
            true
        }
        _ => false,
    }
}

/// Binds the socket of workspace `ws`, replacing a stale one (a socket no
/// watcher answers on). Fails if a watcher already answers.
pub fn bind(home: &Path, ws: &Path) -> Result<(UnixListener, PathBuf)> {
    let path = socket_path(home, ws);
    let d = dir(home);
    std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
    if UnixStream::connect(&path).is_ok() {
        return Err(Error::io(
            &path,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a watcher already runs for this workspace",
            ),
        ));
    }
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).map_err(|e| Error::io(&path, e))?;
    Ok((l, path))
}
