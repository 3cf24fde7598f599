//! `moat log`: like `git log -- PATH`, with `-n`, `--since`/`--until`,
//! `--json`, and a pager on a terminal (`pager`).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use clap::Args;
use moat::ops::diff::Trees;
use moat::ops::log::{LogOptions, parse_when};
use serde_json::Value;

use super::diff::{Sides, change_json, colors, print_patches, summary};
use super::{Ctx, fmt, inspect, out, pager, scope};

fn when(s: &str) -> Result<i64, String> {
    parse_when(s, moat::util::now_ns())
}

#[derive(Args)]
pub struct LogArgs {
    /// A file or directory of the workspace [default: everything]
    path: Option<PathBuf>,
    /// Workspace [default: current directory]
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
    /// Show at most N snapshots (the newest)
    #[arg(short = 'n', long = "max-count", value_name = "N")]
    max_count: Option<usize>,
    /// Only snapshots taken at or after WHEN (2024-05-01, 2024-05-01T12:00:00Z, or 2h, 7d ago)
    #[arg(long, value_name = "WHEN", value_parser = when)]
    since: Option<i64>,
    /// Only snapshots taken at or before WHEN
    #[arg(long, value_name = "WHEN", value_parser = when)]
    until: Option<i64>,
    /// Show each change as a patch
    #[arg(short = 'p', long, conflicts_with = "json")]
    patch: bool,
    /// One JSON array of snapshots, each with its `changes`
    #[arg(long)]
    json: bool,
    /// Never colour the output
    #[arg(long)]
    no_color: bool,
    /// Print straight to stdout, even on a terminal
    #[arg(long)]
    no_pager: bool,
}

pub fn run(ctx: &Ctx, a: LogArgs) -> moat::Result<i32> {
    let store = ctx.open()?;
    let hint = "pass --workspace DIR";
    let scope = scope::resolve(ctx, &store, a.workspace.as_deref(), false, hint, a.json)?;
    let ws: PathBuf = scope.workspace().map(Path::to_path_buf).unwrap_or_default();
    let opts = LogOptions {
        path: a.path.map(|p| relative_to(&p, &ws)).unwrap_or_default(),
        max: a.max_count,
        since_ns: a.since,
        until_ns: a.until,
    };
    let entries = moat::ops::log::log(&store, &ws, &opts)?;
    if a.json {
        let v: Vec<Value> = entries
            .iter()
            .map(|e| {
                let mut v = inspect::snapshot_json(&e.record.id, &e.record.snap);
                v["changes"] = e.changes.iter().map(change_json).collect();
                v
            })
            .collect();
        outln!("{}", Value::Array(v));
        return Ok(0);
    }
    pager::start(!a.no_pager)?;
    let c = colors(a.no_color);
    let sides = Sides {
        trees: Trees::new(&store),
        live: None,
    };
    for e in &entries {
        let s = &e.record.snap;
        outln!(
            "{}  {}  {:<10}  {}{}",
            c.paint("33", &e.record.id.short()),
            fmt::time(s.time_ns),
            s.trigger.name(),
            summary(&e.changes),
            if s.message.is_empty() {
                String::new()
            } else {
                format!("  ({})", out::escape(&s.message))
            }
        );
        if a.patch {
            print_patches(&sides, &e.changes, &c)?;
            outln!();
        }
    }
    Ok(0)
}

/// A PATH argument as a workspace-relative path: relative to the current
/// directory when that is inside the workspace, else taken as given.
fn relative_to(p: &Path, ws: &Path) -> Vec<u8> {
    let abs = std::env::current_dir()
        .map(|d| d.join(p))
        .unwrap_or_else(|_| p.to_path_buf());
    let abs = std::fs::canonicalize(&abs).unwrap_or(abs);
    match abs.strip_prefix(ws) {
        Ok(rel) => rel.as_os_str().as_bytes().to_vec(),
        Err(_) => p.as_os_str().as_bytes().to_vec(),
    }
}
