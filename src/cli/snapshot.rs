//! `moat snapshot`.

use std::path::PathBuf;

use clap::Args;
use moat::Store;
use moat::capture::{self, CaptureOptions, Guard, Outcome};
use moat::worktree::config;
use moat::worktree::walk::WalkOptions;

use super::{Ctx, bar, fmt, inspect, out};

#[derive(Args)]
pub struct SnapshotArgs {
    /// Workspace directory [default: the repository or snapshotted
    /// workspace the current directory is in, else the current directory]
    workspace: Option<PathBuf>,
    /// Message stored with the snapshot
    #[arg(short, long, default_value = "")]
    message: String,
    /// Print one JSON object with the id and stats
    #[arg(long)]
    json: bool,
    /// Leave out paths matching GLOB (gitignore syntax; repeatable)
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Do not honour .gitignore and .ignore files
    #[arg(long)]
    no_ignore: bool,
    /// Write a snapshot even when nothing changed since the last one
    #[arg(long)]
    allow_empty: bool,
    /// Pin the snapshot: no retention policy removes it
    #[arg(long)]
    keep: bool,
    /// zstd level for new data (1-22; the store's default is 3)
    #[arg(long, value_name = "N", value_parser = parse_level)]
    zstd_level: Option<i32>,
    /// Read changed files directly instead of cloning them into staging first
    #[arg(long)]
    no_clone: bool,
}

pub fn run(ctx: &Ctx, a: SnapshotArgs) -> moat::Result<i32> {
    let store = ctx.open_or_create()?;
    let (ws, why) = choose_workspace(&store, a.workspace)?;
    if ctx.verbose {
        errln!("moat: {why}");
    }
    let walk = WalkOptions {
        no_ignore: a.no_ignore,
        excludes: a.exclude,
        ..WalkOptions::default()
    };
    let rules = config::scan(&ws, None, walk)?;
    let s = &rules.config.snapshots;
    let opts = CaptureOptions {
        walk: rules.walk.clone(),
        // A manual snapshot is taken even when large, with a warning.
        guard: Some(Guard {
            max_new_bytes: s.max_new_bytes,
            max_new_files: s.max_new_files,
            enforce: false,
        }),
        message: a.message,
        allow_empty: a.allow_empty,
        pin: a.keep,
        zstd_level: a.zstd_level,
        clone: !a.no_clone,
        ..CaptureOptions::default()
    };
    let progress = bar::progress(ctx.quiet || a.json);
    let report = capture::capture(&store, &ws, &opts, progress.as_ref())?;
    for w in &report.warnings {
        errln!("moat: warning: {w}");
    }
    if ctx.verbose {
        match &report.scan_note {
            Some(why) => errln!("moat: walked the whole workspace: {why}"),
            None => errln!("moat: scan: {}", report.snapshot.scan.name()),
        }
        errln!("moat: {}", fmt::staging(&report.staging));
    }

    let s = &report.snapshot.stats;
    if a.json {
        let (id, unchanged) = match &report.outcome {
            Outcome::Written(id) => (id, false),
            Outcome::Unchanged(id) => (id, true),
        };
        let mut v = inspect::snapshot_json(id, &report.snapshot);
        v["unchanged"] = unchanged.into();
        v["warnings"] = report.warnings.clone().into();
        let st = &report.staging;
        v["staging"] = serde_json::json!({
            "cloner": st.cloner,
            "cloned_files": st.cloned_files,
            "cloned_bytes": st.cloned_bytes,
            "memory_files": st.memory_files,
            "memory_bytes": st.memory_bytes,
            "direct_files": st.direct_files,
            "fallback": st.fallback,
            "stage_ns": st.stage_ns,
        });
        outln!("{v}");
        return Ok(0);
    }
    match report.outcome {
        Outcome::Written(id) => {
            if !ctx.quiet {
                outln!(
                    "snapshot of {} saved: {} files, {} ({} read, {} new stored) in {:.2}s",
                    out::quote_path(&ws),
                    s.files,
                    fmt::bytes(s.bytes),
                    s.files_read,
                    fmt::bytes(s.new_bytes),
                    s.duration_ns as f64 / 1e9
                );
            }
            outln!("{id}");
        }
        Outcome::Unchanged(parent) => {
            if !ctx.quiet {
                outln!(
                    "{} unchanged since snapshot {}; no snapshot written",
                    out::quote_path(&ws),
                    parent.short()
                );
            }
            outln!("{parent}");
        }
    }
    Ok(0)
}

/// The workspace to snapshot: the one given, else the root of the current
/// directory's (`worktree::find_root`); and a line saying which and why.
pub fn choose_workspace(store: &Store, given: Option<PathBuf>) -> moat::Result<(PathBuf, String)> {
    if let Some(p) = given {
        let ws = moat::worktree::workspace_root(&p)?;
        let why = format!("workspace {} (given)", out::quote_path(&ws));
        return Ok((ws, why));
    }
    let (ws, found) = moat::ops::resolve::implicit_workspace(store)?;
    let why = format!("workspace {} ({})", out::quote_path(&ws), found.describe());
    Ok((ws, why))
}

fn parse_level(s: &str) -> Result<i32, String> {
    let n: i32 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    moat::format::compress::level_ok(n)
}
