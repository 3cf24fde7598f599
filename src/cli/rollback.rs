//! `moat rollback`.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use clap::Args;
use moat::ops::resolve;
use moat::ops::rollback::{self, RollbackOptions};

use super::{Ctx, bar};

#[derive(Args)]
pub struct RollbackArgs {
    /// Snapshot to return to (id prefix, `latest`, `latest~N`)
    id: String,
    /// Workspace [default: the current directory]
    workspace: Option<PathBuf>,
    /// Print the plan (in `diff --name-status` form) and change nothing
    #[arg(long)]
    dry_run: bool,
    /// Allow a snapshot taken of another workspace, and replace what no
    /// snapshot can hold (rollback names such paths when it refuses)
    #[arg(long)]
    force: bool,
    /// Decompress every file, even content the workspace already holds
    #[arg(long)]
    no_clone: bool,
    /// One JSON object: the plan (with --dry-run) or what was done
    #[arg(long)]
    json: bool,
    /// Only these paths
    #[arg(last = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

pub fn run(ctx: &Ctx, a: RollbackArgs) -> moat::Result<i32> {
    let store = ctx.open()?;
    let implicit = a.workspace.is_none();
    let ws = match &a.workspace {
        Some(p) => moat::worktree::workspace_root(p)?,
        None => resolve::implicit_workspace(&store)?.0,
    };
    // The workspace is the root of the one the command was run in: say
    // which, as every command with an implicit workspace does.
    if implicit && !ctx.quiet && !a.json {
        errln!("moat: workspace {}", super::out::quote_path(&ws));
    }
    let target = resolve::snapshot(&store, &a.id, Some(&ws))?;
    let rules = moat::worktree::config::scan(&ws, None, Default::default())?;
    let opts = RollbackOptions {
        walk: rules.walk,
        dry_run: a.dry_run,
        force: a.force,
        paths: a
            .paths
            .iter()
            .map(|p| p.as_os_str().as_bytes().to_vec())
            .collect(),
        clone: !a.no_clone,
    };
    let progress = bar::progress(ctx.quiet || a.json);
    let plan = rollback::plan(&store, &target, &ws, &opts, progress.as_ref())?;
    for w in &plan.report.warnings {
        errln!("moat: warning: {w}");
    }
    if a.dry_run {
        if a.json {
            print_json(&ws, &target.id, &plan.report.changes, None);
        } else {
            super::diff::print_name_status(&plan.report.changes, &super::diff::plain());
        }
        return Ok(0);
    }
    // Printed before anything changes, so even an interrupted rollback
    // can be undone.
    if let Some(safety) = plan.report.safety {
        errln!(
            "safety snapshot {safety} (undo with: moat rollback {})",
            safety.short()
        );
    }
    let warned = plan.report.warnings.len();
    let rep = rollback::apply(&store, plan)?;
    for w in &rep.warnings[warned..] {
        errln!("moat: warning: {w}");
    }
    if ctx.verbose {
        let is_file = |c: &&moat::ops::diff::Change| matches!(&c.new, Some(e) if matches!(e.content, moat::format::tree::Content::File(_)));
        let files = rep.changes.iter().filter(is_file).count() as u64;
        errln!("moat: {}", super::fmt::clones(&rep.clones, files));
    }
    if a.json {
        print_json(&ws, &target.id, &rep.changes, Some(&rep));
    } else if !ctx.quiet {
        outln!(
            "rolled back {} to {}: {} paths written, {} removed",
            super::out::quote_path(&ws),
            target.id.short(),
            rep.written,
            rep.deleted
        );
    }
    Ok(0)
}

/// The plan, or with `done` what was done: workspace, snapshot, changes
/// (as `diff --json` has them), warnings, and the safety snapshot.
fn print_json(
    ws: &Path,
    snapshot: &moat::ObjectId,
    changes: &[moat::ops::diff::Change],
    done: Option<&rollback::RollbackReport>,
) {
    let mut v = serde_json::json!({
        "snapshot": snapshot.to_hex(),
        "dry_run": done.is_none(),
        "changes": changes.iter().map(super::diff::change_json).collect::<Vec<_>>(),
    });
    if let Some(r) = done {
        v["written"] = r.written.into();
        v["deleted"] = r.deleted.into();
        v["safety"] = r.safety.map(|s| s.to_hex()).into();
        v["warnings"] = r.warnings.clone().into();
    }
    super::json::put_name(&mut v, "workspace", super::json::path_bytes(ws));
    outln!("{v}");
}
