//! `moat check`.

use clap::Args;
use moat::ops::check::{self, CheckOptions};

use super::{Ctx, bar};

#[derive(Args)]
pub struct CheckArgs {
    /// Also decompress and re-hash every stored object
    #[arg(long)]
    read_data: bool,
}

pub fn run(ctx: &Ctx, a: CheckArgs) -> moat::Result<i32> {
    let store = ctx.open()?;
    let progress = bar::progress(ctx.quiet);
    let r = check::check(
        &store,
        &CheckOptions {
            read_data: a.read_data,
        },
        progress.as_ref(),
    )?;
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
        Ok(0)
    } else {
        errln!("moat: check found {} problem(s)", r.problems.len());
        Ok(1)
    }
}
