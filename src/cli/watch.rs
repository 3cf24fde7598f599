//! `moat watch`.

use std::path::PathBuf;

use clap::Args;

use super::out::{quote, quote_path};
use super::{Ctx, fmt};

#[derive(Args)]
pub struct WatchArgs {
    /// Workspace directory [default: current directory]
    workspace: Option<PathBuf>,
    /// List the running watchers: workspace, dirty paths, memory
    #[arg(long, conflicts_with = "stop")]
    status: bool,
    /// Stop the watcher of the workspace
    #[arg(long)]
    stop: bool,
    /// With --status: print JSON
    #[arg(long, requires = "status")]
    json: bool,
}

pub fn run(ctx: &Ctx, a: WatchArgs) -> moat::Result<i32> {
    if a.status {
        let all = moat::ops::watch::list()?;
        if a.json {
            outln!("{}", serde_json::to_string(&all).unwrap_or_default());
            return Ok(0);
        }
        if all.is_empty() && !ctx.quiet {
            outln!("no watchers running");
        }
        for s in all {
            let state = match &s.broken {
                Some(why) => format!("cannot vouch: {}", quote(why.as_bytes())),
                None => "vouching".into(),
            };
            outln!(
                "{}  pid {}  {} dirty  {} dirs watched  {} held ({} per dir)  {state}",
                quote(s.workspace.as_bytes()),
                s.pid,
                s.dirty,
                s.watched_dirs,
                fmt::bytes(s.memory_bytes),
                fmt::bytes(s.bytes_per_dir),
            );
        }
        return Ok(0);
    }
    let ws = moat::worktree::workspace_root(&a.workspace.unwrap_or_else(|| PathBuf::from(".")))?;
    if a.stop {
        if moat::ops::watch::stop(&ws)? {
            if !ctx.quiet {
                outln!("stopped the watcher of {}", quote_path(&ws));
            }
            return Ok(0);
        }
        errln!("moat: no watcher runs for {}", ws.display());
        return Ok(1);
    }
    let store = ctx.open_or_create()?;
    let quiet = ctx.quiet;
    moat::ops::watch::serve(&store, &ws, &|sock| {
        if !quiet {
            errln!(
                "moat: watching {} (socket {}); stop with `moat watch --stop`",
                ws.display(),
                sock.display()
            );
        }
    })?;
    Ok(0)
}
