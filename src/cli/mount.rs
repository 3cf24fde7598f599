//! `moat mount [ID] DIR`: a read-only FUSE view of one snapshot, or of all
//! the snapshots of a workspace; runs in the foreground until SIGINT,
//! SIGTERM or SIGHUP (then unmounts), or until unmounted from outside.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use moat::ops::mount::{self, Layout, View};
use moat::ops::resolve::Scope;

use super::{Ctx, fmt, out, scope};

#[derive(Args)]
#[command(allow_missing_positional = true)]
pub struct MountArgs {
    /// Snapshot to mount (id prefix, `latest`, `latest~N`) [default: every snapshot of the workspace]
    id: Option<String>,
    /// Directory to mount on (an existing, empty directory)
    dir: PathBuf,
    /// Workspace whose snapshots to mount [default: current directory]
    #[arg(long, value_name = "DIR", conflicts_with = "id")]
    workspace: Option<PathBuf>,
    /// Mount every snapshot in the store
    #[arg(long, conflicts_with_all = ["id", "workspace"])]
    all: bool,
}

/// The termination signals: blocked in every thread (so none of them is
/// killed mid-request), taken by `sigwait` on one.
fn stop_signals() -> libc::sigset_t {
    // SAFETY: plain signal-set calls on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

pub fn run(ctx: &Ctx, a: MountArgs) -> moat::Result<i32> {
    // First, before any thread starts: threads inherit the mask.
    let set = stop_signals();
    // SAFETY: blocks the set in this thread and so in all started later.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    let store = Arc::new(ctx.open()?);
    let lock = store.lock_shared()?;
    let (layout, what) = match &a.id {
        Some(spec) => {
            let r = scope::snapshot(&store, spec)?;
            let what = format!("snapshot {}", r.id.short());
            (Layout::One(Box::new(r)), what)
        }
        None => {
            let hint = "name a snapshot ID, pass --workspace DIR or --all";
            let sc = scope::resolve(ctx, &store, a.workspace.as_deref(), a.all, hint, false)?;
            let (all, _) = store.list_snapshots()?;
            let mine: Vec<_> = all
                .into_iter()
                .filter(|r| sc.workspace().is_none_or(|w| r.snap.workspace_path() == w))
                .collect();
            let what = match &sc {
                Scope::All => format!("{} snapshots", mine.len()),
                Scope::Workspace { .. } => format!("{} snapshots of {}", mine.len(), scope::describe(&sc)),
            };
            (Layout::Many(mine), what)
        }
    };
    let view = Arc::new(View::new(store.clone(), layout));
    let on_error: mount::OnError = Box::new(|msg| errln!("moat: error: {msg}"));
    let mounted = mount::mount(view, &a.dir, on_error)?;
    let stopper = mounted.stopper();
    std::thread::spawn(move || {
        let mut sig = 0;
        // SAFETY: waits for one of the blocked signals in `set`.
        while unsafe { libc::sigwait(&set, &mut sig) } != 0 {}
        stopper.stop();
    });
    if !ctx.quiet {
        outln!(
            "mounted {what} at {} (read-only); Ctrl-C or `fusermount3 -u` unmounts",
            out::quote_path(&a.dir)
        );
    }
    let stats = mounted.wait()?;
    drop(lock);
    if ctx.verbose {
        errln!(
            "moat: mount served {} reads ({}); {} chunks decoded ({}), {} from the cache; {} directories read",
            stats.reads,
            fmt::bytes(stats.bytes_read),
            stats.chunks_decoded,
            fmt::bytes(stats.bytes_decoded),
            stats.cache_hits,
            stats.dirs_loaded
        );
    }
    Ok(0)
}
