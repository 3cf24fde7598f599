//! `moat check`.

use clap::Args;
use moat::ops::check::{self, CheckOptions};
use serde_json::json;

use super::{Ctx, bar};

#[derive(Args)]
pub struct CheckArgs {
    /// Also decompress and re-hash every stored object
    #[arg(long)]
    read_data: bool,
    /// One JSON object: counts, `ok`, `problems` and `notes`
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, a: CheckArgs) -> moat::Result<i32> {
    let store = ctx.open()?;
    let progress = bar::progress(ctx.quiet || a.json);
    let r = check::check(
        &store,
        &CheckOptions {
            read_data: a.read_data,
        },
        progress.as_ref(),
    )?;
    let code = i32::from(!r.problems.is_empty());
    if a.json {
        let v = json!({
            "ok": r.problems.is_empty(),
            "read_data": a.read_data,
            "snapshots": r.snapshots,
            "trees": r.trees,
            "chunks": r.chunks,
            "packs": r.packs,
            "problems": r.problems,
            "notes": r.notes,
        });
        outln!("{v}");
        return Ok(code);
    }
    for n in &r.notes {
        errln!("moat: note: {n}");
    }
    for p in &r.problems {
        errln!("moat: problem: {p}");
    }
    let what = if a.read_data {
        "all data read and verified"
    } else {
        "structure verified"
    };
    if r.problems.is_empty() {
        if !ctx.quiet {
            outln!(
                "no problems: {} snapshots, {} trees, {} chunks, {} packs ({what})",
                r.snapshots,
                r.trees,
                r.chunks,
                r.packs
            );
        }
    } else {
        errln!("moat: check found {} problem(s)", r.problems.len());
    }
    Ok(code)
}
