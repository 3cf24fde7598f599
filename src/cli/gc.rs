//! `moat gc` and `moat system clean-temp`.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use moat::ops::gc::retention::{Policy, parse_duration};
use moat::ops::gc::{self, GcOptions};
use moat::worktree::config::WorkspaceConfig;

use super::{Ctx, bar, fmt, out};

#[derive(Args)]
pub struct GcArgs {
    /// Apply the policy to this workspace [default: current directory]
    workspace: Option<PathBuf>,
    /// Apply the policy to every workspace in the store
    #[arg(long)]
    all: bool,
    /// Keep the N newest snapshots
    #[arg(long, value_name = "N")]
    keep_last: Option<usize>,
    /// Keep every snapshot newer than DURATION (30m, 2h, 7d, 2w)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    keep_within: Option<i64>,
    /// Keep the newest snapshot of each of the last N hours that have one
    #[arg(long, value_name = "N")]
    keep_hourly: Option<usize>,
    /// ... of each of the last N days (UTC)
    #[arg(long, value_name = "N")]
    keep_daily: Option<usize>,
    /// ... of each of the last N ISO weeks
    #[arg(long, value_name = "N")]
    keep_weekly: Option<usize>,
    /// Also remove the first snapshot of each run (kept by default)
    #[arg(long)]
    delete_initial: bool,
    /// Show what would be removed and freed; change nothing
    #[arg(long)]
    dry_run: bool,
    /// Leave temp files younger than DURATION
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
    min_age: i64,
}

#[derive(Subcommand)]
pub enum SystemCmd {
    /// Remove temp files left in the store by crashed moat processes
    CleanTemp(CleanTempArgs),
}

#[derive(Args)]
pub struct CleanTempArgs {
    /// Only items older than DURATION
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
    min_age: i64,
    /// List what would be removed
    #[arg(long)]
    dry_run: bool,
    /// Remove without asking
    #[arg(long)]
    force: bool,
}

pub fn run_gc(ctx: &Ctx, a: GcArgs) -> moat::Result<i32> {
    let store = ctx.open()?;
    let workspace = match a.all {
        true => None,
        false => Some(moat::worktree::workspace_root(
            &a.workspace.unwrap_or_else(|| PathBuf::from(".")),
        )?),
    };
    let flags = Policy {
        keep_last: a.keep_last,
        keep_within_ns: a.keep_within,
        keep_hourly: a.keep_hourly,
        keep_daily: a.keep_daily,
        keep_weekly: a.keep_weekly,
        delete_initial: a.delete_initial,
        ..Policy::default()
    };
    let opts = GcOptions {
        policy: flags,
        workspace: workspace.clone(),
        dry_run: a.dry_run,
        min_age_ns: a.min_age,
        workspace_policy: Some(std::sync::Arc::new(workspace_policy)),
    };
    if a.dry_run {
        match &workspace {
            Some(ws) => println!("policy: {}", workspace_policy(ws, opts.policy.clone()).describe()),
            None if opts.policy.is_empty() => println!(
                "policy: each workspace's moat.yaml retention, else the default: {}",
                Policy::time_machine().describe()
            ),
            None => println!("policy: {}", opts.policy.describe()),
        }
    }
    let progress = bar::progress(ctx.quiet);
    let wait = || errln!("moat: waiting for running snapshots and restores to finish...");
    let r = gc::gc(&store, &opts, progress.as_ref(), wait)?;
    let verb = if a.dry_run { "would remove" } else { "removed" };
    for s in &r.removed {
        outln!(
            "{verb} snapshot {}  {}  {}",
            s.id.short(),
            fmt::time(s.snap.time_ns),
            s.snap.trigger.name()
        );
    }
    for t in &r.temps {
        outln!(
            "{verb} temp file {} ({}, {})",
            out::quote_path(&t.path),
            fmt::bytes(t.size),
            age(t.age_ns)
        );
    }
    if r.caches_removed > 0 {
        outln!(
            "removed {} stat caches of workspaces that no longer exist",
            r.caches_removed
        );
    }
    let freed = if a.dry_run { "would free" } else { "freed" };
    outln!(
        "{} snapshots {verb}, {} kept; {freed} {} ({} packs deleted, {} repacked into {})",
        r.removed.len(),
        r.kept,
        fmt::bytes(r.freed),
        r.packs_deleted,
        r.packs_repacked,
        r.packs_written
    );
    for n in &r.notes {
        eprintln!("moat: note: {n}");
    }
    for p in &r.problems {
        eprintln!("moat: problem: {p}");
    }
    if r.problems.is_empty() {
        Ok(0)
    } else {
        eprintln!(
            "moat: gc found {} damaged object(s) and kept every copy of them",
            r.problems.len()
        );
        Ok(1)
    }
}

/// The policy of one workspace: the command's rules when it gives any
/// (plus `moat.yaml`'s max_count), else the workspace's configured policy
/// (its `moat.yaml` retention, or the time-based default).
fn workspace_policy(ws: &std::path::Path, flags: Policy) -> Policy {
    let cfg = WorkspaceConfig::load(ws, None)
        .map(|(c, _)| c)
        .unwrap_or_default();
    let r = &cfg.snapshots.retention;
    if flags.is_empty() {
        let mut p = Policy::for_workspace(r);
        p.delete_initial |= flags.delete_initial;
        return p;
    }
    let mut p = flags;
    p.max_count = r.max_count.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    p.delete_initial |= r.delete_initial;
    p
}

fn age(ns: i64) -> String {
    let s = ns / 1_000_000_000;
    match s {
        s if s >= 86_400 => format!("{}d old", s / 86_400),
        s if s >= 3600 => format!("{}h old", s / 3600),
        s => format!("{}m old", s / 60),
    }
}

pub fn run_system(ctx: &Ctx, cmd: SystemCmd) -> moat::Result<i32> {
    let SystemCmd::CleanTemp(a) = cmd;
    let store = ctx.open()?;
    let items = store.find_temps(a.min_age)?;
    let total: u64 = items.iter().map(|i| i.size).sum();
    for i in &items {
        outln!(
            "{}  {}  {}  ({})",
            out::quote_path(&i.path),
            fmt::bytes(i.size),
            age(i.age_ns),
            i.what
        );
    }
    if a.dry_run || items.is_empty() {
        outln!(
            "{} items, {}{}",
            items.len(),
            fmt::bytes(total),
            if a.dry_run { " (dry run)" } else { "" }
        );
        return Ok(0);
    }
    if !a.force {
        if !std::io::stdin().is_terminal() {
            errln!("moat: error: no terminal to confirm on; pass --force to remove or --dry-run to list");
            return Ok(2);
        }
        out::prompt(format_args!(
            "remove {} items ({})? [y/N] ",
            items.len(),
            fmt::bytes(total)
        ));
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            outln!("nothing removed");
            return Ok(0);
        }
    }
    let (removed, skipped) = store.remove_temps(items, a.min_age);
    for (i, why) in &skipped {
        errln!("moat: kept {}: {why}", out::quote_path(&i.path));
    }
    outln!(
        "removed {} items, {}",
        removed.len(),
        fmt::bytes(removed.iter().map(|i| i.size).sum())
    );
    Ok(0)
}
