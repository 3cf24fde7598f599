//! `moat gc` and `moat system clean-temp`.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use moat::ops::gc::retention::{Policy, parse_duration};
use moat::ops::gc::{self, GcOptions, GcReport};
use moat::ops::resolve::Scope;
use moat::store::cleanup::TempItem;
use moat::worktree::config::WorkspaceConfig;
use serde_json::{Value, json};

use super::{Ctx, bar, fmt, inspect, json, out, scope};

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
    /// One JSON object: what was (or would be) removed and freed
    #[arg(long)]
    json: bool,
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
    /// One JSON object (never asks: needs --force or --dry-run)
    #[arg(long)]
    json: bool,
}

pub fn run_gc(ctx: &Ctx, a: GcArgs) -> moat::Result<i32> {
    let store = ctx.open()?;
    let scope = scope::resolve(
        ctx,
        &store,
        a.workspace.as_deref(),
        a.all,
        scope::NAME_OR_ALL,
        a.json,
    )?;
    let workspace = scope.workspace().map(Path::to_path_buf);
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
    // What a dry run applies, said first (in JSON, as `policy`).
    let policy = match &workspace {
        Some(ws) => workspace_policy(ws, opts.policy.clone()).describe(),
        None if opts.policy.is_empty() => format!(
            "each workspace's moat.yaml retention, else the default: {}",
            Policy::time_machine().describe()
        ),
        None => opts.policy.describe(),
    };
    if a.dry_run && !a.json {
        outln!("policy: {policy}");
    }
    let progress = bar::progress(ctx.quiet || a.json);
    let wait = || errln!("moat: waiting for running snapshots and restores to finish...");
    let r = gc::gc(&store, &opts, progress.as_ref(), wait)?;
    if a.json {
        print_gc_json(&scope, a.dry_run, &policy, &r);
    } else {
        print_gc(&scope, a.dry_run, &r);
    }
    if r.problems.is_empty() {
        Ok(0)
    } else {
        errln!(
            "moat: gc found {} damaged object(s) and kept every copy of them",
            r.problems.len()
        );
        Ok(1)
    }
}

fn print_gc_json(scope: &Scope, dry_run: bool, policy: &str, r: &GcReport) {
    let mut v = json!({
        "dry_run": dry_run,
        "policy": policy,
        "removed": r.removed.iter().map(|s| inspect::snapshot_json(&s.id, &s.snap)).collect::<Vec<_>>(),
        "kept": r.kept,
        "freed_bytes": r.freed,
        "packs_deleted": r.packs_deleted,
        "packs_repacked": r.packs_repacked,
        "packs_written": r.packs_written,
        "temps": r.temps.iter().map(temp_json).collect::<Vec<_>>(),
        "caches_removed": r.caches_removed,
        "notes": r.notes,
        "problems": r.problems,
    });
    json::put_opt_name(&mut v, "workspace", scope.workspace().map(json::path_bytes));
    outln!("{v}");
}

fn temp_json(t: &TempItem) -> Value {
    let mut v = json!({"size": t.size, "age_ns": t.age_ns, "what": t.what});
    json::put_name(&mut v, "path", json::path_bytes(&t.path));
    v
}

fn print_gc(scope: &Scope, dry_run: bool, r: &GcReport) {
    let verb = if dry_run { "would remove" } else { "removed" };
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
    let (freed, removed) = match dry_run {
        true => ("would free", "would be removed"),
        false => ("freed", "removed"),
    };
    let n = r.removed.len();
    outln!(
        "{}: {n} snapshot{} {removed}, {} kept; {freed} {} ({} packs deleted, {} repacked into {})",
        scope::describe(scope),
        if n == 1 { "" } else { "s" },
        r.kept,
        fmt::bytes(r.freed),
        r.packs_deleted,
        r.packs_repacked,
        r.packs_written
    );
    for n in &r.notes {
        errln!("moat: note: {n}");
    }
    for p in &r.problems {
        errln!("moat: problem: {p}");
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
    if a.json {
        return clean_temp_json(&store, &a, items);
    }
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

fn clean_temp_json(store: &moat::Store, a: &CleanTempArgs, items: Vec<TempItem>) -> moat::Result<i32> {
    let listed: Vec<Value> = items.iter().map(temp_json).collect();
    let (removed, kept) = if a.dry_run {
        (Vec::new(), Vec::new())
    } else if a.force {
        store.remove_temps(items, a.min_age)
    } else {
        errln!("moat: error: --json never asks; pass --force to remove or --dry-run to list");
        return Ok(2);
    };
    let kept: Vec<Value> = kept
        .iter()
        .map(|(i, why)| {
            let mut v = temp_json(i);
            v["reason"] = why.to_string().into();
            v
        })
        .collect();
    let v = json!({
        "dry_run": a.dry_run,
        "items": listed,
        "removed": removed.iter().map(temp_json).collect::<Vec<_>>(),
        "removed_bytes": removed.iter().map(|i| i.size).sum::<u64>(),
        "kept": kept,
    });
    outln!("{v}");
    Ok(0)
}
