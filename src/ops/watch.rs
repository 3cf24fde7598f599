//! `moat watch`: one process per workspace keeps the paths that changed
//! (`worktree::watch`) and answers the captures of that workspace over its
//! socket; `--status` lists the running watchers, `--stop` ends one.
//!
//! Invariants: at most one watcher answers per workspace (a second one
//! refuses to start; a stale socket of a dead one is replaced); the
//! watcher takes events in continuously on its own thread, so the kernel
//! queue is drained even when no capture asks.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use crate::store::Store;
use crate::worktree::watch::{Hub, Rules, Status, platform_watcher, socket};

/// Watches workspace `ws` (canonical) until asked to stop, leaving
/// unwatched the directories its configuration and ignore files ignore
/// (each `moat snapshot` reads them afresh, so the watcher follows them).
/// `ready` is called once every directory is watched and the socket
/// answers.
pub fn serve(store: &Store, ws: &Path, ready: &dyn Fn(&Path)) -> Result<()> {
    let home = crate::store::moat_home()?;
    let bound = socket::bind(&home, ws)?;
    let watcher = match platform_watcher(ws, store.own_dirs(), Rules::Workspace) {
        Ok(w) => w,
        Err(e) => {
            bound.remove();
            return Err(e);
        }
    };
    let hub = Arc::new(Hub::new(watcher));
    let pump = Arc::downgrade(&hub);
    std::thread::spawn(move || {
        while let Some(h) = pump.upgrade() {
            h.pump(Duration::from_millis(200));
        }
    });
    ready(&bound.path);
    let status = || Status {
        workspace: ws.display().to_string(),
        pid: std::process::id(),
        ..hub.status()
    };
    for conn in bound.listener.incoming() {
        let Ok(conn) = conn else { continue };
        if socket::serve_one(conn, &hub, &status, &bound) {
            return Ok(());
        }
    }
    bound.remove();
    Ok(())
}

/// The status of every running watcher (stale sockets are removed).
pub fn list() -> Result<Vec<Status>> {
    let home = crate::store::moat_home()?;
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(socket::dir(&home)) else {
        return Ok(out);
    };
    let mut socks: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sock"))
        .collect();
    socks.sort();
    for p in socks {
        // A socket that does not answer may be a watcher still starting
        // (bound, not yet listening): only one nobody owns is removed.
        match socket::status(&p) {
            Ok(s) => out.push(s),
            Err(_) => {
                socket::remove_if_stale(&p);
            }
        }
    }
    Ok(out)
}

/// Stops the watcher of `ws`; false if none was running.
pub fn stop(ws: &Path) -> Result<bool> {
    let home = crate::store::moat_home()?;
    let path = socket::socket_path(&home, ws);
    if socket::status(&path).is_err() {
        return Ok(false);
    }
    socket::stop(&path)?;
    Ok(true)
}
