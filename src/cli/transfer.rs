//! `moat push` and `moat pull`: copy snapshots between this store and
//! another (a directory or `s3://BUCKET/PREFIX`).

use std::path::PathBuf;

use clap::Args;
use moat::Store;
use moat::ops::resolve::Scope;
use moat::ops::transfer::{self, Report};
use moat::store::SnapshotRecord;

use super::{Ctx, scope};

#[derive(Args)]
pub struct TransferArgs {
    /// The other store: a directory or s3://BUCKET/PREFIX
    remote: PathBuf,
    /// Snapshots to copy (6+ hex characters, `latest`, `latest~N`)
    /// [default: every snapshot of the current workspace]
    ids: Vec<String>,
    /// Copy every snapshot, of every workspace
    #[arg(long, conflicts_with = "ids")]
    all: bool,
    /// Print one JSON object with what was sent
    #[arg(long)]
    json: bool,
}

/// Which way the snapshots go.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Way {
    Push,
    Pull,
}

pub fn run(ctx: &Ctx, a: TransferArgs, way: Way) -> moat::Result<i32> {
    let (src, dst) = match way {
        Way::Push => {
            let src = ctx.open()?;
            let dst = Store::open_or_create_like(&a.remote, &src.config)?;
            (src, dst)
        }
        Way::Pull => {
            let src = Store::open(&a.remote)?;
            let dst = Store::open_or_create_like(&ctx.store_path, &src.config)?;
            (src, dst)
        }
    };
    let snaps = select(ctx, &src, &a)?;
    let mut ev = Say {
        quiet: ctx.quiet || a.json,
        way,
    };
    let r = transfer::transfer(&src, &dst, &snaps, &mut ev)?;
    print(&r, a.json, ctx.quiet, way);
    Ok(0)
}

fn select(ctx: &Ctx, src: &Store, a: &TransferArgs) -> moat::Result<Vec<SnapshotRecord>> {
    if !a.ids.is_empty() {
        return a.ids.iter().map(|s| scope::snapshot(src, s)).collect();
    }
    // The current directory's workspace, named on stderr, unless --all.
    match scope::resolve(ctx, src, None, a.all, "name snapshot IDs or pass --all", a.json)? {
        Scope::All => transfer::default_selection(src, None, true),
        Scope::Workspace { path, .. } => transfer::default_selection(src, Some(&path), false),
    }
}

struct Say {
    quiet: bool,
    way: Way,
}

impl transfer::Events for Say {
    fn snapshot_done(&mut self, id: &moat::ObjectId, copied: bool) {
        if self.quiet {
            return;
        }
        let verb = match (copied, self.way) {
            (false, _) => "already there",
            (true, Way::Push) => "pushed",
            (true, Way::Pull) => "pulled",
        };
        errln!("{} {verb}", id.short());
    }
}

fn print(r: &Report, json: bool, quiet: bool, way: Way) {
    let requests = r.source.requests.saturating_add(r.dest.requests);
    let sent = r.source.bytes_sent.saturating_add(r.dest.bytes_sent);
    let received = r.source.bytes_received.saturating_add(r.dest.bytes_received);
    if json {
        outln!(
            "{}",
            serde_json::json!({
                "snapshots": r.snapshots,
                "present": r.present,
                "objects": r.objects,
                "bytes": r.bytes,
                "requests": requests,
                "bytes_sent": sent,
                "bytes_received": received,
            })
        );
    } else if !quiet {
        let verb = match way {
            Way::Push => "pushed",
            Way::Pull => "pulled",
        };
        outln!(
            "{verb} {} snapshots ({} already there): {} objects, {} bytes stored; {requests} requests, {sent} bytes sent, {received} bytes received",
            r.snapshots,
            r.present,
            r.objects,
            r.bytes
        );
    }
}
