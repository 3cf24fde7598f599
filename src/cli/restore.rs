//! `moat restore`.

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use clap::Args;
use moat::ops::restore::{self, RestoreOptions};

use super::{Ctx, bar, fmt, json, out};

#[derive(Args)]
pub struct RestoreArgs {
    /// Snapshot id (6+ hex characters), `latest` or `latest~N`
    id: String,
    /// Directory to restore into (created if missing)
    #[arg(long, value_name = "DIR")]
    to: PathBuf,
    /// Restore only this path of the snapshot
    #[arg(long, value_name = "SUBPATH")]
    path: Option<PathBuf>,
    /// Restore into a non-empty directory, replacing entries in the way
    #[arg(long)]
    force: bool,
    /// Decompress every file, even content already on this filesystem
    #[arg(long)]
    no_clone: bool,
    /// One JSON object: the snapshot, the target and what was written
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, a: RestoreArgs) -> moat::Result<i32> {
    let store = ctx.open()?;
    let r = super::scope::snapshot(&store, &a.id)?;
    let opts = RestoreOptions {
        force: a.force,
        subpath: a.path.map(|p| p.as_os_str().as_bytes().to_vec()),
        clone: !a.no_clone,
    };
    let progress = bar::progress(ctx.quiet || a.json);
    let rep = restore::restore(&store, &r.snap, &a.to, &opts, progress.as_ref())?;
    if ctx.verbose {
        errln!("moat: {}", fmt::clones(&rep.clones, rep.files));
    }
    if a.json {
        let target = std::fs::canonicalize(&a.to).unwrap_or(a.to.clone());
        let mut v = serde_json::json!({
            "snapshot": r.id.to_hex(),
            "files": rep.files,
            "dirs": rep.dirs,
            "symlinks": rep.symlinks,
            "bytes": rep.bytes,
            "cloned_files": rep.clones.cloned_files,
            "cloned_bytes": rep.clones.cloned_bytes,
        });
        json::put_name(&mut v, "target", json::path_bytes(&target));
        outln!("{v}");
        return Ok(0);
    }
    if !ctx.quiet {
        outln!(
            "restored snapshot {} to {}: {} files, {} dirs, {} symlinks, {}",
            r.id.short(),
            out::quote_path(&a.to),
            rep.files,
            rep.dirs,
            rep.symlinks,
            fmt::bytes(rep.bytes)
        );
    }
    Ok(0)
}
